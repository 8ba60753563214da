"""Step 1: the exact generalised Gauss–Newton G = (1/N) Σ_n J_nᵀ Λ_n J_n (Schraudolph, 2002).

Λ_n = diag(p_n) − p_n p_nᵀ is the Hessian of the cross-entropy in the logits, so G is H minus
the residual R = (1/N) Σ_n Σ_c (∂ℓ/∂f_c) ∇²_θ f_c, the network's own second derivatives.
G is positive semi-definite.
"""

from curvscope.curvature.base import CurvatureOperator, DenseEigenBlock
from curvscope.curvature.context import CurvatureContext


def build(ctx: CurvatureContext) -> CurvatureOperator:
    block = DenseEigenBlock.from_matrix(ctx.ggn())
    return CurvatureOperator("GGN", ctx.n_params, [block])
