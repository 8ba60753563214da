"""Figure builders on a stored (small, real) study: the right traces, axes and values."""

import re
from pathlib import Path

import numpy as np
import pytest

import frontend
from curvscope.spec import resolve_spec
from curvscope.study import run_study
from frontend.figures import (
    alignment_figure,
    compare_figure,
    decomposition_figure,
    diff_spec,
    examples_figure,
    examples_grid,
    groundtruth_scatter,
    heatmap_figure,
    lds_figure,
    spectra_figure,
)
from frontend.figures.study import TRACE_TYPES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    spec = resolve_spec({
        "preset": "quick", "model": {"hidden": [12, 8]}, "training": {"epochs": 5},
        "groundtruth": {"alphas": [0.5, 0.7], "n_subsets": 12, "n_seeds": 2, "n_bootstrap": 50},
    })
    result = run_study(spec, cache_dir=tmp_path_factory.mktemp("cache"))
    return result.results, result.arrays


def test_lds_figure_one_bar_per_method_with_intervals(study):
    results, _ = study
    fig = lds_figure(results)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC",
                                      "GGN-diag", "identity"]
    for trace in bars:
        lds = results["methods"][trace.name]["lds"]
        assert list(trace.y) == pytest.approx([lds["0.5"]["value"], lds["0.7"]["value"]])
        assert trace.error_y.array[0] == pytest.approx(lds["0.5"]["ci_high"] - lds["0.5"]["value"])
    ceilings = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert [s.y0 for s in ceilings] == pytest.approx(
        [results["groundtruth"]["ceiling"][a]["value"] for a in ("0.5", "0.7")])
    dark = lds_figure(results, "dark")
    assert fig.layout.template.layout.paper_bgcolor != dark.layout.template.layout.paper_bgcolor


def test_spectra_figure_whole_and_per_block(study):
    results, arrays = study
    fig = spectra_figure(arrays, list(results["methods"]))
    names = [t.name for t in fig.data]
    assert "H" in names and "H (negative, |λ|)" in names and "GGN" in names
    h = next(t for t in fig.data if t.name == "H")
    negative = next(t for t in fig.data if t.name == "H (negative, |λ|)")
    assert len(h.y) + len(negative.y) <= results["n_params"]
    assert negative.mode == "lines" and negative.line.dash == "dot" and h.line.dash is None
    assert negative.line.color == h.line.color and min(negative.y) > 0     # |λ| on log axes
    assert fig.layout.yaxis.type == "log"
    block = results["blocks"][1]["name"]
    per_block = spectra_figure(arrays, ["GGN", "K-FAC"], block=block)
    assert {t.name for t in per_block.data} == {"GGN", "K-FAC"}
    assert len(per_block.data[0].y) <= results["blocks"][1]["size"]
    assert block in per_block.layout.title.text


def test_alignment_figure_values(study):
    results, _ = study
    blocks = [b["name"] for b in results["blocks"]]
    fig = alignment_figure(results, kind="eigenvalue")
    kfac = next(t for t in fig.data if t.name == "K-FAC")
    assert list(kfac.x) == blocks
    assert list(kfac.y) == pytest.approx(
        [results["methods"]["K-FAC"]["eigenvalue_overlap"][b] for b in blocks])
    at_5 = alignment_figure(results, kind="eigenbasis", k=5)
    ekfac = next(t for t in at_5.data if t.name == "EK-FAC")
    curves = results["methods"]["EK-FAC"]["eigenbasis_overlap_by_k"]
    assert list(ekfac.y) == pytest.approx([curves[b]["5"] for b in blocks])
    assert "top-5" in at_5.layout.title.text


def test_decomposition_figure(study):
    results, _ = study
    fig = decomposition_figure(results)
    waterfalls = [t for t in fig.data if t.meta == "waterfall"]
    assert list(waterfalls[0].x) == ["H→GGN", "GGN→GGN-blockdiag", "GGN-blockdiag→EK-FAC",
                                     "EK-FAC→K-FAC"]
    steps = results["decomposition"]["chain_steps"]
    assert list(waterfalls[0].y) == pytest.approx([s["relative_to_H"] for s in steps])
    assert list(waterfalls[0].base) == pytest.approx(
        np.concatenate([[0], np.cumsum([s["relative_to_H"] for s in steps])[:-1]]))
    lost = [s["lds_lost"]["0.5"]["value"] for s in results["decomposition"]["lds_lost"]]
    assert list(waterfalls[1].y) == pytest.approx(lost)
    shares = results["decomposition"]["ggn_to_kfac"]
    split = next(t for t in fig.data if t.meta == "split")
    assert sum(split.y) == pytest.approx(100.0)
    assert split.y[0] == pytest.approx(100 * shares["cross_layer_share"])


def test_groundtruth_scatter_spearman_matches_per_test_lds(study):
    results, arrays = study
    fig = groundtruth_scatter(arrays, "GGN", test_index=3, alpha="0.5")
    assert len(fig.data[0].x) == 12
    rho = float(fig.layout.title.text.rsplit("=", 1)[1])
    assert rho == pytest.approx(arrays["lds_per_test/GGN/0.5"][3], abs=1e-3)
    # the dashboard passes only test point 3's row of the scores (the API's ?index=3)
    row_only = {**arrays, "scores/GGN": arrays["scores/GGN"][3]}
    same = groundtruth_scatter(row_only, "GGN", test_index=3, alpha="0.5")
    np.testing.assert_array_equal(same.data[0].x, fig.data[0].x)
    assert same.layout.title.text == fig.layout.title.text


def test_examples_figure_picks_most_helpful_and_harmful(study):
    results, arrays = study
    fig = examples_figure(arrays, ["K-FAC"], test_index=0, top=2)
    assert len(fig.data) == 5
    scores = arrays["scores/K-FAC"][0]
    helpful = int(np.argmin(scores))
    np.testing.assert_array_equal(fig.data[1].z, arrays["images/train"][helpful][::-1])
    assert f"train #{helpful}" in fig.data[1].hovertemplate


def test_examples_grid_is_one_mosaic_of_the_same_picks(study):
    results, arrays = study
    fig = examples_grid(arrays, ["identity", "K-FAC"], test_index=2, top=2)
    assert len(fig.data) == 1
    z, text = np.asarray(fig.data[0].z, dtype=float), np.asarray(fig.data[0].customdata)
    np.testing.assert_array_equal(z[:8, :8], arrays["images/test"][2])
    assert list(fig.layout.yaxis.ticktext) == ["K-FAC", "identity"]   # the chain's order
    assert list(fig.layout.xaxis.ticktext) == ["test", "helpful 1", "helpful 2", "harmful 1",
                                               "harmful 2"]
    scores = arrays["scores/K-FAC"][2]
    helpful, harmful = int(np.argmin(scores)), int(np.argmax(scores))
    # row 0 (K-FAC): test, gap, helpful 1 at column 2 (9-pixel cells), …, harmful 1 at 5
    np.testing.assert_array_equal(z[:8, 18:26], arrays["images/train"][helpful])
    np.testing.assert_array_equal(z[:8, 45:53], arrays["images/train"][harmful])
    assert text[0, 18] == f"K-FAC, helpful 1: train #{helpful}, τ = {scores[helpful]:.3g}"
    assert np.isnan(z[8, 0]) and np.isnan(z[9, 0])       # the test digit is drawn once
    rows = {**arrays, **{f"scores/{m}": arrays[f"scores/{m}"][2] for m in ("identity", "K-FAC")}}
    from_rows = examples_grid(rows, ["identity", "K-FAC"], test_index=2, top=2)
    np.testing.assert_array_equal(np.asarray(from_rows.data[0].z, dtype=float), z)
    assert (np.asarray(from_rows.data[0].customdata) == text).all()


def test_spectra_figure_thinned_keeps_exact_values_at_log_spaced_ranks(study):
    results, arrays = study
    full = spectra_figure(arrays, ["H"])
    thin = spectra_figure(arrays, ["H"], max_points=50)
    for name in ("H", "H (negative, |λ|)"):
        a = next(t for t in full.data if t.name == name)
        b = next(t for t in thin.data if t.name == name)
        assert b.type == "scatter" and len(b.y) <= 52
        exact = dict(zip(np.asarray(a.x).tolist(), np.asarray(a.y).tolist(), strict=True))
        assert all(exact[x] == y for x, y in zip(b.x, b.y, strict=True))
        assert max(b.y) == max(a.y) and min(b.x) == min(a.x) and max(b.x) == max(a.x)


def test_heatmap_figure_draws_layer_boundaries(study):
    results, arrays = study
    fig = heatmap_figure(results, arrays, "H-GGN")
    assert fig.data[0].z.shape == arrays["heatmaps/H-GGN"].shape
    assert len(fig.layout.shapes) == 2 * (len(results["blocks"]) - 1)


def test_compare_figure_and_diff_spec(study):
    results, _ = study
    other = {**results, "spec": {**results["spec"],
                                 "inverse": {**results["spec"]["inverse"], "damping": 0.01}}}
    diff = diff_spec([results["spec"], other["spec"]])
    assert diff == {"inverse.damping": [results["spec"]["inverse"]["damping"], 0.01]}
    fig = compare_figure([other, results], "inverse.damping", metric="lds", alpha="0.5")
    h = next(t for t in fig.data if t.name == "H")
    assert list(h.x) == [1e-4, 0.01]
    assert fig.layout.xaxis.title.text == "inverse.damping"
    assert fig.layout.xaxis.type == "log"                      # 1e-4 … 1e-2
    residual = compare_figure([other, results], "inverse.damping", metric="residual_to_H")
    assert residual.layout.yaxis.type == "log"
    assert list(next(t for t in residual.data if t.name == "K-FAC").y) == [
        results["methods"]["K-FAC"]["relative_residual_to_H"]] * 2


def bundled_trace_types() -> set[str]:
    """The trace types the served plotly.js bundle registers, from its banner (build.mjs)."""
    bundle = Path(frontend.__file__).parent / "assets" / "vendor" / "plotly-curvscope.min.js"
    head = bundle.read_text(encoding="utf-8")[:600]
    match = re.search(r"traces: ([a-z0-9, ]+)", head)
    assert match, "the bundle's banner names its trace types"
    return {t.strip() for t in match.group(1).split(",")}


def test_every_figure_needs_only_the_trace_types_of_the_served_plotly_bundle(study):
    """The dashboard serves a plotly.js bundle with only scatter, bar and heatmap (it runs in
    a third of the time of the cartesian bundle); every figure must stay within them, and the
    templates carry defaults for exactly those."""
    results, arrays = study
    assert bundled_trace_types() == set(TRACE_TYPES)
    figures = [lds_figure(results), spectra_figure(arrays, list(results["methods"])),
               alignment_figure(results), decomposition_figure(results),
               groundtruth_scatter(arrays, "GGN", 0, "0.5"),
               examples_figure(arrays, ["GGN"], 0), examples_grid(arrays, ["GGN"], 0),
               heatmap_figure(results, arrays, "H"),
               compare_figure([results, results], "inverse.damping")]
    used = {trace.type for fig in figures for trace in fig.data}
    assert used <= set(TRACE_TYPES), used - set(TRACE_TYPES)
    for theme in ("light", "dark"):
        slim = lds_figure(results, theme).layout.template
        assert {kind for kind in TRACE_TYPES if getattr(slim.data, kind)} == set(TRACE_TYPES)
        assert not slim.data.violin and not slim.data.surface   # the rest left out
