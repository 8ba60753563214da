"""The study's answer at a glance: the hierarchy test of results.json in words and as a chart,
the error decomposition in one sentence, and the warnings a reader must see.

The hierarchy (Hong et al. 2025, arXiv 2509.23437: H ≈ GGN ≥ block-GGN ≥ EK-FAC ≥ K-FAC)
is tested pair by pair in ``groundtruth.hierarchy``: for each adjacent pair (a, b) the
difference LDS(a) − LDS(b) with a 95 % interval from the *paired* bootstrap (both LDS on the
same resampled test points). A link **holds** (≥) when the interval lies above 0, is
**level** (≈) when it contains 0, and **breaks** (<) when it lies below. Nothing here
recomputes those numbers: the panel shows them as stored.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from frontend.figures.study import _layout, sci_axis

#: a link's verdict in words, and the colour it is drawn in
LINK_WORDS = {"≥": "holds", "≈": "level", "<": "breaks"}
VERDICT_COLORS = {"≥": "#1e8e3e", "≈": "#7f7f7f", "<": "#c5221f"}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}"


def hierarchy_summary(results: dict) -> list[dict]:
    """Per α (in the study's order) the links of the chain as results.json states them:
    ``{"alpha", "holds", "violations", "reversals_within_noise", "links": [{"higher",
    "lower", "value", "ci_low", "ci_high", "verdict", "word"}], "sentence"}``."""
    gt = results.get("groundtruth") or {}
    hierarchy = gt.get("hierarchy") or {}
    alphas = [str(a) for a in gt.get("alphas", [])] or list(hierarchy)
    out = []
    for alpha in alphas:
        check = hierarchy.get(alpha)
        if not check:
            continue
        links = [{**{k: pair.get(k) for k in ("higher", "lower", "value", "ci_low",
                                              "ci_high", "verdict")},
                  "word": LINK_WORDS.get(pair.get("verdict"), "?")}
                 for pair in check.get("pairs", [])]
        out.append({"alpha": alpha, "holds": bool(check.get("holds")), "links": links,
                    "violations": list(check.get("violations") or []),
                    "reversals_within_noise": list(check.get("reversals_within_noise") or []),
                    "sentence": _alpha_sentence(alpha, check, links)})
    return out


def _alpha_sentence(alpha: str, check: dict, links: list[dict]) -> str:
    chain = " ".join(f"{link['higher']} {link['verdict']}" for link in links)
    chain += f" {links[-1]['lower']}" if links else ""
    if check.get("holds"):
        verdict = "the hierarchy holds (no link breaks)"
    else:
        verdict = "the hierarchy breaks: " + ", ".join(check.get("violations") or [])
    noise = check.get("reversals_within_noise") or []
    extra = f"; reversed but within noise: {', '.join(noise)}" if noise else ""
    return f"α = {alpha}: {chain}: {verdict}{extra}."


def link_table(results: dict) -> list[dict]:
    """One row per link of the chain: its verdict word at each α, and one word overall
    (holds / level / breaks when every α agrees, else mixed)."""
    summary = hierarchy_summary(results)
    rows: dict[tuple[str, str], dict] = {}
    for entry in summary:
        for link in entry["links"]:
            row = rows.setdefault((link["higher"], link["lower"]), {
                "higher": link["higher"], "lower": link["lower"], "by_alpha": {}})
            row["by_alpha"][entry["alpha"]] = link
    for row in rows.values():
        words = {link["word"] for link in row["by_alpha"].values()}
        row["overall"] = words.pop() if len(words) == 1 else "mixed"
    return list(rows.values())


def verdict_headline(results: dict) -> str:
    """One sentence: does the chain hold at every α, and which links break where."""
    summary = hierarchy_summary(results)
    if not summary:
        return "This study has no ground truth, so the hierarchy is not tested."
    broken = [(s["alpha"], v) for s in summary for v in s["violations"]]
    if not broken:
        level = list(dict.fromkeys(f"{link['higher']} ≈ {link['lower']}" for s in summary
                                   for link in s["links"] if link["verdict"] == "≈"))
        tail = f" Level (no significant difference): {', '.join(level)}." if level else ""
        return (f"The hierarchy holds at every α ({', '.join(s['alpha'] for s in summary)}): "
                "no adjacent pair is significantly reversed." + tail)
    where: dict[str, list[str]] = {}
    for alpha, violation in broken:
        where.setdefault(violation, []).append(alpha)
    parts = [f"{v} at α = {', '.join(a)}" for v, a in where.items()]
    return "The hierarchy breaks: " + "; ".join(parts) + " (paired 95 % interval below 0)."


def hierarchy_figure(results: dict, theme: str = "light") -> go.Figure:
    """LDS(higher) − LDS(lower) of each adjacent pair of the chain, one bar group per link
    and one bar per α, with the paired bootstrap's 95 % interval; coloured by the verdict
    (green holds, grey level, red breaks). Above 0: the higher method attributes better."""
    fig = go.Figure()
    summary = hierarchy_summary(results)
    for entry in summary:
        links = entry["links"]
        xs = [f"{link['higher']} − {link['lower']}" for link in links]
        ys = [link["value"] for link in links]
        fig.add_trace(go.Bar(
            x=xs, y=ys, name=f"α = {entry['alpha']}", meta="hierarchy",
            marker=dict(color=[VERDICT_COLORS.get(link["verdict"], "#7f7f7f")
                               for link in links],
                        line=dict(width=1, color="#444" if theme != "dark" else "#ddd")),
            error_y=dict(type="data", symmetric=False,
                         array=[link["ci_high"] - link["value"] for link in links],
                         arrayminus=[link["value"] - link["ci_low"] for link in links]),
            customdata=[[link["word"], link["ci_low"], link["ci_high"]] for link in links],
            # several α: each bar says which it is (the colours say the verdict)
            text=[f"α={entry['alpha']}" for _ in links] if len(summary) > 1 else None,
            textposition="outside",
            hovertemplate=("%{x}, α = " + entry["alpha"] + ": %{y:.3f} "
                           "[%{customdata[1]:.3f}, %{customdata[2]:.3f}]: %{customdata[0]}"
                           "<extra></extra>")))
    if not summary:
        fig.add_annotation(text="no hierarchy test (this study has no ground truth)",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_layout(barmode="group", showlegend=False)
    fig.update_yaxes(title="LDS difference (paired 95 % CI)")
    fig.update_xaxes(title="adjacent pair in the chain (higher − lower)")
    sci_axis(fig.layout.yaxis)
    return _layout(fig, "Paired LDS differences along the chain", theme)


def decomposition_sentence(results: dict, alpha: str | None = None) -> str:
    """The error decomposition in one sentence: how K-FAC's distance to the GGN splits into
    what the block diagonal drops (cross-layer), a wrong eigenbasis and wrong eigenvalues;
    and, when results.json has it, the eigenvalue mismatch's share by each definition."""
    decomposition = results.get("decomposition") or {}
    shares = decomposition.get("ggn_to_kfac")
    parts = []
    if shares:
        parts.append(
            "Of K-FAC's squared distance to the GGN (‖G − K‖²_F), "
            f"{100 * shares['cross_layer_share']:.0f} % is cross-layer curvature the block "
            f"diagonal drops, {100 * shares['eigenbasis_share']:.0f} % a wrong eigenbasis "
            f"and {100 * shares['eigenvalue_share']:.0f} % wrong eigenvalues within the "
            "blocks.")
    mismatch = decomposition.get("eigenvalue_mismatch_share")
    if isinstance(mismatch, dict) and mismatch:
        items = []
        for name, entry in mismatch.items():
            value = entry.get("value") if isinstance(entry, dict) else entry
            if isinstance(value, dict):  # per α (the LDS definition)
                value = value.get(alpha) if alpha in value else next(iter(value.values()),
                                                                     None)
            if isinstance(value, int | float) and math.isfinite(value):
                items.append(f"{100 * value:.0f} % by {name.replace('_', ' ')}")
        if items:
            parts.append("The eigenvalue mismatch's share of the K-FAC error: "
                         + ", ".join(items) + ".")
    return " ".join(parts) or "This study stores no error decomposition."


def mismatch_rows(results: dict) -> list[tuple[str, str, str]]:
    """(definition, share, formula) of ``decomposition.eigenvalue_mismatch_share``."""
    mismatch = (results.get("decomposition") or {}).get("eigenvalue_mismatch_share") or {}
    rows = []
    for name, entry in mismatch.items():
        if not isinstance(entry, dict):
            continue
        value = entry.get("value")
        if isinstance(value, dict):
            text = ", ".join(f"α={a}: {100 * v:.1f} %" for a, v in value.items()
                             if isinstance(v, int | float))
        elif isinstance(value, int | float):
            text = f"{100 * value:.1f} %"
        else:
            text = "–"
        rows.append((name, text, str(entry.get("formula") or "")))
    return rows


def unpaired_overlap_but_paired_differs(results: dict) -> list[str]:
    """Links whose two methods' (unpaired) LDS intervals overlap, so the LDS chart's whiskers
    suggest they are level, while the paired test says one is significantly above the other:
    the sentence to print next to that chart."""
    methods = results.get("methods") or {}
    out = []
    for entry in hierarchy_summary(results):
        alpha = entry["alpha"]
        for link in entry["links"]:
            if link["verdict"] == "≈":
                continue
            a = ((methods.get(link["higher"]) or {}).get("lds") or {}).get(alpha)
            b = ((methods.get(link["lower"]) or {}).get("lds") or {}).get(alpha)
            if not a or not b:
                continue
            if a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]:
                relation = ">" if link["verdict"] == "≥" else "<"
                out.append(f"{link['higher']} {relation} {link['lower']} at α = {alpha} "
                           f"(paired difference {_num(link['value'])} "
                           f"[{_num(link['ci_low'])}, {_num(link['ci_high'])}])")
    return out


# -- warnings ---------------------------------------------------------------------------------
def _warning(code: str, message: str, severity: str = "warning",
             method: str | None = None) -> dict:
    return {"code": code, "severity": severity, "message": message, "method": method}


#: fewer test points than this make the LDS (a mean over test points) too noisy to rank on
MIN_TEST_POINTS = 20
#: a seed-noise ceiling below this leaves no room to tell methods apart
LOW_CEILING = 0.1


def study_warnings(results: dict) -> list[dict]:
    """What the reader must know before trusting the numbers: ``results["warnings"]`` as the
    science library writes them ({code, severity, message, method}), plus the checks the
    dashboard can make itself from results.json for studies stored before those warnings
    existed (too few test points, accuracy at or below chance, a NaN or low seed-noise
    ceiling, eigenvalues dropped by the inverse rule, a degenerate Monte-Carlo Fisher).
    A check is left out when the stored warnings already carry its code."""
    stored = [dict(w) for w in results.get("warnings") or [] if isinstance(w, dict)]
    codes = {(w.get("code"), w.get("method")) for w in stored}
    have = {w.get("code") for w in stored}
    derived = []
    n_test = results.get("n_test")
    if isinstance(n_test, int) and n_test < MIN_TEST_POINTS:
        derived.append(_warning("few_test_points", (
            f"Only {n_test} test point{'s' if n_test != 1 else ''}: the LDS is a mean over "
            f"test points, so with fewer than {MIN_TEST_POINTS} its interval is wide and the "
            "ranking of methods is not reliable.")))
    training = results.get("training") or {}
    accuracy, n_classes = training.get("test_accuracy"), results.get("n_classes")
    if isinstance(accuracy, int | float) and isinstance(n_classes, int) and n_classes > 0 \
            and accuracy <= 1.0 / n_classes + 1e-12:
        derived.append(_warning("accuracy_at_chance", (
            f"Test accuracy {100 * accuracy:.0f} % is at or below chance (1/{n_classes} = "
            f"{100 / n_classes:.0f} %): the model has not learnt the task, so the "
            "attributions describe noise.")))
    gt = results.get("groundtruth") or {}
    for alpha, ceiling in (gt.get("ceiling") or {}).items():
        value = (ceiling or {}).get("value") if isinstance(ceiling, dict) else None
        if ceiling is not None and (value is None or not math.isfinite(value)):
            derived.append(_warning("lds_ceiling_low", (
                f"The seed-noise ceiling at α = {alpha} is not a number: the retrained "
                "losses do not vary across subsets, so no LDS here can be read.")))
        elif isinstance(value, int | float) and value < LOW_CEILING:
            derived.append(_warning("lds_ceiling_low", (
                f"The seed-noise ceiling at α = {alpha} is {value:.3f}: retraining noise "
                "alone limits any method's LDS to about that, so differences between "
                "methods are hard to see.")))
    for name, entry in (results.get("methods") or {}).items():
        inverse = entry.get("inverse") or {}
        dropped = inverse.get("n_dropped")
        if isinstance(dropped, int) and dropped > 0:
            derived.append(_warning("eigenvalues_dropped", (
                f"The inverse rule ({inverse.get('rule')}) dropped {dropped} of "
                f"{dropped + (inverse.get('n_inverted') or 0)} eigen-directions of {name} "
                "(treated as zero curvature)."), "info", name))
        mc = entry.get("mc_fisher") or {}
        if mc.get("degenerate"):
            derived.append(_warning("mc_fisher_degenerate", (
                f"{name}'s Monte-Carlo Fisher is degenerate: with {mc.get('mc_samples')} "
                "sampled label(s) per point it misses directions the exact Fisher has."),
                "warning", name))
    out = stored + [w for w in derived if (w["code"], w["method"]) not in codes
                    and not (w["method"] is None and w["code"] in have)]
    order = {"warning": 0, "info": 1}
    return sorted(out, key=lambda w: order.get(w.get("severity"), 2))


def known_pitfalls(results: dict) -> list[str]:
    """The sentences of ``results["known_pitfalls"]``: the official code's choices this study
    replays (per-loader split, MC Fisher, heuristic damping, midpoint LDS) and what each is
    known to do."""
    return [str(p) for p in results.get("known_pitfalls") or [] if p]
