"""Per-sample gradients: curvscope's torch.func path vs a per-example autograd loop.

What: the N × d matrix of per-example loss gradients ∇_θ ℓ(y_n, f_θ(x_n)) for the default
problem (digits, 1,617 training points, MLP 64→64→32→10 GELU with bias, 6,570 parameters,
float64, freshly initialised).

How: ``curvscope.attribution.gradients.per_sample_gradients`` (vmap of grad of functional_call,
chunk size 1024) against the obvious baseline, a Python loop over the examples that runs a
forward and a backward pass for each single example and collects the parameters' ``.grad``
into a row. Each is warmed up once, then timed with ``time.perf_counter`` (best and median of
``--repeats``, default 7, the three contenders interleaved round-robin so that bursts of other
work on a shared machine hit all alike). Both must agree to max |Δ| ≤ 1e-10.

Also timed, for reference only: the same vmap(grad) taken with respect to the dict of
parameter tensors (no flat θ inside the vmapped function, chunk_size=None) and concatenated
afterwards. curvscope differentiates with respect to a flat θ that ``layout.unflatten`` slices
inside the vmapped function; the backward of each slice materialises a zero-filled N × d tensor
that is then added up, which this variant avoids. It shows what the vmap approach can reach.

Figure of merit: ``ratio`` = loop time / vmap time (best of each); target ≥ 20.
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
from torch.func import functional_call, grad, vmap

from curvscope.attribution.gradients import per_sample_gradients

TARGET = 20.0
TOLERANCE = 1e-10


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


def param_dict_gradients(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor
                         ) -> torch.Tensor:
    """Reference: vmap(grad) with respect to the parameter dict, concatenated afterwards."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(params, x, target):
        logits = functional_call(model, params, (x.unsqueeze(0),))
        return F.cross_entropy(logits, target.unsqueeze(0))

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, X, y)
    return torch.cat([g.reshape(X.shape[0], -1) for g in grads.values()], dim=1)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    info = header("per-sample gradients: torch.func vmap (curvscope) vs per-example loop")
    model, X, y = load_problem(n_train=200 if args.quick else None)
    repeats = args.repeats or (2 if args.quick else 7)
    print(f"   {describe_model(model)}, N = {X.shape[0]}, float64")

    timings = time_interleaved({
        "vmap": lambda: per_sample_gradients(model, X, y),
        "loop": lambda: loop_gradients(model, X, y),
        "dict": lambda: param_dict_gradients(model, X, y),
    }, repeats=repeats)
    vmap_t, loop_t, dict_t = timings["vmap"], timings["loop"], timings["dict"]
    print(f"curvscope per_sample_gradients (vmap): {vmap_t}")
    print(f"per-example loop (forward+backward):   {loop_t}")
    print(f"reference: vmap over parameter dict:   {dict_t}")

    max_diff = (vmap_t.result - loop_t.result).abs().max().item()
    dict_diff = (dict_t.result - loop_t.result).abs().max().item()
    agree = max_diff <= TOLERANCE
    ratio = loop_t.best / vmap_t.best
    print(f"max |vmap − loop| = {max_diff:.3g} ({'OK' if agree else 'FAIL'}: ≤ {TOLERANCE:g})")
    print(f"speed-up loop / vmap = {ratio:.1f}× (target ≥ {TARGET:g}×: "
          f"{'met' if ratio >= TARGET else 'MISSED'})")
    print(f"reference parameter-dict vmap: {loop_t.best / dict_t.best:.1f}× over the loop, "
          f"{vmap_t.best / dict_t.best:.1f}× faster than curvscope's (max |Δ| {dict_diff:.3g})")
    print(f"per example: vmap {1e6 * vmap_t.best / X.shape[0]:.1f} µs, "
          f"loop {1e6 * loop_t.best / X.shape[0]:.1f} µs; peak RSS {peak_rss_mib():.0f} MiB")
    emit({
        "benchmark": "per_sample_grads",
        "quick": args.quick,
        "n_examples": X.shape[0],
        "n_params": vmap_t.result.shape[1],
        "vmap_s": vmap_t.best,
        "vmap_median_s": vmap_t.median,
        "loop_s": loop_t.best,
        "loop_median_s": loop_t.median,
        "param_dict_vmap_s": dict_t.best,
        "ratio_param_dict_vmap": loop_t.best / dict_t.best,
        "max_abs_diff": max_diff,
        "agree": agree,
        "target": TARGET,
        "met_target": ratio >= TARGET,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "machine": info,
        "ratio": ratio,
    })


if __name__ == "__main__":
    main()
