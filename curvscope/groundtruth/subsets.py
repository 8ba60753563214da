"""Random training subsets for leave-some-out retraining (SCIENCE.md §4).

For a fraction α, subset S_m holds ⌊αN⌋ distinct training points drawn uniformly without
replacement. Subsets are reproducible from (seed, α, m): each comes from its own generator
``np.random.default_rng([seed, round(α·10⁶), m])``, so any slice of them can be drawn alone.
"""

from __future__ import annotations

import numpy as np


def subset_size(n_train: int, alpha: float) -> int:
    size = int(np.floor(alpha * n_train))
    if not 1 <= size <= n_train:
        raise ValueError(f"α = {alpha} leaves {size} of {n_train} training points; need ≥ 1")
    return size


def draw_subset(n_train: int, alpha: float, index: int, seed: int) -> np.ndarray:
    """Sorted indices of subset ``index`` for fraction ``alpha``."""
    rng = np.random.default_rng([seed, round(alpha * 1e6), index])
    return np.sort(rng.choice(n_train, size=subset_size(n_train, alpha), replace=False))


def draw_subsets(n_train: int, alpha: float, n_subsets: int, seed: int) -> np.ndarray:
    """Boolean masks (n_subsets × n_train) of the subsets for ``alpha``."""
    masks = np.zeros((n_subsets, n_train), dtype=bool)
    for m in range(n_subsets):
        masks[m, draw_subset(n_train, alpha, m, seed)] = True
    return masks
