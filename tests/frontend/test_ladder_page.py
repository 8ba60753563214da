"""The ladder page's figures and table from a ladder summary (pure functions, no server)."""

import numpy as np

from curvscope.groundtruth.lds import lds_many
from curvscope.ladder import LadderSpec, summarize_ladder
from frontend.figures.ladder import ladder_figure, ladder_lds_figure, ladder_table_rows
from frontend.figures.study import TRACE_TYPES


def _study(t, preds, verdict):
    out = lds_many(t, preds, 200, seed=1)
    methods = {name: {"lds": {"0.5": {"value": e["value"], "ci_low": e["ci_low"],
                                      "ci_high": e["ci_high"], "headline": e["value"]}}}
               for name, e in out.items()}
    arrays = {f"lds_bootstrap/{n}/0.5": e["bootstrap"] for n, e in out.items()}
    results = {"methods": methods, "spec": {}, "training": {},
               "decomposition": {"eigenvalue_mismatch_share": {
                   "frobenius_squared": {"value": 0.62, "formula": "…"}}},
               "groundtruth": {"alphas": [0.5], "hierarchy": {"0.5": {"pairs": [
                   {"higher": "EK-FAC", "lower": "K-FAC", "verdict": verdict}]}}}}
    return results, arrays


def _summary():
    rng = np.random.default_rng(2)
    t = rng.normal(size=(50, 20))
    base = _study(t, {"EK-FAC": t + rng.normal(size=t.shape), "K-FAC": t + 0.5 *
                      rng.normal(size=t.shape)}, "<")
    rung = _study(t, {"EK-FAC": t + 0.2 * rng.normal(size=t.shape), "K-FAC": t + 3 *
                      rng.normal(size=t.shape)}, "≥")
    ladder = LadderSpec(base={"preset": "quick"}, rungs=["fisher"], path="each")
    loaded = {"base": base, "fisher": rung}
    return summarize_ladder(ladder, lambda r: loaded[r.label]), base, rung


def test_table_rows_show_headline_delta_and_claims():
    summary, base, rung = _summary()
    rows = ladder_table_rows(summary, "0.5")
    assert [r["label"] for r in rows] == ["base", "fisher"]
    ek = rung[0]["methods"]["EK-FAC"]["lds"]["0.5"]["value"]
    ek0 = base[0]["methods"]["EK-FAC"]["lds"]["0.5"]["value"]
    assert rows[1]["cells"]["EK-FAC"].startswith(f"{ek:.3f} ({ek - ek0:+.3f})")
    assert rows[1]["cells"]["EK-FAC"].endswith("*")  # a clear paired gain
    assert "(" not in rows[0]["cells"]["EK-FAC"]  # the base rung has no Δ
    assert [r["ekfac_beats_kfac"] for r in rows] == ["no", "yes"]
    assert rows[0]["mismatch_share"] == "62.0 %"
    assert rows[1]["chain"] == "EK-FAC ≥ K-FAC"


def test_delta_figure_draws_paired_differences_with_intervals():
    summary, _, _ = _summary()
    fig = ladder_figure(summary, "0.5")
    assert {t.type for t in fig.data} <= set(TRACE_TYPES)
    ek = next(t for t in fig.data if t.name == "EK-FAC")
    d = summary["rungs"][1]["delta_vs_base"]["EK-FAC"]["0.5"]
    assert list(ek.x) == ["base", "fisher"]
    assert ek.y[0] == 0.0 and ek.y[1] == d["value"]
    assert ek.error_y.array[1] == d["ci_high"] - d["value"]
    assert ek.error_y.arrayminus[1] == d["value"] - d["ci_low"]
    assert "Δ LDS" in fig.layout.yaxis.title.text
    lds = ladder_lds_figure(summary, "0.5")
    assert {t.name for t in lds.data} == {"EK-FAC", "K-FAC"}
    assert "higher is better" in lds.layout.yaxis.title.text
