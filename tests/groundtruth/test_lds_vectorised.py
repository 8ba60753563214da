"""The vectorised LDS bootstrap (issue 14) against the implementation it replaced
(tests/groundtruth/reference_lds.py), bit for bit: same resamples, same correlations, same
intervals; and the golden fixture's stored LDS recomputed from its stored inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from curvscope.groundtruth import lds_many, predicted_losses, seed_noise_ceiling
from curvscope.groundtruth.lds import (
    MATMUL_MAX_SUBSETS,
    _ColumnOrder,
    _counts,
    _ResampledSpearman,
    official_bootstrap_interval,
)
from tests.groundtruth import reference_lds as reference

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"


def _problem(n_subsets, n_test, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=(n_subsets, n_test))
    predictions = {"close": targets + 0.5 * rng.normal(size=targets.shape),
                   "tied": np.round(rng.normal(size=targets.shape), 1),  # many ties
                   "noise": rng.normal(size=targets.shape)}
    predictions["tied"][:, 0] = 2.0  # a constant column: NaN point value, excluded
    predictions["noise"][3, 1] = np.nan  # a NaN prediction sorts last, as before
    return targets, predictions


@pytest.mark.parametrize("n_subsets, n_test, n_bootstrap", [
    (100, 40, 300),  # the paper's M (matmul path), chunks of 2**22 // (M · n) resamples
    (30, 8, 80),
    (MATMUL_MAX_SUBSETS + 44, 5, 40),  # the gather path
    (4, 3, 200),  # tiny M: resamples holding one subset give NaN
])
def test_lds_many_is_bit_identical_to_the_reference(n_subsets, n_test, n_bootstrap):
    targets, predictions = _problem(n_subsets, n_test)
    new = lds_many(targets, predictions, n_bootstrap, seed=7)
    old = reference.lds_many(targets, predictions, n_bootstrap, seed=7)
    for name in predictions:
        np.testing.assert_array_equal(new[name]["bootstrap"], old[name]["bootstrap"])
        np.testing.assert_array_equal(new[name]["per_test"], old[name]["per_test"])
        for key in ("value", "ci_low", "ci_high", "interval_midpoint", "headline",
                    "n_excluded"):
            assert new[name][key] == old[name][key] or (
                np.isnan(new[name][key]) and np.isnan(old[name][key])), key
    if n_subsets == 4:
        assert np.isnan(new["close"]["bootstrap"]).any()


def test_resampled_spearman_equals_scipy_on_each_resample():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(25, 6)), rng.normal(size=(25, 6))
    rows = rng.integers(0, 25, size=(12, 25))
    rows[:4, -1] = rows[:4, 0]  # and jackknife-like resamples of 24 subsets
    counts = _counts(rows, 25)
    counts[:4] = _counts(rows[:4, :-1], 25)
    rho = _ResampledSpearman(_ColumnOrder(a), counts).rho(_ColumnOrder(b))
    for r in range(12):
        picked = np.repeat(np.arange(25), counts[r])
        expected = [spearmanr(a[picked, x], b[picked, x]).statistic for x in range(6)]
        np.testing.assert_allclose(rho[r], expected, rtol=0, atol=1e-13)


def test_counts_equal_one_bincount_per_row():
    rows = np.random.default_rng(0).integers(0, 9, size=(13, 9))
    np.testing.assert_array_equal(_counts(rows, 9),
                                  np.stack([np.bincount(r, minlength=9) for r in rows]))


def test_official_interval_and_ceiling_are_unchanged():
    targets, predictions = _problem(30, 6, seed=5)
    for pred in predictions.values():
        assert official_bootstrap_interval(targets, pred) == \
            reference.official_bootstrap_interval(targets, pred)
    losses = np.random.default_rng(1).normal(size=(40, 4, 12))
    new, old = seed_noise_ceiling(losses, 100, seed=3), reference.seed_noise_ceiling(
        losses, 100, seed=3)
    np.testing.assert_array_equal(new["bootstrap"], old["bootstrap"])
    assert (new["value"], new["ci_low"], new["ci_high"]) == (old["value"], old["ci_low"],
                                                             old["ci_high"])


def test_golden_fixture_lds_recomputed_from_its_inputs():
    results = json.loads((GOLDEN / "results.json").read_text())
    arrays = np.load(GOLDEN / "arrays.npz")
    gt = results["spec"]["groundtruth"]
    for alpha in gt["alphas"]:
        key = str(alpha)
        targets = arrays[f"retrained_losses/{key}"].astype(np.float64).mean(axis=1)
        predictions = {m: predicted_losses(arrays[f"masks/{key}"], arrays[f"scores/{m}"])
                       for m in results["methods"]}
        got = lds_many(targets, predictions, gt["n_bootstrap"], seed=gt["seed"],
                       summary=gt["lds_summary"])
        for m in predictions:
            stored = results["methods"][m]["lds"][key]
            for field in ("value", "ci_low", "ci_high", "interval_midpoint", "headline"):
                assert got[m][field] == stored[field], (m, field)
            np.testing.assert_array_equal(got[m]["bootstrap"], arrays[f"lds_bootstrap/{m}/{key}"])
            np.testing.assert_array_equal(got[m]["per_test"], arrays[f"lds_per_test/{m}/{key}"])
        ceiling = seed_noise_ceiling(arrays[f"retrained_losses/{key}"].astype(np.float64),
                                     gt["n_bootstrap"], seed=gt["seed"])
        for field in ("value", "ci_low", "ci_high"):
            assert ceiling[field] == results["groundtruth"]["ceiling"][key][field]
