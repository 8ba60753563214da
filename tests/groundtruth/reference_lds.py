"""The LDS bootstrap as curvscope computed it before issue 14 (commit 319a289), kept verbatim as
the reference the vectorised ``curvscope.groundtruth.lds`` is tested against (and timed
against in benchmarks/lds_diagnostics.py): per resample chunk a B × M × n gather of the counts
into each column's order, a cumulative sum and a gather back, for the targets and for every
method, and one ``np.bincount`` per resample."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import rankdata

LdsSummary = Literal["point", "interval_midpoint"]


def predicted_losses(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """g (M × n_test) = masks (M × N) · scoresᵀ (N × n_test)."""
    return masks.astype(scores.dtype) @ scores.T


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of a[:, x] and b[:, x] for every column x (ranks along axis −2,
    ties averaged); works on stacked leading dimensions. NaN for a constant column."""
    ra = rankdata(a, axis=-2)
    rb = rankdata(b, axis=-2)
    ra -= ra.mean(axis=-2, keepdims=True)
    rb -= rb.mean(axis=-2, keepdims=True)
    denominator = np.sqrt((ra**2).sum(axis=-2) * (rb**2).sum(axis=-2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=-2) / denominator


def lds(targets: np.ndarray, predictions: np.ndarray, n_bootstrap: int = 1000,
        seed: int = 0, confidence: float = 0.95) -> dict:
    """LDS of ``predictions`` against ``targets`` (both M × n_test).

    Returns ``value`` (mean over test points of the per-point Spearman), ``ci_low``/``ci_high``
    (percentile bootstrap over the M subsets), ``per_test`` (the per-point values), the
    number of test points left out because a column was constant, and ``bootstrap`` (the
    resampled LDS values; the same ``seed`` draws the same resamples, so two methods' arrays
    are paired and their difference has its own interval).
    """
    return lds_many(targets, {"": predictions}, n_bootstrap, seed, confidence)[""]


def lds_many(targets: np.ndarray, predictions: dict[str, np.ndarray], n_bootstrap: int = 1000,
             seed: int = 0, confidence: float = 0.95, summary: LdsSummary = "point",
             official: bool = False) -> dict[str, dict]:
    """``lds`` for several methods against the same targets, on the same bootstrap resamples
    (the targets' resampled ranks are computed once and shared).

    Every entry also carries ``interval_midpoint`` = (ci_low + ci_high)/2 and ``headline``, the
    number a study reports: ``value`` for ``summary = "point"``, ``interval_midpoint`` for
    ``"interval_midpoint"`` (the official code's "mean", a pitfall: SCIENCE.md §7). With
    ``official`` each entry gets ``official_interval`` too, the interval exactly as the
    official code computes it (:func:`official_bootstrap_interval`)."""
    n_subsets = targets.shape[0]
    out = {}
    for name, pred in predictions.items():
        per_test = spearman_columns(targets, pred)
        valid = np.isfinite(per_test)
        out[name] = {"value": float(per_test[valid].mean()) if valid.any() else float("nan"),
                     "per_test": per_test, "n_excluded": int((~valid).sum()),
                     "bootstrap": np.empty(n_bootstrap)}
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**22 // max(targets.size, 1))
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        draws = rng.integers(0, n_subsets, size=(stop - start, n_subsets))
        counts = np.stack([np.bincount(row, minlength=n_subsets) for row in draws])
        weights = counts[:, :, None].astype(float)
        target_ranks = _centred_ranks(targets, counts)
        target_norm = (weights * target_ranks**2).sum(1)
        for name, pred in predictions.items():
            ranks = _centred_ranks(pred, counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                rho = (weights * target_ranks * ranks).sum(1) / np.sqrt(
                    target_norm * (weights * ranks**2).sum(1))
            out[name]["bootstrap"][start:stop] = _mean_over_valid(rho)
    tail = (1 - confidence) / 2
    for name, entry in out.items():
        low, high = np.nanquantile(entry["bootstrap"], [tail, 1 - tail])
        entry["ci_low"], entry["ci_high"] = float(low), float(high)
        entry["interval_midpoint"] = (entry["ci_low"] + entry["ci_high"]) / 2
        entry["headline"] = headline(entry, summary)
        if official:
            entry["official_interval"] = official_bootstrap_interval(targets, predictions[name])
            if summary == "interval_midpoint":
                # the number the official code reports: the midpoint of ITS interval (BCa)
                entry["headline"] = entry["official_interval"]["midpoint"]
    return out


def headline(entry: dict, summary: LdsSummary) -> float:
    """The LDS a study reports: the point estimate, or the midpoint of its interval."""
    if summary == "point":
        return entry["value"]
    if summary == "interval_midpoint":
        return entry["interval_midpoint"]
    raise ValueError(f"unknown lds_summary {summary!r}; allowed: point, interval_midpoint")


#: The official code's bootstrap: ``scipy.stats.bootstrap(..., n_resamples=num_masks,
#: batch=2·num_masks, random_state=42)``, method left at scipy's default "BCa".
OFFICIAL_RANDOM_STATE = 42


def official_bootstrap_interval(targets: np.ndarray, predictions: np.ndarray,
                                random_state: int = OFFICIAL_RANDOM_STATE) -> dict:
    """The LDS interval exactly as the official code computes it (``influence/lds.py``,
    ``LDSEvaluator._compute_lds``): ``scipy.stats.bootstrap`` over the M subset indices with
    ``n_resamples = M``, ``batch = 2M``, ``random_state = 42`` and scipy's default method,
    BCa (bias-corrected and accelerated: not the percentile interval), of the statistic
    "nan-mean over test points of the Spearman correlation on the resampled subsets"; its
    reported "mean" is the interval's midpoint. The statistic is evaluated vectorised (a
    resample holding subset j c_j times ranks like scipy's ``spearmanr`` with ties averaged),
    so the numbers equal the official loop's, resample for resample."""
    from scipy.stats import bootstrap

    n_subsets = targets.shape[0]

    def statistic(indices, axis=-1):
        indices = np.moveaxis(np.asarray(indices), axis, -1)
        flat = indices.reshape(-1, indices.shape[-1])
        counts = np.stack([np.bincount(row, minlength=n_subsets) for row in flat])
        rho = _weighted_spearman_any(targets, predictions, counts)
        return _mean_over_valid(rho).reshape(indices.shape[:-1])

    result = bootstrap((np.arange(n_subsets),), statistic, n_resamples=n_subsets,
                       batch=2 * n_subsets, vectorized=True, random_state=random_state)
    low, high = (float(v) for v in result.confidence_interval)
    return {"method": "BCa", "n_resamples": n_subsets, "random_state": random_state,
            "ci_low": low, "ci_high": high, "midpoint": (low + high) / 2}


def _weighted_spearman_any(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``_weighted_spearman`` for resamples of any total size (leave-one-out jackknife
    samples hold M − 1 subsets): ranks are centred on their weighted mean (K + 1)/2."""
    total = counts.sum(1, keepdims=True)[:, :, None].astype(float)
    ra = _resample_ranks(a, counts) - (total + 1) / 2
    rb = _resample_ranks(b, counts) - (total + 1) / 2
    w = counts[:, :, None].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * ra * rb).sum(1) / np.sqrt((w * ra**2).sum(1) * (w * rb**2).sum(1))


def _mean_over_valid(rho: np.ndarray) -> np.ndarray:
    """Mean over test points of the finite correlations; NaN for a resample with none (all
    columns constant), without numpy's empty-slice warning."""
    valid = np.isfinite(rho)
    counts = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, rho, 0.0).sum(axis=-1) / np.where(counts > 0, counts, np.nan)


def _weighted_spearman(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spearman per column of bootstrap resamples given by multiplicities ``counts`` (B × M).

    A resample holding row j c_j times gives its copies the average rank
    (#copies of smaller rows) + (c_j + 1)/2, so ranks come from one sort of the original
    column and a cumulative sum of counts; the correlation is the c-weighted Pearson of those
    ranks. Equal to ranking each resample with ties averaged (for columns without ties).
    """
    ra, rb = _centred_ranks(a, counts), _centred_ranks(b, counts)
    w = counts[:, :, None].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * ra * rb).sum(1) / np.sqrt((w * ra**2).sum(1) * (w * rb**2).sum(1))


def _centred_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resample ranks minus their mean (M + 1)/2."""
    return _resample_ranks(values, counts) - (counts.shape[1] + 1) / 2


def _resample_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    order = np.argsort(values, axis=0, kind="stable")  # M × n_test
    c_sorted = counts[:, order].astype(float)  # B × M × n_test
    r_sorted = np.cumsum(c_sorted, axis=1) - c_sorted + (c_sorted + 1) / 2
    inverse = np.argsort(order, axis=0)
    return np.take_along_axis(r_sorted, inverse[None], axis=1)


def seed_noise_ceiling(losses: np.ndarray, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """The LDS that one half of the seeds' mean loss reaches against the other half.

    ``losses`` is (M × R × n_test) with R ≥ 2 seeds. It bounds what any attribution method can
    reach given the retraining noise (at R/2 seeds per side).
    """
    n_seeds = losses.shape[1]
    if n_seeds < 2:
        raise ValueError("the seed-noise ceiling needs at least 2 seeds per subset")
    half = n_seeds // 2
    first = losses[:, :half].mean(axis=1)
    second = losses[:, half : 2 * half].mean(axis=1)
    result = lds(second, first, n_bootstrap, seed)
    result["seeds_per_half"] = half
    return result
