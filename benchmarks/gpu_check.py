"""GPU check: the paper preset on CUDA against the same study on the CPU, number by number.

What: ``run_study`` of a preset (default ``paper``: digits, MLP 64→64→32→10, 100 epochs, every
curvature method incl. dense H and G, ground truth at α = 0.3/0.5/0.7/0.9; Hong et al. 2025,
arXiv 2509.23437) once with ``compute.device = "cuda"`` and once with ``"cpu"``, no stage
cache, then every stored number is compared: each numeric leaf of results.json and each
array of arrays.npz. Wall seconds per stage (results ``timings``) of both runs are printed.

Tolerances (stated here, checked per number; ``err`` is max|device − cpu| divided by the CPU
value's scale max(max|cpu|, 1e-12), i.e. relative to the largest entry of that array/leaf):

| what | rule | why |
|---|---|---|
| ``split/*``, ``masks/*``, integers, strings, booleans | exactly equal | seeded on the CPU, device-independent |
| ``retrained_losses*`` (float32 retraining) | err ≤ 2e-3 | float32 sums in another order, over every epoch |
| LDS, its intervals, ceilings, hierarchy values, ``lds_*`` arrays | absolute ≤ 0.02 | Spearman ranks of float32 retrained losses: a near-tie may swap |
| overlaps (eigenvalue/eigenbasis) | absolute ≤ 1e-3 | top-k eigenvectors of nearly equal eigenvalues may rotate |
| ``condition_number`` | reported, not gated | a ratio to the smallest, ~0, eigenvalue |
| every other float (training, curvature, spectra, scores, decomposition; float64) | err ≤ 1e-6 | float64, another summation order |

Out: human lines, then ONE JSON line ``{"benchmark": "gpu_check", "ok", "device", "preset",
"compared", "failed", "worst", "timings": {"cpu_reference", "device"}, "wall_s"}``; exit 0 when every
number is within its tolerance, 1 otherwise, 2 when there is no CUDA device (the message
says so; ``--device cpu`` runs the whole comparison CPU against CPU as a smoke check).

Run: ``.venv/bin/python benchmarks/gpu_check.py [--device cuda|cuda:N|cpu] [--preset paper|quick]
[--set training.epochs=5 ...] [--reference DIR] [--out DIR]``. ``--reference`` reuses a CPU
run's folder (results.json + arrays.npz of the same spec) instead of running the CPU side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: results.json fields that say how and where a run went, not what it computed
RUN_FIELDS = ("timings", "cache", "device", "versions", "spec_hash", "spec/compute/device",
              "warnings/*/message", "array_names")
EXACT, SCALED, ABSOLUTE, REPORT = "exact", "scaled", "absolute", "report"


def rule(path: str, dtype: np.dtype | None = None) -> tuple[str, float]:
    """(kind, tolerance) for a results path ("methods/H/lds/0.5/value") or an array name."""
    if path.startswith(("split/", "masks/")) or (dtype is not None and (
            np.issubdtype(dtype, np.integer) or dtype == np.bool_)):
        return EXACT, 0.0
    if "condition_number" in path:
        return REPORT, math.inf
    if path.startswith("retrained_losses"):
        return SCALED, 2e-3
    if "/lds" in path or path.startswith(("lds", "groundtruth")) or "ceiling" in path:
        return ABSOLUTE, 0.02
    if "overlap" in path:
        return ABSOLUTE, 1e-3
    return SCALED, 1e-6


def skipped(path: str) -> bool:
    if "timing" in path or path.endswith("seconds"):         # wall clock, not a result
        return True
    parts = path.split("/")
    for pattern in RUN_FIELDS:
        want = pattern.split("/")
        if len(parts) >= len(want) and all(w in ("*", p) for w, p in zip(want, parts,
                                                                         strict=False)):
            return True
    return False


def leaves(tree, path: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items()
                for k, v in leaves(sub, f"{path}/{key}" if path else str(key)).items()}
    if isinstance(tree, list) and not all(isinstance(x, (int, float)) and not isinstance(
            x, bool) for x in tree):
        return {k: v for i, sub in enumerate(tree) for k, v in leaves(sub, f"{path}/{i}").items()}
    return {path: tree}


def error(kind: str, got, want) -> float:
    """The number compared with the tolerance of ``kind`` (0 when equal)."""
    a = np.asarray(got, dtype=np.float64) if not isinstance(got, np.ndarray) else got
    b = np.asarray(want, dtype=np.float64) if not isinstance(want, np.ndarray) else want
    if a.shape != b.shape:
        return math.inf
    if kind == EXACT:
        return 0.0 if np.array_equal(a, b) else math.inf
    a, b = a.astype(np.float64), b.astype(np.float64)
    if a.size == 0:
        return 0.0
    if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.array_equal(np.isinf(a),
                                                                           np.isinf(b)):
        return math.inf
    finite = np.isfinite(b)
    if not finite.any():
        return 0.0 if np.array_equal(a[~finite], b[~finite]) else math.inf
    diff = float(np.abs(a[finite] - b[finite]).max())
    if kind == ABSOLUTE:
        return diff
    return diff / max(float(np.abs(b[finite]).max()), 1e-12)


def compare(results: dict, arrays: dict, ref_results: dict, ref_arrays: dict) -> dict:
    """Every number of a run against the reference: {compared, failed: [...], worst: {kind:
    (path, err, tol)}, reported: {path: err}}."""
    failed, worst, reported, compared = [], {}, {}, 0

    def check(path, got, want, dtype=None):
        nonlocal compared
        kind, tol = rule(path, dtype)
        if isinstance(want, (str, bool)) or want is None or isinstance(got, (str, bool)):
            err = 0.0 if got == want else math.inf
            kind, tol = EXACT, 0.0
        else:
            try:
                err = error(kind, got, want)
            except (TypeError, ValueError):
                err = 0.0 if got == want else math.inf
        compared += 1
        if kind == REPORT:
            reported[path] = err
            return
        if err > tol:
            failed.append({"what": path, "kind": kind, "err": err, "tol": tol})
        if err >= worst.get(kind, ("", -1.0, tol))[1]:
            worst[kind] = (path, err, tol)

    mine, theirs = leaves(results), leaves(ref_results)
    for path in sorted(theirs.keys() | mine.keys()):
        if skipped(path):
            continue
        if path not in mine or path not in theirs:
            failed.append({"what": path, "kind": "missing", "err": math.inf, "tol": 0.0})
            continue
        check(path, mine[path], theirs[path])
    for name in sorted(ref_arrays.keys() | arrays.keys()):
        if name not in arrays or name not in ref_arrays:
            failed.append({"what": f"arrays/{name}", "kind": "missing", "err": math.inf,
                           "tol": 0.0})
            continue
        check(name, arrays[name], ref_arrays[name], ref_arrays[name].dtype)
    return {"compared": compared, "failed": failed, "worst": worst, "reported": reported}


def _finite(tree):
    """JSON without Infinity/NaN: such floats become the strings "inf"/"nan"."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return str(tree)
    return tree


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_spec(preset: str, sets: list[str], device: str):
    from curvscope.spec import deep_merge, resolve_spec

    overrides: dict = {}
    for item in sets:
        key, _, value = item.partition("=")
        node: dict = {}
        cursor = node
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = parse_value(value)
        overrides = deep_merge(overrides, node)
    return resolve_spec(deep_merge(overrides, {"compute": {"device": device}}), preset=preset)


def run(spec, out: Path) -> tuple[dict, dict, float]:
    from curvscope.study import run_study

    start = time.perf_counter()
    run_study(spec, out_dir=out, cache_dir=None)
    wall = time.perf_counter() - start
    return json.loads((out / "results.json").read_text()), dict(np.load(out / "arrays.npz")), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda",
                        help="cuda (default), cuda:N, or cpu for a CPU-against-CPU smoke check")
    parser.add_argument("--preset", default="paper", choices=["paper", "quick"])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a spec field, e.g. --set training.epochs=5 (JSON values)")
    parser.add_argument("--reference", type=Path, help="a CPU run's folder to compare with")
    parser.add_argument("--out", type=Path, help="keep both runs' folders here")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}, torch.cuda.is_available() is False); nothing "
              "was run. Run it on a machine with a GPU, or with --device cpu for a smoke check.",
              file=sys.stderr)
        return 2
    if args.device.startswith("cuda:"):
        torch.cuda.set_device(int(args.device.split(":")[1]))
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check-"))

    spec = build_spec(args.preset, args.set, device)
    print(f"gpu_check: preset {args.preset} on {args.device}, {spec.compute.dtype}; "
          f"folders under {out}", flush=True)
    results, arrays, wall = run(spec, out / args.device.replace(":", "_"))
    print(f"  {args.device}: {wall:.1f} s on {results['device']}", flush=True)
    if args.reference:
        ref_results = json.loads((args.reference / "results.json").read_text())
        ref_arrays = dict(np.load(args.reference / "arrays.npz"))
        ref_wall = float(sum(ref_results.get("timings", {}).values()))
    else:
        ref_results, ref_arrays, ref_wall = run(build_spec(args.preset, args.set, "cpu"),
                                                out / "cpu-reference")
    print(f"  cpu reference: {ref_wall:.1f} s on {ref_results['device']}", flush=True)

    report = compare(results, arrays, ref_results, ref_arrays)
    for kind, (path, err, tol) in sorted(report["worst"].items()):
        print(f"  worst {kind:8s} {err:.3g} (tolerance {tol:g}) at {path}")
    for item in report["failed"][:20]:
        print(f"  OUT OF TOLERANCE {item['what']}: {item['err']:.3g} > {item['tol']:g}")
    mine_t, ref_t = results.get("timings", {}), ref_results.get("timings", {})
    stages = [*mine_t, *(s for s in ref_t if s not in mine_t)]
    print(f"  {'stage':28s} {'cpu s':>9s} {args.device + ' s':>9s}")
    for stage in stages:
        c = ref_results.get("timings", {}).get(stage, float("nan"))
        d = results.get("timings", {}).get(stage, float("nan"))
        print(f"  {stage:28s} {c:9.2f} {d:9.2f}")
    ok = not report["failed"]
    line = {"benchmark": "gpu_check", "ok": ok, "device": results["device"],
            "preset": args.preset, "overrides": args.set, "dtype": spec.compute.dtype,
            "compared": report["compared"], "failed": len(report["failed"]),
            "first_failures": report["failed"][:5],
            "worst": {k: {"what": p, "err": e, "tol": t}
                      for k, (p, e, t) in report["worst"].items()},
            "condition_number_err_max": max(report["reported"].values(), default=0.0),
            "wall_s": {"cpu_reference": round(ref_wall, 2), "device": round(wall, 2)},
            "timings": {"cpu_reference": ref_t, "device": mine_t}}
    print(json.dumps(_finite(line)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
