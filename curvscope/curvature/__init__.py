"""Curvature methods, one module each, sharing one eigen-block representation (base.py)."""

from curvscope.curvature.base import (
    CurvatureOperator,
    DenseEigenBlock,
    DiagonalEigenBlock,
    KroneckerEigenBlock,
)
from curvscope.curvature.context import CurvatureContext, CurvatureSettings

__all__ = [
    "CurvatureContext",
    "CurvatureOperator",
    "CurvatureSettings",
    "DenseEigenBlock",
    "DiagonalEigenBlock",
    "KroneckerEigenBlock",
]
