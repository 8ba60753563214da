"""What a study will cost, in closed form and without torch: parameters of the MLP, rows of
the data, the dense-memory estimate, retrained models and flops. The API answers
``POST /studies/validate`` with these without building a model or loading data;
``curvscope.study.estimate_study`` (which loads the data, and so validates it) agrees with them.

- parameters of the MLP n_features → hidden… → n_classes: d = Σ_l (fan_in_l + bias) · fan_out_l;
- test rows: max(1, round(test_fraction · n)) (``curvscope.data.split.n_test_rows``);
- dense memory: (3 matrices per dense method + 3 for the diagnostics) · d² · itemsize bytes;
- retrained models |α| · n_subsets · n_seeds; training flops ≈ 6 · d per point seen.
"""

from __future__ import annotations

import math
from typing import Any

from curvscope.registry import dense_methods

#: (rows, features, classes) of the built-in data sets (scikit-learn's copies).
BUILTIN_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1797, 64, 10),
    "wine": (178, 13, 3),
    "breast_cancer": (569, 30, 2),
    "iris": (150, 4, 3),
}

#: Bytes one CPU group of retrained models may touch in a step (``cpu_models_per_group``).
CPU_GROUP_BYTES = 12 * 2**20
#: Fewest models per CPU group.
CPU_MIN_MODELS_PER_GROUP = 8


def cpu_models_per_group(n_params: int, widths: int, batch_size: int, itemsize: int) -> int:
    """Most models one CPU group of ``training.batched.train_many`` trains at once: as many as
    keep a step's working set, per model ≈ itemsize · (3·d + 3·batch·Σ_l (in_l + out_l))
    (parameters, gradients, momentum; inputs, pre-activations and backpropagated signals of
    every layer), within ``CPU_GROUP_BYTES``, so it stays in the last-level cache from one
    step to the next (kept here, without torch, for ``curvscope.cost``). The paper's MLP
    (d = 6,570, float32, batch 32) gets 69 models per group, the quick preset's (d = 1,482)
    177. Issue 14, noisy 2-core AMD EPYC, 2 threads: 500 paper models trained in groups of
    64 took 7.42 s for 30 epochs against 8.08 s in one group of 250 per thread (3 epochs,
    10 interleaved repeats: best 1.21 vs 1.33 s; ten consecutive single-threaded steps, best
    of 40: 25.3–26.7 vs 32.4–33.5 µs per model-step), while the quick preset's small models
    ran 20 % slower in groups of 64 (2.43 vs 2.04 s: each group-step has a fixed cost of ~30
    dispatched ops) and level in groups of 125 (1.95 vs 2.12 s)."""
    per_model = itemsize * (3 * n_params + 3 * batch_size * widths)
    return max(CPU_MIN_MODELS_PER_GROUP, CPU_GROUP_BYTES // max(per_model, 1))

DENSE_MATRICES_PER_METHOD = 3  # the matrix, its eigenvectors, LAPACK workspace
DENSE_OVERHEAD_MATRICES = 3  # diagnostics: one structured method materialised + differences


def mlp_n_params(n_features: int, n_classes: int, hidden: list[int], bias: bool = True) -> int:
    """d = Σ over the MLP's layers of fan_in · fan_out (+ fan_out biases)."""
    widths = [n_features, *hidden, n_classes]
    return sum((fan_in + (1 if bias else 0)) * fan_out
               for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True))


def data_shape(data: Any, file_shape: tuple[int, int, int] | None = None
               ) -> tuple[int, int, int]:
    """(rows, features, classes) of a ``DataSpec`` without loading it; a file data set needs
    ``file_shape`` (e.g. an upload's recorded row, feature and class counts)."""
    if data.name == "file":
        if file_shape is None:
            raise ValueError("the shape of a file data set is known only once it is read; "
                             "pass file_shape=(rows, features, classes)")
        return tuple(int(x) for x in file_shape)  # type: ignore[return-value]
    if data.name == "gaussian_mixture":
        return int(data.n_samples), int(data.n_features), int(data.n_classes)
    return BUILTIN_SHAPES[data.name]


def n_test_rows(n_rows: int, test_fraction: float) -> int:
    """max(1, round(test_fraction · n_rows)), as ``curvscope.data.split.n_test_rows``."""
    return max(1, round(test_fraction * n_rows))


def estimate_dense_memory_bytes(n_params: int, methods: list[str], itemsize: int = 8) -> int:
    """Peak bytes of the d × d matrices a study with these methods holds at once."""
    n_dense = len(dense_methods(methods))
    if n_dense == 0:
        return 0
    matrices = n_dense * DENSE_MATRICES_PER_METHOD + DENSE_OVERHEAD_MATRICES
    return matrices * n_params * n_params * itemsize


def spec_n_params(spec: Any, file_shape: tuple[int, int, int] | None = None) -> int:
    """Parameters of the study's model, in closed form."""
    _, features, classes = data_shape(spec.data, file_shape)
    return mlp_n_params(features, classes, list(spec.model.hidden), spec.model.bias)


def closed_form_estimate(spec: Any, file_shape: tuple[int, int, int] | None = None) -> dict:
    """The cost of a study from its spec alone (no model built, no data loaded):
    n_params, n_train, n_test, dense_memory_bytes, n_retrained_models,
    retrained_model_epochs, retraining_gflop, dense_gflop."""
    rows, features, classes = data_shape(spec.data, file_shape)
    n_test = n_test_rows(rows, spec.data.test_fraction)
    n_train = rows - n_test
    d = mlp_n_params(features, classes, list(spec.model.hidden), spec.model.bias)
    itemsize = 8 if spec.compute.dtype == "float64" else 4
    need = estimate_dense_memory_bytes(d, list(spec.curvature.methods), itemsize)
    gt = spec.groundtruth
    n_models = len(gt.alphas) * gt.n_subsets * gt.n_seeds if gt.enabled else 0
    point_epochs = (sum(math.floor(a * n_train) for a in gt.alphas) * gt.n_subsets
                    * gt.n_seeds * spec.training.epochs) if gt.enabled else 0
    return {
        "n_params": d,
        "n_train": n_train,
        "n_test": n_test,
        "n_classes": classes,
        "dense_memory_bytes": need,
        "n_retrained_models": n_models,
        "retrained_model_epochs": n_models * spec.training.epochs,
        # training flops ≈ 6 · parameters per point seen (forward + backward)
        "retraining_gflop": 6 * d * point_epochs / 1e9,
        "dense_gflop": (2 * d**2 * n_train * classes + 10 * d**3) / 1e9 if need else 0.0,
    }
