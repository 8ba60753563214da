"""The ablation ladder: its rungs, their specs, and the summary's numbers (pure units, no torch)."""

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from curvscope.groundtruth.lds import lds_many
from curvscope.ladder import (
    BASE_RUNG,
    RUNGS,
    LadderSpec,
    chain_verdict,
    ladder_rungs,
    markdown_ladder,
    summarize_ladder,
)


def test_both_paths_list_the_base_each_choice_and_the_cumulative_path_once():
    rungs = ladder_rungs(LadderSpec())
    labels = [r.label for r in rungs]
    n = len(RUNGS)
    assert labels[0] == BASE_RUNG
    assert labels[1 : n + 1] == list(RUNGS)
    # the cumulative rung of one choice is that choice alone: not repeated
    assert len(rungs) == 1 + n + (n - 1)
    last = rungs[-1]
    assert last.path == "cumulative" and last.switched == tuple(RUNGS)
    assert len({r.label for r in rungs}) == len(rungs)


def test_each_rung_switches_exactly_its_own_choice():
    rungs = {r.label: r for r in ladder_rungs(LadderSpec(base={"preset": "quick"},
                                                         path="each"))}
    assert rungs["kfac_damping"].config["inverse"] == {"kfac_damping": "heuristic"}
    assert rungs["split"].config["data"] == {"split": "per_loader"}
    assert rungs["lds_summary"].config["groundtruth"] == {"lds_summary": "interval_midpoint",
                                                          "n_bootstrap": 100}
    assert all(r.config["preset"] == "quick" for r in rungs.values())
    assert "inverse" not in rungs[BASE_RUNG].config


def test_cumulative_rungs_keep_the_earlier_choices_and_merge_nested_overrides():
    ladder = LadderSpec(base={"preset": "quick", "inverse": {"damping": 1e-3}},
                        rungs=["kfac_damping", "inverse_rule"], path="cumulative")
    rungs = ladder_rungs(ladder)
    assert [r.label for r in rungs] == [BASE_RUNG, "kfac_damping", "kfac_damping +inverse_rule"]
    assert rungs[-1].config["inverse"] == {"damping": 1e-3, "kfac_damping": "heuristic",
                                           "rule": "drop_absolute"}


@pytest.mark.parametrize("body, field, text", [
    ({"rungs": ["split", "warp_drive"]}, "rungs", "unknown ladder rung 'warp_drive'"),
    ({"rungs": ["split", "split"]}, "rungs", "must not repeat"),
    ({"path": "sideways"}, "path", "each"),
    ({"rungs": []}, "rungs", "at least 1"),
])
def test_bad_ladders_name_the_field_and_what_is_allowed(body, field, text):
    with pytest.raises(ValidationError) as info:
        LadderSpec.model_validate(body)
    error = info.value.errors()[0]
    assert error["loc"][0] == field
    assert text in str(info.value)
    if "unknown" in text:
        assert "allowed: split, schedule, blocks" in str(info.value)


def _fake_study(t, preds: dict, n_bootstrap=200, seed=5, summary="point", ekfac_verdict="<"):
    out = lds_many(t, preds, n_bootstrap, seed=seed)
    methods = {}
    arrays = {}
    for name, entry in out.items():
        low, high = entry["ci_low"], entry["ci_high"]
        mid = (low + high) / 2
        methods[name] = {"lds": {"0.5": {
            "value": entry["value"], "ci_low": low, "ci_high": high, "interval_midpoint": mid,
            "headline": mid if summary == "interval_midpoint" else entry["value"]}}}
        arrays[f"lds_bootstrap/{name}/0.5"] = entry["bootstrap"]
    results = {
        "spec_hash": f"h{n_bootstrap}{summary}",
        "spec": {"groundtruth": {"lds_summary": summary}},
        "methods": methods,
        "training": {"test_accuracy": 0.9},
        "decomposition": {"kfac_error": {"eigenvalue_share": 0.21}},
        "groundtruth": {"alphas": [0.5], "hierarchy": {"0.5": {
            "pairs": [{"higher": "EK-FAC", "lower": "K-FAC", "value": -0.01, "ci_low": -0.02,
                       "ci_high": -0.001, "verdict": ekfac_verdict}],
            "violations": ["EK-FAC < K-FAC"] if ekfac_verdict == "<" else [],
            "holds": ekfac_verdict != "<"}}},
    }
    return results, arrays


def test_summary_pairs_rungs_on_the_same_resamples_and_reports_claims():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(60, 30))
    base_preds = {"EK-FAC": t + rng.normal(size=t.shape) * 2.0,
                  "K-FAC": t + rng.normal(size=t.shape) * 1.5}
    rung_preds = {"EK-FAC": t + rng.normal(size=t.shape) * 1.0, "K-FAC": base_preds["K-FAC"]}
    base = _fake_study(t, base_preds, n_bootstrap=400)
    # a rung with fewer resamples (the official 100): paired on the first 100, which hold
    # the same subsets because both draw from the same seed
    rung = _fake_study(t, rung_preds, n_bootstrap=100, ekfac_verdict="≥")
    midpoint = _fake_study(t, rung_preds, n_bootstrap=100, summary="interval_midpoint",
                           ekfac_verdict="≥")
    ladder = LadderSpec(base={"preset": "quick"}, rungs=["fisher", "lds_summary"],
                        path="each")
    loaded = {BASE_RUNG: base, "fisher": rung, "lds_summary": midpoint}
    summary = summarize_ladder(ladder, lambda r: loaded.get(r.label))
    assert summary["finished"]
    row = summary["rungs"][1]
    cell = row["lds"]["EK-FAC"]["0.5"]
    d = row["delta_vs_base"]["EK-FAC"]["0.5"]
    assert d["value"] == pytest.approx(
        cell["headline"] - base[0]["methods"]["EK-FAC"]["lds"]["0.5"]["value"])
    expected = (rung[1]["lds_bootstrap/EK-FAC/0.5"]
                - base[1]["lds_bootstrap/EK-FAC/0.5"][:100])
    assert d["ci_low"] == pytest.approx(np.quantile(expected, 0.025))
    assert d["ci_high"] == pytest.approx(np.quantile(expected, 0.975))
    assert d["ci_low"] > 0  # less noise in EK-FAC's predictions: a real, paired gain
    # a midpoint headline is no bootstrap statistic: its difference gets no interval
    mid = summary["rungs"][2]
    mid_cell = mid["lds"]["EK-FAC"]["0.5"]
    assert mid_cell["headline"] == pytest.approx(mid_cell["interval_midpoint"])
    assert mid["delta_vs_base"]["EK-FAC"]["0.5"]["ci_low"] is None
    assert mid["delta_vs_base"]["EK-FAC"]["0.5"]["value"] == pytest.approx(
        mid_cell["headline"] - base[0]["methods"]["EK-FAC"]["lds"]["0.5"]["value"])
    # K-FAC's predictions are the same in both rungs: its paired difference is exactly 0
    k = row["delta_vs_base"]["K-FAC"]["0.5"]
    assert k["point_value"] == pytest.approx(0.0)
    assert k["ci_low"] == pytest.approx(0.0) and k["ci_high"] == pytest.approx(0.0)
    assert row["claims"]["ekfac_beats_kfac"]["0.5"] is True
    assert summary["rungs"][0]["claims"]["ekfac_beats_kfac"]["0.5"] is False
    assert row["claims"]["eigenvalue_majority"]["frobenius_squared"] is False
    text = markdown_ladder(summary)
    assert "lds_summary" in text and "Δ" in text and "21.0 %" in text


def test_the_bootstrap_prefix_is_shared_between_resample_counts():
    """The pairing above relies on it: the first B resamples do not depend on how many more
    are drawn (the same seed consumes the same stream)."""
    rng = np.random.default_rng(3)
    t = rng.normal(size=(100, 180))
    p = {"m": t + rng.normal(size=t.shape)}
    many = lds_many(t, p, 1000, seed=7)["m"]["bootstrap"]
    few = lds_many(t, p, 100, seed=7)["m"]["bootstrap"]
    np.testing.assert_array_equal(many[:100], few)


def test_unfinished_rungs_are_listed_without_numbers():
    ladder = LadderSpec(base={"preset": "quick"}, rungs=["blocks"], path="each")
    summary = summarize_ladder(ladder, lambda r: None)
    assert not summary["finished"]
    assert [r["finished"] for r in summary["rungs"]] == [False, False]
    assert "No rung" in markdown_ladder(summary)


def test_chain_verdict_reads_the_pairs_in_order():
    check = {"pairs": [{"higher": "H", "lower": "GGN", "verdict": "<"},
                       {"higher": "GGN", "lower": "K-FAC", "verdict": "≥"}]}
    assert chain_verdict(check) == "H < GGN ≥ K-FAC"
    assert chain_verdict({}) == ""


def test_the_ladder_module_imports_no_torch():
    code = ("import sys, curvscope.ladder as l; l.ladder_rungs(l.LadderSpec()); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
