"""The results contract (curvscope/results.py): the golden fixture validates, array names match
what a real study wrote, version-1 results upgrade, warnings are structured, no torch."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from curvscope import results as R

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


@pytest.fixture(scope="module")
def golden():
    raw = json.loads((GOLDEN / "results.json").read_text())
    with np.load(GOLDEN / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return raw, arrays


def test_golden_fixture_is_small_and_validates(golden):
    raw, arrays = golden
    assert (GOLDEN / "arrays.npz").stat().st_size < 1_250_000
    r = R.load_results(GOLDEN)  # the folder, as the backend has it
    assert r.schema_version == R.SCHEMA_VERSION == raw["schema_version"] == 2
    assert r.spec["name"] == "golden" and r.n_test == len(arrays[R.SPLIT_TEST])
    assert set(r.methods) == {"H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC", "identity"}
    assert r.alphas == ["0.5"] and r.groundtruth.n_subsets == 20
    # validation keeps every key it does not know (sub-objects are open) and loses none
    assert R.results_dict(raw).keys() >= raw.keys()


def test_golden_array_names_are_the_helpers_names(golden):
    raw, arrays = golden
    r = R.load_results(raw)
    assert r.array_names == list(arrays)
    assert R.missing_arrays(r, arrays) == []
    n_train, n_test = r.n_train, r.n_test
    for m in r.methods:
        assert arrays[R.scores_name(m)].shape == (n_test, n_train)
        assert arrays[R.eigenvalues_name(m)].shape == (r.n_params,)
        for b in r.blocks:
            assert arrays[R.block_eigenvalues_name(m, b.name)].shape == (b.size,)
        per_test = arrays[R.lds_per_test_name(m, 0.5)]
        assert np.nanmean(per_test) == pytest.approx(r.lds(m, "0.5").value)
    assert arrays[R.masks_name(0.5)].shape == (20, n_train)
    assert arrays[R.retrained_losses_name("0.5")].shape == (20, 2, n_test)
    for kind in {R.array_kind(n) for n in arrays}:
        assert kind in R.ARRAY_KINDS


def test_has_images_is_recorded_not_guessed(golden):
    raw, arrays = golden
    r = R.load_results(raw)
    assert R.has_images(r) and R.has_images(raw)
    assert r.images.shape == list(arrays[R.images_name("test")].shape[1:]) == [8, 8]
    assert arrays[R.images_name("train")].shape == (r.n_train, 8, 8)
    no_images = dict(raw, images=None)
    assert not R.has_images(no_images)
    with pytest.raises(ValueError):
        R.images_name("valid")


def test_golden_warnings_are_structured(golden):
    raw, _ = golden
    r = R.load_results(raw)
    codes = {w.code for w in r.warnings}
    assert "few_test_points" in codes  # 8 test points, on purpose
    for w in r.warnings:
        assert w.severity in ("info", "warning") and w.message


def _v1(raw: dict) -> dict:
    """The golden results as curvscope wrote them before schema version 2."""
    old = json.loads(json.dumps(raw))
    for key in ("schema_version", "warnings", "known_pitfalls", "images", "array_names"):
        old.pop(key, None)
    for m in old["methods"].values():
        m.pop("damping_received", None)
        m["inverse"].pop("damping_received", None)
        for entry in m["lds"].values():
            for key in ("interval_midpoint", "headline"):
                entry.pop(key, None)
    if old.get("decomposition"):
        for key in ("eigenvalue_mismatch_share", "official_eigenvalue_overlap"):
            old["decomposition"].pop(key, None)
    return old


def test_version_1_results_upgrade(golden):
    raw, _ = golden
    old = _v1(raw)
    before = json.dumps(old, sort_keys=True)
    r = R.load_results(old)
    assert json.dumps(old, sort_keys=True) == before  # the input is not modified
    assert r.schema_version == 2 and R.has_images(r)
    damping = old["inverse"]["damping"]
    for name, m in r.methods.items():
        assert m.damping_received.rule == "exact" and m.damping_received.damping == damping
        assert m.lds["0.5"].headline == old["methods"][name]["lds"]["0.5"]["value"]
    assert [w.code for w in r.warnings] == ["few_test_points"]  # derived from the numbers
    csv = json.loads(json.dumps(old))
    csv["spec"]["data"]["name"] = "file"
    assert not R.has_images(csv)
    with pytest.raises(ValueError, match="schema_version 7"):
        R.load_results(dict(raw, schema_version=7))


def test_contract_violations_are_refused(golden):
    raw, _ = golden
    bad = json.loads(json.dumps(raw))
    bad["warnings"].append({"code": "not_a_code", "severity": "warning", "message": "x",
                            "method": None})
    with pytest.raises(ValidationError, match="code"):
        R.load_results(bad)
    bad = json.loads(json.dumps(raw))
    del bad["methods"]["K-FAC"]["spectrum"]
    with pytest.raises(ValidationError, match="spectrum"):
        R.load_results(bad)
    bad = json.loads(json.dumps(raw))
    bad["groundtruth"]["hierarchy"]["0.5"]["pairs"][0]["verdict"] = ">"
    with pytest.raises(ValidationError, match="verdict"):
        R.load_results(bad)


def test_add_warning_validates_and_deduplicates():
    warnings: list[dict] = []
    R.add_warning(warnings, "mc_fisher_degenerate", "no informative label", "warning", "K-FAC")
    R.add_warning(warnings, "mc_fisher_degenerate", "no informative label", "warning", "K-FAC")
    R.add_warning(warnings, "known_pitfalls", "official-code choices", "info")
    assert warnings == [
        {"code": "mc_fisher_degenerate", "severity": "warning",
         "message": "no informative label", "method": "K-FAC"},
        {"code": "known_pitfalls", "severity": "info", "message": "official-code choices",
         "method": None}]
    with pytest.raises(ValidationError):
        R.add_warning(warnings, "typo", "x")
    with pytest.raises(ValidationError):
        R.add_warning(warnings, "few_test_points", "x", severity="error")


def _summary(n_test=100, n_classes=10, accuracy=0.9, ceiling=0.5, n_seeds=5):
    return {"n_test": n_test, "n_classes": n_classes, "training": {"test_accuracy": accuracy},
            "groundtruth": {"n_seeds": n_seeds, "ceiling": {"0.5": (
                None if ceiling is None else {"value": ceiling})}}}


def test_general_warnings_thresholds():
    assert R.general_warnings(_summary()) == []
    assert [w["code"] for w in R.general_warnings(_summary(n_test=29))] == ["few_test_points"]
    assert R.general_warnings(_summary(n_test=30)) == []
    assert [w["code"] for w in R.general_warnings(_summary(accuracy=0.15))] == [
        "accuracy_at_chance"]  # 1/10 + 0.05
    assert R.general_warnings(_summary(accuracy=0.16)) == []
    assert [w["code"] for w in R.general_warnings(_summary(n_classes=2, accuracy=0.55))] == [
        "accuracy_at_chance"]
    for ceiling in (0.05, float("nan"), None):
        (w,) = R.general_warnings(_summary(ceiling=ceiling))
        assert w["code"] == "lds_ceiling_low" and "α = 0.5" in w["message"]
    assert R.general_warnings(_summary(ceiling=None, n_seeds=1)) == []  # no ceiling to judge


def test_json_safe_turns_non_finite_numbers_into_null():
    value = {"a": [1.0, float("nan"), {"b": float("inf")}], "c": "x", "d": 2}
    assert R.json_safe(value) == {"a": [1.0, None, {"b": None}], "c": "x", "d": 2}
    assert not math.isnan(R.json_safe(0.5))


def test_alpha_keys_and_array_names():
    assert R.alpha_key(0.5) == R.alpha_key("0.50") == "0.5"
    assert R.scores_name("K-FAC") == "scores/K-FAC"
    assert R.block_eigenvalues_name("EK-FAC", "layer0") == "block_eigenvalues/EK-FAC/layer0"
    assert R.lds_per_test_name("ceiling", 0.3) == "lds_per_test/ceiling/0.3"
    assert R.retrained_losses_by_epoch_name(0.9) == "retrained_losses_by_epoch/0.9"
    assert R.checkpoint_name(10) == "checkpoints/10" and R.params_name("0.bias") == \
        "params/0.bias"
    with pytest.raises(ValueError, match="unknown array"):
        R.array_kind("bogus/x")


def test_results_module_imports_no_torch():
    code = ("import sys, curvscope.results as r; r.load_results('" + str(GOLDEN) + "'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
