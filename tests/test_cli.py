"""`curvscope run` end to end: the quick preset's results schema, the cache, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from curvscope.data import DataSpec, load_data
from curvscope.models import ModelSpec, build_mlp
from curvscope.registry import METHOD_NAMES

pytestmark = pytest.mark.slow


def curvscope(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "curvscope.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    proc = curvscope("run", "--preset", "quick", "--out", str(root / "out"),
                     "--cache-dir", str(root / "cache"))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((root / "out" / "results.json").read_text())
    arrays = dict(np.load(root / "out" / "arrays.npz"))
    return root, results, arrays, proc


def test_quick_results_schema(quick_run):
    _, results, _, _ = quick_run
    for key in ("spec", "spec_hash", "versions", "device", "n_params", "blocks", "timings",
                "methods", "decomposition"):
        assert key in results
    assert set(results["methods"]) == set(METHOD_NAMES)
    assert sum(b["size"] for b in results["blocks"]) == results["n_params"] == 1482
    block_names = {b["name"] for b in results["blocks"]}
    for m in results["methods"].values():
        for key in ("relative_residual_to_H", "relative_residual_to_GGN", "condition_number"):
            assert key in m
        assert set(m["eigenvalue_overlap"]) == block_names
        assert set(m["eigenbasis_overlap"]) == block_names
        assert m["inverse"]["rule"] == "abs"
    assert results["methods"]["H"]["relative_residual_to_H"] == 0.0
    assert 0 < results["methods"]["GGN"]["relative_residual_to_H"] < 0.5
    shares = results["decomposition"]["ggn_to_kfac"]
    assert shares["cross_layer_share"] + shares["eigenbasis_share"] + shares[
        "eigenvalue_share"] == pytest.approx(1.0)
    for block in results["decomposition"]["per_block"].values():
        assert block["pythagoras_gap"] < 1e-10
    assert results["training"]["test_accuracy"] > 0.9
    assert all(stage in results["timings"] for stage in ("train", "scores", "diagnostics"))


def test_quick_arrays(quick_run):
    _, results, arrays, _ = quick_run
    d = results["n_params"]
    for name in METHOD_NAMES:
        assert arrays[f"eigenvalues/{name}"].shape == (d,)
        assert arrays[f"scores/{name}"].shape == (180, 1617)
    train, test = arrays["split/train"], arrays["split/test"]
    assert len(np.intersect1d(train, test)) == 0
    data = load_data(DataSpec())
    np.testing.assert_array_equal(train, data.train_idx)
    np.testing.assert_array_equal(test, data.test_idx)
    model = build_mlp(64, 10, ModelSpec(hidden=[16, 16]), seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert [k.removeprefix("params/") for k in arrays if k.startswith("params/")] == names
    for n, p in model.named_parameters():
        assert arrays[f"params/{n}"].shape == tuple(p.shape)
    # H is indefinite after training; GGN is PSD
    assert arrays["eigenvalues/H"].min() < 0 <= arrays["eigenvalues/GGN"].min() + 1e-12


def test_rerun_reuses_every_stage(quick_run):
    root, results, arrays, _ = quick_run
    proc = curvscope("run", "--preset", "quick", "--out", str(root / "again"),
                     "--cache-dir", str(root / "cache"))
    assert proc.returncode == 0, proc.stderr
    again = json.loads((root / "again" / "results.json").read_text())
    assert set(again["cache"].values()) == {"reused"}
    np.testing.assert_allclose(np.load(root / "again" / "arrays.npz")["scores/H"],
                               arrays["scores/H"], rtol=1e-8)
    assert again["spec_hash"] == results["spec_hash"]


def _run_config(tmp_path, text):
    config = tmp_path / "study.toml"
    config.write_text(text)
    return curvscope("run", "--config", str(config), "--out", str(tmp_path / "out"),
                     "--no-cache")


@pytest.mark.parametrize("text,message", [
    ("[training]\nlr = -1\n", "training.lr: Input should be greater than 0"),
    ("[curvature]\nmethods = ['H', 'Shampoo']\n", "unknown method 'Shampoo'; allowed: H, GGN"),
    ("[modle]\nhidden = [3]\n", "modle: unknown field"),
    ("preset = 'huge'\n", "unknown preset 'huge'"),
    ("[training\n", "not valid TOML"),
    ("[compute]\nmemory_budget_gib = 0.001\n", "above the memory budget"),
])
def test_bad_config_gives_a_clear_error(tmp_path, text, message):
    proc = _run_config(tmp_path, text)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_data_file_gives_a_clear_error(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b,label\n1,2,0\n3,nan,1\n5,6,1\n")
    proc = _run_config(tmp_path, f"[data]\nname = 'file'\npath = '{csv}'\n")
    assert proc.returncode == 2
    assert "line 3" in proc.stderr and "Traceback" not in proc.stderr
    proc = curvscope("run", "--config", str(tmp_path / "missing.toml"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_report_prints_the_lds_table(quick_run):
    root, results, _, _ = quick_run
    proc = curvscope("report", str(root / "out"))
    assert proc.returncode == 0, proc.stderr
    lds = results["methods"]["K-FAC"]["lds"]["0.5"]
    assert f"| K-FAC | {lds['value']:.3f} [{lds['ci_low']:.3f}, {lds['ci_high']:.3f}] |" in (
        proc.stdout)
    assert "seed-noise ceiling" in proc.stdout and "| **total** |" in proc.stdout
    missing = curvscope("report", str(root / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_report_reads_the_golden_fixture_and_refuses_broken_results(tmp_path):
    from pathlib import Path

    golden = Path(__file__).parent / "fixtures" / "golden"
    proc = curvscope("report", str(golden))
    assert proc.returncode == 0, proc.stderr
    assert "eigenvalue-mismatch share" in proc.stdout and "frobenius_squared" in proc.stdout
    assert "`few_test_points`" in proc.stdout  # the warnings are listed
    broken = json.loads((golden / "results.json").read_text())
    del broken["methods"]["K-FAC"]["spectrum"]
    (tmp_path / "results.json").write_text(json.dumps(broken))
    proc = curvscope("report", str(tmp_path))
    assert proc.returncode == 2 and "results contract" in proc.stderr
    assert "methods.K-FAC.spectrum" in proc.stderr and "Traceback" not in proc.stderr


def test_mismatched_rerun_into_the_same_folder_is_refused(quick_run):
    root, results, _, _ = quick_run
    config = root / "other.toml"
    config.write_text("preset = 'quick'\n[inverse]\ndamping = 0.5\n"
                      "[groundtruth]\nenabled = false\n")
    proc = curvscope("run", "--config", str(config), "--out", str(root / "out"),
                     "--cache-dir", str(root / "cache"))
    assert proc.returncode == 2
    assert "already holds the results of another study" in proc.stderr
    assert json.loads((root / "out" / "results.json").read_text())["spec_hash"] == results[
        "spec_hash"]


def test_schema_and_methods_commands():
    schema = curvscope("schema")
    assert schema.returncode == 0
    parsed = json.loads(schema.stdout)
    assert {"data", "model", "training", "curvature", "inverse", "groundtruth"} <= set(
        parsed["properties"])
    listed = curvscope("methods")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(METHOD_NAMES)
