"""Load a data set, apply THE shared split, and standardize with train-only statistics."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from .files import read_file
from .spec import DataSpec, DataValidationError
from .split import SplitData, n_test_rows, per_loader_indices, split_indices

#: The scikit-learn loader of each built-in set (imported when used: scikit-learn's import
#: costs ~0.8 s, a tenth of the quick preset).
_SKLEARN_LOADERS = {
    "digits": "load_digits",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
}


def _sklearn_set(name: str):
    from sklearn import datasets

    return getattr(datasets, _SKLEARN_LOADERS[name])()


def sklearn_data_file(file_name: str) -> Path | None:
    """Where scikit-learn keeps one of its bundled data files, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / file_name
        if path.is_file():
            return path
    return None


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X 1797 × 64, y, images 1797 × 8 × 8) of scikit-learn's digits, read from the very
    file ``sklearn.datasets.load_digits`` reads (``digits.csv.gz``: 64 pixel counts 0..16 and
    the label per row, parsed by the same ``np.loadtxt``), so the arrays are identical
    (tested) without scikit-learn's import; its loader where the file is not found."""
    path = sklearn_data_file("digits.csv.gz")
    if path is None:
        bunch = _sklearn_set("digits")
        return bunch.data, bunch.target, np.asarray(bunch.images, dtype=np.float64)
    with gzip.open(path, mode="rt", encoding="utf-8") as rows:
        data = np.loadtxt(rows, delimiter=",")
    X = data[:, :-1]
    return X, data[:, -1].astype(int, copy=False), X.reshape(-1, 8, 8).astype(np.float64)


class Standardizer:
    """x ↦ (x − μ) / σ with μ, σ² the mean and (biased) variance of the fitting rows, and
    σ = 1 for a feature indistinguishable from a constant (σ² ≤ n·ε·σ² + (n·μ·ε)², the
    error bound of the corrected two-pass variance of Chan, Golub & LeVeque). It is
    scikit-learn's ``StandardScaler`` (1.4–1.9) on dense float64 data without missing values,
    operation for operation: σ² = (Σ(x − T)² − (Σ(x − T))²/n)/n with T = Σx/n, so the
    standardised data are bit-identical to it (tested), without its import."""

    def __init__(self, X: np.ndarray):
        X = np.asarray(X, dtype=np.float64)
        n = float(X.shape[0])
        self.mean_ = np.sum(X, axis=0) / n
        centred = X - self.mean_
        correction = np.sum(centred, axis=0)
        centred **= 2
        unnormalised = np.sum(centred, axis=0)
        unnormalised -= correction**2 / n
        self.var_ = unnormalised / n
        eps = np.finfo(np.float64).eps
        constant = self.var_ <= n * eps * self.var_ + (n * self.mean_ * eps) ** 2
        self.scale_ = np.sqrt(self.var_)
        self.scale_[constant] = 1.0

    def transform(self, X: np.ndarray) -> np.ndarray:
        out = np.array(X, dtype=np.float64, copy=True)
        out -= self.mean_
        out /= self.scale_
        return out


def gaussian_mixture(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic balanced Gaussian mixture, deterministic for ``spec.synthetic_seed``.

    Class means are drawn ``N(0, s^2 I)`` with ``s = class_separation / sqrt(2 *
    n_features)``, so the expected squared distance between two means is
    ``class_separation^2`` whatever the dimension; points are ``N(mean_c, I)``. Row ``i``
    has class ``i % n_classes`` (class sizes differ by at most one); at least two points
    per class are required.
    """
    rng = np.random.default_rng(spec.synthetic_seed)
    d, c, n = spec.n_features, spec.n_classes, spec.n_samples
    if n < 2 * c:
        raise DataValidationError(
            f"gaussian_mixture: n_samples={n} is too few for n_classes={c}; at least two "
            f"points per class ({2 * c}) are needed."
        )
    means = rng.normal(0.0, spec.class_separation / np.sqrt(2 * d), size=(c, d))
    y = np.arange(n, dtype=np.int64) % c
    X = means[y] + rng.standard_normal((n, d))
    return X, y


def load_data(spec: DataSpec) -> SplitData:
    """Load ``spec``'s data set and split it with THE shared seeded permutation.

    The split comes from :func:`split_indices` (one permutation seeded by
    ``spec.split_seed``, shared by every consumer, so no test row can leak into training).
    When ``spec.standardize``, a :class:`Standardizer` (StandardScaler's arithmetic) is fitted
    on the TRAIN rows only and applied to both sets. Labels are re-coded to ``0..C-1`` by
    sorted unique value.
    Nothing is downloaded: the four sklearn sets ship inside scikit-learn.

    ``spec.split = "per_loader"`` replays the official code's three loaders instead (see
    :func:`curvscope.data.split.per_loader_indices` and :class:`SplitData`'s three roles).

    Raises :class:`DataValidationError` for a bad file, fewer than 2 classes, or too few
    rows to give at least one test row and one training row per class.
    """
    images = None
    if spec.name == "file":
        X, raw_y = read_file(spec.path, spec.label_column)
        name = Path(spec.path).name
    elif spec.name == "gaussian_mixture":
        X, raw_y = gaussian_mixture(spec)
        name = spec.name
    else:
        name = spec.name
        if spec.name == "digits":
            X, raw_y, images = load_digits_arrays()
        else:
            bunch = _sklearn_set(spec.name)
            X, raw_y = bunch.data, bunch.target
    X = np.asarray(X, dtype=np.float64)
    classes, y = np.unique(raw_y, return_inverse=True)
    y = y.astype(np.int64).reshape(-1)
    n_rows, n_classes = len(y), len(classes)
    if n_classes < 2:
        raise DataValidationError(
            f"{name}: every label is {classes[0]}; a classification data set needs at least "
            "2 distinct labels."
        )
    n_test = n_test_rows(n_rows, spec.test_fraction)
    if n_rows - n_test < n_classes:
        raise DataValidationError(
            f"{name}: {n_rows} rows are too few: with test_fraction={spec.test_fraction}, "
            f"{n_test} go to the test set and {n_rows - n_test} remain for training, but at "
            f"least one training row per class ({n_classes} classes) is needed. Add rows or "
            "lower test_fraction."
        )
    if spec.split == "per_loader":
        return _per_loader(spec, name, X, y, classes, images)
    train_idx, test_idx = split_indices(n_rows, spec.test_fraction, spec.split_seed)
    X_train, X_test = X[train_idx], X[test_idx]
    if spec.standardize:
        scaler = Standardizer(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        mean, scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    return SplitData(
        name=name,
        X_train=np.ascontiguousarray(X_train, dtype=np.float64),
        X_test=np.ascontiguousarray(X_test, dtype=np.float64),
        y_train=y[train_idx],
        y_test=y[test_idx],
        train_idx=train_idx,
        test_idx=test_idx,
        n_features=int(X.shape[1]),
        n_classes=n_classes,
        classes=classes.tolist(),
        feature_mean=mean,
        feature_scale=scale,
        images=images,
    )


def _scaled(spec: DataSpec, X: np.ndarray, fit_rows: np.ndarray, rows: np.ndarray):
    """X[rows] standardised with a scaler fitted on X[fit_rows] (identity if not asked)."""
    if not spec.standardize:
        d = X.shape[1]
        return np.ascontiguousarray(X[rows]), (np.zeros(d), np.ones(d))
    scaler = Standardizer(X[fit_rows])
    return (np.ascontiguousarray(scaler.transform(X[rows]), dtype=np.float64),
            (scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)))


def _per_loader(spec: DataSpec, name, X, y, classes, images) -> SplitData:
    """The official code's three loaders (``split.per_loader_indices``), each standardised
    with a StandardScaler (``Standardizer``) fitted on its own training rows, as its digits
    builder does: fit = loader 1's training rows (scaler 1), train = loader 2's (scaler 2),
    test = loader 3's held-out rows (scaler 3). Features stay float64 (the official code casts
    the raw pixels, integers 0..16, to float32 first, which changes no value)."""
    try:
        (fit_idx, _), (train_idx, _), (test_train_idx, test_idx) = per_loader_indices(
            len(y), spec.test_fraction, spec.split_seed)
    except ValueError as e:
        raise DataValidationError(f"{name}: split='per_loader': {e}") from e
    X_fit, fit_scaler = _scaled(spec, X, fit_idx, fit_idx)
    X_train, train_scaler = _scaled(spec, X, train_idx, train_idx)
    X_test, test_scaler = _scaled(spec, X, test_train_idx, test_idx)
    return SplitData(
        name=name, X_train=X_train, X_test=X_test, y_train=y[train_idx], y_test=y[test_idx],
        train_idx=train_idx, test_idx=test_idx, n_features=int(X.shape[1]),
        n_classes=len(classes), classes=classes.tolist(), feature_mean=train_scaler[0],
        feature_scale=train_scaler[1], images=images, X_fit=X_fit, y_fit=y[fit_idx],
        fit_idx=fit_idx, split="per_loader",
        scalers={"fit": fit_scaler, "train": train_scaler, "test": test_scaler})
