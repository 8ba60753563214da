"""The one registry of curvature methods: name → capabilities and builder.

The engine, the API's validation and the dashboard's choices all read it. It is a pure
capability table and imports no torch: each method's builder is named as
``"module:function"`` and imported on first use (``MethodInfo.build``), so the API can list
and validate methods without torch. Adding a method is one module in ``curvscope/curvature``
plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MethodInfo:
    name: str
    builder: str  # "module:function" of the builder: CurvatureContext → CurvatureOperator
    kind: Literal["dense", "structured", "baseline"]
    dense_matrix: Literal["hessian", "ggn"] | None  # which d × d matrix it must form
    chain_step: int | None  # position in H → GGN → G_bd → EK-FAC → K-FAC (SCIENCE.md §2)
    description: str
    has_fisher: bool = False  # built on a Fisher / GGN approximation whose type can be chosen

    def builder_function(self) -> Callable:
        """The builder, imported now (this imports torch)."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)

    def build(self, ctx):
        """Build the method's operator from a ``CurvatureContext``."""
        return self.builder_function()(ctx)

    def capabilities(self) -> dict:
        """The table row as plain JSON (for the API and the dashboard)."""
        return {"name": self.name, "kind": self.kind, "dense_matrix": self.dense_matrix,
                "chain_step": self.chain_step, "description": self.description,
                "has_fisher": self.has_fisher}


_C = "curvscope.curvature"

METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in [
        MethodInfo("H", f"{_C}.hessian:build", "dense", "hessian", 0, "exact Hessian"),
        MethodInfo("GGN", f"{_C}.ggn:build", "dense", "ggn", 1,
                   "exact generalised Gauss-Newton"),
        MethodInfo("GGN-blockdiag", f"{_C}.blockdiag:build", "structured", None, 2,
                   "block-diagonal GGN (per layer or per tensor)"),
        MethodInfo("EK-FAC", f"{_C}.ekfac:build", "structured", None, 3,
                   "K-FAC eigenbasis with corrected eigenvalues", has_fisher=True),
        MethodInfo("K-FAC", f"{_C}.kfac:build", "structured", None, 4,
                   "Kronecker-factored GGN", has_fisher=True),
        MethodInfo("identity", f"{_C}.baselines:build_identity", "baseline", None, None,
                   "identity (gradient dot product)"),
        MethodInfo("GGN-diag", f"{_C}.baselines:build_ggn_diagonal", "baseline", None, None,
                   "diagonal of the GGN"),
    ]
}

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
CHAIN: tuple[str, ...] = tuple(
    sorted((m.name for m in METHODS.values() if m.chain_step is not None),
           key=lambda n: METHODS[n].chain_step)
)
#: The methods whose Fisher type can be chosen (``curvature.fisher_types`` keys).
FISHER_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS.values() if m.has_fisher)


def get_method(name: str) -> MethodInfo:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; allowed: {', '.join(METHOD_NAMES)}"
        ) from None


def dense_methods(names) -> list[str]:
    return [n for n in names if get_method(n).dense_matrix is not None]


def capability_table() -> list[dict]:
    """Every method's capabilities, in registry order."""
    return [m.capabilities() for m in METHODS.values()]
