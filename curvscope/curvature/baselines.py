"""Baselines below the chain: the identity (gradient dot product, Pruthi et al., 2020 style)
and the diagonal of the GGN (each parameter on its own)."""

import torch

from curvscope.curvature.base import CurvatureOperator, DiagonalEigenBlock
from curvscope.curvature.context import CurvatureContext


def build_identity(ctx: CurvatureContext) -> CurvatureOperator:
    ones = torch.ones(ctx.n_params, dtype=ctx.dtype, device=ctx.theta.device)
    return CurvatureOperator("identity", ctx.n_params, [DiagonalEigenBlock(0, ctx.n_params, ones)])


def build_ggn_diagonal(ctx: CurvatureContext) -> CurvatureOperator:
    diag = ctx.ggn_diagonal()
    return CurvatureOperator("GGN-diag", ctx.n_params, [DiagonalEigenBlock(0, ctx.n_params, diag)])
