"""Helpers shared by the benchmark scripts: the default problem, timing, machine figures.

Nothing here is timed itself except by the caller. Every benchmark prints human-readable lines
and ends with ONE JSON line (``emit``) so that a driver can parse the last line of its output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Make ``import curvscope`` work when a script is run as ``python benchmarks/<name>.py`` from a
# checkout that is not installed.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_HIDDEN = (64, 32)


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="shrink sizes for a smoke run (numbers are not representative)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats after the warm-up (default depends on the script)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def load_problem(hidden=DEFAULT_HIDDEN, n_train: int | None = None, seed: int = 42,
                 train_epochs: int = 0):
    """(model, X, y) of the default study: sklearn digits (standardised, the shared split),
    MLP 64→hidden…→10 GELU with bias, float64, freshly initialised from ``seed``.

    ``n_train`` keeps only the first rows of the training set (for --quick runs);
    ``train_epochs`` > 0 trains with the default TrainingSpec for that many epochs.
    """
    from curvscope.data import DataSpec, load_data
    from curvscope.models import ModelSpec, build_mlp

    data = load_data(DataSpec())
    X = torch.as_tensor(data.X_train, dtype=torch.float64)
    y = torch.as_tensor(data.y_train, dtype=torch.long)
    if n_train is not None:
        X, y = X[:n_train].contiguous(), y[:n_train].contiguous()
    model = build_mlp(data.n_features, data.n_classes, ModelSpec(hidden=list(hidden)), seed=seed)
    if train_epochs:
        from curvscope.training import TrainingSpec, train_model

        train_model(model, X, y, TrainingSpec(epochs=train_epochs))
    return model, X, y


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_model(model: torch.nn.Module) -> str:
    widths = [m.in_features for m in model if isinstance(m, torch.nn.Linear)]
    widths.append([m for m in model if isinstance(m, torch.nn.Linear)][-1].out_features)
    return "MLP " + "→".join(map(str, widths)) + f" ({n_params(model):,} params)"


class Timing:
    """Wall-clock times (seconds) of the timed repeats of one function."""

    def __init__(self, times: list[float], result=None):
        self.times = times
        self.result = result

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def __str__(self) -> str:
        if len(self.times) == 1:
            return f"{self.best:.4g} s (1 run)"
        return f"best {self.best:.4g} s, median {self.median:.4g} s of {len(self.times)}"


def time_it(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed with
    ``time.perf_counter``; keeps the last result (for correctness checks)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return Timing(times, result)


def time_interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Like ``time_it`` for several functions, run round-robin (one call of each per round) so
    that a burst of other work on the machine hits every contender alike; best-of then filters
    it out. Returns name → Timing (each with its last result)."""
    results = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            results[name] = fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(times[name], results[name]) for name in fns}


def matmul_gflops(n: int = 4096, repeats: int = 3, dtype=torch.float64) -> float:
    """Best achieved rate (GFLOP/s, 2·n³ flops) of an n × n float64 matmul on this machine
    with torch's current thread count: the yardstick for the achieved rates."""
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, dtype=dtype, generator=gen)
    B = torch.randn(n, n, dtype=dtype, generator=gen)
    timing = time_it(lambda: A @ B, repeats=repeats, warmup=1)
    return 2 * n**3 / timing.best / 1e9


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> float:
    return os.getloadavg()[0]


def machine_info() -> dict:
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_1min_at_start": round(load_average(), 2),
    }


def header(title: str) -> dict:
    """Print the title and machine line; warn when something else is loading the CPUs."""
    info = machine_info()
    print(f"== {title}")
    print(f"   {info['cpus']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), "
          f"python {info['python']}, 1-min load {info['load_1min_at_start']:.2f}")
    if info["load_1min_at_start"] > 1.2:
        print("   WARNING: the machine is already loaded; timings may be inflated")
    return info


def emit(figures: dict) -> None:
    """The LAST output line: one JSON object (with the 1-min load at the end added to its
    ``machine`` entry, a hint of whether other work shared the CPUs during the run)."""
    if isinstance(figures.get("machine"), dict):
        figures["machine"]["load_1min_at_end"] = round(load_average(), 2)
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=False, default=_jsonable), flush=True)


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def rel_fro(A: torch.Tensor, B: torch.Tensor) -> float:
    """‖A − B‖_F / ‖B‖_F."""
    return (torch.linalg.norm(A - B) / torch.linalg.norm(B)).item()
