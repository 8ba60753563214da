"""Step 1: the exact generalised Gauss–Newton G = (1/N) Σ_n J_nᵀ Λ_n J_n (Schraudolph, 2002).

Λ_n = diag(p_n) − p_n p_nᵀ is the Hessian of the cross-entropy in the logits, so G is H minus
the residual R = (1/N) Σ_n Σ_c (∂ℓ/∂f_c) ∇²_θ f_c, the network's own second derivatives.
G is positive semi-definite: it is kept as its matrix and eigenvalues (eigvalsh), and inverted by
a Cholesky solve unless a rule needs its eigenvectors (``attribution/cholesky.py``).
"""

from curvscope.curvature.base import CurvatureOperator, SpectrumEigenBlock
from curvscope.curvature.context import CurvatureContext


def build(ctx: CurvatureContext) -> CurvatureOperator:
    block = SpectrumEigenBlock.from_matrix(ctx.ggn())  # eigenvalues only (issue 14)
    return CurvatureOperator("GGN", ctx.n_params, [block])
