"""Step 3: EK-FAC, K-FAC's eigenbasis with corrected eigenvalues (George et al., 2018).

E_l = Q_l diag(λ*) Q_lᵀ with Q_l = U_S ⊗ U_A and λ*_k = q_kᵀ G_ll q_k, the best diagonal in
that basis in Frobenius norm. With exact type-2 factors,
λ*_{o,i} = (1/N) Σ_n Σ_k (U_Sᵀ g_{n,k})_o² (U_Aᵀ ā_n)_i²   (per-sample projection),
which equals diag(Q_lᵀ G_ll Q_l) exactly; the dense form is used when G is already at hand.
Since E and K share Q_l: ‖G_ll − K_l‖² = ‖G_ll − E_l‖² + ‖E_l − K_l‖² (SCIENCE.md §2).
"""

import torch

from curvscope.curvature.base import CurvatureOperator, KroneckerEigenBlock
from curvscope.curvature.context import CurvatureContext
from curvscope.curvature.kfac import _fisher_info
from curvscope.curvature.signals import augmented_inputs


def corrected_eigenvalues_by_projection(ctx: CurvatureContext, block, U_S, U_A,
                                        fisher_type: str | None = None) -> torch.Tensor:
    signals = ctx.signals(fisher_type)
    a = augmented_inputs(block, signals.inputs[block.module_name]) @ U_A
    g = signals.output_grads[block.module_name] @ U_S
    return torch.einsum("kno,ni->oi", g.square(), a.square()).reshape(-1) / ctx.n_data


def build(ctx: CurvatureContext) -> CurvatureOperator:
    fisher_type = ctx.settings.fisher_type_of("EK-FAC")
    dense = ctx.has("ggn") and fisher_type == "type2"
    blocks = []
    for block in ctx.layout.blocks:
        _, U_S, _, U_A = ctx.kronecker_eigenbasis(block, fisher_type)
        kron = KroneckerEigenBlock(block, U_S, U_A, U_S.new_empty(0))
        if dense:
            Q = kron.eigenvectors()
            kron.eigenvalues = (Q * (ctx.ggn_block(block) @ Q)).sum(0)
        else:
            kron.eigenvalues = corrected_eigenvalues_by_projection(ctx, block, U_S, U_A,
                                                                   fisher_type)
        blocks.append(kron)
    info = _fisher_info(ctx, fisher_type) | {"eigenvalues_from": "dense GGN" if dense else "projection"}
    return CurvatureOperator("EK-FAC", ctx.n_params, blocks, info=info)
