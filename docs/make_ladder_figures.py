"""Figures of docs/paper-gap.md from a ladder folder written by `curvscope ladder`.

    .venv/bin/pip install matplotlib          # the docs extra: pip install -e ".[docs]"
    .venv/bin/python docs/make_ladder_figures.py runs/ladder-paper docs/figures

Writes ``ladder-delta.png`` (per rung, every method's paired LDS difference to the base rung
at each α, with its 95 % interval) and ``ladder-shares.png`` (the eigenvalue-mismatch share
under every definition, per rung). Everything comes from the stored results through
``curvscope.ladder.load_ladder_directory``: re-runnable, nothing typed in by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curvscope.ladder import load_ladder_directory  # noqa: E402

COLORS = {"H": "#1f77b4", "GGN": "#ff7f0e", "GGN-blockdiag": "#2ca02c", "EK-FAC": "#d62728",
          "K-FAC": "#9467bd", "GGN-diag": "#8c564b", "identity": "#7f7f7f"}
SHARES = ("frobenius_squared", "frobenius_ratio", "damped_operators", "inverses",
          "influence_scores")


def delta_figure(summary: dict, out: Path) -> None:
    rows = [r for r in summary["rungs"] if r.get("finished")]
    alphas = rows[0]["alphas"]
    methods = [m for m in COLORS if m in rows[0]["lds"]]
    fig, axes = plt.subplots(len(alphas), 1, figsize=(12, 3.2 * len(alphas)), sharex=True)
    axes = [axes] if len(alphas) == 1 else axes
    width = 0.8 / len(methods)
    for ax, alpha in zip(axes, alphas, strict=True):
        for k, method in enumerate(methods):
            xs, ys, lo, hi = [], [], [], []
            for i, row in enumerate(rows):
                d = row["delta_vs_base"].get(method, {}).get(alpha)
                if not d or d.get("value") is None:
                    continue
                xs.append(i - 0.4 + (k + 0.5) * width)
                ys.append(d["value"])
                lo.append(d["value"] - (d["ci_low"] if d["ci_low"] is not None else d["value"]))
                hi.append((d["ci_high"] if d["ci_high"] is not None else d["value"]) - d["value"])
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=4, color=COLORS[method],
                        label=method if alpha == alphas[0] else None, capsize=2)
        ax.axhline(0, color="black", lw=0.6, ls=":")
        ax.set_ylabel(f"Δ LDS vs base\nα = {alpha}")
    axes[-1].set_xticks(range(len(rows)), [r["label"].replace(" +", "\n+") for r in rows],
                        fontsize=7)
    axes[0].legend(ncol=len(methods), fontsize=8, loc="lower left")
    axes[0].set_title("What each official-code choice does to each method's LDS "
                      "(paired difference to curvscope's protocol, 95 % interval)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def shares_figure(summary: dict, out: Path) -> None:
    rows = [r for r in summary["rungs"] if r.get("finished")]
    fig, ax = plt.subplots(figsize=(12, 4))
    width = 0.8 / len(SHARES)
    for k, name in enumerate(SHARES):
        values = [(r["eigenvalue_mismatch_share"].get(name) or {}).get("value") for r in rows]
        xs = [i - 0.4 + (k + 0.5) * width for i in range(len(rows))]
        ax.bar(xs, [v if isinstance(v, float) else 0.0 for v in values], width, label=name)
    ax.axhline(0.5, color="black", lw=0.8, ls="--")
    ax.text(len(rows) - 0.5, 0.52, "majority", ha="right", fontsize=8)
    ax.set_xticks(range(len(rows)), [r["label"].replace(" +", "\n+") for r in rows], fontsize=7)
    ax.set_ylabel("eigenvalue-mismatch share")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("Share of K-FAC's within-block error that is eigenvalue mismatch, "
                 "per definition and rung")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(folder: str, out_dir: str) -> None:
    summary = load_ladder_directory(Path(folder))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    delta_figure(summary, out / "ladder-delta.png")
    shares_figure(summary, out / "ladder-shares.png")
    print(f"wrote {out / 'ladder-delta.png'} and {out / 'ladder-shares.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
