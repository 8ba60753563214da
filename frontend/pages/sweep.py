"""A sweep's page (``/sweeps/<id>``): its name and grid (field → values), overall progress
(n of m finished, how many failed), its studies as a table (the swept value(s), state,
progress and, once finished, each method's LDS at α = 0.5, each study a link) and a link to
the compare page of its studies. While a point is queued or running the page polls.

The page arrives filled: its layout fetches the sweep (off the event loop), so no placeholder
is drawn first; a sweep the API does not know gets the not-found page (and HTTP 404, from
``frontend.app.page_status``)."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from frontend import logic
from frontend.api_client import ApiError, get_client
from frontend.components import alert, api_error, card, chip
from frontend.components.sweeps import (
    compare_href,
    grid_table,
    points_table,
    sweep_counts,
    sweep_progress,
    sweep_title,
)
from frontend.runtime import threaded

dash.register_page(__name__, path_template="/sweeps/<sweep_id>", name="Sweep",
                   title="Sweep · curvscope")

POLL_MS = 2000


@threaded
def _fetch(sweep_id: int) -> dict:
    return get_client().get_json(f"/sweeps/{int(sweep_id)}")


def not_found(message: str) -> html.Div:
    """The not-found page's content, with the API's sentence."""
    return html.Div(id="sweep-missing", children=[
        html.H1("Nothing here"),
        alert(message, "error", "No such sweep."),
        html.P(["The sweeps are listed on the ", dcc.Link("Sweeps", href="/sweeps"),
                " page."]),
    ])


async def layout(sweep_id=None, **_):
    sid = logic.parse_int(sweep_id)
    if sid is None or sid < 1:
        return not_found(f"{sweep_id!r} is not a sweep id.")
    error, sweep = None, None
    try:
        sweep = await _fetch(sid)
    except ApiError as exc:
        if exc.status == 404:
            return not_found(exc.detail)
        error = api_error(exc, f"Could not load sweep #{sid}")
    return html.Div([
        dcc.Store(id="sweep-id", data=sid),
        dcc.Interval(id="sweep-poll", interval=POLL_MS,
                     disabled=sweep is not None and not _active(sweep)),
        html.Div(id="sweep-error", children=error),
        html.Div(id="sweep-content", children=sweep_body(sweep) if sweep else
                 html.P(f"Loading sweep #{sid}…", className="muted")),
    ])


def sweep_body(sweep: dict) -> list:
    """The page as the sweep stands now (also what each poll redraws)."""
    href = compare_href(sweep)
    compare = dcc.Link("Compare", href=href, id="sweep-compare",
                       className="button button-link",
                       title="Every study of the sweep on the compare page: metrics against "
                       "the swept field") if href else html.Span(
        "Compare needs two or more studies.", id="sweep-compare", className="muted small")
    fields = list(sweep.get("grid") or {})
    note = ("One field varies: the compare page draws each metric against it." if
            len(fields) == 1 else "Several fields vary: the compare page shows a table of the "
            "differing fields and the metrics (no lines), or pick the studies along one "
            "field there.")
    reused = (f" {sweep['reused']} of them already existed and were reused."
              if sweep.get("reused") else "")
    return [
        html.Div(className="page-head", children=[
            html.H1(sweep_title(sweep), id="sweep-title"),
            html.Span(chip(sweep["state"]), id="sweep-chip"),
            html.Div(className="grow"),
            compare,
        ]),
        html.Div(className="grid-2", children=[
            card("Grid", [grid_table(sweep.get("grid") or {}), html.P(
                f"{sweep['count']} studies, one per combination.{reused} {note}",
                className="small muted")]),
            card("Progress", [sweep_progress(sweep), html.P(
                "Finished studies show each method's LDS (the linear datamodeling score: "
                "Spearman correlation of predicted and retrained losses over random subsets; "
                "higher is better).", className="small muted")], id="sweep-progress-card"),
        ]),
        card("Studies", html.Div(points_table(sweep), className="table-wrap")),
    ]


@callback(Output("sweep-content", "children"), Output("sweep-error", "children"),
          Output("sweep-poll", "disabled"), Input("sweep-poll", "n_intervals"),
          State("sweep-id", "data"), prevent_initial_call=True)
@threaded
def poll(_n, sweep_id):
    """Redraw while points are queued or running; stop once all have ended (or the sweep is
    gone)."""
    try:
        sweep = get_client().get_json(f"/sweeps/{int(sweep_id)}")
    except ApiError as exc:
        transient = exc.status == 0 or exc.status >= 500
        return no_update, api_error(exc, f"Could not load sweep #{sweep_id}"), not transient
    return sweep_body(sweep), None, not _active(sweep)


def _active(sweep: dict) -> bool:
    """Whether any point is still queued or running (a sweep is "failed" as soon as one
    point failed, while others may still run)."""
    return sweep_counts(sweep)["active"] > 0
