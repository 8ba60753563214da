"""Layout pieces: navigation, status chips, alerts, cards, graphs, tables."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from frontend.api_client import ApiError

NAV = [("Studies", "/"), ("New study", "/new"), ("Compare", "/compare"),
       ("Sweeps", "/sweeps"), ("Ladder", "/ladder/new"), ("Jobs", "/jobs")]


def navbar() -> html.Header:
    return html.Header(className="navbar", children=[
        dcc.Link("curvscope", href="/", className="brand"),
        html.Nav([dcc.Link(label, href=href, className="nav-link",
                           id="nav-" + (href.strip("/").split("/")[0] or "studies"))
                  for label, href in NAV]),
        html.Div(className="nav-right", children=[
            html.Details(className="token-box", children=[
                html.Summary("API token", title="Only needed when the API requires a token "
                             "for writes (submit, cancel, retry, delete)."),
                dcc.Input(id="token-input", type="password", placeholder="bearer token",
                          debounce=True, className="input"),
            ]),
            html.Button("◐ theme", id="theme-toggle", className="button ghost",
                        title="Switch between light and dark"),
        ]),
    ])


def chip(state: str | None, extra: str | None = None) -> html.Span:
    state = state or "unknown"
    return html.Span(state + (f" · {extra}" if extra else ""),
                     className=f"chip chip-{state}", **{"data-state": state})


def progress_bar(fraction: float | None, label: str | None = None) -> html.Div:
    fraction = max(0.0, min(1.0, fraction or 0.0))
    return html.Div(className="progress", title=label or f"{100 * fraction:.0f} %", children=[
        html.Div(className="progress-fill", style={"width": f"{100 * fraction:.1f}%"}),
        html.Span(label or f"{100 * fraction:.0f} %", className="progress-label"),
    ])


def alert(message: Any, kind: str = "error", title: str | None = None,
          items: list | None = None) -> html.Div:
    children: list = []
    if title:
        children.append(html.Strong(title + " "))
    children.append(html.Span(message))
    if items:
        children.append(html.Ul([html.Li(i) for i in items]))
    return html.Div(children, className=f"alert alert-{kind}", role="alert")


def api_error(exc: Exception, what: str | None = None) -> html.Div:
    """A readable box for a failed API call (or any other error)."""
    if isinstance(exc, ApiError):
        items = [f"{e.get('field')}: {e.get('message')}" for e in exc.errors]
        title = exc.title if exc.status == 0 else f"{exc.title} ({exc.status})"
        message = exc.detail
    else:
        items, title = None, "Error"
        message = str(exc) or type(exc).__name__
    if what:
        message = f"{what}: {message}"
    return alert(message, "error", title, items)


def card(title: str | None, children: Any, id: str | None = None,
         actions: Any = None, className: str = "") -> html.Section:
    head = []
    if title:
        head = [html.Div(className="card-head", children=[html.H2(title), html.Div(
            actions, className="card-actions") if actions is not None else None])]
    kwargs = {"id": id} if id else {}
    return html.Section(className=f"card {className}".strip(),
                        children=[*head, html.Div(children, className="card-body")], **kwargs)


def section(children: Any, **kwargs) -> html.Div:
    return html.Div(children, className="section", **kwargs)


def graph(id: str, height: int | None = 420, figure: Any = None, **kwargs) -> dcc.Graph:
    """A graph showing ``figure``, else an empty placeholder until a callback fills it."""
    style = {"height": f"{height}px"} if height else {}
    if figure is None:
        figure = empty_figure("")
        figure["layout"]["meta"] = {"placeholder": True}  # replaced once the data arrives
    return dcc.Graph(id=id, figure=figure, style=style, config=GRAPH_CONFIG, className="graph",
                     **kwargs)


#: a lean plotly toolbar: download as PNG, zoom, pan, reset; no "Share chart" (plotly.js
#: uploads the figure to an external service with it), no Chart Studio, no logo
GRAPH_CONFIG = {
    "displaylogo": False, "showSendToCloud": False, "showEditInChartStudio": False,
    "showLink": False, "responsive": True, "toImageButtonOptions": {"format": "png"},
    "modeBarButtonsToRemove": ["sendChartToCloud", "editInChartStudio", "lasso2d", "select2d",
                               "autoScale2d", "zoomIn2d", "zoomOut2d", "toggleSpikelines",
                               "hoverClosestCartesian", "hoverCompareCartesian"],
}


def empty_figure(text: str, theme: str = "light") -> dict:
    """A figure with only a message, as a plain dict: no plotly template to build or send
    (a page lays out several of these placeholders at once)."""
    layout: dict[str, Any] = {
        "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "margin": {"l": 20, "r": 20, "t": 20, "b": 20},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": "#e6e9ee" if theme == "dark" else "#1d2330"},
    }
    if text:
        layout["annotations"] = [{"text": text, "showarrow": False, "x": 0.5, "y": 0.5,
                                  "xref": "paper", "yref": "paper", "font": {"size": 14}}]
    return {"data": [], "layout": layout}


def error_figure(exc: Exception, theme: str = "light") -> dict:
    text = str(exc) if not isinstance(exc, ApiError) else exc.detail
    if len(text) > 160:
        text = text[:157] + "…"
    return empty_figure("⚠ " + text, theme)


def kv_table(rows: list[tuple[str, Any]], className: str = "kv") -> html.Table:
    return html.Table(className=className, children=[html.Tbody([
        html.Tr([html.Th(k), html.Td(v)]) for k, v in rows])])
