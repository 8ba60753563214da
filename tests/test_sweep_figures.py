"""docs/make_sweep_figures.py reads a sweep's points out of stored results.json files: the
swept value from the spec, LDS per method and α with its interval, and the adjacent links of
the expected hierarchy H ≥ GGN ≥ GGN-blockdiag ≥ EK-FAC ≥ K-FAC ≥ identity (Hong et al. 2025)
with their paired differences and verdicts. Checked on the golden fixture against the numbers
stored in it."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "results.json"


def _module():
    spec = importlib.util.spec_from_file_location("make_sweep_figures",
                                                  ROOT / "docs" / "make_sweep_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_a_point_carries_the_stored_lds_and_links(golden):
    msf = _module()
    row = msf.sweep_row(golden, "model.hidden")
    assert row["value"] == golden["spec"]["model"]["hidden"]
    assert row["label"] == "(16, 16)"
    assert row["alphas"] == ["0.5"]
    for method, stored in golden["methods"].items():
        entry = (stored.get("lds") or {}).get("0.5")
        if entry is None:
            continue
        got = row["lds"][method]["0.5"]
        assert (got["value"], got["ci_low"], got["ci_high"]) == \
            (entry["value"], entry["ci_low"], entry["ci_high"])
    stored_pairs = golden["groundtruth"]["hierarchy"]["0.5"]["pairs"]
    assert len(row["pairs"]["0.5"]) == len(stored_pairs) == len(msf.LINKS)
    for (hi, lo), pair in zip(msf.LINKS, stored_pairs, strict=True):
        got = row["pairs"]["0.5"][f"{hi} ≥ {lo}"]
        assert (pair["higher"], pair["lower"]) == (hi, lo)
        assert got["value"] == pytest.approx(
            row["lds"][hi]["0.5"]["value"] - row["lds"][lo]["0.5"]["value"], abs=1e-12)
        assert got["verdict"] == pair["verdict"]
        # the verdict is the position of the paired interval relative to zero
        expected = "≥" if got["ci_low"] > 0 else "<" if got["ci_high"] < 0 else "≈"
        assert got["verdict"] == expected
    assert row["ceiling"]["0.5"]["value"] == golden["groundtruth"]["ceiling"]["0.5"]["value"]
    assert row["evaluated_epoch"] == golden["spec"]["training"]["epochs"]
    assert row["seconds"] == pytest.approx(sum(golden["timings"].values()))


def test_points_sort_by_the_swept_value(golden):
    msf = _module()
    points = []
    for damping in (1e-2, 1e-6, 1e-4):
        r = copy.deepcopy(golden)
        r["spec"]["inverse"]["damping"] = damping
        points.append(r)
    rows = msf.sweep_rows(points, "inverse.damping")
    assert [r["value"] for r in rows] == [1e-6, 1e-4, 1e-2]
    assert [r["label"] for r in rows] == ["1e-06", "0.0001", "0.01"]
    depth = []
    for hidden in ([48, 48, 48], [48], [48, 48]):
        r = copy.deepcopy(golden)
        r["spec"]["model"]["hidden"] = hidden
        depth.append(r)
    assert [r["value"] for r in msf.sweep_rows(depth, "model.hidden")] == \
        [[48], [48, 48], [48, 48, 48]]
    # no evaluate_at_epoch: the study attributes at its last epoch
    assert msf.spec_value(golden["spec"], "training.evaluate_at_epoch") == \
        golden["spec"]["training"]["epochs"]


def test_the_markdown_table_and_the_figure(golden, tmp_path):
    msf = _module()
    sweep = {"id": 0, "name": "golden", "field": "model.hidden", "grid": {},
             "states": {1: "succeeded"}, "rows": msf.sweep_rows([golden], "model.hidden"),
             "wall_s": 12.0}
    text = msf.tables(sweep)
    lds = golden["methods"]["K-FAC"]["lds"]["0.5"]
    assert f"{lds['value']:.3f} [{lds['ci_low']:.3f}, {lds['ci_high']:.3f}]" in text
    assert "H ≈ GGN ≥ GGN-blockdiag ≈ EK-FAC ≈ K-FAC ≈ identity" in msf.verdict_strings(sweep)
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep-golden.png"
    msf.draw(sweep, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_point_per_method_and_the_paired_difference_across_points(golden):
    msf = _module()
    points = []
    for damping, shift in ((1e-5, 0.0), (1e-4, 0.05), (1e-3, -0.02)):
        r = copy.deepcopy(golden)
        r["spec"]["inverse"]["damping"] = damping
        r["methods"]["GGN"]["lds"]["0.5"]["value"] += shift
        points.append(r)
    rows = msf.sweep_rows(points, "inverse.damping")
    best = msf.best_points(rows, "0.5")
    assert rows[best["GGN"]]["value"] == 1e-4
    # a shift shared by every resample moves the value and the interval, not their widths
    boot_b = [0.1 * k for k in range(101)]
    boot_a = [x + 0.25 for x in boot_b]
    d = msf.paired_difference(0.6, 0.35, boot_a, boot_b)
    assert d["value"] == pytest.approx(0.25)
    assert d["ci_low"] == pytest.approx(0.25) and d["ci_high"] == pytest.approx(0.25)
    assert d["verdict"] == "≥"
    noisy = msf.paired_difference(0.5, 0.5, [float(k % 3) for k in range(100)],
                                  [1.0] * 100)
    assert noisy["verdict"] == "≈" and noisy["ci_low"] == -1.0 and noisy["ci_high"] == 1.0
