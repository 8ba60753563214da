"""THE train/test split (:func:`split_indices`) and its result (:class:`SplitData`).

The split is ONE seeded permutation of the rows, shared by every consumer (training,
curvature, attribution, ground truth). Earlier public code drew a fresh permutation in
each loader, so points that one stage tested on had been trained on by another;
:func:`per_loader_indices` replays that protocol exactly, as an option (``split =
"per_loader"``) for reproducing and explaining the published numbers.
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


def per_loader_indices(n_rows: int, test_fraction: float, seed: int,
                       n_loaders: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """The official code's split (Hong et al. 2025's public code, ``data/datasets.py`` and
    ``data/loaders.py``; SCIENCE.md §7): ``(train_idx, test_idx)`` of each of its three loaders.

    One ``np.random.RandomState(seed)`` is created once; each loader's dataset builder draws a
    NEW permutation ``rng.choice(np.arange(n), n, replace=False)`` from it and keeps the first
    ``int(np.round(n · (1 − test_fraction)))`` entries as training rows and the rest as held-out
    rows. Loader 1 is ``train`` (the model is fitted on its training rows), loader 2
    ``eval_train`` (curvature and training gradients), loader 3 ``valid`` (its held-out rows are
    the test points). For digits (seed 0, 0.1): 1,617 / 180 each; 160 of loader 3's 180 test
    points and only 1,453 of loader 2's 1,617 points are in loader 1's training part.
    This replays a pitfall on purpose; :func:`split_indices` is the correct split.
    """
    n_train = int(np.round(n_rows * (1.0 - test_fraction)))
    if not 1 <= n_train < n_rows:
        raise ValueError(f"test_fraction={test_fraction} leaves {n_train} of {n_rows} rows "
                         "for training; at least one training and one test row are needed.")
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n_loaders):
        perm = rng.choice(np.arange(n_rows), n_rows, replace=False).astype(np.int64)
        out.append((perm[:n_train].copy(), perm[n_train:].copy()))
    return out


@dataclass(frozen=True, eq=False)
class SplitData:
    """A data set after the shared split (and, if asked, train-only standardization).

    ``X_*`` are float64 and, when standardized, equal ``(raw - feature_mean) /
    feature_scale`` with statistics of the TRAIN rows only. ``y_*`` are int64 codes in
    ``0..n_classes-1``; ``classes[c]`` is the original label of code ``c``. ``train_idx``
    and ``test_idx`` index the rows of the original data set. ``images`` holds the raw
    8x8 images of all rows for digits (for display) and is None otherwise.

    Three roles, so a study can take them apart:
      * ``X_fit, y_fit, fit_idx``: what the model is trained on;
      * ``X_train, y_train, train_idx``: the training points that curvature, training
        gradients, influence scores and ground-truth retraining refer to (the attributed set);
      * ``X_test, y_test, test_idx``: the test points.
    With ``split = "shared"`` (default) the first two are the same arrays (the fit fields
    default to the train fields). With ``split = "per_loader"`` (the official code, see
    :func:`per_loader_indices`) they are loader 1's and loader 2's training rows, each
    standardised by its own loader's scaler, and the test rows are loader 3's with scaler 3;
    ``scalers`` then holds ``{"fit"|"train"|"test": (mean, scale)}`` and ``feature_mean`` /
    ``feature_scale`` are the train (loader 2) scaler's.
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
    X_fit: np.ndarray | None = None
    y_fit: np.ndarray | None = None
    fit_idx: np.ndarray | None = None
    split: str = "shared"
    scalers: dict | None = None

    def __post_init__(self):
        for fit, train in (("X_fit", "X_train"), ("y_fit", "y_train"), ("fit_idx", "train_idx")):
            if getattr(self, fit) is None:
                object.__setattr__(self, fit, getattr(self, train))

    @property
    def n_fit(self) -> int:
        """Number of rows the model is trained on."""
        return len(self.y_fit)

    def overlap(self) -> dict:
        """How many attributed training points and test points are among the fitted rows
        (0 test points and all training points for the shared split)."""
        fitted = np.isin(self.train_idx, self.fit_idx)
        return {"split": self.split, "n_fit": self.n_fit, "n_train": self.n_train,
                "n_test": self.n_test,
                "n_train_in_fit": int(fitted.sum()),
                "n_test_in_fit": int(np.isin(self.test_idx, self.fit_idx).sum())}

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return len(self.y_test)
