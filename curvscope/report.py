"""A study's headline numbers as Markdown: LDS per method and α with intervals, the seed-noise
ceiling, the hierarchy check, the error decomposition and the wall time per stage."""

from __future__ import annotations

from curvscope.registry import METHOD_NAMES


def _fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_report(results: dict) -> str:
    lines = [f"### Study {results.get('spec', {}).get('name') or ''} "
             f"(`{results['spec_hash']}`, {results['n_params']:,} parameters, "
             f"{results['device']})", ""]
    methods = [m for m in METHOD_NAMES if m in results["methods"]]
    gt = results.get("groundtruth")
    if gt:
        alphas = [str(a) for a in gt["alphas"]]
        lines += ["| method | " + " | ".join(f"LDS α={a} [95 % CI]" for a in alphas) + " |",
                  "|---|" + "---|" * len(alphas)]
        for name in methods:
            cells = [results["methods"][name]["lds"][a] for a in alphas]
            lines.append(f"| {name} | " + " | ".join(
                f"{_fmt(c['value'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"
                for c in cells) + " |")
        ceiling = [gt["ceiling"].get(a) for a in alphas]
        lines.append("| *seed-noise ceiling* | " + " | ".join(
            f"{_fmt(c['value'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]" if c else "–"
            for c in ceiling) + " |")
        lines += ["", f"{gt['n_subsets']} subsets × {gt['n_seeds']} seeds per α.", ""]
        for alpha, check in gt["hierarchy"].items():
            chain = " ".join(f"{p['higher']} {p['verdict']}" for p in check["pairs"])
            last = check["pairs"][-1]["lower"] if check["pairs"] else ""
            verdict = "holds" if check["holds"] else "does not hold (" + ", ".join(
                check["violations"]) + ")"
            noise = check["reversals_within_noise"]
            lines.append(f"- α = {alpha}: {chain} {last} — the expected hierarchy {verdict}"
                         + (f"; reversed within noise: {', '.join(noise)}" if noise else "")
                         + ".")
        lines += ["", "(≥: the paired 95 % interval of the LDS difference lies above 0; "
                  "≈: it contains 0; <: it lies below.)"]
        lines.append("")
    lines += ["| method | ‖H − M‖/‖H‖ | ‖G − M‖/‖G‖ | cond(M + λI) |", "|---|---|---|---|"]
    for name in methods:
        m = results["methods"][name]
        lines.append(f"| {name} | {_fmt(m['relative_residual_to_H'])} | "
                     f"{_fmt(m['relative_residual_to_GGN'])} | "
                     f"{_fmt(m['condition_number']['damped'], 1)} |")
    decomposition = results.get("decomposition") or {}
    shares = decomposition.get("ggn_to_kfac")
    if shares:
        lines += ["", "Split of ‖G − K‖²: "
                  f"cross-layer {100 * shares['cross_layer_share']:.1f} %, "
                  f"eigenbasis {100 * shares['eigenbasis_share']:.1f} %, "
                  f"eigenvalue {100 * shares['eigenvalue_share']:.1f} %. "
                  "Within the blocks, K-FAC's error is "
                  f"{100 * decomposition['kfac_error']['eigenbasis_share']:.1f} % eigenbasis and "
                  f"{100 * decomposition['kfac_error']['eigenvalue_share']:.1f} % eigenvalue "
                  "mismatch."]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in results["timings"].items()]
    lines.append(f"| **total** | {sum(results['timings'].values()):.1f} |")
    return "\n".join(lines) + "\n"
