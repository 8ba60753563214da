"""One damped eigen-inverse rule for every method (SCIENCE.md §3), and the official code's
protocol choices as named options (SCIENCE.md §7; Hong et al. 2025, arXiv 2509.23437).

For M = V diag(e) Vᵀ and damping λ, (M + λI)⁺ = V diag(w) Vᵀ with shifted eigenvalues
  rule "abs":           s_i = |e_i| + λ   (negative curvature taken as its magnitude, then damped);
  rule "drop":          s_i = e_i + λ     (the damped spectrum as it is);
  rule "drop_absolute": s_i = e_i + λ     (the official code's eigen-inverse, below),
and w_i = 1/s_i where s_i is above the cutoff, else 0: a pseudo-inverse on the kept part.
The cutoff is ε·max|s| for "abs" and "drop" (ε = ``threshold``, default 1e-6 relative to the
largest |s|) and ε itself for "drop_absolute". "drop_absolute" is exactly the official
``MatrixInverter._eigen_inverse``: eigh(M + λI), invert the eigenvalues > ε (absolute, 1e-6),
set the rest, negative ones included, to zero. For a PSD matrix "abs" and "drop" give
(M + λI)⁻¹. For an indefinite H they differ: with "drop", eigenvalues just above −λ make
e + λ nearly zero and their directions dominate the inverse; "abs" never falls below λ.

Structured methods are inverted the same way in their own eigenbasis with the same exact
damping (``kfac_damping = "exact"``, the default). ``kfac_damping = "heuristic"`` replays the
official code's K-FAC inverse, curvlinops ``KFACInverseLinearOperator(use_heuristic_damping=
True)`` (Martens & Grosse 2015, §6.3): per layer with factors S (out × out) and A (in × in)

    π = sqrt((tr A / dim A) / (tr S / dim S)),
    (S ⊗ A + λ I)⁻¹  is replaced by  (S + δ_S I)⁻¹ ⊗ (A + δ_A I)⁻¹,
    δ_A = max(π √λ, λ_min),  δ_S = max(√λ / π, λ_min),  λ_min = 1e-8 (curvlinops' default).

In K-FAC's eigenbasis Q = U_S ⊗ U_A this is a diagonal: s_{o,i} = (σ_o + δ_S)(α_i + δ_A)
instead of σ_o α_i + λ. π and the two dampings are per layer, as in curvlinops (which damps a
module's factors once): with per-tensor blocks the separate bias block is inverted with its
layer's (S + δ_S I)⁻¹, s_o = σ_o + δ_S (read from curvlinops 3.0.1's source and checked
against it; only a layer without an input factor would get plain λ). A layer whose mean
eigenvalues fail tr A ≥ 0, tr S > 0 (e.g. a Monte-Carlo Fisher with S = 0) falls back to
δ_A = δ_S = λ. The heuristic applies to
K-FAC only; EK-FAC keeps exact damping Q(Λ* + λI)⁻¹Qᵀ, as in the official code.
"""

from __future__ import annotations

import math

import torch

from curvscope.specs.inverse import InverseRule  # noqa: F401  (re-exported)

#: curvlinops' ``min_damping`` default, which the official code keeps.
HEURISTIC_MIN_DAMPING = 1e-8

#: The one method whose inverse ``kfac_damping = "heuristic"`` changes.
HEURISTIC_METHOD = "K-FAC"


def damped_spectrum(operator, rule: InverseRule) -> tuple[torch.Tensor, dict]:
    """The shifted eigenvalues s that ``operator`` is inverted with under ``rule`` (aligned with
    ``operator.eigenvalues()``), and the damping it received:
    ``{"rule": "exact", "damping": λ}`` or, for K-FAC under ``kfac_damping = "heuristic"``,
    ``{"rule": "heuristic", "damping": λ, "min_damping": λ_min, "per_block": [{"block", "pi",
    "damping_A", "damping_S"}]}`` (damping_A is None for a bias-only block, pi None where
    curvlinops falls back to plain λ)."""
    eigenvalues = operator.eigenvalues()
    if rule.kfac_damping == "heuristic" and operator.name == HEURISTIC_METHOD:
        return heuristic_damped_eigenvalues(operator, rule.damping)
    base = eigenvalues.abs() if rule.rule == "abs" else eigenvalues
    return base + rule.damping, {"rule": "exact", "damping": rule.damping}


def heuristic_damped_eigenvalues(operator, damping: float,
                                 min_damping: float = HEURISTIC_MIN_DAMPING
                                 ) -> tuple[torch.Tensor, dict]:
    """s_{o,i} = (σ_o + δ_S)(α_i + δ_A) per K-FAC block (module docstring), as curvlinops'
    ``KFACInverseLinearOperator(use_heuristic_damping=True)`` inverts it.

    π, δ_A and δ_S are per LAYER (curvlinops damps a module's factors once): a separate bias
    block shares its layer's (S + δ_S I)⁻¹, s_o = σ_o + δ_S; only a block whose layer has no
    input factor at all gets plain λ."""
    sqrt_damping = math.sqrt(damping)
    layer_damping: dict[str, tuple] = {}
    for b in operator.blocks:
        sigma, alpha = getattr(b, "sigma", None), getattr(b, "alpha", None)
        if sigma is None or alpha is None:
            raise ValueError(f"heuristic damping needs K-FAC's factor spectra; a block of "
                             f"{operator.name!r} has none")
        if b.block.has_weight:
            mean_A = float(alpha.sum()) / len(alpha)
            mean_S = float(sigma.sum()) / len(sigma)
            if mean_A >= 0.0 and mean_S > 0.0:
                pi = math.sqrt(mean_A / mean_S)
                layer_damping[b.block.module_name] = (
                    pi, max(sqrt_damping * pi, min_damping), max(sqrt_damping / pi, min_damping))
            else:  # curvlinops' fallback: both factors damped by λ
                layer_damping[b.block.module_name] = (None, damping, damping)
    parts, per_block = [], []
    for b in operator.blocks:
        if b.block.has_weight:
            pi, d_A, d_S = layer_damping[b.block.module_name]
            parts.append(torch.outer(b.sigma + d_S, b.alpha + d_A).reshape(-1))
        else:  # a separate bias: gradient factor only, its layer's δ_S (else plain λ)
            pi, _, d_S = layer_damping.get(b.block.module_name, (None, None, damping))
            d_A = None
            parts.append(b.sigma + d_S)
        per_block.append({"block": b.block.name, "pi": pi, "damping_A": d_A, "damping_S": d_S})
    return torch.cat(parts), {"rule": "heuristic", "damping": damping,
                              "min_damping": min_damping, "per_block": per_block}


def inverse_weights(eigenvalues: torch.Tensor, rule: InverseRule,
                    shifted: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Weights w with (M + λI)⁺ = V diag(w) Vᵀ, and counts of what the rule did.

    ``shifted`` overrides the shifted eigenvalues s (default: from ``eigenvalues`` and the
    rule; ``damped_spectrum`` gives them for heuristic K-FAC damping); the cutoff of the rule
    applies to it unchanged."""
    as_abs = shifted is None and rule.rule == "abs"
    if shifted is None:
        base = eigenvalues.abs() if rule.rule == "abs" else eigenvalues
        shifted = base + rule.damping
    if rule.rule == "drop_absolute":
        cutoff = shifted.new_tensor(rule.threshold)
    else:
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
        "n_negative_inverted_as_abs": int((keep & (eigenvalues < 0)).sum()) if as_abs else 0,
    }
    if rule.rule == "drop_absolute":
        info["n_negative_dropped"] = int((~keep & (shifted < 0)).sum())
    return weights, info
