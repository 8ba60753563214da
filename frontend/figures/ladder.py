"""Figures of the ablation ladder (``GET /api/v1/ladders/{id}/summary``): how each of the
official code's choices moves every method's LDS (Hong et al. 2025 and its public code)."""

from __future__ import annotations

import plotly.graph_objects as go

from frontend.figures.study import METHOD_COLORS, _layout, ordered_methods


def finished_rungs(summary: dict) -> list[dict]:
    return [r for r in summary.get("rungs", []) if r.get("finished")]


def ladder_alphas(summary: dict) -> list[str]:
    rows = finished_rungs(summary)
    return list(rows[0]["alphas"]) if rows else []


def _rung_points(fig: go.Figure, rows: list[dict], value, hover: str) -> None:
    """One marker trace per method: ``value(row, method)`` → (y, low, high) or None, drawn
    per rung with its interval. Markers only: the rungs are separate studies, not points
    along one parameter."""
    methods = ordered_methods(set().union(*(r["lds"] for r in rows))) if rows else []
    for name in methods:
        xs, ys, up, down = [], [], [], []
        for row in rows:
            point = value(row, name)
            if point is None:
                continue
            y, low, high = point
            xs.append(row["label"])
            ys.append(y)
            up.append(0.0 if high is None else max(high - y, 0.0))
            down.append(0.0 if low is None else max(y - low, 0.0))
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name=name,
            marker=dict(color=METHOD_COLORS.get(name), size=9),
            error_y=dict(type="data", array=up, arrayminus=down, visible=True),
            hovertemplate=f"{name}<br>%{{x}}<br>{hover} %{{y:.3f}}<extra></extra>"))


def ladder_figure(summary: dict, alpha: str, theme: str = "light") -> go.Figure:
    """Per rung (x) the paired difference of every method's headline LDS to the base rung (y),
    with the paired 95 % interval: a point above 0 means the choice raised the method's LDS."""
    rows = finished_rungs(summary)
    fig = go.Figure()

    def delta(row, name):
        d = row["delta_vs_base"].get(name, {}).get(alpha)
        if not d or d.get("value") is None:
            return None
        return d["value"], d.get("ci_low"), d.get("ci_high")

    _rung_points(fig, rows, delta, "Δ LDS")
    fig.add_hline(y=0, line=dict(dash="dot", width=1))
    fig.update_xaxes(title="rung (choice switched toward the official code)",
                     categoryorder="array", categoryarray=[r["label"] for r in rows],
                     tickangle=-30)
    fig.update_yaxes(title=f"Δ LDS vs base (α = {alpha})", tickformat=".2f")
    return _layout(fig, "What each choice does to each method's LDS", theme)


def ladder_lds_figure(summary: dict, alpha: str, theme: str = "light") -> go.Figure:
    """Per rung the headline LDS of every method with its 95 % interval (as reported: the
    point estimate, or the interval's midpoint on a rung that switches the LDS summary)."""
    rows = finished_rungs(summary)
    fig = go.Figure()

    def headline(row, name):
        cell = row["lds"].get(name, {}).get(alpha)
        if not cell or cell.get("headline") is None:
            return None
        return cell["headline"], cell.get("ci_low"), cell.get("ci_high")

    _rung_points(fig, rows, headline, "LDS")
    fig.update_xaxes(title="rung", categoryorder="array",
                     categoryarray=[r["label"] for r in rows], tickangle=-30)
    fig.update_yaxes(title=f"LDS (α = {alpha}; higher is better)", tickformat=".2f")
    return _layout(fig, "LDS per rung", theme)


def ladder_table_rows(summary: dict, alpha: str) -> list[dict]:
    """One row per finished rung: label, path, what it switches, the headline LDS of every
    method (with Δ to the base), whether EK-FAC beats K-FAC, the mismatch share and the chain."""
    out = []
    for row in finished_rungs(summary):
        cells = {}
        for name, per_alpha in row["lds"].items():
            cell = per_alpha.get(alpha)
            d = row["delta_vs_base"].get(name, {}).get(alpha)
            if cell is None or cell.get("headline") is None:
                cells[name] = "–"
                continue
            text = f"{cell['headline']:.3f}"
            if row["label"] != "base" and d and d.get("value") is not None:
                text += f" ({d['value']:+.3f})"
                if d.get("ci_low") is not None and (d["ci_low"] > 0 or d["ci_high"] < 0):
                    text += " *"
            cells[name] = text
        claim = row["claims"]["ekfac_beats_kfac"].get(alpha)
        share = (row.get("eigenvalue_mismatch_share") or {}).get("frobenius_squared") or {}
        value = share.get("value") if isinstance(share, dict) else None
        out.append({"label": row["label"], "path": row["path"],
                    "description": row.get("description", ""), "cells": cells,
                    "ekfac_beats_kfac": "–" if claim is None else ("yes" if claim else "no"),
                    "mismatch_share": f"{100 * value:.1f} %" if isinstance(value, float)
                    else "–",
                    "chain": row["hierarchy"].get(alpha, {}).get("chain", ""),
                    "pitfalls": bool(row.get("known_pitfalls"))})
    return out
