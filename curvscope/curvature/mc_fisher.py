"""Diagnostics of a Monte-Carlo Fisher (SCIENCE.md §7; Hong et al. 2025, arXiv 2509.23437).

The Monte-Carlo Fisher replaces the type-2 GGN G = (1/N) Σ_n J_nᵀ Λ_n J_n by
F_mc = (1/(N S)) Σ_n Σ_s J_nᵀ (p_n − e_{ŷ_ns})(p_n − e_{ŷ_ns})ᵀ J_n with ŷ_ns ~ Cat(p_n), which is
unbiased (E[F_mc] = G) but, with S = 1 sample on a confident model, may be nearly zero: a label
equal to the argmax contributes only (p − e_argmax), which vanishes as p → e_argmax. The
official code's K-FAC/EK-FAC use exactly that (curvlinops defaults, mc_samples = 1). So for
every MC method curvscope reports

* ``n_labels_differ_from_argmax`` of ``n_labels`` = N·S: the informative draws;
* ``trace_ratio_to_ggn`` = tr F_mc / tr G, both exact traces computed from the layer signals
  (tr of a linear layer's block is (1/N) Σ_n Σ_k ‖g_nk‖² ‖ā_n‖²; no d × d matrix);
* ``trace_share_of_differing_labels``: the part of tr F_mc from the points whose sampled
  label differs from the argmax, and ``effective_points`` = (Σ t_n)² / Σ t_n² over the
  per-point trace contributions t_n (beside ``effective_points_ggn``, the same for G): on a
  confident model tr F_mc can match tr G while resting on a handful of draws;
* ``degenerate``: no sampled label differs from the argmax, or the trace ratio is below
  ``DEGENERATE_TRACE_RATIO`` (1e-3);
* ``replicates``: the same for MC seeds seed, seed+1, …, seed+R−1 (``curvature.mc_replicates``
  = R). The operator the study inverts is the FIRST replicate's (seed = the study's seed, so
  R = 1 reproduces the single-draw numbers); the others only measure the spread, reported in
  ``spread`` (mean, std, min, max of both numbers, and how many replicates are degenerate).
"""

from __future__ import annotations

import math

import numpy as np

from curvscope.curvature.context import CurvatureContext

#: tr F_mc / tr G below this marks the Monte-Carlo Fisher as degenerate.
DEGENERATE_TRACE_RATIO = 1e-3


def effective_points(contributions) -> float:
    """(Σ t_n)² / Σ t_n²: how many points carry the trace (N when all contribute equally, 1
    when a single point does)."""
    t = contributions.double()
    denominator = float(t.square().sum())
    return float(t.sum()) ** 2 / denominator if denominator > 0 else 0.0


def mc_replicate(ctx: CurvatureContext, seed: int, trace_ggn: float) -> dict:
    """The diagnostics of the Monte-Carlo Fisher drawn with ``seed``."""
    draws, argmax = ctx.mc_labels(seed)
    differ = int((draws != argmax.unsqueeze(1)).sum())
    per_point = ctx.fisher_trace_per_point("mc", seed)
    trace = float(per_point.sum()) / ctx.n_data
    ratio = trace / trace_ggn if trace_ggn > 0 else math.nan
    informative = (draws != argmax.unsqueeze(1)).any(1)
    share = float(per_point[informative].sum() / per_point.sum()) if trace > 0 else math.nan
    degenerate = differ == 0 or not ratio >= DEGENERATE_TRACE_RATIO
    return {"seed": seed, "n_labels_differ_from_argmax": differ, "trace_mc": trace,
            "trace_ratio_to_ggn": ratio,
            "trace_share_of_differing_labels": share,
            "effective_points": effective_points(per_point),
            "degenerate": bool(degenerate)}


def mc_fisher_diagnostics(ctx: CurvatureContext, replicates: int = 1) -> dict:
    """``methods.<m>.mc_fisher`` of results.json for the context's Monte-Carlo settings."""
    seed = ctx.settings.seed
    ggn_per_point = ctx.fisher_trace_per_point("type2")
    trace_ggn = float(ggn_per_point.sum()) / ctx.n_data
    reps = [mc_replicate(ctx, seed + r, trace_ggn) for r in range(replicates)]
    first = reps[0]
    out = {"mc_samples": ctx.settings.mc_samples, "seed": seed,
           "n_labels": ctx.n_data * ctx.settings.mc_samples,
           "n_labels_differ_from_argmax": first["n_labels_differ_from_argmax"],
           "trace_ggn": trace_ggn, "trace_mc": first["trace_mc"],
           "trace_ratio_to_ggn": first["trace_ratio_to_ggn"],
           "trace_share_of_differing_labels": first["trace_share_of_differing_labels"],
           "effective_points": first["effective_points"],
           "effective_points_ggn": effective_points(ggn_per_point),
           "degenerate": first["degenerate"],
           "degenerate_trace_ratio": DEGENERATE_TRACE_RATIO,
           "operator_replicate": 0, "replicates": reps}
    if replicates > 1:
        out["spread"] = {key: _spread([r[key] for r in reps])
                         for key in ("n_labels_differ_from_argmax", "trace_ratio_to_ggn",
                                     "effective_points")}
        out["spread"]["n_degenerate"] = sum(r["degenerate"] for r in reps)
    return out


def _spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)), "min": float(a.min()),
            "max": float(a.max())}


def degenerate_message(method: str, diagnostics: dict) -> str:
    """The sentence of the ``mc_fisher_degenerate`` warning."""
    return (f"{method}'s Monte-Carlo Fisher ({diagnostics['mc_samples']} sample(s) per point) "
            f"is degenerate: {diagnostics['n_labels_differ_from_argmax']} of "
            f"{diagnostics['n_labels']} sampled labels differ from the model's argmax and "
            f"tr(F_mc)/tr(G) = {diagnostics['trace_ratio_to_ggn']:.3g} (carried by "
            f"{diagnostics['effective_points']:.1f} effective points, G by "
            f"{diagnostics['effective_points_ggn']:.1f}); its curvature carries "
            "almost no information. Use curvature.fisher_type 'type2' (exact) or more "
            "mc_samples.")
