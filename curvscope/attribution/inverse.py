"""One damped eigen-inverse rule for every method (SCIENCE.md §3).

For M = V diag(e) Vᵀ and damping λ, (M + λI)⁺ = V diag(w) Vᵀ with
  rule "abs":   s_i = |e_i| + λ   (negative curvature taken as its magnitude, then damped);
  rule "drop":  s_i = e_i + λ     (the damped spectrum as it is),
and w_i = 1/s_i if s_i > ε·max|s|, else 0: eigenvalues at or below the threshold (for "drop":
negative curvature beyond −λ) are dropped, a pseudo-inverse on the kept part.
ε ("threshold") defaults to 1e-6 relative to the largest |s|. For a PSD matrix both rules give
(M + λI)⁻¹. For an indefinite H they differ: with "drop", eigenvalues just above −λ make
e + λ nearly zero and their directions dominate the inverse; "abs" never falls below λ.
Structured methods are inverted the same way in their own eigenbasis, with the same exact
damping — never the Martens–Grosse factored heuristic.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field


class InverseRule(BaseModel):
    """Damping, threshold and the rule for eigenvalues below it; recorded in results."""

    model_config = ConfigDict(extra="forbid")

    damping: float = Field(default=1e-4, ge=0.0, le=1e6,
                           description="λ added to every eigenvalue before inverting.")
    threshold: float = Field(default=1e-6, ge=0.0, lt=1.0,
                             description="Invert shifted eigenvalues above threshold × max|s|.")
    rule: Literal["abs", "drop"] = Field(
        default="abs",
        description="abs: invert |e| + λ (negative curvature by its magnitude); drop: invert "
        "e + λ where it exceeds threshold·max, zero elsewhere.",
    )


def inverse_weights(eigenvalues: torch.Tensor, rule: InverseRule) -> tuple[torch.Tensor, dict]:
    """Weights w with (M + λI)⁺ = V diag(w) Vᵀ, and counts of what the rule did."""
    base = eigenvalues.abs() if rule.rule == "abs" else eigenvalues
    shifted = base + rule.damping
    cutoff = rule.threshold * shifted.abs().max()
    keep = shifted > cutoff
    weights = torch.where(keep, 1.0 / torch.where(keep, shifted, torch.ones_like(shifted)),
                          torch.zeros_like(shifted))
    info = {
        "rule": rule.rule,
        "damping": rule.damping,
        "threshold": rule.threshold,
        "cutoff": float(cutoff),
        "n_inverted": int(keep.sum()),
        "n_dropped": int((~keep).sum()),
        "condition_number_inverted": float(shifted[keep].max() / shifted[keep].min())
        if keep.any() else None,
        "n_negative_inverted_as_abs": int((keep & (eigenvalues < 0)).sum())
        if rule.rule == "abs" else 0,
    }
    return weights, info
