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

import functools
import math
from pathlib import Path
from typing import Any

from curvscope.registry import dense_methods

#: (rows, features, classes) of the built-in data sets (scikit-learn's copies).
BUILTIN_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1797, 64, 10),
    "wine": (178, 13, 3),
    "breast_cancer": (569, 30, 2),
    "iris": (150, 4, 3),
}

#: Bytes one CPU group of retrained models may touch in a step (``cpu_group_bytes``): at
#: least ``CPU_GROUP_BYTES``, at most ``CPU_GROUP_BYTES_MAX``, in between a quarter of the
#: last-level cache's share per CPU that shares it.
CPU_GROUP_BYTES = 12 * 2**20
CPU_GROUP_BYTES_MAX = 48 * 2**20
#: Fewest models per CPU group.
CPU_MIN_MODELS_PER_GROUP = 8
#: Where Linux describes CPU 0's caches.
CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def _cache_bytes(text: str) -> int:
    """sysfs's cache size ("491520K", "32M", "512") in bytes."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def _cpu_count(cpu_list: str) -> int:
    """How many CPUs a sysfs list ("0-1", "0,2,4-7") names."""
    count = 0
    for part in cpu_list.strip().split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def last_level_cache(cache_dir: Path = CPU_CACHE_DIR) -> tuple[int, int] | None:
    """(bytes, CPUs sharing it) of CPU 0's highest-level data or unified cache as Linux
    reports it, or None where sysfs does not say (another OS, a container hiding it)."""
    best = None
    try:
        for index in cache_dir.glob("index*"):
            if (index / "type").read_text().strip() not in ("Data", "Unified"):
                continue
            level = int((index / "level").read_text())
            size = _cache_bytes((index / "size").read_text())
            sharing = _cpu_count((index / "shared_cpu_list").read_text())
            if best is None or level > best[0]:
                best = (level, size, max(sharing, 1))
    except (OSError, ValueError):
        return None
    return None if best is None else best[1:]


@functools.lru_cache(maxsize=1)
def cpu_group_bytes() -> int:
    """The working set one CPU group of retrained models may have: a quarter of the
    last-level cache per CPU sharing it, within [``CPU_GROUP_BYTES``,
    ``CPU_GROUP_BYTES_MAX``] (``CPU_GROUP_BYTES`` where the cache is not known).

    Measured for issue 14, 2 threads, 500 paper models: on a 2-core AMD EPYC groups of 64
    (12 MiB) took 7.42 s for 30 epochs against 8.08 s in one group of 250 per thread (44 MiB,
    beyond its cache share); on a 2-core Intel Xeon whose L3 is 480 MiB, 4 epochs took
    1.19–1.21 s in groups of 69 (12 MiB), 1.06–1.16 s in groups of 100 and 0.93–0.96 s in
    groups of 250 (1,000 models: 1.83 s in groups of 250, 2.03–2.31 s in groups of 500),
    the quick preset's models 0.84–0.89 s in groups of 500 against 0.98–1.07 s of 177."""
    cache = last_level_cache()
    if cache is None:
        return CPU_GROUP_BYTES
    size, sharing = cache
    return int(min(max(size // sharing // 4, CPU_GROUP_BYTES), CPU_GROUP_BYTES_MAX))


def cpu_models_per_group(n_params: int, widths: int, batch_size: int, itemsize: int,
                         group_bytes: int | None = None) -> int:
    """Most models one CPU group of ``training.batched.train_many`` trains at once: as many as
    keep a step's working set, per model ≈ itemsize · (3·d + 3·batch·Σ_l (in_l + out_l))
    (parameters, gradients, momentum; inputs, pre-activations and backpropagated signals of
    every layer), within ``group_bytes`` (default ``cpu_group_bytes()``, this machine's), so
    it stays in the last-level cache from one step to the next (kept here, without torch,
    for ``curvscope.cost``). With 12 MiB the paper's MLP (d = 6,570, float32, batch 32) gets
    69 models per group, the quick preset's (d = 1,482) 177; with 48 MiB 278 and 711. Fewer
    models than that pay more for each group-step's fixed cost of ~30 dispatched ops (the
    quick preset's models ran 20 % slower in groups of 64 than of 125 on the AMD host)."""
    per_model = itemsize * (3 * n_params + 3 * batch_size * widths)
    budget = cpu_group_bytes() if group_bytes is None else group_bytes
    return max(CPU_MIN_MODELS_PER_GROUP, budget // max(per_model, 1))

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
