"""The inverse rule of a study (``inverse``): damping, threshold, rule, K-FAC damping.

Torch-free: the API imports it. Re-exported from ``curvscope.attribution.inverse``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InverseRule(BaseModel):
    """Damping, threshold and the rule for eigenvalues below it; recorded in results."""

    model_config = ConfigDict(extra="forbid")

    damping: float = Field(default=1e-4, ge=0.0, le=1e6,
                           description="λ added to every eigenvalue before inverting.")
    threshold: float = Field(
        default=1e-6, ge=0.0, lt=1.0,
        description="Invert shifted eigenvalues above threshold × max|s| (rules abs, drop) or "
        "above threshold itself (rule drop_absolute).")
    rule: Literal["abs", "drop", "drop_absolute"] = Field(
        default="abs",
        description="abs: invert |e| + λ (negative curvature by its magnitude); drop: invert "
        "e + λ where it exceeds threshold·max, zero elsewhere; drop_absolute (the official "
        "code): invert e + λ where it exceeds threshold (absolute), zero elsewhere, negative "
        "ones included.",
    )
    kfac_damping: Literal["exact", "heuristic"] = Field(
        default="exact",
        description="Damping of K-FAC's inverse: exact (S ⊗ A + λI)⁻¹, or heuristic: the "
        "official code's curvlinops π damping (S + δ_S I)⁻¹ ⊗ (A + δ_A I)⁻¹ with "
        "π = sqrt((tr A/dim A)/(tr S/dim S)), δ_A = π√λ, δ_S = √λ/π. K-FAC only; every "
        "other method keeps exact damping.",
    )
