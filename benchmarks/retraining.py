"""Retraining throughput: the batched trainer vs the same models trained one after another.

Both train the paper's MLP (64→64→32→10, GELU, 6,570 parameters) on α = 0.5 subsets of the
digits training set (808 points), batch 32, SGD momentum, in float32, each model from its own
seed, with the single-model trainer ``curvscope.training.train_model`` (autograd, one model at
a time) and the batched trainer ``curvscope.training.batched.train_many``: its compiled epoch
(``curvscope.training.native``, where a C compiler is found) and its torch operations (B models
per bmm), alternating ``--repeats`` times, best of each.

Throughput is model-epochs per second. FLOPs per model-epoch are counted as
6 · |S| · Σ_l out_l·in_l (forward 2, backward 4 multiply-adds·2 per weight per point; biases and
activations ignored), and the achieved rate is compared with the machine's float32 matmul rate
(a 4096 × 4096 product measured in the same run). Last line: one JSON object with ``ratio``
(batched / sequential throughput, target ≥ 10), ``fraction_of_matmul`` (target ≥ 0.25,
issue 14) and ``compiled_over_torch_ops`` (the two batched paths in the same run), with the
1-min load at start and end (the machine is shared: prefer the fraction, whose two rates are
measured in the same run; the matmul rate is measured before and after the batched runs and
the larger is the yardstick).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from curvscope.data import DataSpec, load_data
from curvscope.groundtruth import draw_subset
from curvscope.models import ModelSpec, build_mlp
from curvscope.sizes import cpu_group_bytes
from curvscope.training import TrainingSpec, train_model
from curvscope.training.batched import group_size, train_many
from curvscope.training.native import library as native_library


def matmul_gflops(dtype=torch.float32, n=4096, repeats=3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models and epochs")
    parser.add_argument("--repeats", type=int, default=2,
                        help="alternating runs of each batched path (best of)")
    args = parser.parse_args()
    n_models, epochs, n_sequential = (100, 2, 2) if args.quick else (500, 4, 4)

    data = load_data(DataSpec())
    X = torch.as_tensor(data.X_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train)
    X_test = torch.as_tensor(data.X_test, dtype=torch.float32)
    y_test = torch.as_tensor(data.y_test)
    spec = TrainingSpec(epochs=epochs)
    model_spec = ModelSpec(hidden=[64, 32])
    template = build_mlp(64, 10, model_spec, seed=0, dtype=torch.float32)
    subsets = [draw_subset(len(X), 0.5, m, seed=0) for m in range(n_models)]
    weights = sum(m.in_features * m.out_features for m in template if hasattr(m, "in_features"))
    flops_per_model_epoch = 6 * len(subsets[0]) * weights

    load_start = os.getloadavg()[0]
    rate_start = matmul_gflops()
    print(f"float32 matmul: {rate_start:.1f} GFLOP/s (1-min load {load_start:.2f})")

    compiled = native_library() is not None
    times: dict[bool, list[float]] = {True: [], False: []}
    for path in (True, False) if compiled else (False,):
        train_many(template, X, y, subsets[:8], list(range(8)), TrainingSpec(epochs=1),
                   X_test, y_test, native_kernel=path)  # warm-up (and the kernel's build)
    for _ in range(args.repeats):  # the compiled epoch and the torch operations, alternating
        for path in (True, False) if compiled else (False,):
            times[path].append(_timed(lambda path=path: train_many(
                template, X, y, subsets, list(range(n_models)), spec, X_test, y_test,
                native_kernel=path)))
    batched = min(times[compiled])
    torch_ops = min(times[False])
    batched_throughput = n_models * epochs / batched
    rate = max(rate_start, matmul_gflops())

    def sequential():
        for m in range(n_sequential):
            model = build_mlp(64, 10, model_spec, seed=m, dtype=torch.float32)
            index = torch.as_tensor(subsets[m])
            train_model(model, X[index], y[index], spec.model_copy(update={"seed": m}))

    seq = _timed(sequential)
    sequential_throughput = n_sequential * epochs / seq
    achieved = batched_throughput * flops_per_model_epoch / 1e9
    ratio = batched_throughput / sequential_throughput
    print(f"batched:    {n_models} models × {epochs} epochs in {batched:.2f} s "
          f"({'compiled epoch' if compiled else 'torch operations: no C compiler'}) "
          f"→ {batched_throughput:.0f} model-epochs/s, {achieved:.1f} GFLOP/s "
          f"({achieved / rate:.0%} of matmul)")
    print(f"            torch operations {torch_ops:.2f} s: the compiled epoch is "
          f"{torch_ops / batched:.2f}× faster")
    print(f"sequential: {n_sequential} models × {epochs} epochs in {seq:.2f} s "
          f"→ {sequential_throughput:.1f} model-epochs/s")
    print(f"speed-up: {ratio:.1f}× (target ≥ 10)")
    print(json.dumps({
        "benchmark": "retraining", "n_models": n_models, "epochs": epochs,
        "subset_size": len(subsets[0]),
        "params": int(sum(p.numel() for p in template.parameters())),
        "batched_seconds": round(batched, 3), "sequential_seconds": round(seq, 3),
        "batched_path": "compiled epoch" if compiled else "torch operations",
        "torch_ops_seconds": round(torch_ops, 3),
        "compiled_over_torch_ops": round(torch_ops / batched, 2),
        "batched_seconds_all": {"compiled": times[True], "torch_ops": times[False]},
        "batched_model_epochs_per_s": round(batched_throughput, 1),
        "sequential_model_epochs_per_s": round(sequential_throughput, 2),
        "achieved_gflops": round(achieved, 2), "matmul_gflops": round(rate, 1),
        "fraction_of_matmul": round(achieved / rate, 3), "target_fraction": 0.25,
        "met_fraction": achieved / rate >= 0.25,
        "float32": True, "np_version": np.__version__, "torch_threads": torch.get_num_threads(),
        "models_per_group": group_size(template, spec.batch_size, X.element_size()),
        "cpu_group_mib": round(cpu_group_bytes() / 2**20, 1),
        "load_1min_at_start": round(load_start, 2),
        "load_1min_at_end": round(os.getloadavg()[0], 2), "ratio": round(ratio, 2),
    }))


if __name__ == "__main__":
    main()
