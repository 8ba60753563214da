"""The ablation ladder: from curvscope's protocol to the official code's, one choice at a time.

Hong et al. (2025, arXiv 2509.23437) claim that EK-FAC beats K-FAC and that eigenvalue mismatch
carries "the majority of the error and influence loss". curvscope's corrected protocol does not
reproduce either claim. The ladder says which of the official code's choices each claim rests on:
it starts from a base study (curvscope's defaults on the paper preset) and switches the choices
in which the official code (github SteveHong1901/Hessian) differs, toward the ``paper-code``
preset:

===============  ==========================================================================
rung             what it switches
===============  ==========================================================================
split            ``data.split = "per_loader"``: three permutations, 160 of 180 test points
                 trained on
schedule         ``training.schedule = "cosine"``
blocks           ``curvature.block_structure = "tensor"``: weight and bias in their own blocks
fisher           ``curvature.fisher_types = {K-FAC: mc, EK-FAC: mc}``: a 1-sample MC Fisher
kfac_damping     ``inverse.kfac_damping = "heuristic"``: K-FAC's π damping (EK-FAC stays exact)
inverse_rule     ``inverse.rule = "drop_absolute"``: zero every e + λ ≤ 1e-6 (negatives too)
lds_summary      ``groundtruth.lds_summary = "interval_midpoint"`` with 100 bootstrap resamples
===============  ==========================================================================

Two paths through them: **each** switches one choice alone (its effect on its own), and
**cumulative** adds them one after another in the order given, so the last cumulative rung is
the official protocol. Every rung is an ordinary study: the stage cache shares one trained model
and one retraining per (split, schedule), and the structured curvature between rungs that only
change the inverse or the summary.

For every rung the summary (:func:`summarize_ladder`) gives the headline LDS per method and α
with its interval, the paired difference against the base rung with its interval, the hierarchy
verdict, and whether each of the paper's two claims holds. Paired differences are exact: every
rung draws its bootstrap resamples over subsets from the same seed, so resample b of one rung and
resample b of the other hold the same subsets (``lds_bootstrap/<method>/<α>`` arrays).

This module imports no torch (the API validates and summarises ladders); :func:`run_ladder`
imports the pipeline only when called.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from curvscope.spec import deep_merge

#: Each rung's override of the spec, in the default cumulative order.
RUNGS: dict[str, dict] = {
    "split": {"data": {"split": "per_loader"}},
    "schedule": {"training": {"schedule": "cosine"}},
    "blocks": {"curvature": {"block_structure": "tensor"}},
    "fisher": {"curvature": {"fisher_types": {"K-FAC": "mc", "EK-FAC": "mc"}, "mc_samples": 1}},
    "kfac_damping": {"inverse": {"kfac_damping": "heuristic"}},
    "inverse_rule": {"inverse": {"rule": "drop_absolute"}},
    "lds_summary": {"groundtruth": {"lds_summary": "interval_midpoint", "n_bootstrap": 100}},
}

RUNG_DESCRIPTIONS: dict[str, str] = {
    "split": "three permutations, one per data loader (160 of 180 test points trained on)",
    "schedule": "cosine learning-rate schedule",
    "blocks": "one block per parameter tensor (weight and bias apart)",
    "fisher": "K-FAC and EK-FAC on a 1-sample Monte-Carlo Fisher",
    "kfac_damping": "K-FAC inverted with heuristic π damping",
    "inverse_rule": "eigen-inverse zeroing e + λ ≤ 1e-6 (absolute), negatives included",
    "lds_summary": "LDS reported as the midpoint of a 100-resample bootstrap interval",
}

BASE_RUNG = "base"


class LadderSpec(BaseModel):
    """A base study and the choices to switch toward the official code's protocol."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"base": {"preset": "paper"}, "rungs": list(RUNGS), "path": "both"},
        {"base": {"preset": "quick"}, "rungs": ["blocks", "kfac_damping"], "path": "each"}]})

    name: str | None = Field(default=None, max_length=120,
                             description="Names the rungs' studies '<name>: <rung>'.")
    base: dict[str, Any] = Field(
        default_factory=lambda: {"preset": "paper"},
        description="The base study: a preset plus overrides, as for POST /studies (default the "
        "paper preset with curvscope's protocol).")
    rungs: list[str] = Field(
        default_factory=lambda: list(RUNGS), min_length=1, max_length=len(RUNGS),
        description=f"The choices to switch, in cumulative order; allowed: {', '.join(RUNGS)}.")
    path: Literal["each", "cumulative", "both"] = Field(
        default="both", description="each: every choice alone against the base; cumulative: "
        "one after another (the last rung is the official protocol); both.")

    @field_validator("rungs")
    @classmethod
    def _known_rungs(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in RUNGS]
        if unknown:
            raise ValueError(f"unknown ladder rung {unknown[0]!r}; allowed: {', '.join(RUNGS)}")
        if len(set(value)) != len(value):
            raise ValueError("ladder rungs must not repeat")
        return value


@dataclass(frozen=True)
class Rung:
    """One study of the ladder: its label, its path, the choices switched and its config."""

    label: str  # "base", "split", "+schedule", …
    path: Literal["base", "each", "cumulative"]
    switched: tuple[str, ...]
    config: dict

    def describe(self) -> str:
        if not self.switched:
            return "curvscope's protocol"
        return "; ".join(RUNG_DESCRIPTIONS[r] for r in self.switched)


def ladder_rungs(ladder: LadderSpec) -> list[Rung]:
    """The base rung, then the 'each' rungs, then the 'cumulative' ones (a cumulative rung of
    one choice is the same study as that choice alone, so it is listed once, under 'each',
    when both paths are asked for)."""
    name = ladder.name or "ladder"

    def config(switched: tuple[str, ...], label: str) -> dict:
        out = dict(ladder.base)
        for rung in switched:
            out = deep_merge(out, RUNGS[rung])
        out["name"] = f"{name}: {label}"[:200]
        return out

    rungs = [Rung(BASE_RUNG, "base", (), config((), BASE_RUNG))]
    if ladder.path in ("each", "both"):
        rungs += [Rung(r, "each", (r,), config((r,), r)) for r in ladder.rungs]
    if ladder.path in ("cumulative", "both"):
        start = 2 if ladder.path == "both" else 1
        for k in range(start, len(ladder.rungs) + 1):
            switched = tuple(ladder.rungs[:k])
            label = ladder.rungs[0] + "".join(f" +{r}" for r in ladder.rungs[1:k])
            rungs.append(Rung(label, "cumulative", switched, config(switched, label)))
    return rungs


# --- summary ------------------------------------------------------------------------------------

CLAIMS = {
    "ekfac_beats_kfac": "EK-FAC attributes better than K-FAC (paired LDS difference above 0)",
    "eigenvalue_majority": "eigenvalue mismatch is the majority of K-FAC's within-block error",
}


def _headline(cell: Mapping) -> float | None:
    value = cell.get("headline", cell.get("value"))
    return None if value is None else float(value)


def _is_point(cell: Mapping) -> bool:
    """The headline is the point estimate (the bootstrap resamples are resamples of it)."""
    return cell.get("headline", cell.get("value")) == cell.get("value")


def _paired(a: np.ndarray | None, b: np.ndarray | None) -> tuple[float | None, float | None]:
    """95 % percentile interval of a − b over the resamples both arrays hold (the first ones:
    rungs draw their resamples from the same seed, so resample i holds the same subsets)."""
    if a is None or b is None:
        return None, None
    n = min(len(a), len(b))
    diff = np.asarray(a[:n], dtype=float) - np.asarray(b[:n], dtype=float)
    diff = diff[np.isfinite(diff)]
    if not len(diff):
        return None, None
    low, high = np.quantile(diff, [0.025, 0.975])
    return float(low), float(high)


def chain_verdict(check: Mapping) -> str:
    """'H ≈ GGN ≥ GGN-blockdiag ≥ EK-FAC < K-FAC ≥ identity' from a hierarchy check."""
    pairs = check.get("pairs") or []
    if not pairs:
        return ""
    return " ".join(f"{p['higher']} {p['verdict']}" for p in pairs) + f" {pairs[-1]['lower']}"


def _pair(check: Mapping, higher: str, lower: str) -> Mapping | None:
    return next((p for p in check.get("pairs") or []
                 if p["higher"] == higher and p["lower"] == lower), None)


def _mismatch_shares(results: Mapping) -> dict[str, Any]:
    decomposition = results.get("decomposition") or {}
    shares = dict(decomposition.get("eigenvalue_mismatch_share") or {})
    if not shares and decomposition.get("kfac_error"):
        # results written before the share definitions: today's squared-Frobenius share
        shares = {"frobenius_squared": {
            "value": decomposition["kfac_error"]["eigenvalue_share"],
            "formula": "‖E − K‖² / (‖G_bd − E‖² + ‖E − K‖²)"}}
    return shares


def summarize_rung(results: Mapping, arrays: Mapping[str, np.ndarray],
                   base_results: Mapping, base_arrays: Mapping[str, np.ndarray]) -> dict:
    """One rung's row: LDS (headline and point) per method and α with intervals, the paired
    difference of the headline against the base rung, the hierarchy verdict, the mismatch
    shares and whether each of the paper's claims holds."""
    gt = results.get("groundtruth") or {}
    alphas = [str(a) for a in gt.get("alphas", [])]
    methods = list(results.get("methods", {}))
    lds: dict[str, dict] = {}
    delta: dict[str, dict] = {}
    for method in methods:
        lds[method], delta[method] = {}, {}
        base_method = base_results.get("methods", {}).get(method, {})
        for alpha in alphas:
            cell = results["methods"][method].get("lds", {}).get(alpha)
            if cell is None:
                continue
            lds[method][alpha] = {k: cell.get(k) for k in
                                  ("headline", "value", "ci_low", "ci_high", "interval_midpoint")}
            lds[method][alpha]["headline"] = _headline(cell)
            base_cell = base_method.get("lds", {}).get(alpha)
            if base_cell is None:
                continue
            key = f"lds_bootstrap/{method}/{alpha}"
            headline, base_headline = _headline(cell), _headline(base_cell)
            if _is_point(cell) and _is_point(base_cell):
                low, high = _paired(arrays.get(key), base_arrays.get(key))
            else:  # a midpoint is no bootstrap statistic: its difference has no interval
                low, high = None, None
            delta[method][alpha] = {
                "value": None if headline is None or base_headline is None
                else headline - base_headline,
                "point_value": float(cell["value"]) - float(base_cell["value"]),
                "ci_low": low, "ci_high": high}
    hierarchy = gt.get("hierarchy") or {}
    shares = _mismatch_shares(results)
    claims: dict[str, dict] = {"ekfac_beats_kfac": {}, "eigenvalue_majority": {}}
    for alpha in alphas:
        pair = _pair(hierarchy.get(alpha, {}), "EK-FAC", "K-FAC")
        claims["ekfac_beats_kfac"][alpha] = None if pair is None else pair["verdict"] == "≥"
    for definition, share in shares.items():
        value = share.get("value") if isinstance(share, Mapping) else share
        if isinstance(value, Mapping):  # per α (the LDS-level share)
            claims["eigenvalue_majority"][definition] = {
                a: (None if v is None else bool(v > 0.5)) for a, v in value.items()}
        else:
            claims["eigenvalue_majority"][definition] = None if value is None else bool(
                value > 0.5)
    return {
        "spec_hash": results.get("spec_hash"),
        "alphas": alphas,
        "lds_summary": results.get("spec", {}).get("groundtruth", {}).get("lds_summary",
                                                                           "point"),
        "lds": lds,
        "delta_vs_base": delta,
        "hierarchy": {a: {"chain": chain_verdict(c), "holds": c.get("holds"),
                          "violations": c.get("violations", [])}
                      for a, c in hierarchy.items()},
        "eigenvalue_mismatch_share": shares,
        "claims": claims,
        "test_accuracy": results.get("training", {}).get("test_accuracy"),
        "known_pitfalls": list(results.get("known_pitfalls") or []),
    }


def summarize_ladder(ladder: LadderSpec,
                     load: Callable[[Rung], tuple[Mapping, Mapping] | None]) -> dict:
    """The ladder's table. ``load(rung)`` returns the rung's (results, arrays) once it has
    finished, or None; unfinished rungs are listed without numbers."""
    rungs = ladder_rungs(ladder)
    loaded = {r.label: load(r) for r in rungs}
    base = loaded[BASE_RUNG]
    rows = []
    for rung in rungs:
        row: dict[str, Any] = {"label": rung.label, "path": rung.path,
                               "switched": list(rung.switched), "description": rung.describe()}
        if loaded[rung.label] is not None and base is not None:
            results, arrays = loaded[rung.label]
            row.update(summarize_rung(results, arrays, base[0], base[1]))
            row["finished"] = True
        else:
            row["finished"] = False
        rows.append(row)
    return {"ladder": ladder.model_dump(mode="json"), "claims": CLAIMS, "rungs": rows,
            "finished": all(r["finished"] for r in rows)}


# --- running it locally -------------------------------------------------------------------------


def rung_directory(out_dir: Path, rung: Rung) -> Path:
    safe = rung.label.replace(" +", "+").replace(" ", "_")
    return out_dir / safe


def run_ladder(ladder: LadderSpec, out_dir: Path, cache_dir: Path | None = None,
               progress: Callable[[str, str, float], None] | None = None) -> dict:
    """Run every rung as a study into ``out_dir/<rung>/`` through one stage cache, then write
    ``out_dir/ladder.json`` (the summary). Returns the summary."""
    from curvscope.spec import resolve_spec
    from curvscope.study import run_study

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ladder_spec.json").write_text(json.dumps(ladder.model_dump(mode="json"),
                                                          indent=2))
    outputs: dict[str, tuple[dict, dict]] = {}
    for rung in ladder_rungs(ladder):
        spec = resolve_spec(rung.config)
        report = (lambda stage, f, label=rung.label: progress(label, stage, f)) if progress \
            else None
        result = run_study(spec, rung_directory(out_dir, rung), cache_dir, report)
        outputs[rung.label] = (result.results, result.arrays)
    summary = summarize_ladder(ladder, lambda r: outputs.get(r.label))
    (out_dir / "ladder.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    return summary


def load_ladder_directory(out_dir: Path) -> dict:
    """Re-summarise a ladder folder written by :func:`run_ladder` (finished rungs only)."""
    out_dir = Path(out_dir)
    ladder = LadderSpec.model_validate_json((out_dir / "ladder_spec.json").read_text())

    def load(rung: Rung):
        folder = rung_directory(out_dir, rung)
        if not (folder / "results.json").exists():
            return None
        with np.load(folder / "arrays.npz") as npz:
            arrays = {k: npz[k] for k in npz.files if k.startswith("lds_bootstrap/")}
        return json.loads((folder / "results.json").read_text()), arrays

    return summarize_ladder(ladder, load)


# --- Markdown -----------------------------------------------------------------------------------


def _f(value, digits=3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}" if digits < 0 else f"{value:.{digits}f}"


def markdown_ladder(summary: Mapping, alpha: str | None = None) -> str:
    """The ladder as Markdown: per rung the headline LDS of each method at ``alpha`` (default
    0.5 or the first α) with its difference to the base rung, the chain verdict and the claims."""
    rows = [r for r in summary["rungs"] if r.get("finished")]
    if not rows:
        return "No rung of the ladder has finished yet.\n"
    alphas = rows[0]["alphas"]
    alpha = alpha or ("0.5" if "0.5" in alphas else alphas[0])
    methods = list(rows[0]["lds"])
    lines = [f"### Ablation ladder (α = {alpha}; Δ: paired difference to the base rung, "
             "95 % interval)", "",
             "| rung | path | " + " | ".join(methods) + " | EK-FAC > K-FAC | mismatch share |",
             "|---|---|" + "---|" * len(methods) + "---|---|"]
    for row in rows:
        cells = []
        for method in methods:
            cell = row["lds"].get(method, {}).get(alpha)
            d = row["delta_vs_base"].get(method, {}).get(alpha)
            if cell is None:
                cells.append("–")
                continue
            text = _f(cell["headline"])
            if d and row["label"] != BASE_RUNG and d["value"] is not None:
                interval = (f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                            if d["ci_low"] is not None else "")
                text += f" (Δ {d['value']:+.3f}{interval})"
            cells.append(text)
        claim = row["claims"]["ekfac_beats_kfac"].get(alpha)
        share = row["eigenvalue_mismatch_share"].get("frobenius_squared", {})
        share_value = share.get("value") if isinstance(share, Mapping) else None
        lines.append(f"| {row['label']} | {row['path']} | " + " | ".join(cells) + " | "
                     + ("yes" if claim else "no" if claim is not None else "–") + " | "
                     + (f"{100 * share_value:.1f} %" if isinstance(share_value, float) else "–")
                     + " |")
    lines += ["", "Hierarchy per rung:"]
    for row in rows:
        chain = row["hierarchy"].get(alpha, {}).get("chain", "")
        lines.append(f"- {row['label']}: {chain}")
    return "\n".join(lines) + "\n"
