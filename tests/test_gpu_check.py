"""benchmarks/gpu_check.py's comparison, and the device choices a CUDA run goes through,
exercised on the CPU: the tolerance table, a perturbed number caught, run-only fields
ignored, the clear exit without CUDA, and the whole check CPU against CPU (bitwise equal)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_the_tolerance_table():
    assert gpu_check.rule("masks/0.5") == (gpu_check.EXACT, 0.0)
    assert gpu_check.rule("split/train") == (gpu_check.EXACT, 0.0)
    assert gpu_check.rule("scores/H", np.dtype(np.int64))[0] == gpu_check.EXACT
    assert gpu_check.rule("retrained_losses/0.5") == (gpu_check.SCALED, 2e-3)
    assert gpu_check.rule("methods/K-FAC/lds/0.5/value") == (gpu_check.ABSOLUTE, 0.02)
    assert gpu_check.rule("lds_per_test/H/0.5") == (gpu_check.ABSOLUTE, 0.02)
    assert gpu_check.rule("methods/K-FAC/eigenbasis_overlap/layer0")[0] == gpu_check.ABSOLUTE
    assert gpu_check.rule("methods/H/condition_number/M")[0] == gpu_check.REPORT
    assert gpu_check.rule("scores/K-FAC") == (gpu_check.SCALED, 1e-6)
    assert gpu_check.skipped("timings/train") and gpu_check.skipped("spec/compute/device")
    assert gpu_check.skipped("methods/H/timing_seconds")
    assert gpu_check.skipped("warnings/0/message") and not gpu_check.skipped("warnings/0/code")
    assert not gpu_check.skipped("methods/H/relative_residual_to_GGN")


def _run():
    results = {"device": "cpu", "timings": {"train": 1.0}, "spec": {"compute": {"device": "cpu"}},
               "methods": {"H": {"relative_residual_to_GGN": 0.25, "timing_seconds": 0.1,
                                 "lds": {"0.5": {"value": 0.4}}}},
               "warnings": [{"code": "few_test_points", "message": "1.0 s"}]}
    arrays = {"scores/H": np.linspace(-1, 1, 12).reshape(3, 4),
              "masks/0.5": np.array([[True, False], [False, True]]),
              "retrained_losses/0.5": np.ones((2, 2), dtype=np.float32)}
    return results, arrays


def test_equal_runs_pass_and_each_kind_of_difference_is_caught():
    ref_results, ref_arrays = _run()
    results, arrays = _run()
    results.update(device="cuda (H200)", timings={"train": 0.1})
    results["spec"]["compute"]["device"] = "cuda"
    results["methods"]["H"]["timing_seconds"] = 9.0
    results["warnings"][0]["message"] = "0.1 s"
    report = gpu_check.compare(results, arrays, ref_results, ref_arrays)
    assert report["failed"] == [] and report["compared"] == 6        # 3 leaves + 3 arrays

    arrays["scores/H"] = ref_arrays["scores/H"] + 5e-7               # within 1e-6 of scale 1
    arrays["retrained_losses/0.5"] = ref_arrays["retrained_losses/0.5"] * 1.001
    results["methods"]["H"]["lds"]["0.5"]["value"] = 0.41
    assert gpu_check.compare(results, arrays, ref_results, ref_arrays)["failed"] == []

    arrays["scores/H"] = ref_arrays["scores/H"] + 5e-6
    arrays["masks/0.5"] = ~ref_arrays["masks/0.5"]
    results["methods"]["H"]["lds"]["0.5"]["value"] = 0.45
    results["methods"]["H"]["relative_residual_to_GGN"] = 0.26
    del arrays["retrained_losses/0.5"]
    failed = {f["what"] for f in gpu_check.compare(results, arrays, ref_results,
                                                   ref_arrays)["failed"]}
    assert failed == {"scores/H", "masks/0.5", "methods/H/lds/0.5/value",
                      "methods/H/relative_residual_to_GGN", "arrays/retrained_losses/0.5"}


def test_nan_and_inf_must_sit_in_the_same_places():
    a = np.array([1.0, np.nan, np.inf])
    assert gpu_check.error(gpu_check.SCALED, a, a.copy()) == 0.0
    assert gpu_check.error(gpu_check.SCALED, np.array([1.0, 2.0, np.inf]), a) == np.inf
    assert gpu_check.error(gpu_check.SCALED, np.zeros(3), np.zeros(2)) == np.inf


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_says_so_and_runs_nothing(capsys):
    assert gpu_check.main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device here" in err and "--device cpu" in err
    from curvscope.study import resolve_device

    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.slow
def test_cpu_against_cpu_is_bitwise_equal(tmp_path):
    """The whole check as a smoke run: a tiny quick study twice on the CPU, every number equal."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
         "--preset", "quick", "--set", "model.hidden=[8]", "--set", "training.epochs=2",
         "--set", "training.checkpoints=[1, 2]", "--set", "groundtruth.n_subsets=4",
         "--set", "groundtruth.n_seeds=1", "--set", "groundtruth.n_bootstrap=20",
         "--set", 'curvature.methods=["GGN", "EK-FAC", "K-FAC", "identity"]',
         "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "gpu_check" and line["ok"] and line["failed"] == 0
    assert line["compared"] > 100
    assert all(w["err"] == 0 for w in line["worst"].values()), line["worst"]
    assert set(line["timings"]["device"]) >= {"train", "scores", "lds"}
