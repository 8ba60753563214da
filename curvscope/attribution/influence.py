"""Influence scores (Koh & Liang, 2017, sign convention).

τ(x, z_j) = − ∇_θℓ(z_j)ᵀ (M + λI)⁺ ∇_θℓ(x): positive τ means up-weighting z_j raises the test
loss (harmful), negative means it lowers it (helpful). Scores form an n_test × n_train matrix,
computed as −(G_test V) diag(w) (G_train V)ᵀ block by block in M's eigenbasis, with w from the
inverse rule applied to the damped spectrum the method really receives
(``inverse.damped_spectrum``: exact damping e + λ, or K-FAC's heuristic π damping).
"""

from __future__ import annotations

import torch

from curvscope.attribution.cholesky import cholesky_scores
from curvscope.attribution.inverse import InverseRule, damped_spectrum, inverse_weights
from curvscope.curvature.base import CurvatureOperator


def influence_scores(
    operator: CurvatureOperator,
    train_gradients: torch.Tensor,
    test_gradients: torch.Tensor,
    rule: InverseRule,
) -> tuple[torch.Tensor, dict]:
    """(n_test × n_train) scores and the inversion record; the record's ``damping_received``
    says which damping the method got (``inverse.damped_spectrum``)."""
    shifted, received = damped_spectrum(operator, rule)
    weights, info = inverse_weights(operator.eigenvalues(), rule,
                                    shifted=shifted if received["rule"] == "heuristic" else None)
    info["damping_received"] = received
    # issue 14 (attribution/cholesky.py): a PSD whole matrix whose rule is the plain inverse
    # is solved by Cholesky, without its eigenvectors
    scores = cholesky_scores(operator, weights, rule.damping, received, train_gradients,
                             test_gradients)
    info["solver"] = "eigenbasis" if scores is None else "cholesky"
    if scores is None:
        scores = eigenbasis_scores(operator, weights, train_gradients, test_gradients)
    return scores, info


def eigenbasis_scores(operator: CurvatureOperator, weights: torch.Tensor,
                      train_gradients: torch.Tensor, test_gradients: torch.Tensor
                      ) -> torch.Tensor:
    """τ = −(G_test V) diag(w) (G_train V)ᵀ, associated so that only the smaller of the two
    gradient sets goes through the eigenbasis: with fewer test points (the usual case),
    τ = −(G_test V diag(w) Vᵀ) G_trainᵀ (``apply_spectral``), 2·2·d²·n_test + 2·d·n_test·n_train
    flops for a dense V instead of 2·d²·(n_test + n_train) + 2·d·n_test·n_train (the paper's
    H: 35 against 160 GFLOP); the same matrix up to round-off."""
    if test_gradients.shape[0] < train_gradients.shape[0]:
        return -(operator.apply_spectral(test_gradients, weights) @ train_gradients.T)
    if train_gradients.shape[0] < test_gradients.shape[0]:
        return -(test_gradients @ operator.apply_spectral(train_gradients, weights).T)
    return -(operator.rotate(test_gradients) * weights) @ operator.rotate(train_gradients).T
