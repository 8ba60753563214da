"""What a study will cost, in closed form (the counts are ``curvscope.sizes``; this module adds
the server's caps): the API never builds a model nor loads data to
answer ``POST /studies/validate`` or ``POST /studies``.

* parameters of the MLP ``n_features → hidden… → n_classes``: Σ_l (fan_in_l + bias) · fan_out_l;
* rows of the data set: the built-in sets' known sizes, an upload's stored row count, the
  synthetic set's ``n_samples``; test rows ``max(1, round(test_fraction · n))`` as
  ``curvscope.data.split.n_test_rows``;
* dense memory: ``curvscope.sizes.estimate_dense_memory_bytes`` (arithmetic on d and the
  dense methods), checked against the smaller of the spec's budget and the server's cap
  (``Settings.max_memory_budget_gib``, by default half this machine's memory): a client can
  lower the budget, never raise it past what workers can hold, and never switch the guard off;
* retrained models ``|α| · n_subsets · n_seeds`` against ``Settings.max_retrained_models``.
"""

from __future__ import annotations

from typing import Any

from curvscope.sizes import BUILTIN_SHAPES as BUILTIN_SIZES  # noqa: F401  (re-exported)
from curvscope.sizes import closed_form_estimate
from curvscope.sizes import mlp_n_params as n_params  # noqa: F401  (re-exported)


class OverBudget(ValueError):
    """The study asks for more than this server can hold; ``field`` names what to change."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _file_shape(data: Any, dataset: Any | None) -> tuple[int, int, int] | None:
    """An upload's recorded (rows, features, classes), for a file data set."""
    if data.name != "file":
        return None
    if dataset is None:
        raise ValueError("a file data set needs an uploaded data set (dataset:<id>)")
    return int(dataset.n_rows), int(dataset.n_features), int(dataset.n_classes)


def estimate(spec: Any, dataset: Any | None, max_budget_gib: float,
             max_retrained_models: int) -> dict[str, Any]:
    """``curvscope.sizes.closed_form_estimate`` checked against the server's caps: the memory
    budget (the smaller of the spec's and the server's) and the retrained models."""
    from curvscope.registry import dense_methods

    sizes = closed_form_estimate(spec, _file_shape(spec.data, dataset))
    cap = int(max_budget_gib * 2**30)
    asked = spec.compute.memory_budget_gib
    if asked is not None and asked > max_budget_gib:
        raise OverBudget("compute.memory_budget_gib", (
            f"at most {max_budget_gib:g} GiB on this server (what its workers can hold; "
            f"CURVSCOPE_MAX_MEMORY_BUDGET_GIB), got {asked:g}"))
    budget = min(cap, int(asked * 2**30)) if asked is not None else cap
    need, d = sizes["dense_memory_bytes"], sizes["n_params"]
    if need > budget:
        dense = ", ".join(dense_methods(list(spec.curvature.methods)))
        raise OverBudget("curvature.methods", (
            f"the dense methods ({dense}) need about {need / 2**30:.1f} GiB for {d:,} "
            f"parameters, above the memory budget of {budget / 2**30:.1f} GiB; drop them from "
            "curvature.methods (the structured methods run matrix-free), or use a smaller "
            "model"))
    n_models = sizes["n_retrained_models"]
    if n_models > max_retrained_models:
        raise OverBudget("groundtruth.n_subsets", (
            f"{n_models:,} retrained models (|alphas| × n_subsets × n_seeds) are more than the "
            f"{max_retrained_models:,} this server runs for one study "
            "(CURVSCOPE_MAX_RETRAINED_MODELS)"))
    sizes.pop("n_classes")
    return {**sizes, "memory_budget_bytes": budget}
