"""LDS summaries: the point estimate, the interval midpoint (the official code's "mean") and the
official code's own bootstrap interval, replayed exactly (SCIENCE.md §7)."""

import numpy as np
import pytest
from scipy.stats import bootstrap, spearmanr

from curvscope.groundtruth import lds_many
from curvscope.groundtruth.lds import headline, official_bootstrap_interval


def _official_compute_lds(ground_truth, predictions, random_state=42):
    """hessian_influence.influence.lds.LDSEvaluator._compute_lds, as released (numpy in)."""
    num_masks, num_valid = ground_truth.shape

    def lds_statistic(mask_indices):
        correlations = []
        for i in range(num_valid):
            corr, _ = spearmanr(ground_truth[list(mask_indices), i],
                                predictions[list(mask_indices), i])
            correlations.append(corr)
        return float(np.nanmean(correlations))

    data = (tuple(range(num_masks)),)
    result = bootstrap(data, lds_statistic, n_resamples=num_masks, batch=num_masks * 2,
                       random_state=random_state)
    low, high = result.confidence_interval
    return (low + high) / 2, low, high


@pytest.mark.slow
def test_official_interval_equals_the_official_code():
    rng = np.random.default_rng(5)
    targets = rng.normal(size=(30, 6))
    predictions = 0.6 * targets + rng.normal(size=(30, 6))
    mid, low, high = _official_compute_lds(targets, predictions)
    ours = official_bootstrap_interval(targets, predictions)
    assert ours["method"] == "BCa" and ours["n_resamples"] == 30
    assert ours["ci_low"] == pytest.approx(low, abs=1e-12)
    assert ours["ci_high"] == pytest.approx(high, abs=1e-12)
    assert ours["midpoint"] == pytest.approx(mid, abs=1e-12)


def test_every_entry_carries_point_interval_midpoint_and_headline():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(40, 12))
    preds = {"a": targets + rng.normal(size=(40, 12)), "b": rng.normal(size=(40, 12))}
    point = lds_many(targets, preds, n_bootstrap=100, seed=1)
    midpoint = lds_many(targets, preds, n_bootstrap=100, seed=1, summary="interval_midpoint",
                        official=True)
    for name in preds:
        p, m = point[name], midpoint[name]
        assert p["value"] == m["value"] and p["ci_low"] == m["ci_low"]
        assert p["interval_midpoint"] == (p["ci_low"] + p["ci_high"]) / 2
        assert p["headline"] == p["value"]
        # the official code's number: the midpoint of its own (BCa) interval
        assert m["headline"] == m["official_interval"]["midpoint"] != m["value"]
        assert m["interval_midpoint"] == (m["ci_low"] + m["ci_high"]) / 2
        assert "official_interval" not in p
        assert m["official_interval"]["ci_low"] < m["value"] < m["official_interval"]["ci_high"]
    with pytest.raises(ValueError, match="point, interval_midpoint"):
        headline(point["a"], "median")
