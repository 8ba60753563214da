"""The one registry of curvature methods: name → builder and capabilities.

The engine, the API's validation and the dashboard's choices all read it. Adding a method is
one module in ``curvscope/curvature`` plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from curvscope.curvature import baselines, blockdiag, ekfac, ggn, hessian, kfac


@dataclass(frozen=True)
class MethodInfo:
    name: str
    build: Callable
    kind: Literal["dense", "structured", "baseline"]
    dense_matrix: Literal["hessian", "ggn"] | None  # which d × d matrix it must form
    chain_step: int | None  # position in H → GGN → G_bd → EK-FAC → K-FAC (SCIENCE.md §2)
    description: str


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in [
        MethodInfo("H", hessian.build, "dense", "hessian", 0, "exact Hessian"),
        MethodInfo("GGN", ggn.build, "dense", "ggn", 1, "exact generalised Gauss-Newton"),
        MethodInfo("GGN-blockdiag", blockdiag.build, "structured", None, 2,
                   "block-diagonal GGN (per layer or per tensor)"),
        MethodInfo("EK-FAC", ekfac.build, "structured", None, 3,
                   "K-FAC eigenbasis with corrected eigenvalues"),
        MethodInfo("K-FAC", kfac.build, "structured", None, 4, "Kronecker-factored GGN"),
        MethodInfo("identity", baselines.build_identity, "baseline", None, None,
                   "identity (gradient dot product)"),
        MethodInfo("GGN-diag", baselines.build_ggn_diagonal, "baseline", None, None,
                   "diagonal of the GGN"),
    ]
}

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
CHAIN: tuple[str, ...] = tuple(
    sorted((m.name for m in METHODS.values() if m.chain_step is not None),
           key=lambda n: METHODS[n].chain_step)
)


def get_method(name: str) -> MethodInfo:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; allowed: {', '.join(METHOD_NAMES)}"
        ) from None


def dense_methods(names) -> list[str]:
    return [n for n in names if get_method(n).dense_matrix is not None]
