"""The ground truth of a study (``groundtruth``): subsets, seeds, LDS summary.

Torch-free: the API imports it. Re-exported from ``curvscope.groundtruth.retrain``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class GroundTruthSpec(BaseModel):
    """Retraining on random subsets for the LDS."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Retrain on subsets and report the LDS.")
    alphas: list[float] = Field(default=[0.5], min_length=1, max_length=20,
                                description="Subset fractions α, each in (0, 1).")
    n_subsets: int = Field(default=100, ge=3, le=10_000, description="Subsets M per α.")
    n_seeds: int = Field(default=5, ge=1, le=100, description="Retraining seeds R per subset.")
    seed: int = Field(default=1000, ge=0, le=2**31 - 1,
                      description="Seed of the subset draws; retraining seeds are seed + r.")
    dtype: Literal["float32", "float64"] = Field(
        default="float32", description="Precision of the retrained models.")
    max_models_per_chunk: int = Field(default=1000, ge=1, le=100_000,
                                      description="Models trained together at most.")
    subsets_per_task: int | None = Field(
        default=None, ge=1, le=10_000,
        description="Subsets per retraining task (tasks can run on different workers); "
        "default all subsets of an α in one task.")
    n_bootstrap: int = Field(default=1000, ge=10, le=100_000,
                             description="Bootstrap resamples of the subsets for the interval.")
    lds_summary: Literal["point", "interval_midpoint"] = Field(
        default="point",
        description="The LDS a study reports as its headline: point (the plain LDS over all "
        "subsets) or interval_midpoint (the midpoint of the bootstrap interval, the official "
        "code's reported 'mean', a known pitfall; its own scipy BCa interval is then reported "
        "too). Both are always in the results.")

    @field_validator("alphas")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < a < 1.0 for a in value):
            raise ValueError("every α must lie strictly between 0 and 1")
        if len(set(value)) != len(value):
            raise ValueError("alphas must not repeat")
        return sorted(value)
