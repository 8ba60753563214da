"""curvscope.data.loading reads digits and standardises without importing scikit-learn, and
its arrays are bit-identical to scikit-learn's ``load_digits`` and ``StandardScaler``."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

from curvscope.data import DataSpec, load_data
from curvscope.data.loading import Standardizer, load_digits_arrays


def test_digits_are_scikit_learns_own_arrays():
    X, y, images = load_digits_arrays()
    bunch = datasets.load_digits()
    assert np.array_equal(X, bunch.data) and X.dtype == bunch.data.dtype
    assert np.array_equal(y, bunch.target)
    assert np.array_equal(images, bunch.images) and images.shape == (1797, 8, 8)


@pytest.mark.parametrize("loader", ["load_digits", "load_wine", "load_breast_cancer",
                                    "load_iris", "random"])
def test_standardizer_equals_standard_scaler_bit_for_bit(loader):
    if loader == "random":  # constant, near-constant, huge-offset and tiny columns
        rng = np.random.default_rng(0)
        X = rng.standard_normal((97, 6))
        X[:, 1] = 3.0
        X[:, 2] = 1e8 + 1e-9 * rng.standard_normal(97)
        X[:, 3] *= 1e-200
        X[:, 4] = 0.0
    else:
        X = getattr(datasets, loader)().data.astype(np.float64)
    rows = np.random.default_rng(1).permutation(len(X))[: len(X) * 9 // 10]
    ours, theirs = Standardizer(X[rows]), StandardScaler().fit(X[rows])
    assert np.array_equal(ours.mean_, theirs.mean_)
    assert np.array_equal(ours.var_, theirs.var_)
    assert np.array_equal(ours.scale_, theirs.scale_)
    assert np.array_equal(ours.transform(X), theirs.transform(X))


@pytest.mark.parametrize("split", ["shared", "per_loader"])
def test_load_data_unchanged(split):
    """The study's data equal what scikit-learn's loader and scaler give."""
    from curvscope.data.split import split_indices

    data = load_data(DataSpec(split=split))
    if split == "shared":
        bunch = datasets.load_digits()
        train, test = split_indices(len(bunch.target), 0.1, DataSpec().split_seed)
        scaler = StandardScaler().fit(bunch.data[train])
        assert np.array_equal(data.X_train, scaler.transform(bunch.data[train]))
        assert np.array_equal(data.X_test, scaler.transform(bunch.data[test]))
    else:
        assert data.X_fit.shape[1] == 64 and np.isfinite(data.X_fit).all()


def test_loading_the_default_data_imports_no_scikit_learn():
    code = ("import sys; from curvscope.data import DataSpec, load_data; load_data(DataSpec());"
            " print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
