"""End-to-end presets: wall time, peak memory and per-stage timings of ``curvscope run``.

What: the whole study of ``curvscope run --preset quick`` (MLP 64→16→16→10, 20 epochs) and
``--preset paper`` (the default study: MLP 64→64→32→10, 100 epochs, every curvature method,
dense H and G included), on digits, with ``--no-cache`` so that every stage is recomputed.

How: each preset runs as a subprocess ``sys.executable -m curvscope.cli run --preset X --out TMP
--no-cache`` under ``/usr/bin/time -v`` (its "Maximum resident set size" is the child's peak
RSS); where that program is missing, ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the
child has exited is used instead (the largest peak among waited-for children so far). Wall time
is ``time.perf_counter`` around the subprocess, so it includes interpreter start-up and imports
(≈ 2–3 s). The per-stage timings are read from the ``timings`` of the results.json the run
writes. Each preset runs once (the paper preset takes minutes); no warm-up beyond the OS's file
cache, which the quick preset, run first, warms for the paper one.

``--quick`` runs only the quick preset. ``ratio`` = paper wall / quick wall (informative only;
it is quick wall / quick wall = 1 with ``--quick``).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, header, parse_args

TIME_BINARY = "/usr/bin/time"


def run_preset(preset: str, workdir: Path) -> dict:
    out_dir = workdir / preset
    command = [sys.executable, "-m", "curvscope.cli", "run", "--preset", preset,
               "--out", str(out_dir), "--no-cache"]
    use_time = os.path.exists(TIME_BINARY) and os.access(TIME_BINARY, os.X_OK)
    if use_time:
        command = [TIME_BINARY, "-v", *command]
    env = {k: v for k, v in os.environ.items() if k != "CURVSCOPE_PROGRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"preset {preset} failed with exit code {proc.returncode}")
    if use_time:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        peak_mib = int(match.group(1)) / 1024 if match else float("nan")
        source = "/usr/bin/time -v"
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        source = "getrusage(RUSAGE_CHILDREN)"
    results = json.loads((out_dir / "results.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mib": peak_mib,
        "peak_rss_source": source,
        "n_params": results.get("n_params"),
        "stages_s": results["timings"],
        "stage_total_s": sum(results["timings"].values()),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    info = header("curvscope run presets end to end (subprocess, --no-cache)")
    presets = ["quick"] if args.quick else ["quick", "paper"]
    workdir = Path(tempfile.mkdtemp(prefix="curvscope-bench-presets-"))
    measured = {}
    try:
        for preset in presets:
            print(f"running --preset {preset} …", flush=True)
            figures = run_preset(preset, workdir)
            measured[preset] = figures
            print(f"{preset}: wall {figures['wall_s']:.1f} s, peak RSS "
                  f"{figures['peak_rss_mib']:.0f} MiB ({figures['peak_rss_source']}), "
                  f"{figures['n_params']:,} params")
            for stage, seconds in figures["stages_s"].items():
                print(f"    {stage:<26} {seconds:8.2f} s")
            print(f"    {'(sum of stages)':<26} {figures['stage_total_s']:8.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    quick_wall = measured["quick"]["wall_s"]
    ratio = measured.get("paper", measured["quick"])["wall_s"] / quick_wall
    if "paper" in measured:
        print(f"paper / quick wall time = {ratio:.1f}")
    emit({
        "benchmark": "presets",
        "quick": args.quick,
        "presets": measured,
        "machine": info,
        "ratio": ratio,
    })


if __name__ == "__main__":
    main()
