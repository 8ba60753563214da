"""The expected hierarchy LDS(H) ≈ LDS(G) ≥ LDS(G_bd) ≥ LDS(E) ≥ LDS(K) ≥ LDS(I) as a claim each
study tests (SCIENCE.md §6), and the LDS lost at each step of the curvature chain (§5).

Both rest on the paired bootstrap of ``lds.lds_many``: every method's LDS is resampled on the
same subsets (same seed, same draws), so for two methods a and b the resampled differences
LDS*(a) − LDS*(b) give an interval of the difference itself, much narrower than the two
methods' own intervals when their errors are correlated (Hong et al. 2025, arXiv 2509.23437,
compare methods on shared subsets in the same way).

``values`` below is ``{method: {alpha_key: {"value": ...}}}`` and ``bootstrap`` is
``{(method, alpha_key): resampled LDS array}``, with ``alpha_key = str(alpha)``.
"""

from __future__ import annotations

import numpy as np

#: The methods of the expected hierarchy, best first.
HIERARCHY: tuple[str, ...] = ("H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC", "identity")


def adjacent(names: list[str]) -> list[tuple[str, str]]:
    """Consecutive pairs (n_0, n_1), (n_1, n_2), …"""
    return list(zip(names[:-1], names[1:], strict=True))


def paired_difference(values: dict, bootstrap: dict, a: str, b: str, alpha: str) -> dict:
    """LDS(a) − LDS(b) with a 95 % interval from the paired bootstrap: the percentile interval
    of LDS*(a) − LDS*(b) over resamples that share their subsets, NaN resamples ignored."""
    difference = bootstrap[a, alpha] - bootstrap[b, alpha]
    low, high = np.nanquantile(difference, [0.025, 0.975])
    return {"value": values[a][alpha]["value"] - values[b][alpha]["value"],
            "ci_low": float(low), "ci_high": float(high)}


def verdict(difference: dict) -> str:
    """"≥" when the paired interval lies above 0, "<" when below, "≈" when it contains 0."""
    if difference["ci_low"] > 0:
        return "≥"
    return "<" if difference["ci_high"] < 0 else "≈"


def hierarchy_check(values: dict, bootstrap: dict, alpha: str,
                    order: tuple[str, ...] = HIERARCHY) -> dict:
    """Test the hierarchy pair by pair over the methods of ``order`` that the study ran.

    Returns ``pairs`` ({higher, lower, value, ci_low, ci_high, verdict}), ``violations``
    (significant reversals "a < b"), ``holds`` (no violation) and ``reversals_within_noise``
    (pairs with a negative difference whose interval contains 0)."""
    pairs = []
    for a, b in adjacent([n for n in order if n in values]):
        diff = paired_difference(values, bootstrap, a, b, alpha)
        pairs.append({"higher": a, "lower": b, **diff, "verdict": verdict(diff)})
    violations = [f"{p['higher']} < {p['lower']}" for p in pairs if p["verdict"] == "<"]
    return {"pairs": pairs, "violations": violations, "holds": not violations,
            "reversals_within_noise": [f"{p['higher']} < {p['lower']}" for p in pairs
                                       if p["verdict"] == "≈" and p["value"] < 0]}


def lds_lost(values: dict, bootstrap: dict, chain: list[str], alphas: list[str]) -> list[dict]:
    """The LDS lost at each consecutive step of ``chain`` (e.g. H → GGN → G_bd → E → K), per
    α: ``[{"from", "to", "lds_lost": {alpha: paired_difference}}]``."""
    return [{"from": a, "to": b,
             "lds_lost": {alpha: paired_difference(values, bootstrap, a, b, alpha)
                          for alpha in alphas}}
            for a, b in adjacent(chain)]
