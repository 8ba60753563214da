"""Figures comparing studies (DESIGN.md, Dashboard: compare page)."""

from __future__ import annotations

import plotly.graph_objects as go

from frontend.figures.study import METHOD_COLORS, _layout, ordered_methods


def flatten(spec: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in spec.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, path + ".")
        else:
            out[path] = value
    return out


def diff_spec(specs: list[dict]) -> dict[str, list]:
    """Only the spec fields whose values differ between the studies: path → values."""
    flat = [flatten(s) for s in specs]
    keys = sorted(set().union(*flat))
    return {k: [f.get(k) for f in flat] for k in keys
            if len({repr(f.get(k)) for f in flat}) > 1}


def compare_figure(studies: list[dict], parameter: str, metric: str = "lds",
                   alpha: str | None = None, theme: str = "light") -> go.Figure:
    """A metric of every method against the spec field that differs between studies.

    metric: "lds" (needs α), "residual_to_H", "residual_to_GGN".
    """
    rows = sorted(((flatten(r["spec"]).get(parameter), r) for r in studies),
                  key=lambda item: (str(type(item[0])), item[0]))
    fig = go.Figure()
    methods = ordered_methods(set().union(*(r["methods"] for r in studies)))
    for name in methods:
        xs, ys = [], []
        for x, results in rows:
            entry = results["methods"].get(name)
            if entry is None:
                continue
            if metric == "lds":
                value = (entry.get("lds") or {}).get(alpha or "0.5", {}).get("value")
            else:
                value = entry.get(f"relative_{metric}")
            xs.append(str(x) if isinstance(x, list) else x)
            ys.append(value)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name,
                                 line=dict(color=METHOD_COLORS.get(name))))
    fig.update_xaxes(title=parameter)
    numbers = [x for x, _ in rows if isinstance(x, int | float) and not isinstance(x, bool)]
    if len(numbers) == len(rows) and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
        fig.update_xaxes(type="log")  # damping, learning rate, …: orders of magnitude apart
    if metric != "lds":
        fig.update_yaxes(type="log")  # the identity's residual is ~10x the others'
    fig.update_yaxes(title=metric if metric != "lds" else f"LDS (α = {alpha or '0.5'})")
    return _layout(fig, f"{metric} against {parameter}", theme)
