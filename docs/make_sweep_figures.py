"""Figures and tables of docs/sweeps.md from sweeps stored by a running curvscope service.

    .venv/bin/pip install -e ".[docs]"        # matplotlib
    .venv/bin/curvscope up --data /work/sweeps-data --port 8711          # the service that ran them
    .venv/bin/python docs/make_sweep_figures.py --url http://127.0.0.1:8711 \\
        training-time=1 damping=2 width=5 depth=6 --out docs/figures --tables

Each ``AXIS=ID`` names a sweep (``GET /api/v1/sweeps/ID``: its grid and its studies); the
script reads every succeeded study's results.json (``GET /api/v1/studies/<id>/results``) and
draws ``<out>/sweep-AXIS.png``: per subset fraction α, (left) every method's LDS against the
swept value with its 95 % bootstrap interval over subsets and the seed-noise ceiling, (right)
the paired LDS difference of each adjacent link of the expected hierarchy
H ≥ GGN ≥ GGN-blockdiag ≥ EK-FAC ≥ K-FAC ≥ identity (Hong et al. 2025, arXiv 2509.23437),
i.e. LDS(higher) − LDS(lower) on the same resampled subsets, with its paired interval; the
verdict of a link is ≥ when the interval lies above 0, ≈ when it contains 0, < below 0
(``groundtruth.hierarchy`` in results.json). ``--tables`` prints the same numbers as Markdown.
Nothing is typed in by hand: rerunning the script on the same service redraws the same figures.

The extraction (``sweep_rows``) is a pure function of results.json dicts; it imports neither
torch nor matplotlib, so tests/test_sweep_figures.py runs it on the golden fixture.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

#: Methods in the order of the expected hierarchy, then the diagonal baseline.
METHODS = ("H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC", "identity", "GGN-diag")
#: The adjacent links of the chain, as (higher, lower).
LINKS = (("H", "GGN"), ("GGN", "GGN-blockdiag"), ("GGN-blockdiag", "EK-FAC"),
         ("EK-FAC", "K-FAC"), ("K-FAC", "identity"))
COLORS = {"H": "#1f77b4", "GGN": "#ff7f0e", "GGN-blockdiag": "#2ca02c", "EK-FAC": "#d62728",
          "K-FAC": "#9467bd", "GGN-diag": "#8c564b", "identity": "#7f7f7f"}


# ----- extraction (pure) -------------------------------------------------------------------

def spec_value(spec: dict, field: str) -> Any:
    """The value of a dotted spec field, e.g. ``spec_value(spec, "inverse.damping")``.
    ``training.evaluate_at_epoch = None`` reads as the last epoch (what the study attributes at)."""
    node: Any = spec
    for part in field.split("."):
        node = node[part]
    if field == "training.evaluate_at_epoch" and node is None:
        return spec["training"]["epochs"]
    return node


def value_label(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _interval(entry: dict | None) -> dict | None:
    if not entry or entry.get("value") is None:
        return None
    return {"value": entry["value"], "ci_low": entry.get("ci_low"),
            "ci_high": entry.get("ci_high")}


def sweep_row(results: dict, field: str) -> dict:
    """One point of a sweep from its results.json: the swept value, LDS per method and α
    (value, ci_low, ci_high), the ceiling, the adjacent-pair differences with their intervals
    and verdicts, and what the point was computed at (epoch, accuracy, parameters, cache)."""
    gt = results.get("groundtruth") or {}
    alphas = [str(float(a)) for a in gt.get("alphas", [])]
    lds = {m: {a: _interval((results["methods"][m].get("lds") or {}).get(a)) for a in alphas}
           for m in METHODS if m in results.get("methods", {})}
    ceiling = {a: _interval((gt.get("ceiling") or {}).get(a)) for a in alphas}
    pairs: dict[str, dict[str, dict]] = {}
    for a in alphas:
        stored = (gt.get("hierarchy") or {}).get(a) or {}
        pairs[a] = {f"{p['higher']} ≥ {p['lower']}": {
            "value": p["value"], "ci_low": p.get("ci_low"), "ci_high": p.get("ci_high"),
            "verdict": p.get("verdict")} for p in stored.get("pairs", [])}
    training = results.get("training") or {}
    return {
        "value": spec_value(results["spec"], field),
        "label": value_label(spec_value(results["spec"], field)),
        "alphas": alphas,
        "lds": lds,
        "ceiling": ceiling,
        "pairs": pairs,
        "n_params": results.get("n_params"),
        "evaluated_epoch": training.get("evaluated_epoch"),
        "test_accuracy": training.get("test_accuracy"),
        "train_loss": training.get("train_loss"),
        "damping": results["spec"]["inverse"]["damping"],
        "cache": dict(results.get("cache") or {}),
        "seconds": sum((results.get("timings") or {}).values()),
        "timings": dict(results.get("timings") or {}),
    }


def sweep_rows(results_list: list[dict], field: str) -> list[dict]:
    """Every point of a sweep (results.json dicts), sorted by the swept value."""
    rows = [sweep_row(r, field) for r in results_list]

    def key(row):  # numbers by value; layer lists by depth, then widths
        v = row["value"]
        return (len(v), v) if isinstance(v, list) else (0, v)
    return sorted(rows, key=key)


def best_points(rows: list[dict], alpha: str) -> dict[str, int]:
    """For each method, the index of the point (e.g. the damping λ) where its LDS at α is
    highest: the sweep as a per-method tuning of that value."""
    best = {}
    for method in METHODS:
        values = [(r["lds"].get(method, {}).get(alpha) or {}).get("value") for r in rows]
        if any(v is not None for v in values):
            best[method] = max((v, i) for i, v in enumerate(values) if v is not None)[1]
    return best


def paired_difference(value_a: float, value_b: float, boot_a, boot_b) -> dict:
    """LDS(a) − LDS(b) with the 95 % percentile interval of the resample-by-resample
    differences; valid across studies that share subsets and bootstrap seed (every point of
    a sweep over the inverse or the checkpoint does)."""
    diffs = sorted(x - y for x, y in zip(boot_a, boot_b, strict=True))
    n = len(diffs)

    def pct(q):  # linear interpolation, as numpy.percentile
        k = (n - 1) * q
        lo, hi = math.floor(k), math.ceil(k)
        return diffs[lo] + (diffs[hi] - diffs[lo]) * (k - lo)
    low, high = pct(0.025), pct(0.975)
    verdict = "≥" if low > 0 else "<" if high < 0 else "≈"
    return {"value": value_a - value_b, "ci_low": low, "ci_high": high, "verdict": verdict}


# ----- the service (REST) ------------------------------------------------------------------

def _get(url: str) -> Any:
    import urllib.request
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def _time(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def load_sweep(url: str, sweep_id: int) -> dict:
    """A stored sweep: its field, its points' results and its wall time (first study created
    to last study finished; with one worker shared by several sweeps this includes queueing
    behind the others)."""
    sweep = _get(f"{url}/api/v1/sweeps/{sweep_id}")
    field = sweep["fields"][0]
    results, states, stamps = [], {}, []
    for point in sweep["points"]:
        study = point["study"]
        states[study["id"]] = study["state"]
        stamps.append((_time(study.get("created_at")), _time(study.get("finished_at"))))
        if study["state"] == "succeeded":
            results.append(_get(f"{url}/api/v1/studies/{study['id']}/results"))
    created = [c for c, _ in stamps if c]
    finished = [f for _, f in stamps if f]
    wall = (max(finished) - min(created)).total_seconds() \
        if created and len(finished) == len(stamps) else None
    rows = sweep_rows(results, field)
    ids = {json.dumps(spec_value(r["spec"], field)): sid
           for r, sid in zip(results, [p["study"]["id"] for p in sweep["points"]
                                       if p["study"]["state"] == "succeeded"], strict=True)}
    for row in rows:
        row["study"] = ids[json.dumps(row["value"])]
    return {"id": sweep_id, "name": sweep["name"], "field": field, "grid": sweep["grid"],
            "states": states, "rows": rows, "wall_s": wall, "url": url}


def links_at_best(sweep: dict, alpha: str) -> list[str]:
    """Markdown rows: each adjacent link with both methods at their own best point of the
    sweep, the paired interval from the stored bootstrap resamples (lds_bootstrap/<m>/<α>)."""
    rows, url = sweep["rows"], sweep["url"]
    best = best_points(rows, alpha)

    def boot(method):
        row = rows[best[method]]
        name = f"lds_bootstrap/{method}/{alpha}"
        return _get(f"{url}/api/v1/studies/{row['study']}/arrays/{name}?format=json")

    out = []
    for hi, lo in LINKS:
        if hi not in best or lo not in best:
            continue
        a, b = rows[best[hi]], rows[best[lo]]
        d = paired_difference(a["lds"][hi][alpha]["value"], b["lds"][lo][alpha]["value"],
                              _values(boot(hi)), _values(boot(lo)))
        out.append(f"| {hi} @ {a['label']} ≥ {lo} @ {b['label']} | {d['verdict']} {_fmt(d)} |")
    return out


def _values(payload) -> list[float]:
    """An array fetched as JSON: the bare list, or {"data": [...]} / {"values": [...]}."""
    if isinstance(payload, dict):
        for key in ("data", "values", "array"):
            if key in payload:
                return payload[key]
    return payload


# ----- figures -----------------------------------------------------------------------------

def _numeric(rows: list[dict]) -> bool:
    return all(isinstance(r["value"], (int, float)) for r in rows)


def draw(sweep: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep["rows"]
    alphas = rows[0]["alphas"]
    numeric = _numeric(rows)
    logx = sweep["field"] == "inverse.damping"
    xs = [r["value"] for r in rows] if numeric else list(range(len(rows)))
    fig, axes = plt.subplots(len(alphas), 2, figsize=(13, 3.4 * len(alphas) + 0.6),
                             squeeze=False)
    for i, alpha in enumerate(alphas):
        ax, bx = axes[i]
        for method in METHODS:
            pts = [(x, r["lds"].get(method, {}).get(alpha)) for x, r in zip(xs, rows)]
            pts = [(x, e) for x, e in pts if e]
            if not pts:
                continue
            ax.errorbar([x for x, _ in pts], [e["value"] for _, e in pts],
                        yerr=[[e["value"] - e["ci_low"] for _, e in pts],
                              [e["ci_high"] - e["value"] for _, e in pts]],
                        fmt="o-", ms=4, lw=1, capsize=2, color=COLORS[method], label=method)
        ceil = [(x, r["ceiling"].get(alpha)) for x, r in zip(xs, rows)]
        ceil = [(x, e) for x, e in ceil if e]
        if ceil:
            ax.plot([x for x, _ in ceil], [e["value"] for _, e in ceil], "k--", marker="_",
                    lw=0.8, label="seed-noise ceiling")
        ax.set_ylabel(f"LDS, α = {alpha}")
        width = (max(xs) - min(xs)) / 60 if numeric and not logx and len(xs) > 1 else 0.06
        for k, (hi, lo) in enumerate(LINKS):
            name = f"{hi} ≥ {lo}"
            pts = [(x, r["pairs"].get(alpha, {}).get(name)) for x, r in zip(xs, rows)]
            pts = [(x, e) for x, e in pts if e and e["ci_low"] is not None]
            if not pts:
                continue
            shift = (k - (len(LINKS) - 1) / 2)
            px = [x * 10 ** (shift * 0.04) if logx else x + shift * width for x, _ in pts]
            bx.errorbar(px, [e["value"] for _, e in pts],
                        yerr=[[e["value"] - e["ci_low"] for _, e in pts],
                              [e["ci_high"] - e["value"] for _, e in pts]],
                        fmt="s", ms=4, capsize=2, color=COLORS[lo],
                        label=f"LDS({hi}) − LDS({lo})")
        bx.axhline(0, color="black", lw=0.6, ls=":")
        bx.set_ylabel(f"paired Δ LDS, α = {alpha}")
        for a in (ax, bx):
            if logx:
                a.set_xscale("log")
            if not numeric:
                a.set_xticks(xs, [r["label"] for r in rows])
    axes[-1][0].set_xlabel(sweep["field"])
    axes[-1][1].set_xlabel(sweep["field"])
    axes[0][0].legend(fontsize=7, ncol=2, loc="best", framealpha=0.8)
    axes[0][1].legend(fontsize=7, ncol=1, loc="best")
    axes[0][0].set_title("LDS per method (95 % bootstrap interval over subsets)")
    axes[0][1].set_title("adjacent links LDS(higher) − LDS(lower), paired 95 % interval")
    fig.suptitle(f"{sweep['name']} (sweep {sweep['id']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# ----- tables ------------------------------------------------------------------------------

def _fmt(e: dict | None, digits: int = 3) -> str:
    if not e:
        return "–"
    if e.get("ci_low") is None:
        return f"{e['value']:.{digits}f}"
    return f"{e['value']:.{digits}f} [{e['ci_low']:.{digits}f}, {e['ci_high']:.{digits}f}]"


def tables(sweep: dict, alpha: str = "0.5") -> str:
    rows = sweep["rows"]
    methods = [m for m in METHODS if any(m in r["lds"] for r in rows)]
    out = [f"### {sweep['name']} (sweep {sweep['id']}), α = {alpha}", "",
           "| " + sweep["field"] + " | params | epoch | test acc | " + " | ".join(methods)
           + " | ceiling |", "|" + "---|" * (len(methods) + 5)]
    for r in rows:
        cells = [_fmt(r["lds"].get(m, {}).get(alpha)) for m in methods]
        out.append(f"| {r['label']} | {r['n_params']:,} | {r['evaluated_epoch']} | "
                   f"{r['test_accuracy']:.3f} | " + " | ".join(cells)
                   + f" | {_fmt(r['ceiling'].get(alpha))} |")
    out += ["", "| " + sweep["field"] + " | " + " | ".join(f"{h} ≥ {lo}" for h, lo in LINKS)
            + " |", "|" + "---|" * (len(LINKS) + 1)]
    for r in rows:
        cells = []
        for hi, lo in LINKS:
            e = r["pairs"].get(alpha, {}).get(f"{hi} ≥ {lo}")
            cells.append(f"{e['verdict']} {_fmt(e)}" if e else "–")
        out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    wall = f"{sweep['wall_s']:.0f} s" if sweep["wall_s"] is not None else "unfinished"
    states = sorted(set(sweep["states"].values()))
    out += ["", f"wall time (first created → last finished): {wall}; states: {states}; "
            f"stage seconds summed over points: {sum(r['seconds'] for r in rows):.0f} s", ""]
    return "\n".join(out)


def verdict_strings(sweep: dict) -> str:
    """One line per point and α: the chain with each link's verdict."""
    out = []
    for r in sweep["rows"]:
        for a in r["alphas"]:
            chain = LINKS[0][0]
            for hi, lo in LINKS:
                e = r["pairs"].get(a, {}).get(f"{hi} ≥ {lo}")
                verdict = {"≥": "≥", "≈": "≈", "<": "<"}.get(e["verdict"], "?") if e else "?"
                chain += f" {verdict} {lo}"
            out.append(f"{sweep['field']}={r['label']} α={a}: {chain}")
    return "\n".join(out)


def cache_lines(sweep: dict) -> str:
    """Per point, what the stage cache did (results.json ``cache``: computed, hit, reused)
    and the seconds of the training stage: shows which points trained the base model."""
    out = []
    for r in sweep["rows"]:
        events: dict[str, list[str]] = {}
        for stage, event in r["cache"].items():
            events.setdefault(event, []).append(stage)
        parts = [f"{event}: {', '.join(sorted(stages))}"
                 for event, stages in sorted(events.items())]
        out.append(f"{sweep['field']}={r['label']}: train {r['cache'].get('train')} "
                   f"({r['timings'].get('train', 0):.1f} s), stages {r['seconds']:.0f} s; "
                   + "; ".join(parts))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", help="AXIS=SWEEP_ID, e.g. damping=2")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--tables", action="store_true", help="print Markdown tables")
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.sweeps:
        axis, _, sid = item.partition("=")
        sweep = load_sweep(args.url.rstrip("/"), int(sid))
        if not sweep["rows"]:
            print(f"sweep {sid}: no succeeded study yet", file=sys.stderr)
            continue
        if not args.no_figures:
            path = args.out / f"sweep-{axis}.png"
            draw(sweep, path)
            print(f"wrote {path}", file=sys.stderr)
        if args.tables:
            for alpha in sweep["rows"][0]["alphas"]:
                print(tables(sweep, alpha))
            print(verdict_strings(sweep) + "\n")
            print(cache_lines(sweep) + "\n")
            if sweep["field"] == "inverse.damping":
                for alpha in sweep["rows"][0]["alphas"]:
                    print(f"each method at its own best λ, α = {alpha}\n")
                    print("| link | paired Δ LDS |\n|---|---|")
                    print("\n".join(links_at_best(sweep, alpha)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
