"""Influence scores without eigenvectors: a Cholesky solve where the inverse rule allows it.

For a block kept as its matrix and eigenvalues (``SpectrumEigenBlock``: the dense GGN) the
eigen-inverse V diag(w) Vᵀ equals (M + λI)⁻¹ exactly when the rule inverts every damped
eigenvalue, w_i = 1/(e_i + λ). That holds for the PSD GGN under the default ``abs`` rule
(|e| = e up to round-off) and under ``drop``/``drop_absolute`` whenever nothing falls below the
cutoff. Then τ = −G_test (M + λI)⁻¹ G_trainᵀ by ``torch.cholesky_solve``, and no eigenvectors
are needed (Hong et al. 2025, arXiv 2509.23437, use this influence τ for every method).

The test is on the weights themselves: max_i |w_i (e_i + λ) − 1| ≤ ``RULE_TOLERANCE``. For
``abs`` a round-off eigenvalue e < 0 gives |w_i (e_i + λ) − 1| = 2|e_i| / (|e_i| + λ), so the
solve is used when such eigenvalues are below ~5e-9·λ in magnitude; any rule that drops or
reflects a real eigenvalue keeps the eigenbasis path. The two paths agree to ≤ 1e-8 relative
Frobenius (tests/attribution/test_cholesky_scores.py).
"""

from __future__ import annotations

import torch

from curvscope.curvature.base import CurvatureOperator, SpectrumEigenBlock

RULE_TOLERANCE = 1e-8


def rule_is_plain_inverse(eigenvalues: torch.Tensor, weights: torch.Tensor,
                          damping: float) -> bool:
    """True when the rule's weights are 1/(e + λ) for every eigenvalue (to RULE_TOLERANCE)."""
    if damping <= 0 or not bool((weights > 0).all()):
        return False
    return float((weights * (eigenvalues + damping) - 1).abs().max()) <= RULE_TOLERANCE


def cholesky_scores(operator: CurvatureOperator, weights: torch.Tensor, damping: float,
                    received: dict, train_gradients: torch.Tensor,
                    test_gradients: torch.Tensor) -> torch.Tensor | None:
    """−G_test (M + λI)⁻¹ G_trainᵀ for a one-block ``SpectrumEigenBlock`` operator with exact
    damping whose rule is the plain inverse; None otherwise (use the eigenbasis)."""
    if len(operator.blocks) != 1 or not isinstance(operator.blocks[0], SpectrumEigenBlock):
        return None
    if operator.blocks[0].size != operator.n_params:
        return None
    if received.get("rule") != "exact":
        return None
    block = operator.blocks[0]
    if not rule_is_plain_inverse(block.eigenvalues, weights, damping):
        return None
    # (M + λI)⁻¹ is symmetric: solve for the smaller gradient set (the 180 test points
    # rather than the 1,617 training points of the paper's study: 9× fewer flops)
    if test_gradients.shape[0] < train_gradients.shape[0]:
        solved = block.cholesky_solve(test_gradients.T, damping)  # d × n_test
        return None if solved is None else -(solved.T @ train_gradients.T)
    solved = block.cholesky_solve(train_gradients.T, damping)  # d × n_train
    return None if solved is None else -(test_gradients @ solved)
