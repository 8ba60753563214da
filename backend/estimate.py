"""What a study will cost, in closed form: the API never builds a model nor loads data to
answer ``POST /studies/validate`` or ``POST /studies``.

* parameters of the MLP ``n_features → hidden… → n_classes``: Σ_l (fan_in_l + bias) · fan_out_l;
* rows of the data set: the built-in sets' known sizes, an upload's stored row count, the
  synthetic set's ``n_samples``; test rows ``max(1, round(test_fraction · n))`` as
  ``curvscope.data.split.n_test_rows``;
* dense memory: ``curvscope.study.estimate_dense_memory_bytes`` (arithmetic on d and the
  dense methods), checked against the smaller of the spec's budget and the server's cap
  (``Settings.max_memory_budget_gib``, by default half this machine's memory): a client can
  lower the budget, never raise it past what workers can hold, and never switch the guard off;
* retrained models ``|α| · n_subsets · n_seeds`` against ``Settings.max_retrained_models``.
"""

from __future__ import annotations

import math
from typing import Any

#: (rows, features, classes) of curvscope's built-in data sets (sklearn's copies).
BUILTIN_SIZES: dict[str, tuple[int, int, int]] = {
    "digits": (1797, 64, 10),
    "wine": (178, 13, 3),
    "breast_cancer": (569, 30, 2),
    "iris": (150, 4, 3),
}


class OverBudget(ValueError):
    """The study asks for more than this server can hold; ``field`` names what to change."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def data_shape(data: Any, dataset: Any | None) -> tuple[int, int, int]:
    """(rows, features, classes) of the spec's data, without loading it."""
    if data.name == "file":
        if dataset is None:
            raise ValueError("a file data set needs an uploaded data set (dataset:<id>)")
        return int(dataset.n_rows), int(dataset.n_features), int(dataset.n_classes)
    if data.name == "gaussian_mixture":
        return int(data.n_samples), int(data.n_features), int(data.n_classes)
    return BUILTIN_SIZES[data.name]


def n_params(n_features: int, n_classes: int, hidden: list[int], bias: bool) -> int:
    """Σ over the layers of the MLP of fan_in · fan_out (+ fan_out biases)."""
    widths = [n_features, *hidden, n_classes]
    return sum((fan_in + (1 if bias else 0)) * fan_out
               for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True))


def estimate(spec: Any, dataset: Any | None, max_budget_gib: float,
             max_retrained_models: int) -> dict[str, Any]:
    from curvscope.registry import dense_methods
    from curvscope.sizes import estimate_dense_memory_bytes

    rows, features, classes = data_shape(spec.data, dataset)
    n_test = max(1, round(spec.data.test_fraction * rows))
    n_train = rows - n_test
    d = n_params(features, classes, list(spec.model.hidden), spec.model.bias)
    cap = int(max_budget_gib * 2**30)
    asked = spec.compute.memory_budget_gib
    if asked is not None and asked > max_budget_gib:
        raise OverBudget("compute.memory_budget_gib", (
            f"at most {max_budget_gib:g} GiB on this server (what its workers can hold; "
            f"CURVSCOPE_MAX_MEMORY_BUDGET_GIB), got {asked:g}"))
    budget = min(cap, int(asked * 2**30)) if asked is not None else cap
    itemsize = 8 if spec.compute.dtype == "float64" else 4
    need = estimate_dense_memory_bytes(d, list(spec.curvature.methods), itemsize)
    if need > budget:
        dense = ", ".join(dense_methods(list(spec.curvature.methods)))
        raise OverBudget("curvature.methods", (
            f"the dense methods ({dense}) need about {need / 2**30:.1f} GiB for {d:,} "
            f"parameters, above the memory budget of {budget / 2**30:.1f} GiB; drop them from "
            "curvature.methods (the structured methods run matrix-free), or use a smaller "
            "model"))
    gt = spec.groundtruth
    n_models = len(gt.alphas) * gt.n_subsets * gt.n_seeds if gt.enabled else 0
    if n_models > max_retrained_models:
        raise OverBudget("groundtruth.n_subsets", (
            f"{n_models:,} retrained models (|alphas| × n_subsets × n_seeds) are more than the "
            f"{max_retrained_models:,} this server runs for one study "
            "(CURVSCOPE_MAX_RETRAINED_MODELS)"))
    point_epochs = (sum(math.floor(a * n_train) for a in gt.alphas) * gt.n_subsets
                    * gt.n_seeds * spec.training.epochs) if gt.enabled else 0
    return {
        "n_params": d,
        "n_train": n_train,
        "n_test": n_test,
        "dense_memory_bytes": need,
        "memory_budget_bytes": budget,
        "n_retrained_models": n_models,
        "retrained_model_epochs": n_models * spec.training.epochs,
        # training flops ≈ 6 · parameters per point seen (forward + backward)
        "retraining_gflop": 6 * d * point_epochs / 1e9,
        "dense_gflop": (2 * d**2 * n_train * classes + 10 * d**3) / 1e9 if need else 0.0,
    }
