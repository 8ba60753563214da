"""Tests of curvscope.data: the shared split, train-only scaling, loaders and file validation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_digits, load_iris

from curvscope.data import (
    BUILTIN_DATASETS,
    DataSpec,
    DataValidationError,
    SplitData,
    load_data,
    split_indices,
)


@pytest.fixture(scope="module")
def digits() -> SplitData:
    return load_data(DataSpec(name="digits"))


def _file(tmp_path, text: str, name: str = "d.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _load_file(path: str, **kw) -> SplitData:
    return load_data(DataSpec(name="file", path=path, **kw))


# ---------------------------------------------------------------- split and scaling


def test_digits_sizes(digits):
    assert (digits.n_train, digits.n_test) == (1617, 180)
    assert (digits.n_features, digits.n_classes) == (64, 10)
    assert digits.X_train.shape == (1617, 64) and digits.X_test.shape == (180, 64)
    assert digits.X_train.dtype == np.float64 and digits.y_train.dtype == np.int64
    assert digits.train_idx.dtype == np.int64 and digits.test_idx.dtype == np.int64
    assert digits.images.shape == (1797, 8, 8)
    assert set(np.unique(digits.y_train)) == set(range(10))


def test_split_disjoint_and_covering(digits):
    assert not np.intersect1d(digits.train_idx, digits.test_idx).size
    assert np.array_equal(
        np.sort(np.concatenate([digits.train_idx, digits.test_idx])), np.arange(1797)
    )


def test_same_split_on_every_load(digits):
    again = load_data(DataSpec(name="digits"))
    train, test = split_indices(1797, 0.1, 0)
    for d in (digits, again):
        assert np.array_equal(d.train_idx, train) and np.array_equal(d.test_idx, test)
    perm = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(test, perm[:180]) and np.array_equal(train, perm[180:])
    other = load_data(DataSpec(name="digits", split_seed=1))
    assert not np.array_equal(other.test_idx, digits.test_idx)


def test_labels_follow_indices(digits):
    raw = load_digits()
    assert np.array_equal(digits.y_train, raw.target[digits.train_idx])
    assert np.array_equal(digits.y_test, raw.target[digits.test_idx])


def test_scaler_fitted_on_train_only(digits):
    raw = load_digits().data
    varying = raw[digits.train_idx].std(axis=0) > 0
    assert np.allclose(digits.X_train.mean(axis=0), 0.0, atol=1e-10)
    assert np.allclose(digits.X_train.std(axis=0)[varying], 1.0)
    assert np.allclose(digits.feature_mean, raw[digits.train_idx].mean(axis=0))
    expected = (raw[digits.test_idx] - digits.feature_mean) / digits.feature_scale
    assert np.allclose(digits.X_test, expected)
    # the test statistics were not used: test columns are not centred exactly
    assert not np.allclose(digits.X_test.mean(axis=0), 0.0, atol=1e-6)


def test_no_standardize_keeps_raw():
    d = load_data(DataSpec(name="iris", standardize=False))
    assert np.array_equal(d.feature_mean, np.zeros(4))
    assert np.array_equal(d.feature_scale, np.ones(4))
    assert np.array_equal(d.X_test, load_iris().data[d.test_idx])
    assert d.images is None


def test_split_indices_rounding_and_minimum():
    train, test = split_indices(25, 0.01, 3)
    assert len(test) == 1 and len(train) == 24
    with pytest.raises(ValueError):
        split_indices(1, 0.1, 0)


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_each_builtin_loads(name):
    d = load_data(DataSpec(name=name))
    assert d.n_train + d.n_test == len(d.train_idx) + len(d.test_idx)
    assert d.X_train.shape == (d.n_train, d.n_features)
    assert d.y_train.min() >= 0 and d.y_train.max() < d.n_classes
    assert d.classes == list(range(d.n_classes))
    assert d.name == name


def test_gaussian_mixture_needs_points_per_class():
    with pytest.raises(DataValidationError, match="n_classes=30"):
        load_data(DataSpec(name="gaussian_mixture", n_samples=20, n_classes=30))


def test_gaussian_mixture_deterministic_per_seed():
    spec = dict(name="gaussian_mixture", n_samples=200, n_features=5, n_classes=4)
    a = load_data(DataSpec(**spec, synthetic_seed=7))
    b = load_data(DataSpec(**spec, synthetic_seed=7))
    c = load_data(DataSpec(**spec, synthetic_seed=8))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.allclose(a.X_train, c.X_train)
    assert (a.n_features, a.n_classes, a.n_train + a.n_test) == (5, 4, 200)
    counts = np.bincount(np.concatenate([a.y_train, a.y_test]))
    assert counts.tolist() == [50, 50, 50, 50]


# ---------------------------------------------------------------- user files: happy paths


def _rows(n: int = 20) -> str:
    return "".join(f"{i}.5,{(i * 7) % 5},{3 if i % 2 else 7}\n" for i in range(n))


def test_csv_happy_path_recodes_labels(tmp_path):
    path = _file(tmp_path, "a,b,label\n" + _rows())
    d = _load_file(path, test_fraction=0.2, standardize=False)
    assert d.classes == [3, 7] and d.n_classes == 2 and d.n_features == 2
    assert (d.n_train, d.n_test) == (16, 4)
    raw_y = np.array([3 if i % 2 else 7 for i in range(20)])
    assert np.array_equal(np.array(d.classes)[d.y_train], raw_y[d.train_idx])
    assert np.allclose(d.X_train[:, 0], d.train_idx + 0.5)
    assert d.name == "d.csv"


@pytest.mark.parametrize("label_column", ["label", 0, "0"])
def test_csv_label_column_by_name_or_index(tmp_path, label_column):
    text = "label,a,b\n" + "".join(f"{i % 2 * 2.0},{i},{i * i}\n" for i in range(10))
    d = _load_file(_file(tmp_path, text), label_column=label_column, standardize=False)
    assert d.classes == [0, 2] and d.n_features == 2


def test_npz_happy_path(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = np.where(np.arange(30) % 2, 3, 7)
    path = tmp_path / "d.npz"
    np.savez(path, features=X, labels=y.astype(float))
    d = _load_file(str(path))
    assert d.classes == [3, 7] and d.n_features == 3 and d.n_train + d.n_test == 30
    assert np.array_equal(np.array(d.classes)[d.y_test], y[d.test_idx])


# ---------------------------------------------------------------- user files: errors


def _csv_error(tmp_path, text: str, **kw) -> str:
    with pytest.raises(DataValidationError) as exc:
        _load_file(_file(tmp_path, text), **kw)
    return str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="no such file"):
        _load_file(str(tmp_path / "nope.csv"))


def test_unknown_extension(tmp_path):
    with pytest.raises(DataValidationError, match=r"\.csv.*\.npz"):
        _load_file(_file(tmp_path, "a,b\n1,2\n", name="d.txt"))


def test_ragged_row(tmp_path):
    msg = _csv_error(tmp_path, "a,b,label\n1,2,0\n3,4\n5,6,1\n")
    assert "line 3" in msg and "expected 3" in msg and "found 2" in msg


def test_non_numeric_feature(tmp_path):
    msg = _csv_error(tmp_path, "a,b,label\n1,2,0\n3,4,1\n5,x,1\n" + _rows())
    assert "line 4" in msg and "'b'" in msg and "'x'" in msg


@pytest.mark.parametrize("bad", ["nan", "inf", ""])
def test_nonfinite_or_empty_feature(tmp_path, bad):
    msg = _csv_error(tmp_path, f"a,b,label\n1,2,0\n{bad},4,1\n" + _rows())
    assert "line 3" in msg and "'a'" in msg and "finite" in msg


@pytest.mark.parametrize("bad", ["1.5", "cat"])
def test_non_integer_label(tmp_path, bad):
    msg = _csv_error(tmp_path, f"a,b,label\n1,2,0\n3,4,1\n5,6,{bad}\n" + _rows())
    assert "line 4" in msg and bad in msg and "integer" in msg


def test_single_class(tmp_path):
    msg = _csv_error(tmp_path, "a,label\n" + "".join(f"{i},4\n" for i in range(10)))
    assert "at least 2" in msg


def test_too_few_rows(tmp_path):
    msg = _csv_error(tmp_path, "a,label\n1,0\n2,1\n3,2\n")
    assert "too few" in msg and "training row per class" in msg


def test_missing_header(tmp_path):
    msg = _csv_error(tmp_path, "1.5,2,0\n3.5,4,1\n")
    assert "line 1" in msg and "header" in msg


def test_unknown_label_column(tmp_path):
    msg = _csv_error(tmp_path, "a,b,label\n" + _rows(), label_column="target")
    assert "'target'" in msg and "'label'" in msg


def _npz_error(tmp_path, **arrays) -> str:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataValidationError) as exc:
        _load_file(str(path))
    return str(exc.value)


def test_npz_missing_array(tmp_path):
    msg = _npz_error(tmp_path, X=np.zeros((10, 2)))
    assert "'y'" in msg and "'labels'" in msg


def test_npz_X_not_2d(tmp_path):
    msg = _npz_error(tmp_path, X=np.zeros(10), y=np.zeros(10))
    assert "'X'" in msg and "2-D" in msg


def test_npz_length_mismatch(tmp_path):
    msg = _npz_error(tmp_path, X=np.zeros((10, 2)), y=np.arange(9) % 2)
    assert "'y'" in msg and "10 rows" in msg


def test_npz_nan_and_fractional_label(tmp_path):
    X = np.zeros((10, 2))
    X[4, 1] = np.nan
    msg = _npz_error(tmp_path, X=X, y=np.arange(10) % 2)
    assert "row 4" in msg and "column 1" in msg
    y = (np.arange(10) % 2).astype(float)
    y[6] = 0.5
    msg = _npz_error(tmp_path, X=np.zeros((10, 2)), y=y)
    assert "row 6" in msg and "integer" in msg


def test_npz_not_an_archive(tmp_path):
    with pytest.raises(DataValidationError, match="npz"):
        _load_file(_file(tmp_path, "not a zip", name="d.npz"))


# ---------------------------------------------------------------- DataSpec


def test_spec_file_needs_path():
    with pytest.raises(ValidationError, match="needs `path`"):
        DataSpec(name="file")


def test_spec_path_only_for_file():
    with pytest.raises(ValidationError, match="only used with name='file'"):
        DataSpec(name="digits", path="x.csv")


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.6])
def test_spec_bad_test_fraction(fraction):
    with pytest.raises(ValidationError):
        DataSpec(test_fraction=fraction)


def test_spec_forbids_extra_fields():
    with pytest.raises(ValidationError):
        DataSpec(nmae="digits")


def test_spec_fields_are_described():
    assert all(f.description for f in DataSpec.model_fields.values())
