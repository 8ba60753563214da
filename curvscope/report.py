"""A study's headline numbers as Markdown: LDS per method and α with intervals, the seed-noise
ceiling, the hierarchy check, the error decomposition, the eigenvalue-mismatch share under every
definition, the study's warnings and the wall time per stage. Reads results through
``curvscope.results`` (any schema version it can upgrade)."""

from __future__ import annotations

from pathlib import Path

from curvscope.registry import METHOD_NAMES
from curvscope.results import StudyResults, load_results


def _fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def markdown_report(results: dict | StudyResults | str | Path) -> str:
    r = load_results(results)
    lines = [f"### Study {r.spec.get('name') or ''} "
             f"(`{r.spec_hash}`, {r.n_params:,} parameters, {r.device})", ""]
    methods = [m for m in METHOD_NAMES if m in r.methods] + [
        m for m in r.methods if m not in METHOD_NAMES]
    if r.warnings:
        lines += [f"- **{w.severity}** `{w.code}`" + (f" ({w.method})" if w.method else "")
                  + f": {w.message}" for w in r.warnings]
        lines.append("")
    if r.known_pitfalls:
        lines += ["Known pitfalls of this protocol:"] + [f"- {p}" for p in r.known_pitfalls]
        lines.append("")
    gt = r.groundtruth
    if gt:
        alphas = r.alphas
        lines += ["| method | " + " | ".join(f"LDS α={a} [95 % CI]" for a in alphas) + " |",
                  "|---|" + "---|" * len(alphas)]
        for name in methods:
            cells = [r.lds(name, a) for a in alphas]
            lines.append(f"| {name} | " + " | ".join(
                f"{_fmt(c.value)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]" if c else "–"
                for c in cells) + " |")
        ceiling = [gt.ceiling.get(a) for a in alphas]
        lines.append("| *seed-noise ceiling* | " + " | ".join(
            f"{_fmt(c.value)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]" if c else "–"
            for c in ceiling) + " |")
        lines += ["", f"{gt.n_subsets} subsets × {gt.n_seeds} seeds per α.", ""]
        for alpha, check in gt.hierarchy.items():
            chain = " ".join(f"{p.higher} {p.verdict}" for p in check.pairs)
            last = check.pairs[-1].lower if check.pairs else ""
            verdict = "holds" if check.holds else "does not hold (" + ", ".join(
                check.violations) + ")"
            noise = check.reversals_within_noise
            lines.append(f"- α = {alpha}: {chain} {last} — the expected hierarchy {verdict}"
                         + (f"; reversed within noise: {', '.join(noise)}" if noise else "")
                         + ".")
        lines += ["", "(≥: the paired 95 % interval of the LDS difference lies above 0; "
                  "≈: it contains 0; <: it lies below.)"]
        lines.append("")
    lines += ["| method | ‖H − M‖/‖H‖ | ‖G − M‖/‖G‖ | cond(M + λI) |", "|---|---|---|---|"]
    for name in methods:
        m = r.methods[name]
        lines.append(f"| {name} | {_fmt(m.relative_residual_to_H)} | "
                     f"{_fmt(m.relative_residual_to_GGN)} | "
                     f"{_fmt(m.condition_number.damped, 1)} |")
    decomposition = r.decomposition
    if decomposition is not None and decomposition.ggn_to_kfac:
        shares = decomposition.ggn_to_kfac
        within = decomposition.kfac_error or {}
        lines += ["", "Split of ‖G − K‖²: "
                  f"cross-layer {_pct(shares.get('cross_layer_share'))}, "
                  f"eigenbasis {_pct(shares.get('eigenbasis_share'))}, "
                  f"eigenvalue {_pct(shares.get('eigenvalue_share'))}. "
                  "Within the blocks, K-FAC's error is "
                  f"{_pct(within.get('eigenbasis_share'))} eigenbasis and "
                  f"{_pct(within.get('eigenvalue_share'))} eigenvalue mismatch."]
    if decomposition is not None and decomposition.eigenvalue_mismatch_share:
        lines += ["", "| eigenvalue-mismatch share | value | formula |", "|---|---|---|"]
        for definition, entry in decomposition.eigenvalue_mismatch_share.items():
            if isinstance(entry.value, dict):
                value = ", ".join(f"α={a}: {_pct(v)}" for a, v in entry.value.items())
            else:
                value = _pct(entry.value)
            lines.append(f"| {definition} | {value} | {entry.formula} |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in r.timings.items()]
    lines.append(f"| **total** | {sum(r.timings.values()):.1f} |")
    return "\n".join(lines) + "\n"
