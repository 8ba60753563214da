"""Which data set to load, and how to split and scale it (:class:`DataSpec`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Names of the data sets that need no file: four sklearn sets and the synthetic mixture.
BUILTIN_DATASETS: tuple[str, ...] = ("digits", "wine", "breast_cancer", "iris", "gaussian_mixture")

_MAX_SEED = 2**63 - 1


class DataValidationError(ValueError):
    """Bad user-supplied data.

    The message is a sentence that names the offending row (for CSV the 1-based line
    number, the header being line 1) or column, and says what is allowed.
    """


class DataSpec(BaseModel):
    """Configuration of the classification data set and its single seeded train/test split."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["digits", "wine", "breast_cancer", "iris", "gaussian_mixture", "file"] = Field(
        "digits",
        description="Data set: a built-in sklearn set, the synthetic 'gaussian_mixture', "
        "or 'file' for a user-supplied .csv/.npz given by `path`.",
    )
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None,
        description="Path of a .csv (header row, numeric features, integer labels) or .npz "
        "(arrays 'X' and 'y', or 'features' and 'labels') file; required iff name='file'.",
    )
    label_column: (
        Annotated[int, Field(ge=0, le=1_000_000)]
        | Annotated[str, Field(min_length=1, max_length=1000)]
        | None
    ) = Field(
        None,
        description="CSV only: header name or 0-based index of the label column (a string of "
        "digits that is not a header name is read as an index); default: the last column.",
    )
    test_fraction: float = Field(
        0.1, gt=0.0, le=0.5, description="Fraction of rows held out as the test set."
    )
    split_seed: int = Field(
        0, ge=0, le=_MAX_SEED, description="Seed of the one permutation that defines the split "
        "(split='shared'), or of the RandomState whose three permutations the loaders draw "
        "(split='per_loader')."
    )
    split: Literal["shared", "per_loader"] = Field(
        "shared",
        description="shared: ONE seeded permutation for training, curvature, attribution and "
        "ground truth. per_loader: the official code's protocol (a known pitfall): one "
        "np.random.RandomState(split_seed) draws a new permutation, with its own scaler, for "
        "each of three loaders; the model trains on loader 1's training rows, curvature, "
        "training gradients and ground-truth retraining use loader 2's, test points are "
        "loader 3's held-out rows (on digits 160 of the 180 were trained on).",
    )
    standardize: bool = Field(
        True,
        description="Standardize features with a StandardScaler fitted on the train rows only.",
    )
    n_samples: int = Field(
        600, ge=20, le=100_000, description="gaussian_mixture: number of points (balanced classes)."
    )
    n_features: int = Field(10, ge=1, le=1000, description="gaussian_mixture: input dimension.")
    n_classes: int = Field(3, ge=2, le=100, description="gaussian_mixture: number of classes.")
    class_separation: float = Field(
        2.0,
        gt=0.0,
        le=100.0,
        description="gaussian_mixture: expected distance between two class means, in units of "
        "the within-class standard deviation (1).",
    )
    synthetic_seed: int = Field(
        0, ge=0, le=_MAX_SEED, description="gaussian_mixture: seed of the means and the points."
    )

    @model_validator(mode="after")
    def _path_iff_file(self) -> DataSpec:
        if self.name == "file" and self.path is None:
            raise ValueError("name='file' needs `path`: the .csv or .npz file to load.")
        if self.name != "file" and self.path is not None:
            raise ValueError(
                f"`path` is only used with name='file'; the built-in data set {self.name!r} "
                "reads no file. Remove `path` or set name='file'."
            )
        if self.name != "file" and self.label_column is not None:
            raise ValueError(
                f"`label_column` is only used with name='file' (CSV); the built-in data set "
                f"{self.name!r} has its own labels. Remove `label_column`."
            )
        return self
