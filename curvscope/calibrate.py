"""The calibration probe: this machine's rates for the kernels a study's stages run.

``probe()`` times, on the current torch threads and a CPU (the worker's device), each kernel
of ``curvscope.cost`` on a small problem, with the library's own code where a stage's speed
is the code's and not LAPACK's or BLAS's:

* gemm: float64 (and float32) 1024 × 1024 matmul, flop/s (2n³ per product);
* eigh / eigvalsh: ``linalg.symmetric_eigh`` (the studies' eigensolver) /
  ``torch.linalg.eigvalsh`` of a symmetric 1024² matrix, n³/s (larger sizes scale by
  ``curvscope.cost``'s measured exponents);
* mem: ``torch.linalg.norm(A − B)`` on 2048² float64, counted as 4 passes of 8n² bytes
  (the count ``curvscope.cost`` uses for an elementwise difference and its norm);
* step: ``training.train_model`` on a 64→32→10 GELU MLP, batch 32, steps per second;
* bflop / bstep: ``training.batched.train_many`` for 64 and for 16 models of the same MLP
  (256 points, batch 32, float32), each run as one group per thread (up to 2):
  t = group-steps/bstep + flop/bflop solved from the two runs;
* perm: ``torch.randperm`` of 1,000 elements, elements per second;
* lds: ``groundtruth.lds.lds_many`` on random losses, 100 subsets × 100 test points × 200
  resamples, 2 methods: ranked elements ((methods + 1) · resamples · M · T) per second, the
  time of its prefix-count matmul (2·M float32 flops per element) at the gemm32 rate
  taken out;
* npz: ``np.savez`` of 8 MB of float64 normals, bytes per second;
* base_rss_bytes: this process's resident memory at the end.

Each timed kernel is the median of its repeats (a shared machine's load is part of what a
study will see). ``write_calibration`` stores the result as JSON (a worker's at
``<data>/calibration/<host>.json``; ``curvscope calibrate`` writes the same file), which
``curvscope.cost.read_calibrations`` reads without torch.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import torch

from curvscope.cost import EIGH_REFERENCE_N, PROBE_STEP_FLOPS, SCIPY_EIGH_EXPONENT
from curvscope.linalg import default_backend, symmetric_eigh

CALIBRATION_VERSION = 1


def _median_time(fn, repeats: int, warmup=None) -> float:
    (warmup or fn)()  # warm-up: the first call pays for dispatch and allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _symmetric(n: int, generator: torch.Generator) -> torch.Tensor:
    A = torch.randn(n, n, dtype=torch.float64, generator=generator)
    return (A + A.T) / 2


def _gemm_rate(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, dtype=dtype, generator=g)
    B = torch.randn(n, n, dtype=dtype, generator=g)
    return 2 * n**3 / _median_time(lambda: A @ B, repeats)


def _eig_rate(fn, repeats: int = 2) -> float:
    """n₀³/s of ``fn`` at n₀ = 1024 (the size dependence is ``curvscope.cost``'s exponent)."""
    g = torch.Generator().manual_seed(1)
    n = EIGH_REFERENCE_N
    A, tiny = _symmetric(n, g), _symmetric(64, g)
    return n**3 / _median_time(lambda: fn(A), repeats, lambda: fn(tiny))


def _mem_rate(n: int = 2048, repeats: int = 5) -> float:
    g = torch.Generator().manual_seed(2)
    A = torch.randn(n, n, dtype=torch.float64, generator=g)
    B = torch.randn(n, n, dtype=torch.float64, generator=g)
    return 4 * 8 * n * n / _median_time(lambda: torch.linalg.norm(A - B), repeats)


def _probe_data(n: int, seed: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 64, dtype=dtype, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return X, y


def _step_rate(repeats: int = 5) -> float:
    from curvscope.models import build_mlp
    from curvscope.specs import ModelSpec, TrainingSpec
    from curvscope.training import train_model

    X, y = _probe_data(512, 3, torch.float64)
    spec = TrainingSpec(epochs=2, batch_size=32, lr=0.01)
    steps = spec.epochs * math.ceil(len(X) / spec.batch_size)
    # the full-batch loss per epoch costs 2·N·Σ o·i flops: negligible here
    model = build_mlp(64, 10, ModelSpec(hidden=[32]), seed=0)
    seconds = _median_time(lambda: train_model(model, X, y, spec), repeats)
    assert PROBE_STEP_FLOPS > 0
    return steps / seconds


def _batched_rates(repeats: int = 3) -> tuple[float, float]:
    """(flop/s, group-steps/s) of the batched trainer from two batch counts."""
    from curvscope.models import build_mlp
    from curvscope.specs import ModelSpec, TrainingSpec
    from curvscope.training.batched import train_many

    X, y = _probe_data(512, 4, torch.float32)
    X_eval, y_eval = _probe_data(64, 5, torch.float32)
    spec = TrainingSpec(epochs=2, batch_size=32, lr=0.01)
    template = build_mlp(64, 10, ModelSpec(hidden=[32]), seed=0, dtype=torch.float32)
    size = 256
    steps = spec.epochs * math.ceil(size / spec.batch_size)
    layer_flops = 64 * 32 + 32 * 10
    results = []
    rng = np.random.default_rng(0)
    # both runs in the same `groups` groups, one per thread (8+ models each), so that the
    # fixed part is one step of `groups` groups side by side: bstep counts group-steps
    groups = max(1, min(torch.get_num_threads(), 2))
    for n_models in (16, 64):
        subsets = [np.sort(rng.choice(len(X), size, replace=False)) for _ in range(n_models)]
        seeds = list(range(n_models))
        seconds = _median_time(lambda subsets=subsets, seeds=seeds, n=n_models: train_many(
            template, X, y, subsets, seeds, spec, X_eval, y_eval,
            models_per_group=math.ceil(n / groups)), repeats)
        flops = 6 * n_models * size * layer_flops * spec.epochs
        results.append((flops, seconds))
    (f1, t1), (f2, t2) = results
    per_flop = max((t2 - t1) / (f2 - f1), 1e-15)
    fixed = max(t1 - f1 * per_flop, 1e-6)
    return 1 / per_flop, steps * groups / fixed


def _perm_rate(n: int = 1000, count: int = 200) -> float:
    g = torch.Generator().manual_seed(6)

    def run():
        for _ in range(count):
            torch.randperm(n, generator=g)

    return n * count / _median_time(run, 3)


def _lds_rate(gemm32: float, M: int = 100, T: int = 100, B: int = 200) -> float:
    """Ranked elements per second of ``lds_many``, the prefix-count matmul (2·M float32
    flops per element, priced at ``gemm32``) taken out."""
    from curvscope.groundtruth.lds import lds_many

    rng = np.random.default_rng(7)
    targets = rng.standard_normal((M, T))
    predictions = {"a": rng.standard_normal((M, T)), "b": rng.standard_normal((M, T))}
    seconds = _median_time(lambda: lds_many(targets, predictions, B, seed=0), 3)
    elements = (len(predictions) + 1) * B * M * T
    rest = max(seconds - 2 * M * elements / gemm32, 0.2 * seconds)
    return elements / rest


def _npz_rate(n: int = 2**20) -> float:
    """Bytes per second of ``np.savez`` (what writes arrays.npz, uncompressed) on 8 MB of
    float64 normals, into memory."""
    import io

    values = np.random.default_rng(8).standard_normal(n)
    return 8 * n / _median_time(lambda: np.savez(io.BytesIO(), a=values), 3)


def probe() -> dict:
    """Measure every rate of ``curvscope.cost.KERNELS`` here, now (a few seconds)."""
    start = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rates: dict[str, float] = {}
    rates["gemm"] = _gemm_rate(torch.float64)
    rates["gemm32"] = _gemm_rate(torch.float32)
    rates["eigh"] = _eig_rate(symmetric_eigh)
    if default_backend() == "scipy":  # its time grows more slowly with n than MKL's
        rates["eigh_exponent"] = SCIPY_EIGH_EXPONENT
    rates["eigvalsh"] = _eig_rate(torch.linalg.eigvalsh)
    rates["mem"] = _mem_rate()
    rates["step"] = _step_rate()
    rates["bflop"], rates["bstep"] = _batched_rates()
    rates["perm"] = _perm_rate()
    rates["lds"] = _lds_rate(rates["gemm32"])
    rates["npz"] = _npz_rate()
    rates["fixed"] = 1.0
    rates["base_rss_bytes"] = float(psutil.Process().memory_info().rss)
    return {
        "version": CALIBRATION_VERSION,
        "host": socket.gethostname(),
        "device": f"cpu ({platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} threads)",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load": list(load_before) if load_before else None,
        "probe_seconds": round(time.perf_counter() - start, 3),
        "rates": rates,
    }


def write_calibration(path: Path, result: dict | None = None) -> dict:
    """Probe (unless ``result`` is given) and write the JSON atomically to ``path``."""
    from curvscope.storage import write_json_atomic

    result = result or probe()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return result


def worker_calibration_path(data_dir: Path, hostname: str | None = None) -> Path:
    """``<data>/calibration/<host>.json`` (the host name made safe for a file name)."""
    from curvscope.cost import calibration_dir

    name = "".join(ch if ch.isalnum() or ch in "-_.@" else "_"
                   for ch in (hostname or socket.gethostname()))
    return calibration_dir(data_dir) / f"{name}.json"


if __name__ == "__main__":  # pragma: no cover - a manual check
    print(json.dumps(probe(), indent=2))
