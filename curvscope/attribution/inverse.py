"""One damped eigen-inverse rule for every method (SCIENCE.md §3).

For M = V diag(e) Vᵀ and damping λ, the shifted eigenvalues are s = e + λ and
(M + λI)⁺ = V diag(w) Vᵀ with
  rule "drop":  w_i = 1/s_i if s_i > ε·max|s|, else 0  (a pseudo-inverse on the kept part);
  rule "abs":   w_i = 1/|s_i| if |s_i| > ε·max|s|, else 0  (H's negative curvature as |s|).
ε ("threshold") defaults to 1e-6 relative to the largest |s|. Structured methods are inverted
the same way in their own eigenbasis, with the same exact damping — never the Martens–Grosse
factored heuristic.
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
    rule: Literal["drop", "abs"] = Field(
        default="drop",
        description="drop: zero weight for s ≤ threshold·max|s| (negative curvature dropped); "
        "abs: invert |s| instead, keeping negative curvature as positive.",
    )


def inverse_weights(eigenvalues: torch.Tensor, rule: InverseRule) -> tuple[torch.Tensor, dict]:
    """Weights w with (M + λI)⁺ = V diag(w) Vᵀ, and counts of what the rule did."""
    shifted = eigenvalues + rule.damping
    scale = shifted.abs().max()
    cutoff = rule.threshold * scale
    magnitude = shifted.abs() if rule.rule == "abs" else shifted
    keep = magnitude > cutoff
    weights = torch.where(keep, 1.0 / torch.where(keep, magnitude, torch.ones_like(magnitude)),
                          torch.zeros_like(shifted))
    info = {
        "rule": rule.rule,
        "damping": rule.damping,
        "threshold": rule.threshold,
        "cutoff": float(cutoff),
        "n_inverted": int(keep.sum()),
        "n_dropped": int((~keep).sum()),
        "n_negative_inverted_as_abs": int((keep & (shifted < 0)).sum()),
    }
    return weights, info
