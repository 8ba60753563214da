"""The official code's eigen-inverse as rule "drop_absolute" (SCIENCE.md §7), against numpy."""

import numpy as np
import torch

from curvscope.attribution import InverseRule, influence_scores, inverse_weights
from curvscope.curvature import CurvatureOperator, DenseEigenBlock


def _official_eigen_inverse(M, damping, eps):
    """hessian_influence.core.inversion.MatrixInverter._eigen_inverse with replace_with=0."""
    e, V = np.linalg.eigh(M + damping * np.eye(len(M)))
    inv = np.zeros_like(e)
    keep = e > eps
    inv[keep] = 1.0 / e[keep]
    return V @ np.diag(inv) @ V.T


def test_drop_absolute_equals_the_official_eigen_inverse_on_an_indefinite_matrix():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    # eigenvalues: large, moderate, tiny positive (below the absolute cutoff after damping),
    # negative beyond −λ (dropped, not inverted as |e|), and one just above −λ
    e = np.array([3.0, 0.5, 2e-3, 1e-7, -1e-4 + 5e-7, -0.2, -1.5, 1e-2])
    M = (Q * e) @ Q.T
    damping, eps = 1e-4, 1e-6
    rule = InverseRule(damping=damping, threshold=eps, rule="drop_absolute")
    op = CurvatureOperator("H", 8, [DenseEigenBlock.from_matrix(torch.as_tensor(M))])
    w, info = inverse_weights(op.eigenvalues(), rule)
    ours = op.apply_spectral(torch.eye(8, dtype=torch.float64), w).numpy()
    ref = _official_eigen_inverse(M, damping, eps)
    assert np.linalg.norm(ours - ref) <= 1e-10 * np.linalg.norm(ref)
    # kept: 3.0, 0.5, 2e-3, 1e-2, 1e-7 (+λ = 1.001e-4 > 1e-6); dropped: −1e-4+5e-7 (+λ = 5e-7
    # ≤ 1e-6), −0.2, −1.5 (negative after damping)
    assert info["n_inverted"] == 5 and info["n_dropped"] == 3
    assert info["n_negative_dropped"] == 2 and info["cutoff"] == eps
    # the cutoff is absolute: on M·1e-4 (no damping) 2e-7 falls below 1e-6 and is dropped,
    # while the relative rule (cutoff 1e-6 · 3e-4) keeps it
    scaled = op.eigenvalues() * 1e-4
    absolute = inverse_weights(scaled, InverseRule(damping=0.0, threshold=eps,
                                                   rule="drop_absolute"))[1]
    relative = inverse_weights(scaled, InverseRule(damping=0.0, threshold=eps, rule="drop"))[1]
    assert absolute["n_dropped"] > relative["n_dropped"]
    # and the scores use that inverse
    g = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    scores, record = influence_scores(op, g, g[:2], rule)
    np.testing.assert_allclose(scores.numpy(), -(g[:2].numpy() @ ref @ g.numpy().T),
                               rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    assert record["damping_received"] == {"rule": "exact", "damping": damping}
