"""Step 4: K-FAC, per layer K_l = S_l ⊗ A_l (Martens & Grosse, 2015).

A_l = (1/N) Σ_n ā_n ā_nᵀ is the covariance of the layer's inputs (bias folded in as a constant
1); S_l = (1/N) Σ_n Σ_k g_{n,k} g_{n,k}ᵀ the covariance of the output gradients backpropagated
from the columns of Λ_n^{1/2} (exact type-2; C backward passes). In the eigenbases
S = U_S diag(σ) U_Sᵀ, A = U_A diag(α) U_Aᵀ, K_l = Q_l diag(σ ⊗ α) Q_lᵀ with Q_l = U_S ⊗ U_A,
which is how it is stored, applied and inverted, never formed. The Fisher behind the factors
is ``settings.fisher_type_of("K-FAC")`` (type-2 by default; the official code's 1-sample
Monte-Carlo Fisher as an option, SCIENCE.md §7).
"""

import torch

from curvscope.curvature.base import CurvatureOperator, KroneckerEigenBlock
from curvscope.curvature.context import CurvatureContext


def build(ctx: CurvatureContext) -> CurvatureOperator:
    fisher_type = ctx.settings.fisher_type_of("K-FAC")
    blocks = []
    for block in ctx.layout.blocks:
        sigma, U_S, alpha, U_A = ctx.kronecker_eigenbasis(block, fisher_type)
        blocks.append(KroneckerEigenBlock(block, U_S, U_A, torch.outer(sigma, alpha).reshape(-1),
                                          sigma=sigma, alpha=alpha))
    return CurvatureOperator("K-FAC", ctx.n_params, blocks,
                             info=_fisher_info(ctx, fisher_type))


def _fisher_info(ctx: CurvatureContext, fisher_type: str | None = None) -> dict:
    fisher_type = fisher_type or ctx.settings.fisher_type
    info = {"fisher_type": fisher_type, "block_structure": ctx.settings.block_structure}
    if fisher_type == "mc":
        info["mc_samples"] = ctx.settings.mc_samples
        info["mc_seed"] = ctx.settings.seed
    return info
