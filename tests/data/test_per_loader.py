"""split = "per_loader": the official code's three permutations (SCIENCE.md §7), replayed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.preprocessing import StandardScaler

from curvscope.data import DataSpec, load_data, per_loader_indices, split_indices


def _official_loaders(seed=0, train_ratio=0.9):
    """hessian_influence.data.datasets.DatasetFactory.create_digits_dataset, called three times
    by DataLoaderFactory.create_loaders (train, eval_train, valid), as in the official code."""
    digits = load_digits()
    X = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    rng = np.random.RandomState(seed)
    out = []
    for split in ("train", "eval_train", "valid"):
        permutation = rng.choice(np.arange(len(X)), len(X), replace=False)
        split_idx = int(np.round(len(X) * train_ratio))
        train_indices, valid_indices = permutation[:split_idx], permutation[split_idx:]
        scaler = StandardScaler(with_mean=True, with_std=True)
        x_train = scaler.fit_transform(X[train_indices]).astype(np.float32)
        x_valid = scaler.transform(X[valid_indices]).astype(np.float32)
        if split in ("train", "eval_train"):
            out.append((train_indices, x_train, y[train_indices]))
        else:
            out.append((valid_indices, x_valid, y[valid_indices]))
    return out


@pytest.fixture(scope="module")
def per_loader():
    return load_data(DataSpec(name="digits", split="per_loader"))


def test_reproduces_the_official_permutations_scalers_and_counts(per_loader):
    (fit_idx, X1, y1), (train_idx, X2, y2), (test_idx, X3, y3) = _official_loaders()
    d = per_loader
    np.testing.assert_array_equal(d.fit_idx, fit_idx)
    np.testing.assert_array_equal(d.train_idx, train_idx)
    np.testing.assert_array_equal(d.test_idx, test_idx)
    for ours, theirs in ((d.X_fit, X1), (d.X_train, X2), (d.X_test, X3)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)  # theirs is float32
    np.testing.assert_array_equal(d.y_fit, y1)
    np.testing.assert_array_equal(d.y_train, y2)
    np.testing.assert_array_equal(d.y_test, y3)
    assert (d.n_fit, d.n_train, d.n_test) == (1617, 1617, 180)
    # the pitfall, in numbers: 160 of 180 test points were trained on; only 1,453 of the
    # 1,617 attributed training points are in the model's training set
    assert d.overlap() == {"split": "per_loader", "n_fit": 1617, "n_train": 1617, "n_test": 180,
                           "n_train_in_fit": 1453, "n_test_in_fit": 160}
    # each loader's scaler is fitted on its own training rows
    for key, rows in (("fit", fit_idx), ("train", train_idx), ("test", _test_loader_train())):
        mean, scale = d.scalers[key]
        np.testing.assert_allclose(mean, load_digits().data[rows].mean(0), rtol=1e-12)
    assert not np.allclose(d.scalers["fit"][0], d.scalers["train"][0])
    np.testing.assert_array_equal(d.feature_mean, d.scalers["train"][0])


def _test_loader_train():
    return per_loader_indices(1797, 0.1, 0)[2][0]


def test_shared_split_is_unchanged_and_fit_is_train():
    d = load_data(DataSpec(name="digits"))
    assert d.split == "shared" and d.scalers is None
    assert d.X_fit is d.X_train and d.y_fit is d.y_train and d.fit_idx is d.train_idx
    assert d.overlap()["n_test_in_fit"] == 0 and d.overlap()["n_train_in_fit"] == d.n_train
    # bit-identical to the split of split_indices (the default before the option existed)
    train_idx, test_idx = split_indices(1797, 0.1, 0)
    np.testing.assert_array_equal(d.train_idx, train_idx)
    scaler = StandardScaler().fit(load_digits().data[train_idx])
    assert np.array_equal(d.X_test, scaler.transform(load_digits().data[test_idx]))


def test_per_loader_on_other_data_and_seeds():
    spec = DataSpec(name="iris", split="per_loader", split_seed=3, test_fraction=0.2)
    d = load_data(spec)
    loaders = per_loader_indices(150, 0.2, 3)
    np.testing.assert_array_equal(d.fit_idx, loaders[0][0])
    np.testing.assert_array_equal(d.test_idx, loaders[2][1])
    assert (d.n_fit, d.n_train, d.n_test) == (120, 120, 30)
    # without standardisation the rows are the raw features
    d_raw = load_data(DataSpec(name="iris", split="per_loader", standardize=False))
    np.testing.assert_array_equal(d_raw.X_test, load_iris().data[d_raw.test_idx])


def test_split_is_a_described_bounded_field():
    field = DataSpec.model_fields["split"]
    assert field.description and "per_loader" in field.description
    with pytest.raises(ValueError, match="shared"):
        DataSpec(split="per_batch")
