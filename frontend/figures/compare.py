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


# -- issue 11 item 4: the compare view answers the question ----------------------------------
def differing_fields(specs: list[dict]) -> list[str]:
    """The spec fields whose values differ between the studies (the study's name aside)."""
    return [p for p in diff_spec(specs) if p != "name"]


def _axis_value(results: dict, parameter: str):
    value = flatten(results["spec"]).get(parameter)
    return str(value) if isinstance(value, list) else value


def _sorted_by(studies: list[dict], parameter: str) -> list[dict]:
    return [r for _, r in sorted(((flatten(r["spec"]).get(parameter), r) for r in studies),
                                 key=lambda item: (str(type(item[0])), item[0]))]


def _log_x(fig: go.Figure, studies: list[dict], parameter: str) -> None:
    numbers = [flatten(r["spec"]).get(parameter) for r in studies]
    numbers = [x for x in numbers if isinstance(x, int | float) and not isinstance(x, bool)]
    if len(numbers) == len(studies) and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
        fig.update_xaxes(type="log")


def lds_compare_figure(studies: list[dict], parameter: str, alpha: str,
                       theme: str = "light") -> go.Figure:
    """Every method's LDS at α against the one field the studies differ in, with each
    study's 95 % bootstrap interval (unpaired: see the paired differences beside it)."""
    rows = _sorted_by(studies, parameter)
    fig = go.Figure()
    for name in ordered_methods(set().union(*(r["methods"] for r in studies))):
        xs, ys, hi, lo = [], [], [], []
        for results in rows:
            lds = ((results["methods"].get(name) or {}).get("lds") or {}).get(alpha)
            if not lds:
                continue
            xs.append(_axis_value(results, parameter))
            ys.append(lds["value"])
            hi.append(lds["ci_high"] - lds["value"])
            lo.append(lds["value"] - lds["ci_low"])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name,
                                 line=dict(color=METHOD_COLORS.get(name)),
                                 error_y=dict(type="data", symmetric=False, array=hi,
                                              arrayminus=lo, thickness=1)))
    _log_x(fig, studies, parameter)
    fig.update_xaxes(title=parameter)
    fig.update_yaxes(title=f"LDS at α = {alpha} (higher is better)")
    return _layout(fig, f"LDS against {parameter}", theme)


LINK_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f"]


def hierarchy_compare_figure(studies: list[dict], parameter: str, alpha: str,
                             theme: str = "light") -> go.Figure:
    """The paired difference LDS(higher) − LDS(lower) of each adjacent pair of the chain
    (groundtruth.hierarchy) against the swept field, with its paired 95 % interval: above 0
    the link holds, an interval across 0 is level, below 0 it breaks."""
    rows = _sorted_by(studies, parameter)
    links: list[tuple[str, str]] = []
    for results in rows:
        for pair in (((results.get("groundtruth") or {}).get("hierarchy") or {}).get(alpha)
                     or {}).get("pairs", []):
            if (pair["higher"], pair["lower"]) not in links:
                links.append((pair["higher"], pair["lower"]))
    fig = go.Figure()
    for index, (higher, lower) in enumerate(links):
        xs, ys, hi, lo, words = [], [], [], [], []
        for results in rows:
            pairs = ((results.get("groundtruth") or {}).get("hierarchy") or {}).get(
                alpha, {}).get("pairs", [])
            pair = next((p for p in pairs if (p["higher"], p["lower"]) == (higher, lower)),
                        None)
            if pair is None:
                continue
            xs.append(_axis_value(results, parameter))
            ys.append(pair["value"])
            hi.append(pair["ci_high"] - pair["value"])
            lo.append(pair["value"] - pair["ci_low"])
            words.append({"≥": "holds", "≈": "level", "<": "breaks"}.get(pair["verdict"]))
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=f"{higher} − {lower}", meta="link",
            customdata=words, line=dict(color=LINK_COLORS[index % len(LINK_COLORS)]),
            error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo, thickness=1),
            hovertemplate="%{x}: %{y:.3f} (%{customdata})<extra>" + f"{higher} − {lower}"
                          "</extra>"))
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    _log_x(fig, studies, parameter)
    fig.update_xaxes(title=parameter)
    fig.update_yaxes(title=f"paired LDS difference at α = {alpha}")
    return _layout(fig, f"Links of the chain against {parameter}", theme)


def hierarchy_verdict_rows(studies: list[dict], parameter: str, alpha: str) -> list[dict]:
    """One row per value of the swept field: its study's verdict on each link of the chain
    (holds / level / breaks) at α, as groundtruth.hierarchy states it."""
    out = []
    for results in _sorted_by(studies, parameter):
        check = ((results.get("groundtruth") or {}).get("hierarchy") or {}).get(alpha) or {}
        out.append({"value": _axis_value(results, parameter), "holds": check.get("holds"),
                    "links": {f"{p['higher']} ≥ {p['lower']}": {
                        "≥": "holds", "≈": "level", "<": "breaks"}.get(p["verdict"])
                        for p in check.get("pairs", [])}})
    return out


def metrics_rows(studies: list[dict], alpha: str) -> tuple[list[str], list[dict]]:
    """For studies that differ in several fields: per study its differing fields' values
    and the LDS of every method at α (no line through them)."""
    fields = differing_fields([r["spec"] for r in studies])
    methods = ordered_methods(set().union(*(r["methods"] for r in studies)))
    rows = []
    for results in studies:
        flat = flatten(results["spec"])
        rows.append({"fields": {f: flat.get(f) for f in fields},
                     "lds": {m: (((results["methods"].get(m) or {}).get("lds") or {})
                                 .get(alpha) or {}).get("value") for m in methods},
                     "holds": (((results.get("groundtruth") or {}).get("hierarchy") or {})
                               .get(alpha) or {}).get("holds")})
    return methods, rows
