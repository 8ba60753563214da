"""A small ground-truth study on digits: the exact Hessian attributes far better than the
gradient dot product, and the results carry the LDS schema."""

import numpy as np
import pytest

from curvscope.spec import resolve_spec
from curvscope.study import run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    spec = resolve_spec({
        "preset": "quick",
        "curvature": {"methods": ["H", "GGN", "K-FAC", "identity"]},
        "inverse": {"damping": 1e-2},
        "groundtruth": {"alphas": [0.5], "n_subsets": 40, "n_seeds": 4, "n_bootstrap": 300},
    })
    return run_study(spec, cache_dir=tmp_path_factory.mktemp("cache"))


def test_exact_hessian_lds_positive_and_clearly_above_identity(small_study):
    lds = {name: m["lds"]["0.5"] for name, m in small_study.results["methods"].items()}
    assert lds["H"]["value"] > 0.15
    assert lds["H"]["value"] - lds["identity"]["value"] > 0.05
    assert lds["H"]["ci_low"] > lds["identity"]["value"]
    for value in lds.values():
        assert value["ci_low"] <= value["value"] <= value["ci_high"]
    ceiling = small_study.results["groundtruth"]["ceiling"]["0.5"]
    assert ceiling["value"] > lds["identity"]["value"]


def test_groundtruth_results_and_arrays(small_study):
    results, arrays = small_study.results, small_study.arrays
    gt = results["groundtruth"]
    assert gt["alphas"] == [0.5] and gt["n_subsets"] == 40 and gt["n_seeds"] == 4
    assert gt["checkpoint_epochs"] == [10, 20]
    assert arrays["masks/0.5"].shape == (40, 1617) and (arrays["masks/0.5"].sum(1) == 808).all()
    assert arrays["retrained_losses/0.5"].shape == (40, 4, 180)
    assert arrays["retrained_losses_by_epoch/0.5"].shape == (2, 40, 4, 180)
    np.testing.assert_array_equal(arrays["retrained_losses_by_epoch/0.5"][-1],
                                  arrays["retrained_losses/0.5"])
    assert arrays["lds_per_test/H/0.5"].shape == (180,)
    assert np.nanmean(arrays["lds_per_test/H/0.5"]) == pytest.approx(
        results["methods"]["H"]["lds"]["0.5"]["value"])
    steps = results["decomposition"]["lds_lost"] if results["decomposition"] else gt["lds_lost"]
    assert [(s["from"], s["to"]) for s in steps] == [("H", "GGN"), ("GGN", "K-FAC")]
    lds = {n: m["lds"]["0.5"]["value"] for n, m in results["methods"].items()}
    h_to_ggn = steps[0]["lds_lost"]["0.5"]
    assert h_to_ggn["value"] == pytest.approx(lds["H"] - lds["GGN"])
    assert h_to_ggn["ci_low"] <= h_to_ggn["ci_high"]
    check = gt["hierarchy"]["0.5"]
    assert [(p["higher"], p["lower"]) for p in check["pairs"]] == [
        ("H", "GGN"), ("GGN", "K-FAC"), ("K-FAC", "identity")]
    for pair in check["pairs"]:
        expected = ("≥" if pair["ci_low"] > 0 else "<" if pair["ci_high"] < 0 else "≈")
        assert pair["verdict"] == expected
    assert check["pairs"][-1]["verdict"] == "≥"  # K-FAC clearly beats the dot product
    assert check["holds"] == (not check["violations"])


def test_retraining_tasks_run_apart_are_reused_by_the_study(tmp_path):
    from curvscope.study import plan_retraining, run_retraining_task

    spec = resolve_spec({
        "preset": "quick",
        "model": {"hidden": [8]},
        "training": {"epochs": 2, "checkpoints": []},
        "curvature": {"methods": ["K-FAC", "identity"]},
        "groundtruth": {"alphas": [0.3, 0.7], "n_subsets": 6, "n_seeds": 2,
                        "subsets_per_task": 4, "n_bootstrap": 50},
    })
    tasks = plan_retraining(spec)
    assert [(t.alpha, t.subset_start, t.subset_stop) for t in tasks] == [
        (0.3, 0, 4), (0.3, 4, 6), (0.7, 0, 4), (0.7, 4, 6)]
    for task in tasks:  # as separate workers would, each into the shared cache
        run_retraining_task(spec, task, tmp_path)
    result = run_study(spec, cache_dir=tmp_path)
    assert all(result.results["cache"][t.stage] == "reused" for t in tasks)
    alone = run_study(spec.model_copy(update={"groundtruth": spec.groundtruth.model_copy(
        update={"subsets_per_task": None})}))
    np.testing.assert_allclose(result.arrays["retrained_losses/0.7"],
                               alone.arrays["retrained_losses/0.7"], rtol=1e-5)
