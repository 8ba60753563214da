"""The linear datamodeling score (LDS; Park et al., 2023, TRAK) with a bootstrap interval.

For subsets S_1…S_M, retrained test losses y_m(x) (mean over seeds) and predictions
g_m(x) = Σ_{j∈S_m} τ(x, z_j), LDS = mean over test points x of Spearman_m(y_m(x), g_m(x)).
With Koh & Liang's sign (τ > 0: the point raises the test loss) the LDS is positive when
everything is right; a negative value means a sign error somewhere.
The point estimate is the plain LDS on all subsets (not the midpoint of an interval, a pitfall
of earlier code); the 95 % interval is the percentile bootstrap over subsets. To reproduce the
official code (SCIENCE.md §7; Hong et al. 2025, arXiv 2509.23437) the midpoint of the interval
is reported beside it (``interval_midpoint``, the ``headline`` under ``lds_summary =
"interval_midpoint"``), and :func:`official_bootstrap_interval` replays that code's own
interval (scipy's BCa bootstrap, M resamples, random_state 42).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

LdsSummary = Literal["point", "interval_midpoint"]


def predicted_losses(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """g (M × n_test) = masks (M × N) · scoresᵀ (N × n_test)."""
    return masks.astype(scores.dtype) @ scores.T


def average_ranks(a: np.ndarray, axis: int = -2) -> np.ndarray:
    """Ranks 1..n along ``axis``, ties given the mean of the ranks they span, and every rank
    of a slice holding a NaN NaN: ``scipy.stats.rankdata(a, axis=axis)`` (method "average",
    nan_policy "propagate"), equal to it exactly (ranks are multiples of ½; tested), without
    scipy.stats' import (~0.7 s). A value's rank is (first + last)/2 + 1 over the positions
    its tie group occupies in the stable sort."""
    moved = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    n = moved.shape[-1]
    order = np.argsort(moved, axis=-1, kind="stable")
    ordered = np.take_along_axis(moved, order, axis=-1)
    new_group = np.ones(ordered.shape, dtype=bool)
    new_group[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    positions = np.broadcast_to(np.arange(n), ordered.shape)
    first = np.maximum.accumulate(np.where(new_group, positions, 0), axis=-1)
    ends = np.ones(ordered.shape, dtype=bool)  # the last position of each tie group
    ends[..., :-1] = new_group[..., 1:]
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, positions, n), -1), -1), -1)
    ranks = np.empty(ordered.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    ranks[np.isnan(moved).any(axis=-1)] = np.nan
    return np.moveaxis(ranks, -1, axis)


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of a[:, x] and b[:, x] for every column x (ranks along axis −2,
    ties averaged); works on stacked leading dimensions. NaN for a constant column."""
    ra = average_ranks(a, axis=-2)
    rb = average_ranks(b, axis=-2)
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
    official code computes it (:func:`official_bootstrap_interval`).

    The resamples are drawn in chunks of ``2**22 // targets.size`` (one
    ``rng.integers(0, M, (chunk, M))`` call each, as before issue 14, so a seed draws the same
    resamples) and every method's resampled Spearman is evaluated for a whole chunk at once
    (``_ResampledSpearman``); the values equal ranking each resample, bit for bit."""
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
    orders = {name: _ColumnOrder(pred) for name, pred in predictions.items()}
    target_order = _ColumnOrder(targets)
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        draws = rng.integers(0, n_subsets, size=(stop - start, n_subsets))
        resampled = _ResampledSpearman(target_order, _counts(draws, n_subsets))
        for name, order in orders.items():
            out[name]["bootstrap"][start:stop] = _mean_over_valid(resampled.rho(order))
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
    target_order, prediction_order = _ColumnOrder(targets), _ColumnOrder(predictions)

    def statistic(indices, axis=-1):
        indices = np.moveaxis(np.asarray(indices), axis, -1)
        flat = indices.reshape(-1, indices.shape[-1])
        rho = _ResampledSpearman(target_order, _counts(flat, n_subsets)).rho(prediction_order)
        return _mean_over_valid(rho).reshape(indices.shape[:-1])

    result = bootstrap((np.arange(n_subsets),), statistic, n_resamples=n_subsets,
                       batch=2 * n_subsets, vectorized=True, random_state=random_state)
    low, high = (float(v) for v in result.confidence_interval)
    return {"method": "BCa", "n_resamples": n_subsets, "random_state": random_state,
            "ci_low": low, "ci_high": high, "midpoint": (low + high) / 2}


def _mean_over_valid(rho: np.ndarray) -> np.ndarray:
    """Mean over test points of the finite correlations; NaN for a resample with none (all
    columns constant), without numpy's empty-slice warning."""
    valid = np.isfinite(rho)
    counts = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, rho, 0.0).sum(axis=-1) / np.where(counts > 0, counts, np.nan)


# ----- the resampled Spearman correlation, vectorised (issue 14) ---------------------------
#
# A resample of the M subsets is given by its multiplicities c (B × M, Σ_m c_m = K; K = M for
# the bootstrap, M − 1 for a jackknife sample). Within one column, sort the M original rows
# once (stably: ties in the original values are broken by row index, exactly as before); a
# resample holding row m c_m times gives its copies the average rank
#     r_m = A_m + (c_m + 1)/2,   A_m = Σ_{k before m} c_k   (the copies of smaller rows),
# and the Spearman correlation of the resample is the c-weighted Pearson correlation of those
# ranks centred on their mean (K + 1)/2. Two facts make it cheap:
#   * the denominator is the same for every column and every method: with every row its own
#     tie group, Σ_m c_m (r_m − (K+1)/2)² = (K³ − K − Σ_m (c_m³ − c_m)) / 12 =: D, so
#     ρ = Σ_m c_m ra_m rb_m / D  (written N / √(D·D), the expression evaluated before);
#   * A is a product: A[b, x, m] = Σ_k c[b, k] · [k before m in column x], one float32 matmul
#     of the counts with the 0/1 precedence matrices of all columns (exact: integers < 2²⁴).
# Every quantity is an exact multiple of 1/4 far below 2⁵³, so each sum is exact in float64
# whatever the order of summation, and ρ is bit-identical to ranking every resample.

#: Above this many subsets (or this size of the precedence matrices) the prefix counts A come
#: from a gather and a cumulative sum instead of the matmul, whose cost grows as M².
MATMUL_MAX_SUBSETS = 256
MATMUL_MAX_BYTES = 64 * 2**20


def _counts(draws: np.ndarray, n_subsets: int) -> np.ndarray:
    """Multiplicities (B × M, int64) of each row of resampled indices, one ``bincount``."""
    rows = draws.shape[0]
    flat = (np.arange(rows)[:, None] * n_subsets + draws).ravel()
    return np.bincount(flat, minlength=rows * n_subsets).reshape(rows, n_subsets)


class _ColumnOrder:
    """The stable ascending order of every column of an M × n matrix, computed once."""

    def __init__(self, values: np.ndarray):
        self.order = np.ascontiguousarray(np.argsort(values, axis=0, kind="stable").T)  # n × M
        n, m = self.order.shape
        self.position = np.empty_like(self.order)  # position[x, m]: where row m sorts
        np.put_along_axis(self.position, self.order, np.arange(m)[None, :], axis=1)
        self._precedence: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.order.shape

    def use_matmul(self) -> bool:
        n, m = self.shape
        return m <= MATMUL_MAX_SUBSETS and 4 * n * m * m <= MATMUL_MAX_BYTES

    def precedence(self) -> np.ndarray:
        """(n·M) × M float32: row (x, m) has a 1 in column k when row k sorts before row m."""
        if self._precedence is None:
            n, m = self.shape
            p = self.position
            self._precedence = (p[:, None, :] < p[:, :, None]).astype(np.float32).reshape(
                n * m, m)
        return self._precedence

    def prefix_counts(self, counts: np.ndarray) -> np.ndarray:
        """A (B × n × M; float32 or int64, exact integers): the copies, in each resample, of
        the rows that sort before row m in column x."""
        n, m = self.shape
        if self.use_matmul():
            return (counts.astype(np.float32) @ self.precedence().T).reshape(-1, n, m)
        in_order = counts[:, self.order]  # B × n × M, column x's rows in sorted order
        exclusive = np.cumsum(in_order, axis=2) - in_order
        return np.take_along_axis(exclusive, self.position[None], axis=2)


class _ResampledSpearman:
    """Spearman per column for B resamples given by ``counts`` (B × M) against fixed targets:
    the targets' part (c·ra, its constant-rank term and D) is computed once, so each method
    costs one prefix-count product and one batched dot product."""

    def __init__(self, targets: _ColumnOrder, counts: np.ndarray):
        c = counts.astype(np.float64)
        total = c.sum(axis=1)
        self.counts = counts
        self.centred_half = (c + 1) / 2 - ((total + 1) / 2)[:, None]  # (c_m + 1)/2 − (K+1)/2
        ranks = targets.prefix_counts(counts) + self.centred_half[:, None, :]
        self.weighted = c[:, None, :] * ranks  # c · ra, B × n × M
        self.constant_term = np.einsum("bxm,bm->bx", self.weighted, self.centred_half)
        D = (total**3 - total - (c**3 - c).sum(axis=1)) / 12
        self.denominator = np.sqrt(D * D)[:, None]

    def rho(self, predictions: _ColumnOrder) -> np.ndarray:
        """B × n correlations (NaN where a resample holds a single subset)."""
        numerator = np.einsum("bxm,bxm->bx", self.weighted, predictions.prefix_counts(
            self.counts), dtype=np.float64, casting="safe") + self.constant_term
        with np.errstate(invalid="ignore", divide="ignore"):
            return numerator / self.denominator


def _weighted_spearman(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spearman per column of bootstrap resamples given by multiplicities ``counts`` (B × M):
    equal to ranking each resample with ties averaged (for columns without ties; tied
    original values are ordered by row)."""
    return _ResampledSpearman(_ColumnOrder(a), counts).rho(_ColumnOrder(b))


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
