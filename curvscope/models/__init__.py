"""Model builders and parameter/block bookkeeping."""

from curvscope.models.layout import Block, ParameterLayout
from curvscope.models.mlp import ACTIVATIONS, ModelSpec, build_mlp, init_mlp_parameters

__all__ = [
    "ACTIVATIONS",
    "Block",
    "ModelSpec",
    "ParameterLayout",
    "build_mlp",
    "init_mlp_parameters",
]
