"""Compare two finished studies number by number: are the reported figures unchanged?

Usage: ``python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR [--rtol 1e-6]``

Walks both ``results.json`` files in parallel and compares every numeric leaf (bools and
strings must be equal), skipping what is allowed to differ between runs: ``timings``,
``timing_seconds``, ``versions``, ``cache``, ``device``, and the inversion record's ``solver``
(new in issue 14). A leaf passes when |a − b| ≤ atol + rtol·max(|a|, |b|). Then compares every
array of ``arrays.npz`` the same way, with a per-array relative Frobenius error
‖a − b‖ / ‖b‖ (score matrices are compared this way: entries near zero make elementwise
relative errors meaningless). Prints the worst offenders and ends with one JSON line:
``{"n_leaves", "n_fail", "max_rel_leaf", "worst_leaf", "n_arrays", "max_rel_array",
"worst_array", "ok"}``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

SKIP_KEYS = {"timings", "timing_seconds", "versions", "cache", "device", "solver"}


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in SKIP_KEYS:
                continue
            if key not in a or key not in b:
                out.append((f"{path}/{key}", "missing", math.inf))
                continue
            walk(a[key], b[key], f"{path}/{key}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, f"length {len(a)} vs {len(b)}", math.inf))
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        if a != b:
            out.append((path, f"{a!r} vs {b!r}", math.inf))
    elif isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) and math.isnan(b):
            return
        scale = max(abs(a), abs(b))
        rel = abs(a - b) / scale if scale > 0 else 0.0
        out.append((path, f"{a!r} vs {b!r}", rel, abs(a - b)))
    elif a != b:
        out.append((path, f"{a!r} vs {b!r}", math.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-12)
    parser.add_argument("--array-rtol", type=float, default=1e-6)
    parser.add_argument("--show", type=int, default=15)
    parser.add_argument("--ignore", action="append", default=[],
                        help="regular expression of leaf/array paths to leave out (repeatable)")
    args = parser.parse_args()
    before = json.loads((args.before / "results.json").read_text())
    after = json.loads((args.after / "results.json").read_text())
    leaves: list = []
    walk(before, after, "", leaves)
    ignored = [re.compile(pattern) for pattern in args.ignore]
    leaves = [leaf for leaf in leaves if not any(p.search(leaf[0]) for p in ignored)]
    fails = [leaf for leaf in leaves
             if leaf[2] == math.inf or (leaf[3] > args.atol and leaf[2] > args.rtol)]
    numeric = [leaf for leaf in leaves if leaf[2] != math.inf]
    numeric.sort(key=lambda leaf: -leaf[2])
    print(f"results.json: {len(leaves)} leaves compared, {len(fails)} beyond rtol {args.rtol:g}"
          f" / atol {args.atol:g}")
    for leaf in (fails or numeric)[: args.show]:
        print(f"  {leaf[0]}: {leaf[1]} (rel {leaf[2]:.3g})")

    arrays_a = np.load(args.before / "arrays.npz")
    arrays_b = np.load(args.after / "arrays.npz")
    rows = []
    for name in sorted(set(arrays_a.files) | set(arrays_b.files)):
        if any(p.search(name) for p in ignored):
            continue
        if name not in arrays_a.files or name not in arrays_b.files:
            rows.append((name, math.inf, "missing"))
            continue
        x, y = arrays_a[name], arrays_b[name]
        if x.shape != y.shape:
            rows.append((name, math.inf, f"shape {x.shape} vs {y.shape}"))
            continue
        if not np.issubdtype(x.dtype, np.number) or x.dtype == bool:
            rows.append((name, 0.0 if np.array_equal(x, y) else math.inf, "exact"))
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        finite = np.isfinite(x) & np.isfinite(y)
        if not np.array_equal(np.isfinite(x), np.isfinite(y)):
            rows.append((name, math.inf, "non-finite pattern differs"))
            continue
        norm = np.linalg.norm(y[finite])
        diff = np.linalg.norm((x - y)[finite])
        rows.append((name, diff / norm if norm > 0 else diff, f"max |Δ| "
                     f"{np.abs(x - y)[finite].max() if finite.any() else 0:.3g}"))
    rows.sort(key=lambda r: -r[1])
    bad = [r for r in rows if r[1] > args.array_rtol]
    print(f"arrays.npz: {len(rows)} arrays, {len(bad)} beyond relative Frobenius "
          f"{args.array_rtol:g}")
    for name, rel, note in (bad or rows)[: args.show]:
        print(f"  {name}: rel {rel:.3g} ({note})")
    worst_leaf = numeric[0] if numeric else None
    print(json.dumps({
        "n_leaves": len(leaves), "n_fail": len(fails),
        "max_rel_leaf": worst_leaf[2] if worst_leaf else 0.0,
        "worst_leaf": worst_leaf[0] if worst_leaf else None,
        "n_arrays": len(rows), "n_arrays_fail": len(bad),
        "max_rel_array": rows[0][1] if rows else 0.0,
        "worst_array": rows[0][0] if rows else None,
        "ok": not fails and not bad,
    }))


if __name__ == "__main__":
    main()
