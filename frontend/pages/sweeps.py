"""The sweeps (``/sweeps``), newest first: name, the fields swept, how many studies, state and
progress (n of m finished, how many failed), each a link to its page. Polls every 2 s while
a study of a listed sweep is queued or running."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, dcc, html

from frontend.api_client import ApiError, get_client
from frontend.components import api_error, card, chip
from frontend.components.sweeps import compare_href, sweep_counts, sweep_progress
from frontend.runtime import threaded

dash.register_page(__name__, path="/sweeps", name="Sweeps", title="Sweeps · curvscope")

POLL_MS = 2000
LIMIT = 200  # the API's largest page


def layout(**_):
    return html.Div([
        html.Div(className="page-head", children=[
            html.H1("Sweeps"), html.Div(className="grow"),
            dcc.Link("+ New sweep", href="/new#sweep-card", className="button button-link",
                     title="The New study page: its Sweep card varies up to three fields")]),
        html.P("A sweep is one study per combination of the values of a few spec fields; its "
               "page shows the grid, each study's state and LDS, and opens the compare page.",
               className="muted"),
        html.Div(id="sweeps-error"),
        card(None, html.Div(id="sweeps-table", className="table-wrap",
                            children=html.P("Loading sweeps…", className="muted"))),
        dcc.Interval(id="sweeps-poll", interval=POLL_MS),
    ])


@callback(Output("sweeps-table", "children"), Output("sweeps-error", "children"),
          Output("sweeps-poll", "disabled"), Input("sweeps-poll", "n_intervals"))
@threaded
def load(_n):
    try:
        listing = get_client().get_json("/sweeps", limit=LIMIT)
    except ApiError as exc:
        transient = exc.status == 0 or exc.status >= 500
        return html.P("No sweeps to show.", className="muted"), api_error(
            exc, "Could not list the sweeps"), not transient
    sweeps = listing["data"]
    if not sweeps:
        return html.P(["No sweeps yet. The ", dcc.Link("New study", href="/new"),
                       " page's Sweep card submits one."], className="muted"), None, True
    rows = []
    for sweep in sweeps:
        counts = sweep_counts(sweep)
        href = compare_href(sweep)
        rows.append(html.Tr([
            html.Td(dcc.Link(f"#{sweep['id']}", href=f"/sweeps/{sweep['id']}")),
            html.Td(dcc.Link(sweep.get("name") or "sweep", href=f"/sweeps/{sweep['id']}",
                             className="sweep-link")),
            html.Td(" × ".join(f"{field} ({len(values)})" for field, values
                               in (sweep.get("grid") or {}).items()), className="small"),
            html.Td(str(counts["total"]), className="num"),
            html.Td(chip(sweep["state"]), className="status"),
            html.Td(sweep_progress(sweep)),
            html.Td(dcc.Link("compare", href=href) if href else "–"),
        ], **{"data-sweep": sweep["id"]}))
    label = f"{len(sweeps)} sweep" + ("" if len(sweeps) == 1 else "s")
    if listing["count"] > len(sweeps):
        label += f" (the newest {LIMIT} of {listing['count']})"
    table = html.Table(className="table sweeps", children=[
        html.Thead(html.Tr([html.Th(h, className="num" if h == "studies" else None)
                            for h in ("sweep", "name", "fields (values)", "studies", "state",
                                      "progress", "compare")])),
        html.Tbody(rows)])
    active = any(sweep_counts(s)["active"] for s in sweeps)
    return [table, html.P(label, className="small muted")], None, not active
