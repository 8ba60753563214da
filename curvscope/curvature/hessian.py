"""Step 0 of the chain: the exact Hessian H = ∇²L(θ), dense, in float64.

H may be indefinite: its negative eigenvalues are kept and handled by the inversion rule
(SCIENCE.md §3). Koh & Liang (2017) use H in the influence function; Hong et al. (2025) show
it is the reference every approximation is measured against.
"""

from curvscope.curvature.base import CurvatureOperator, DenseEigenBlock
from curvscope.curvature.context import CurvatureContext


def build(ctx: CurvatureContext) -> CurvatureOperator:
    """H as one dense eigen-block that also keeps H itself: a study reusing the cached
    operator adopts H without recomposing V diag(λ) Vᵀ."""
    block = DenseEigenBlock.from_matrix(ctx.hessian(), keep_matrix=True)
    return CurvatureOperator("H", ctx.n_params, [block])
