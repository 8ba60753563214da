"""The pipeline in-process: matrix-free studies, user data, the memory estimate."""

import numpy as np
import pytest

from curvscope.spec import resolve_spec
from curvscope.study import MemoryBudgetError, check_memory_budget, run_study


def small_spec(**overrides):
    base = {"model": {"hidden": [8]}, "training": {"epochs": 3, "lr": 0.05},
            "data": {"name": "iris"}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return resolve_spec(base)


def test_structured_only_study_never_forms_dense_matrices():
    spec = small_spec(curvature={"methods": ["GGN-blockdiag", "EK-FAC", "K-FAC", "identity"]})
    result = run_study(spec)
    for m in result.results["methods"].values():
        assert m["relative_residual_to_H"] is None and m["relative_residual_to_GGN"] is None
    assert result.results["off_block"] == {}
    assert not any(k.startswith("heatmaps/") for k in result.arrays)
    decomposition = result.results["decomposition"]
    assert "ggn_to_kfac" not in decomposition
    assert decomposition["kfac_error"]["eigenbasis_share"] + decomposition["kfac_error"][
        "eigenvalue_share"] == pytest.approx(1.0)


def test_user_csv_and_per_tensor_blocks(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int) * 5 + 2  # labels 2 and 7
    rows = [",".join(map(str, [*row, label])) for row, label in zip(X, y, strict=True)]
    lines = ["f1,f2,f3,label", *rows]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    spec = small_spec(data={"name": "file", "path": str(tmp_path / "d.csv")},
                      curvature={"block_structure": "tensor"})
    result = run_study(spec, out_dir=tmp_path / "out")
    assert result.results["n_classes"] == 2
    assert [b["name"] for b in result.results["blocks"]] == [
        "0.weight", "0.bias", "2.weight", "2.bias"]
    assert (tmp_path / "out" / "results.json").exists()


def test_memory_estimate_refuses_dense_over_budget_but_allows_structured():
    spec = small_spec(compute={"memory_budget_gib": 1.0})
    with pytest.raises(MemoryBudgetError, match="H, GGN.*above the memory budget of 1.0 GiB"):
        check_memory_budget(spec, n_params=20_000)
    structured = small_spec(compute={"memory_budget_gib": 1.0},
                            curvature={"methods": ["K-FAC", "EK-FAC"]})
    assert check_memory_budget(structured, n_params=20_000) == 0


def test_presets_resolve_with_overrides():
    spec = resolve_spec({"preset": "quick", "training": {"epochs": 7}})
    assert spec.training.epochs == 7 and spec.model.hidden == [16, 16]
    paper = resolve_spec(preset="paper")
    assert paper.model.hidden == [64, 32] and paper.training.epochs == 100
    assert paper.spec_hash() != spec.spec_hash()
    renamed = resolve_spec({"preset": "paper", "name": "other"})
    assert renamed.spec_hash() == paper.spec_hash()


def test_estimate_study_counts_parameters_models_and_memory():
    from curvscope.study import estimate_study

    estimate = estimate_study(resolve_spec(preset="paper"))
    assert estimate["n_params"] == 6570 and estimate["n_train"] == 1617
    assert estimate["n_retrained_models"] == 4 * 100 * 5
    assert estimate["retrained_model_epochs"] == 2000 * 100
    assert estimate["dense_memory_bytes"] == (2 * 3 + 3) * 6570**2 * 8
    with pytest.raises(MemoryBudgetError):
        estimate_study(resolve_spec({"preset": "paper", "compute": {"memory_budget_gib": 0.5}}))


def test_run_study_reports_exactly_the_stage_plan_in_order(tmp_path):
    from curvscope.study import stage_plan

    spec = small_spec(curvature={"methods": ["K-FAC", "GGN", "identity"]},
                      groundtruth={"alphas": [0.3, 0.7], "n_subsets": 4, "n_seeds": 2,
                                   "n_bootstrap": 20})
    started: list[str] = []

    def progress(stage, fraction):
        if fraction == 0.0 and stage not in started:
            started.append(stage)

    result = run_study(spec, progress=progress)
    plan = stage_plan(spec)
    assert plan == ["data", "train", "gradients", "curvature/GGN", "curvature/K-FAC",
                    "curvature/identity", "scores", "diagnostics", "groundtruth/0.3",
                    "groundtruth/0.7", "lds"]
    assert started == plan
    assert list(result.results["timings"]) == plan
    assert [k for k in result.arrays if k.startswith("scores/")] == [
        "scores/K-FAC", "scores/GGN", "scores/identity"]  # the spec's order, not build order


def test_cache_keys_hold_the_code_version_so_a_fix_never_reuses_a_stale_stage(
        tmp_path, monkeypatch):
    from curvscope import study

    spec = small_spec(curvature={"methods": ["K-FAC", "identity"]},
                      groundtruth={"n_subsets": 3, "n_seeds": 1, "n_bootstrap": 10})
    first = run_study(spec, cache_dir=tmp_path)
    assert set(first.results["cache"].values()) == {"computed"}
    again = run_study(spec, cache_dir=tmp_path)
    assert set(again.results["cache"].values()) == {"reused"}
    np.testing.assert_array_equal(again.arrays["scores/K-FAC"], first.arrays["scores/K-FAC"])
    task = study.plan_retraining(spec)[0]
    for material in (study.train_material(spec, "cpu"),
                     study.curvature_material(spec, "K-FAC", "cpu"),
                     study.retrain_material(spec, "cpu", task)):
        assert material["version"] == {"curvscope": study.package_versions()["curvscope"],
                                       "code": study.CODE_VERSION}
    monkeypatch.setattr(study, "CODE_VERSION", study.CODE_VERSION + 1)
    fixed = run_study(spec, cache_dir=tmp_path)
    assert set(fixed.results["cache"].values()) == {"computed"}


@pytest.mark.parametrize("hidden,bias", [([64, 32], True), ([16, 16], True), ([], False),
                                         ([7, 3, 5], False)])
def test_closed_form_parameter_count_matches_the_built_model(hidden, bias):
    from curvscope.models import ModelSpec, build_mlp
    from curvscope.sizes import mlp_n_params

    model = build_mlp(13, 4, ModelSpec(hidden=hidden, bias=bias), seed=0)
    assert mlp_n_params(13, 4, hidden, bias) == sum(p.numel() for p in model.parameters())


def test_closed_form_estimate_agrees_with_the_loaded_data():
    from curvscope.data import load_data
    from curvscope.data.split import n_test_rows
    from curvscope.sizes import BUILTIN_SHAPES, closed_form_estimate, n_test_rows as closed
    from curvscope.study import estimate_study

    for name, (rows, features, classes) in BUILTIN_SHAPES.items():
        data = load_data(resolve_spec({"data": {"name": name}}).data)
        assert (data.n_train + data.n_test, data.n_features, data.n_classes) == (
            rows, features, classes)
    for fraction in (0.001, 0.1, 0.25, 0.5):
        assert closed(1797, fraction) == n_test_rows(1797, fraction)
    for spec in (resolve_spec(preset="quick"), resolve_spec(preset="paper"),
                 resolve_spec({"data": {"name": "gaussian_mixture", "n_samples": 300,
                                        "n_features": 5, "n_classes": 4},
                               "model": {"hidden": [9]}})):
        closed_form, loaded = closed_form_estimate(spec), estimate_study(spec)
        for key in ("n_params", "n_train", "n_test", "dense_memory_bytes",
                    "n_retrained_models", "retrained_model_epochs"):
            assert closed_form[key] == loaded[key], key
        assert closed_form["retraining_gflop"] == pytest.approx(loaded["retraining_gflop"])


def test_study_results_follow_the_contract_and_carry_general_warnings():
    from curvscope.results import (
        expected_array_names,
        has_images,
        load_results,
        scores_name,
    )

    # 40 test points of 10 classes without signal, a model left at its initialisation
    spec = small_spec(data={"name": "gaussian_mixture", "n_samples": 400, "n_classes": 10,
                            "class_separation": 0.01},
                      training={"lr": 1e-9, "epochs": 1},
                      groundtruth={"n_subsets": 4, "n_seeds": 2, "n_bootstrap": 20})
    result = run_study(spec)
    r = load_results(result.results)
    assert r.schema_version == 2 and r.array_names == list(result.arrays)
    assert set(expected_array_names(r)) <= set(result.arrays)
    assert not has_images(r) and r.images is None
    assert result.arrays[scores_name("K-FAC")].shape == (40, 360)
    codes = {w.code for w in r.warnings}
    assert r.training.test_accuracy <= 0.15 and "accuracy_at_chance" in codes
    assert "few_test_points" not in codes  # 40 test points
    iris = load_results(run_study(small_spec(groundtruth={"enabled": False})).results)
    assert [w.code for w in iris.warnings] == ["few_test_points"]  # 15 test points
    assert iris.groundtruth is None


def test_the_retrained_models_loss_spread_is_stored_from_their_curves():
    """results.training.retrained_loss_curves[α] holds the 10/50/90 % quantiles over the
    retrained models of the curves in arrays.npz (n_subsets × n_seeds × epochs), and each
    curve starts where a model of this recipe starts (the loss of an untrained 3-class MLP
    is ≈ log 3 and falls with training)."""
    from curvscope.results import load_results, retrained_train_losses_name

    spec = small_spec(training={"epochs": 4},
                      groundtruth={"n_subsets": 5, "n_seeds": 2, "n_bootstrap": 20,
                                   "alphas": [0.3, 0.5]})
    result = run_study(spec)
    curves = load_results(result.results).training.retrained_loss_curves
    assert sorted(curves) == ["0.3", "0.5"]
    for alpha, spread in curves.items():
        stored = result.arrays[retrained_train_losses_name(alpha)]
        assert stored.shape == (5, 2, 4) and spread.epochs == [1, 2, 3, 4]
        assert spread.n_models == 10
        flat = stored.reshape(10, 4).astype(np.float64)
        np.testing.assert_allclose(spread.p10, np.quantile(flat, 0.1, axis=0), rtol=1e-12)
        np.testing.assert_allclose(spread.median, np.median(flat, axis=0), rtol=1e-12)
        np.testing.assert_allclose(spread.p90, np.quantile(flat, 0.9, axis=0), rtol=1e-12)
        assert np.all(np.asarray(spread.p10) <= np.asarray(spread.p90))
        assert spread.median[-1] < spread.median[0] < 1.5 * np.log(3)
