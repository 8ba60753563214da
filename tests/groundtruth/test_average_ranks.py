"""groundtruth.lds.average_ranks is scipy.stats.rankdata (average ties, NaN propagates)
exactly, on continuous, tied, NaN, constant and infinite data, stacked, along any axis."""

import numpy as np
import pytest
from scipy.stats import rankdata

from curvscope.groundtruth.lds import average_ranks


@pytest.mark.parametrize("shape, axis", [((50, 7), -2), ((3, 40, 5), -2), ((1, 1), -2),
                                         ((6, 4), 0), ((2, 9, 3), 1), ((100, 180), -2)])
@pytest.mark.parametrize("kind", ["continuous", "ties", "nan", "constant", "infinite",
                                  "float32"])
def test_average_ranks_equal_scipy_rankdata(shape, axis, kind):
    rng = np.random.default_rng(abs(hash((shape, axis, kind))) % 2**32)
    a = rng.standard_normal(shape)
    if kind == "ties":
        a = np.round(a * 2) / 2
    elif kind == "nan":
        a.flat[rng.integers(a.size)] = np.nan
    elif kind == "constant":
        a[...] = 3.0
    elif kind == "infinite":
        a.flat[0], a.flat[-1] = np.inf, -np.inf
    elif kind == "float32":
        a = np.round(a, 1).astype(np.float32)
    expected, got = rankdata(a, axis=axis), average_ranks(a, axis=axis)
    assert got.shape == expected.shape and got.dtype == np.float64
    assert np.array_equal(got, expected, equal_nan=True)
