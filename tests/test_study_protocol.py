"""The official code's protocol options through the whole study (issue 9): which rows each
stage uses, the damping each method received, Monte-Carlo Fisher diagnostics, LDS summaries,
warnings and known pitfalls."""

import numpy as np
import pytest

from curvscope.data import DataSpec, load_data
from curvscope.spec import resolve_spec
from curvscope.study import curvature_material, run_study


def spec_of(**overrides):
    base = {"model": {"hidden": [8]}, "training": {"epochs": 3, "lr": 0.05},
            "data": {"name": "iris"},
            "groundtruth": {"n_subsets": 6, "n_seeds": 2, "n_bootstrap": 20}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return resolve_spec(base)


@pytest.mark.slow
def test_defaults_carry_the_new_fields_and_no_pitfalls():
    result = run_study(spec_of(curvature={"methods": ["GGN", "K-FAC", "identity"]}))
    r = result.results
    assert r["known_pitfalls"] == []
    assert not [w for w in r["warnings"] if w["code"] in ("known_pitfalls",
                                                           "mc_fisher_degenerate")]
    assert r["data_split"] == {"split": "shared", "n_fit": 135, "n_train": 135, "n_test": 15,
                               "n_train_in_fit": 135, "n_test_in_fit": 0}
    assert "split/fit" not in result.arrays
    for m in ("GGN", "K-FAC", "identity"):
        assert r["methods"][m]["damping_received"] == {"rule": "exact", "damping": 1e-4}
        assert "mc_fisher" not in r["methods"][m]
        entry = r["methods"][m]["lds"]["0.5"]
        assert entry["headline"] == entry["value"]
        assert entry["interval_midpoint"] == pytest.approx((entry["ci_low"] + entry["ci_high"])
                                                           / 2)
        assert "official_interval" not in entry
    assert r["inverse"]["kfac_damping_applied_to"] == []


@pytest.mark.slow
def test_official_protocol_options_end_to_end():
    spec = spec_of(
        data={"split": "per_loader"},
        curvature={"methods": ["GGN", "EK-FAC", "K-FAC", "identity"],
                   "block_structure": "tensor", "fisher_types": {"K-FAC": "mc", "EK-FAC": "mc"},
                   "mc_replicates": 3},
        inverse={"kfac_damping": "heuristic", "rule": "drop_absolute"},
        groundtruth={"lds_summary": "interval_midpoint"})
    result = run_study(spec)
    r, arrays = result.results, result.arrays
    data = load_data(DataSpec(name="iris", split="per_loader"))
    # rows: fitted on loader 1, attributed / retrained on loader 2, tested on loader 3
    np.testing.assert_array_equal(arrays["split/fit"], data.fit_idx)
    np.testing.assert_array_equal(arrays["split/train"], data.train_idx)
    np.testing.assert_array_equal(arrays["split/test"], data.test_idx)
    assert r["data_split"] == data.overlap() and r["data_split"]["n_test_in_fit"] > 0
    assert arrays["masks/0.5"].shape == (6, data.n_train)
    # damping received: heuristic for K-FAC only, per tensor block
    kfac = r["methods"]["K-FAC"]["damping_received"]
    assert kfac["rule"] == "heuristic" and len(kfac["per_block"]) == 4
    assert all(b["damping_S"] > 0 for b in kfac["per_block"])
    assert r["methods"]["EK-FAC"]["damping_received"]["rule"] == "exact"
    assert r["inverse"]["kfac_damping_applied_to"] == ["K-FAC"]
    # MC Fisher diagnostics for both MC methods, with replicates
    for m in ("K-FAC", "EK-FAC"):
        mc = r["methods"][m]["mc_fisher"]
        assert mc["mc_samples"] == 1 and mc["n_labels"] == data.n_train
        assert 0 <= mc["n_labels_differ_from_argmax"] <= mc["n_labels"]
        assert mc["trace_ratio_to_ggn"] > 0
        assert [x["seed"] for x in mc["replicates"]] == [42, 43, 44]
        assert set(mc["spread"]) == {"n_labels_differ_from_argmax", "trace_ratio_to_ggn",
                                     "effective_points", "n_degenerate"}
    assert "mc_fisher" not in r["methods"]["GGN"]
    # LDS: the headline is the midpoint of the official (BCa) interval, as that code reports
    entry = r["methods"]["K-FAC"]["lds"]["0.5"]
    assert entry["headline"] == entry["official_interval"]["midpoint"]
    assert entry["official_interval"]["method"] == "BCa"
    # known pitfalls: per_loader, MC Fisher, heuristic damping, midpoint LDS
    assert len(r["known_pitfalls"]) == 4
    codes = [w["code"] for w in r["warnings"]]
    assert "known_pitfalls" in codes


def test_curvature_cache_keys_hold_only_what_each_method_reads():
    base = spec_of()
    mc = spec_of(curvature={"fisher_types": {"K-FAC": "mc"}})
    tensor = spec_of(curvature={"block_structure": "tensor"})
    for method in ("H", "GGN", "identity", "GGN-diag"):
        assert curvature_material(base, method, "cpu") == curvature_material(mc, method, "cpu")
        assert curvature_material(base, method, "cpu") == \
            curvature_material(tensor, method, "cpu")
    assert curvature_material(base, "EK-FAC", "cpu") == curvature_material(mc, "EK-FAC", "cpu")
    assert curvature_material(base, "K-FAC", "cpu") != curvature_material(mc, "K-FAC", "cpu")
    assert curvature_material(base, "GGN-blockdiag", "cpu") != \
        curvature_material(tensor, "GGN-blockdiag", "cpu")
    replicas = spec_of(curvature={"fisher_types": {"K-FAC": "mc"}, "mc_replicates": 4})
    assert curvature_material(replicas, "K-FAC", "cpu") == curvature_material(mc, "K-FAC", "cpu")


def test_degenerate_monte_carlo_fisher_is_warned(monkeypatch):
    from curvscope.curvature import mc_fisher

    monkeypatch.setattr(mc_fisher, "DEGENERATE_TRACE_RATIO", 10.0)  # every draw "degenerate"
    spec = spec_of(curvature={"methods": ["K-FAC"], "fisher_types": {"K-FAC": "mc"}},
                   groundtruth={"enabled": False})
    r = run_study(spec).results
    assert r["methods"]["K-FAC"]["mc_fisher"]["degenerate"]
    warning = next(w for w in r["warnings"] if w["code"] == "mc_fisher_degenerate")
    assert warning["method"] == "K-FAC" and "tr(F_mc)/tr(G)" in warning["message"]
