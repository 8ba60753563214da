"""Per-sample gradients: curvscope's closed form for Linear layers vs a per-example loop.

What: the N × d matrix of per-example loss gradients ∇_θ ℓ(y_n, f_θ(x_n)) for the default
problem (digits, 1,617 training points, MLP 64→64→32→10 GELU with bias, 6,570 parameters,
float64, freshly initialised).

How: ``curvscope.attribution.gradients.per_sample_gradients`` — for an MLP the closed form
∂ℓ_n/∂W_l = δ_{n,l} a_{n,l−1}ᵀ, ∂ℓ_n/∂b_l = δ_{n,l} from ONE batched forward + backward, written
into a huge-page-advised N × d buffer — against the obvious baseline, a Python loop over the
examples that runs a forward and a backward pass for each single example and collects the
parameters' ``.grad`` into a row. Also timed: the torch.func path (vmap of grad of
functional_call over the parameter dict), which curvscope keeps for models the closed form does
not cover. Each is warmed up once, then timed with ``time.perf_counter`` (best and median of
``--repeats``, default 7, the three contenders interleaved round-robin so that bursts of other
work on a shared machine hit all alike). All must agree with the loop to max |Δ| ≤ 1e-12.

Figure of merit: ``ratio`` = loop time / curvscope time (best of each); target ≥ 20.
``--quick`` uses 200 examples and fewer repeats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _common import (
    describe_model,
    emit,
    header,
    load_problem,
    parse_args,
    peak_rss_mib,
    time_interleaved,
)

from curvscope.attribution.gradients import per_sample_gradients, per_sample_gradients_vmap

TARGET = 20.0
TOLERANCE = 1e-12


def loop_gradients(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Baseline: one forward + backward per example, rows from the parameters' .grad."""
    params = [p for p in model.parameters()]
    d = sum(p.numel() for p in params)
    out = torch.empty(X.shape[0], d, dtype=X.dtype)
    for n in range(X.shape[0]):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(X[n : n + 1]), y[n : n + 1])
        loss.backward()
        out[n] = torch.cat([p.grad.reshape(-1) for p in params])
    model.zero_grad(set_to_none=True)
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    info = header("per-sample gradients: closed form (curvscope) vs per-example loop")
    model, X, y = load_problem(n_train=200 if args.quick else None)
    repeats = args.repeats or (2 if args.quick else 7)
    print(f"   {describe_model(model)}, N = {X.shape[0]}, float64")

    timings = time_interleaved({
        "curvscope": lambda: per_sample_gradients(model, X, y),
        "loop": lambda: loop_gradients(model, X, y),
        "vmap": lambda: per_sample_gradients_vmap(model, X, y),
    }, repeats=repeats)
    ours_t, loop_t, vmap_t = timings["curvscope"], timings["loop"], timings["vmap"]
    print(f"curvscope per_sample_gradients (closed form): {ours_t}")
    print(f"per-example loop (forward+backward):          {loop_t}")
    print(f"torch.func vmap of grad (fallback path):      {vmap_t}")

    max_diff = (ours_t.result - loop_t.result).abs().max().item()
    vmap_diff = (vmap_t.result - loop_t.result).abs().max().item()
    agree = max_diff <= TOLERANCE and vmap_diff <= TOLERANCE
    ratio = loop_t.best / ours_t.best
    print(f"max |curvscope − loop| = {max_diff:.3g}, max |vmap − loop| = {vmap_diff:.3g} "
          f"({'OK' if agree else 'FAIL'}: ≤ {TOLERANCE:g})")
    print(f"speed-up loop / curvscope = {ratio:.1f}× (target ≥ {TARGET:g}×: "
          f"{'met' if ratio >= TARGET else 'MISSED'}); vmap {loop_t.best / vmap_t.best:.1f}×")
    print(f"per example: curvscope {1e6 * ours_t.best / X.shape[0]:.2f} µs, "
          f"vmap {1e6 * vmap_t.best / X.shape[0]:.1f} µs, "
          f"loop {1e6 * loop_t.best / X.shape[0]:.1f} µs; peak RSS {peak_rss_mib():.0f} MiB")
    emit({
        "benchmark": "per_sample_grads",
        "quick": args.quick,
        "n_examples": X.shape[0],
        "n_params": ours_t.result.shape[1],
        "curvscope_s": ours_t.best,
        "curvscope_median_s": ours_t.median,
        "loop_s": loop_t.best,
        "loop_median_s": loop_t.median,
        "vmap_s": vmap_t.best,
        "vmap_median_s": vmap_t.median,
        "ratio_vmap": loop_t.best / vmap_t.best,
        "max_abs_diff": max_diff,
        "max_abs_diff_vmap": vmap_diff,
        "agree": agree,
        "target": TARGET,
        "met_target": ratio >= TARGET,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "machine": info,
        "ratio": ratio,
    })


if __name__ == "__main__":
    main()
