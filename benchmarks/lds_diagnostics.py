"""LDS and diagnostics stages: the vectorised code (issue 14) against the code it replaced.

What: the two stages of a study that are pure post-processing, on the paper preset's sizes.

* **lds** — per α, ``lds_many`` over the paper's seven methods (M = 100 subsets, n_test = 180,
  1,000 bootstrap resamples, one shared set of resamples) plus ``seed_noise_ceiling`` (R = 5
  seeds), for the four α of the paper preset: what ``study.stage_lds`` computes. Inputs are
  synthetic (targets = mean of M × R × n_test losses, predictions = targets + noise at seven
  levels; the cost does not depend on the values), or a finished study's own
  (``--study DIR``: its arrays.npz masks, retrained losses and scores). Old =
  ``tests/groundtruth/reference_lds.py`` (the previous ``curvscope.groundtruth.lds``,
  verbatim); the bootstrap arrays must be bit-identical.
* **diagnostics** — ``diagnostics.report.diagnose`` on the paper preset's trained model
  (digits, MLP 64→64→32→10, d = 6,570, all seven methods, dense H and G), built through the
  study's own stages with the stage cache (``--cache-dir``, default ``$CURVSCOPE_CACHE_DIR`` or
  ``~/.cache/curvscope``: the first run trains and builds every operator, minutes; later runs
  reuse them). Old = ``tests/diagnostics/reference_report.py``. Agreement: the largest
  relative difference over every results leaf whose reference magnitude is above 1e-12 (the
  rest are round-off by nature, e.g. the Pythagoras gap), and the largest absolute one.

How: ``time.perf_counter`` around each call, old and new alternated round-robin
(``--repeats`` rounds, default 3 for lds and 1 for diagnostics; best of the rounds), torch and
BLAS at ONE thread (``torch.set_num_threads(1)``; set ``OMP_NUM_THREADS=1`` too) so that the
ratio is not a measure of how two threads fare on a shared machine. ``ratio_lds`` and
``ratio_diagnostics`` are old / new; ``ratio`` is the smaller. The JSON line carries
``os.getloadavg()`` at start and end. ``--quick``: the quick preset (d = 1,482) and
n_bootstrap = 200, a smoke run. ``--only lds|diagnostics`` runs one part.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from _common import emit, header, parse_args

PAPER_METHODS = ["H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC", "identity", "GGN-diag"]


def _extra(parser) -> None:
    parser.add_argument("--only", choices=["lds", "diagnostics"], default=None)
    parser.add_argument("--study", type=Path, default=None,
                        help="a finished study's folder: its LDS inputs instead of synthetic")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="stage cache for the diagnostics' operators")


# ----- lds -----------------------------------------------------------------------------------

def lds_inputs(args) -> tuple[dict, int, int]:
    """{α: (retrained losses M × R × n_test, {method: predictions M × n_test})}, n_bootstrap,
    seed."""
    if args.study is not None:
        import json
        results = json.loads((args.study / "results.json").read_text())
        arrays = np.load(args.study / "arrays.npz")
        gt = results["spec"]["groundtruth"]
        from curvscope.groundtruth import predicted_losses
        out = {}
        for alpha in gt["alphas"]:
            key = str(alpha)
            losses = arrays[f"retrained_losses/{key}"].astype(np.float64)
            out[key] = (losses, {m: predicted_losses(arrays[f"masks/{key}"],
                                                     arrays[f"scores/{m}"])
                                 for m in results["methods"]})
        return out, gt["n_bootstrap"], gt["seed"]
    n_subsets, n_seeds, n_test = 100, 5, 180
    alphas = ["0.5"] if args.quick else ["0.3", "0.5", "0.7", "0.9"]
    rng = np.random.default_rng(0)
    out = {}
    for alpha in alphas:
        losses = rng.normal(size=(n_subsets, 1, n_test)) + 0.5 * rng.normal(
            size=(n_subsets, n_seeds, n_test))
        targets = losses.mean(axis=1)
        out[alpha] = (losses, {m: targets + (j + 0.5) * rng.normal(size=targets.shape)
                               for j, m in enumerate(PAPER_METHODS)})
    return out, (200 if args.quick else 1000), 1000


def lds_stage(module, inputs, n_bootstrap, seed) -> dict:
    """What stage_lds computes per α: every method's LDS and the seed-noise ceiling."""
    out = {}
    for alpha, (losses, predictions) in inputs.items():
        out[alpha] = module.lds_many(losses.mean(axis=1), predictions, n_bootstrap, seed=seed)
        out[alpha]["ceiling"] = module.seed_noise_ceiling(losses, n_bootstrap, seed=seed)
    return out


def bench_lds(args) -> dict:
    import importlib

    # the module, not the ``lds`` function curvscope.groundtruth re-exports under that name
    new = importlib.import_module("curvscope.groundtruth.lds")
    old = importlib.import_module("tests.groundtruth.reference_lds")

    inputs, n_bootstrap, seed = lds_inputs(args)
    repeats = args.repeats or 3
    times = {"old": [], "new": []}
    results = {}
    for _ in range(repeats):
        for name, module in (("new", new), ("old", old)):
            start = time.perf_counter()
            results[name] = lds_stage(module, inputs, n_bootstrap, seed)
            times[name].append(time.perf_counter() - start)
    identical = all(
        np.array_equal(results["new"][a][m]["bootstrap"], results["old"][a][m]["bootstrap"],
                       equal_nan=True)
        and results["new"][a][m]["value"] == results["old"][a][m]["value"]
        for a in results["old"] for m in results["old"][a])
    losses, predictions = next(iter(inputs.values()))
    figures = {"old_s": min(times["old"]), "new_s": min(times["new"]),
               "times": times, "bit_identical": identical, "n_alphas": len(inputs),
               "n_methods": len(predictions), "n_subsets": losses.shape[0],
               "n_seeds": losses.shape[1], "n_test": losses.shape[2],
               "n_bootstrap": n_bootstrap, "inputs": str(args.study or "synthetic")}
    figures["ratio"] = figures["old_s"] / figures["new_s"]
    return figures


# ----- diagnostics ---------------------------------------------------------------------------

def paper_state(args):
    """The paper (or quick) preset's study state after its ``scores`` stage, through the
    stage cache."""
    from curvscope import study
    from curvscope.spec import resolve_spec
    from curvscope.storage import StageCache

    spec = resolve_spec({"compute": {"device": "cpu"}},
                        preset="quick" if args.quick else "paper")
    if args.quick:  # every method, as the paper preset
        spec = resolve_spec({"compute": {"device": "cpu"},
                             "curvature": {"methods": PAPER_METHODS}}, preset="quick")
    cache = args.cache_dir or Path(os.environ.get("CURVSCOPE_CACHE_DIR",
                                                  Path.home() / ".cache" / "curvscope"))
    state = study.StudyState(spec=spec, cache=StageCache(cache), report=lambda s, f: None,
                             device=torch.device("cpu"), dtype=torch.float64)
    plan = study.stage_plan(spec)
    for name in plan[: plan.index("scores") + 1]:
        start = time.perf_counter()
        study.run_stage(state, name)
        print(f"   setup {name:<26} {time.perf_counter() - start:7.1f} s "
              f"({state.cache.events.get(name, 'not cached')})", flush=True)
    return state


def compare_leaves(new, old) -> dict:
    worst_rel, worst_abs, where, n = 0.0, 0.0, None, 0

    def walk(a, b, path):
        nonlocal worst_rel, worst_abs, where, n
        if isinstance(b, dict):
            for key in b:
                walk(a[key], b[key], f"{path}/{key}")
        elif isinstance(b, list):
            for j, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{j}]")
        elif isinstance(b, float) and math.isfinite(b):
            n += 1
            diff = abs(a - b)
            worst_abs = max(worst_abs, diff)
            if abs(b) > 1e-12 and diff / abs(b) > worst_rel:
                worst_rel, where = diff / abs(b), path
        elif a != b and not (isinstance(b, float) and math.isnan(b) and math.isnan(a)):
            raise AssertionError(f"{path}: {a!r} != {b!r}")

    walk(new, old, "")
    return {"n_leaves": n, "max_rel": worst_rel, "max_rel_at": where, "max_abs": worst_abs}


def bench_diagnostics(args) -> dict:
    from curvscope.diagnostics.report import diagnose as new
    from tests.diagnostics.reference_report import diagnose as old

    state = paper_state(args)
    spec = state.spec

    def run(fn):
        return fn(state.ctx, state.operators, spec.curvature.eigenbasis_k, spec.inverse.damping,
                  rule=spec.inverse, scores=state.scores)

    repeats = args.repeats or 1
    times = {"old": [], "new": []}
    results = {}
    for _ in range(repeats):
        for name, fn in (("new", new), ("old", old)):
            start = time.perf_counter()
            results[name] = run(fn)
            times[name].append(time.perf_counter() - start)
            print(f"   diagnose {name}: {times[name][-1]:.1f} s, load "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
    agreement = compare_leaves(results["new"][0], results["old"][0])
    arrays_new, arrays_old = results["new"][1], results["old"][1]
    assert list(arrays_new) == list(arrays_old)
    agreement["max_rel_array"] = max(
        float(torch.linalg.norm(arrays_new[k] - v) / max(float(torch.linalg.norm(v)), 1e-300))
        for k, v in arrays_old.items())
    figures = {"old_s": min(times["old"]), "new_s": min(times["new"]), "times": times,
               "n_params": state.layout.n_params, "methods": list(state.operators),
               "agreement": agreement}
    figures["ratio"] = figures["old_s"] / figures["new_s"]
    return figures


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _extra)
    torch.set_num_threads(1)
    info = header("LDS and diagnostics stages, vectorised vs previous (1 thread)")
    info["loadavg_at_start"] = os.getloadavg()
    figures = {"benchmark": "lds_diagnostics", "quick": args.quick, "machine": info}
    if args.only in (None, "lds"):
        figures["lds"] = bench_lds(args)
        f = figures["lds"]
        print(f"lds ({f['n_alphas']} α × {f['n_methods']} methods + ceiling, M = "
              f"{f['n_subsets']}, n_test = {f['n_test']}, B = {f['n_bootstrap']}): old "
              f"{f['old_s']:.2f} s, new {f['new_s']:.2f} s, ratio {f['ratio']:.1f}×, "
              f"bit-identical: {f['bit_identical']}  (load {os.getloadavg()[0]:.2f})",
              flush=True)
    if args.only in (None, "diagnostics"):
        figures["diagnostics"] = bench_diagnostics(args)
        f = figures["diagnostics"]
        a = f["agreement"]
        print(f"diagnostics (d = {f['n_params']:,}, {len(f['methods'])} methods): old "
              f"{f['old_s']:.1f} s, new {f['new_s']:.1f} s, ratio {f['ratio']:.1f}×; "
              f"max rel leaf diff {a['max_rel']:.1e} ({a['max_rel_at']}), max abs "
              f"{a['max_abs']:.1e}, max rel array {a['max_rel_array']:.1e}  "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    print("\n| stage | old (s) | new (s) | old / new |\n|---|---:|---:|---:|")
    for part in ("lds", "diagnostics"):
        if part in figures:
            f = figures[part]
            print(f"| {part} | {f['old_s']:.2f} | {f['new_s']:.2f} | {f['ratio']:.1f}× |")
    for part in ("lds", "diagnostics"):
        if part in figures:
            figures[f"ratio_{part}"] = figures[part]["ratio"]
    figures["ratio"] = min(figures[f"ratio_{p}"] for p in ("lds", "diagnostics")
                           if p in figures)
    info["loadavg_at_end"] = os.getloadavg()
    emit(figures)


if __name__ == "__main__":
    main()
