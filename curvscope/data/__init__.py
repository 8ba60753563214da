"""Classification data sets with ONE seeded train/test split shared by every consumer.

:func:`load_data` turns a :class:`DataSpec` (a built-in sklearn set, a synthetic Gaussian
mixture, or a user .csv/.npz file) into :class:`SplitData`. The split is a single seeded
permutation (:func:`split_indices`) that training, curvature, attribution and ground
truth all share, and the optional StandardScaler is fitted on the train rows only. This
fixes a pitfall of earlier public code, which drew a new permutation in each loader so
that test points leaked into training. Bad user files raise :class:`DataValidationError`
naming the offending line/row or column. ``DataSpec.split = "per_loader"`` replays the
official code's three permutations (a known pitfall) to reproduce its numbers.
"""

from .loading import gaussian_mixture, load_data
from .spec import BUILTIN_DATASETS, DataSpec, DataValidationError
from .split import SplitData, per_loader_indices, split_indices

__all__ = [
    "BUILTIN_DATASETS",
    "DataSpec",
    "DataValidationError",
    "SplitData",
    "gaussian_mixture",
    "load_data",
    "per_loader_indices",
    "split_indices",
]
