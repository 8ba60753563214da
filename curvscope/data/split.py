"""THE train/test split (:func:`split_indices`) and its result (:class:`SplitData`).

The split is ONE seeded permutation of the rows, shared by every consumer (training,
curvature, attribution, ground truth). Earlier public code drew a fresh permutation in
each loader, so points that one stage tested on had been trained on by another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def n_test_rows(n_rows: int, test_fraction: float) -> int:
    """Number of test rows: ``round(test_fraction * n_rows)``, at least 1."""
    return max(1, round(test_fraction * n_rows))


def split_indices(n_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_idx, test_idx)``, both np.int64, from ONE seeded permutation.

    ``perm = np.random.default_rng(seed).permutation(n_rows)``; the first
    ``n_test_rows(n_rows, test_fraction)`` entries are the test rows, the rest the train
    rows. Every consumer must take its split from here (or from :func:`load_data`) so that
    no test point ever leaks into training. For sklearn digits (1797 rows) and 0.1 this
    gives 1617 train and 180 test rows.
    """
    if n_rows < 2:
        raise ValueError(f"Cannot split {n_rows} row(s); at least 2 rows are needed.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}.")
    n_test = n_test_rows(n_rows, test_fraction)
    if n_test >= n_rows:
        raise ValueError(
            f"test_fraction={test_fraction} puts all {n_rows} rows in the test set; lower it."
        )
    perm = np.random.default_rng(seed).permutation(n_rows).astype(np.int64)
    return perm[n_test:].copy(), perm[:n_test].copy()


@dataclass(frozen=True, eq=False)
class SplitData:
    """A data set after the shared split (and, if asked, train-only standardization).

    ``X_*`` are float64 and, when standardized, equal ``(raw - feature_mean) /
    feature_scale`` with statistics of the TRAIN rows only. ``y_*`` are int64 codes in
    ``0..n_classes-1``; ``classes[c]`` is the original label of code ``c``. ``train_idx``
    and ``test_idx`` index the rows of the original data set. ``images`` holds the raw
    8x8 images of all rows for digits (for display) and is None otherwise.
    """

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    n_features: int
    n_classes: int
    classes: list
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    images: np.ndarray | None = None

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return len(self.y_test)
