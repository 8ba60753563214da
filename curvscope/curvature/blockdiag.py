"""Step 2: the block-diagonal GGN, G_bd = blockdiag(G_11, …, G_BB).

One block per layer (weight and bias together) by default, one per tensor as an option. It
drops the cross-layer coupling, the off-block part of G (Martens & Grosse, 2015, §3).
"""

from curvscope.curvature.base import CurvatureOperator, DenseEigenBlock
from curvscope.curvature.context import CurvatureContext


def build(ctx: CurvatureContext) -> CurvatureOperator:
    blocks = [
        DenseEigenBlock.from_matrix(ctx.ggn_block(block), start=block.start)
        for block in ctx.layout.blocks
    ]
    return CurvatureOperator("GGN-blockdiag", ctx.n_params, blocks,
                             info={"block_structure": ctx.settings.block_structure})
