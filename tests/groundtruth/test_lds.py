"""LDS, its bootstrap interval, the seed-noise ceiling and the subsets."""

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from curvscope.groundtruth import (
    draw_subset,
    draw_subsets,
    lds,
    predicted_losses,
    seed_noise_ceiling,
    spearman_columns,
    subset_size,
)
from curvscope.groundtruth.lds import _weighted_spearman


def test_lds_on_a_hand_computed_example():
    # test point 0: predictions in the same order as targets → ρ = 1
    # test point 1: ranks (1,2,3,4) vs (1,3,2,4) → ρ = 1 − 6·2/(4·15) = 0.8
    targets = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    predictions = np.array([[0.1, 1.0], [0.2, 3.0], [0.3, 2.0], [0.4, 4.0]])
    result = lds(targets, predictions, n_bootstrap=200)
    np.testing.assert_allclose(result["per_test"], [1.0, 0.8])
    assert result["value"] == pytest.approx(0.9)
    flipped = lds(targets, -predictions, n_bootstrap=200)
    assert flipped["value"] == pytest.approx(-0.9)


def test_predicted_losses_sum_scores_over_each_subset():
    masks = np.array([[True, False, True], [False, True, True]])
    scores = np.array([[1.0, 2.0, 4.0]])  # one test point
    np.testing.assert_allclose(predicted_losses(masks, scores), [[5.0], [6.0]])


def test_interval_contains_point_estimate_and_sign_flip_is_negative():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(60, 30))
    predictions = targets + rng.normal(size=(60, 30))
    result = lds(targets, predictions, n_bootstrap=500, seed=1)
    assert result["ci_low"] <= result["value"] <= result["ci_high"]
    assert 0.5 < result["value"] < 0.9
    assert lds(targets, -predictions, n_bootstrap=100)["value"] == pytest.approx(
        -result["value"])
    per_point = [spearmanr(targets[:, x], predictions[:, x]).statistic for x in range(30)]
    assert result["value"] == pytest.approx(np.mean(per_point))


def test_bootstrap_ranks_equal_ranking_each_resample_with_ties():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(25, 7)), rng.normal(size=(25, 7))
    rows = rng.integers(0, 25, size=(9, 25))
    counts = np.stack([np.bincount(r, minlength=25) for r in rows])
    expected = spearman_columns(a[rows], b[rows])
    np.testing.assert_allclose(_weighted_spearman(a, b, counts), expected, atol=1e-12)
    # and spearman_columns itself averages ties like scipy
    tied = np.array([[1.0], [1.0], [2.0]])
    np.testing.assert_allclose(rankdata(tied, axis=0), [[1.5], [1.5], [3.0]])


def test_seed_noise_ceiling():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(40, 1, 12))
    noiseless = np.repeat(signal, 4, axis=1)
    assert seed_noise_ceiling(noiseless, n_bootstrap=50)["value"] == pytest.approx(1.0)
    noisy = signal + 3 * rng.normal(size=(40, 4, 12))
    ceiling = seed_noise_ceiling(noisy, n_bootstrap=50)
    assert ceiling["seeds_per_half"] == 2 and ceiling["value"] < 0.5
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_noise_ceiling(noisy[:, :1])


def test_subsets_reproducible_and_sized():
    assert subset_size(1617, 0.5) == 808
    masks = draw_subsets(1617, 0.5, 5, seed=7)
    assert masks.shape == (5, 1617) and (masks.sum(1) == 808).all()
    np.testing.assert_array_equal(draw_subsets(1617, 0.5, 5, seed=7), masks)
    np.testing.assert_array_equal(np.flatnonzero(masks[3]), draw_subset(1617, 0.5, 3, seed=7))
    assert not (masks[0] == masks[1]).all()
    assert not (draw_subsets(1617, 0.5, 5, seed=8) == masks).all()
    assert not (draw_subsets(1617, 0.3, 1, seed=7)[0] == masks[0]).all()


def test_lds_many_shares_resamples_and_equals_lds():
    from curvscope.groundtruth import lds_many

    rng = np.random.default_rng(5)
    targets = rng.normal(size=(30, 8))
    predictions = {"a": targets + rng.normal(size=(30, 8)), "b": rng.normal(size=(30, 8))}
    many = lds_many(targets, predictions, n_bootstrap=80, seed=3)
    for name, pred in predictions.items():
        single = lds(targets, pred, n_bootstrap=80, seed=3)
        assert many[name]["value"] == pytest.approx(single["value"])
        np.testing.assert_allclose(many[name]["bootstrap"], single["bootstrap"], atol=1e-12)
        assert many[name]["ci_low"] == pytest.approx(single["ci_low"])
