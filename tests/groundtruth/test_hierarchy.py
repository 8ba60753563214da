"""The hierarchy check and the LDS lost per step, on paired bootstrap draws built by hand."""

import numpy as np
import pytest

from curvscope.groundtruth import lds_many
from curvscope.groundtruth.hierarchy import (
    HIERARCHY,
    hierarchy_check,
    lds_lost,
    paired_difference,
    verdict,
)


def _paired(values_by_method: dict[str, float], noise: np.ndarray, spread: dict | None = None):
    """Point values and bootstrap arrays: LDS*(m) = value(m) + common noise (+ own noise)."""
    spread = spread or {}
    rng = np.random.default_rng(1)
    values = {m: {"0.5": {"value": v}} for m, v in values_by_method.items()}
    bootstrap = {(m, "0.5"): v + noise + spread.get(m, 0.0) * rng.normal(size=noise.size)
                 for m, v in values_by_method.items()}
    return values, bootstrap


def test_paired_difference_is_the_percentile_interval_of_the_resampled_differences():
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.2, size=400)
    values, bootstrap = _paired({"H": 0.5, "K-FAC": 0.4}, noise, {"K-FAC": 0.01})
    bootstrap["H", "0.5"][3] = np.nan  # a resample without a valid test point is ignored
    diff = paired_difference(values, bootstrap, "H", "K-FAC", "0.5")
    d = bootstrap["H", "0.5"] - bootstrap["K-FAC", "0.5"]
    d = d[np.isfinite(d)]
    assert diff["value"] == pytest.approx(0.1, abs=1e-15)
    assert diff["ci_low"] == pytest.approx(np.percentile(d, 2.5), rel=1e-12)
    assert diff["ci_high"] == pytest.approx(np.percentile(d, 97.5), rel=1e-12)
    # the common noise cancels: the paired interval is far narrower than either method's own
    assert diff["ci_high"] - diff["ci_low"] < 0.1 * (np.ptp(np.nanquantile(
        bootstrap["H", "0.5"], [0.025, 0.975])))
    assert diff["ci_low"] > 0 and verdict(diff) == "≥"


def test_hierarchy_verdicts_violations_and_reversals_within_noise():
    noise = np.random.default_rng(2).normal(scale=0.1, size=500)
    # H ≈ GGN (GGN slightly above, within noise), GGN ≥ K-FAC, K-FAC < identity (reversal)
    values, bootstrap = _paired({"identity": 0.30, "K-FAC": 0.20, "GGN": 0.51, "H": 0.50},
                                noise, {"H": 0.05, "GGN": 0.05, "K-FAC": 0.002,
                                        "identity": 0.002})
    check = hierarchy_check(values, bootstrap, "0.5")
    assert [(p["higher"], p["lower"]) for p in check["pairs"]] == [
        ("H", "GGN"), ("GGN", "K-FAC"), ("K-FAC", "identity")]  # HIERARCHY order, not dict's
    assert [p["verdict"] for p in check["pairs"]] == ["≈", "≥", "<"]
    assert check["violations"] == ["K-FAC < identity"] and check["holds"] is False
    assert check["reversals_within_noise"] == ["H < GGN"]
    for pair in check["pairs"]:
        assert pair["ci_low"] <= pair["value"] <= pair["ci_high"]


def test_hierarchy_holds_when_every_step_loses():
    noise = np.random.default_rng(3).normal(scale=0.1, size=300)
    scores = dict(zip(HIERARCHY, [0.6, 0.59, 0.5, 0.4, 0.3, 0.1], strict=True))
    values, bootstrap = _paired(scores, noise, {m: 0.001 for m in HIERARCHY})
    check = hierarchy_check(values, bootstrap, "0.5")
    assert len(check["pairs"]) == 5 and check["holds"] and check["violations"] == []
    assert all(p["verdict"] == "≥" for p in check["pairs"])


def test_lds_lost_on_real_lds_bootstrap_is_the_paired_difference_per_step():
    rng = np.random.default_rng(4)
    targets = rng.normal(size=(30, 12))
    predictions = {"H": targets + 0.3 * rng.normal(size=targets.shape),
                   "GGN": targets + 0.6 * rng.normal(size=targets.shape),
                   "K-FAC": targets + 1.5 * rng.normal(size=targets.shape)}
    out = lds_many(targets, predictions, n_bootstrap=200, seed=0)
    values = {m: {"0.5": {"value": v["value"]}} for m, v in out.items()}
    bootstrap = {(m, "0.5"): v["bootstrap"] for m, v in out.items()}
    steps = lds_lost(values, bootstrap, ["H", "GGN", "K-FAC"], ["0.5"])
    assert [(s["from"], s["to"]) for s in steps] == [("H", "GGN"), ("GGN", "K-FAC")]
    for step in steps:
        lost = step["lds_lost"]["0.5"]
        a, b = step["from"], step["to"]
        assert lost["value"] == out[a]["value"] - out[b]["value"]
        low, high = np.nanquantile(out[a]["bootstrap"] - out[b]["bootstrap"], [0.025, 0.975])
        assert (lost["ci_low"], lost["ci_high"]) == (low, high)
    assert steps[1]["lds_lost"]["0.5"]["ci_low"] > 0  # much noisier K-FAC: a clear loss
