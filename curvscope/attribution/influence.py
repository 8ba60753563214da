"""Influence scores (Koh & Liang, 2017, sign convention).

τ(x, z_j) = − ∇_θℓ(z_j)ᵀ (M + λI)⁺ ∇_θℓ(x): positive τ means up-weighting z_j raises the test
loss (harmful), negative means it lowers it (helpful). Scores form an n_test × n_train matrix,
computed as −(G_test V) diag(w) (G_train V)ᵀ block by block in M's eigenbasis.
"""

from __future__ import annotations

import torch

from curvscope.attribution.inverse import InverseRule, inverse_weights
from curvscope.curvature.base import CurvatureOperator


def influence_scores(
    operator: CurvatureOperator,
    train_gradients: torch.Tensor,
    test_gradients: torch.Tensor,
    rule: InverseRule,
) -> tuple[torch.Tensor, dict]:
    """(n_test × n_train) scores and the inversion record."""
    weights, info = inverse_weights(operator.eigenvalues(), rule)
    scores = -(operator.rotate(test_gradients) * weights) @ operator.rotate(train_gradients).T
    return scores, info
