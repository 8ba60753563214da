"""How close the cost estimate is to the real run: the quick and paper presets, estimated from
a calibration probe and then run for real.

What: for each preset, in ONE child process (``sys.executable benchmarks/estimate_accuracy.py
--child PRESET``, so each preset's peak RSS is its own): ``curvscope.calibrate.probe()``
measures this machine's kernel rates, ``curvscope.cost.estimate_time`` turns the spec and
those rates into seconds per stage, total seconds and peak memory, then
``curvscope.study.run_study`` runs the study (no stage cache, results written to a temporary
folder, so the ``write`` stage is timed too). Measured: the wall time of ``run_study``
(``time.perf_counter``), its per-stage ``timings``, and the child's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes the probe's, smaller).

Reported: a table of estimate vs measured per stage group and in total, and a last JSON line
with, per preset, ``ratio`` = estimated / measured total seconds, the per-stage ratios, the
memory ratio, the probe's own seconds and the 1-minute load (``os.getloadavg``) before the
probe, after it and at the end of the run. A second probe after the run gives
``ratio_probe_after`` (not an estimate one could have had before: it shows how much of the
error is the machine's load changing during the run). Target: 0.5 ≤ ratio ≤ 2 for both presets on an
idle machine. ``--quick`` (or ``--only quick``) runs the quick preset only, ``--only paper``
the paper one; ``--threads N`` sets torch's threads in the children (default torch's choice).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def child(preset: str, threads: int | None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from curvscope.calibrate import probe
    from curvscope.cost import STAGE_GROUPS, estimate_time
    from curvscope.spec import resolve_spec
    from curvscope.study import run_study

    spec = resolve_spec(None, preset)
    load_before = os.getloadavg()[0]
    calibration = probe()
    load_probe = os.getloadavg()[0]
    estimate = estimate_time(spec, calibration["rates"])
    with tempfile.TemporaryDirectory(prefix="curvscope-estimate-") as out:
        start = time.perf_counter()
        result = run_study(spec, Path(out))
        wall = time.perf_counter() - start
    timings = dict(result.results["timings"])
    # a second probe after the run: how much of the error is the load changing meanwhile
    after = estimate_time(spec, probe()["rates"])
    groups: dict[str, float] = {}
    for stage, seconds in timings.items():
        group = STAGE_GROUPS[stage.split("/", 1)[0]]
        groups[group] = groups.get(group, 0.0) + seconds
    return {
        "preset": preset,
        "threads": torch.get_num_threads(),
        "n_params": result.results["n_params"],
        "probe_seconds": calibration["probe_seconds"],
        "rates": calibration["rates"],
        "estimate_s": estimate["seconds"],
        "estimate_after_s": after["seconds"],
        "measured_s": wall,
        "estimate_stages_s": estimate["stage_seconds"],
        "measured_stages_s": timings,
        "estimate_groups_s": estimate["group_seconds"],
        "measured_groups_s": groups,
        "estimate_peak_bytes": estimate["peak_memory_bytes"],
        "measured_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "load_1min": {"before_probe": load_before, "after_probe": load_probe,
                      "end": os.getloadavg()[0]},
    }


def run_child(preset: str, threads: int | None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", preset]
    if threads:
        command += ["--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"preset {preset} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(estimate: float, measured: float) -> float | None:
    return round(estimate / measured, 3) if measured > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick preset only")
    parser.add_argument("--only", choices=["quick", "paper"], default=None,
                        help="run this preset alone")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)), flush=True)
        return
    presets = [args.only] if args.only else ["quick"] if args.quick else ["quick", "paper"]
    print(f"== estimate vs real run ({os.cpu_count()} CPUs, 1-min load "
          f"{os.getloadavg()[0]:.2f})")
    figures = {}
    for preset in presets:
        print(f"running the probe and --preset {preset} …", flush=True)
        r = run_child(preset, args.threads)
        print(f"{preset} ({r['n_params']:,} params, {r['threads']} threads, probe "
              f"{r['probe_seconds']:.1f} s, load {r['load_1min']['before_probe']:.2f} → "
              f"{r['load_1min']['end']:.2f})")
        print(f"    {'stage group':<24} {'estimate':>10} {'measured':>10} {'ratio':>7}")
        for group in r["measured_groups_s"]:
            e, m = r["estimate_groups_s"].get(group, 0.0), r["measured_groups_s"][group]
            print(f"    {group:<24} {e:9.2f}s {m:9.2f}s {ratio(e, m) or float('nan'):7.2f}")
        print(f"    {'total (wall)':<24} {r['estimate_s']:9.2f}s {r['measured_s']:9.2f}s "
              f"{ratio(r['estimate_s'], r['measured_s']):7.2f}")
        print(f"    {'(probe after the run)':<24} {r['estimate_after_s']:9.2f}s "
              f"{r['measured_s']:9.2f}s {ratio(r['estimate_after_s'], r['measured_s']):7.2f}")
        print(f"    {'peak memory (MiB)':<24} {r['estimate_peak_bytes'] / 2**20:9.0f}  "
              f"{r['measured_peak_bytes'] / 2**20:9.0f}  "
              f"{ratio(r['estimate_peak_bytes'], r['measured_peak_bytes']):7.2f}")
        figures[preset] = {
            "ratio": ratio(r["estimate_s"], r["measured_s"]),
            "estimate_s": round(r["estimate_s"], 2), "measured_s": round(r["measured_s"], 2),
            "ratio_probe_after": ratio(r["estimate_after_s"], r["measured_s"]),
            "memory_ratio": ratio(r["estimate_peak_bytes"], r["measured_peak_bytes"]),
            "stage_ratios": {s: ratio(r["estimate_stages_s"].get(s, 0.0), m)
                             for s, m in r["measured_stages_s"].items()},
            "group_ratios": {g: ratio(r["estimate_groups_s"].get(g, 0.0), m)
                             for g, m in r["measured_groups_s"].items()},
            "probe_seconds": r["probe_seconds"], "threads": r["threads"],
            "load_1min": r["load_1min"], "rates": r["rates"],
        }
    within = all(f["ratio"] is not None and 0.5 <= f["ratio"] <= 2 for f in figures.values())
    print(json.dumps({"benchmark": "estimate_accuracy", "presets": figures,
                      "within_2x": within, "load_1min_end": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
