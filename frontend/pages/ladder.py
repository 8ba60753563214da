"""The ablation ladder's page (``/ladder/<id>``): from curvscope's protocol toward the official
code's, one choice at a time (``curvscope.ladder``). A table (per rung the headline LDS of every
method with its paired difference to the base rung, whether EK-FAC beats K-FAC, the
eigenvalue-mismatch share and the hierarchy) and two figures. While rungs run, their progress
shows and the page polls; ``/ladder/new`` submits a new ladder and lists the earlier ones."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from frontend.api_client import ApiError, get_client
from frontend.components import alert, api_error, card, chip, graph, progress_bar
from frontend.figures.ladder import (
    ladder_alphas,
    ladder_figure,
    ladder_lds_figure,
    ladder_table_rows,
)
from frontend.runtime import threaded

dash.register_page(__name__, path_template="/ladder/<ladder_id>", name="Ladder",
                   title="Ablation ladder · curvscope")

POLL_MS = 3000
RUNG_CHOICES = [  # (name, what it switches): curvscope.ladder.RUNGS, in its order
    ("split", "three permutations, one per data loader"),
    ("schedule", "cosine learning-rate schedule"),
    ("blocks", "weight and bias in their own blocks"),
    ("fisher", "K-FAC/EK-FAC on a 1-sample Monte-Carlo Fisher"),
    ("kfac_damping", "K-FAC with heuristic π damping"),
    ("inverse_rule", "eigen-inverse with an absolute threshold"),
    ("lds_summary", "LDS as the midpoint of a 100-resample interval"),
]


def layout(ladder_id=None, alpha=None, **_):
    if ladder_id in (None, "", "new"):
        return _new_ladder_layout()
    return html.Div([
        html.Div(className="page-head", children=[
            html.H1(f"Ablation ladder #{ladder_id}"),
            html.P("Each rung switches one of the official code's choices (alone, or on top of "
                   "the ones before it) starting from curvscope's protocol. Δ is the paired "
                   "difference of the LDS to the base rung; * marks a difference whose 95 % "
                   "interval excludes 0. Higher LDS is better.", className="muted")]),
        dcc.Store(id="ladder-id", data=ladder_id),
        dcc.Store(id="ladder-summary"),
        dcc.Interval(id="ladder-poll", interval=POLL_MS, disabled=False),
        html.Div(id="ladder-error"),
        card("Rungs", html.Div(id="ladder-rungs")),
        card(None, html.Div(className="row", children=[
            html.Div(className="control", children=[
                html.Label("α (subset fraction)", htmlFor="ladder-alpha"),
                dcc.Dropdown(id="ladder-alpha", clearable=False, value=alpha,
                             style={"minWidth": "120px"}),
            ])])),
        card("The ladder's table", html.Div(id="ladder-table")),
        html.Div(className="grid-2", children=[
            card("Δ LDS against the base rung", graph("ladder-fig-delta", 420)),
            card("LDS per rung", graph("ladder-fig-lds", 420)),
        ]),
    ])


def _new_ladder_layout():
    return html.Div([
        html.Div(className="page-head", children=[html.H1("New ablation ladder"), html.P(
            "Start from curvscope's protocol and switch the official code's choices one at a "
            "time: each alone, and one after another (the last rung is the official protocol). "
            "Rungs share the trained model and the retraining through the stage cache.",
            className="muted")]),
        card("Ladder", html.Div([
            html.Div(className="row", children=[
                html.Div(className="control", children=[
                    html.Label("Base study (preset)", htmlFor="ladder-base"),
                    dcc.Dropdown(id="ladder-base", value="quick", clearable=False,
                                 options=[{"label": "quick (seconds)", "value": "quick"},
                                          {"label": "paper (the paper's study)",
                                           "value": "paper"}],
                                 style={"minWidth": "240px"})]),
                html.Div(className="control", children=[
                    html.Label("Path", htmlFor="ladder-path"),
                    dcc.RadioItems(id="ladder-path", value="both", inline=True,
                                   options=[{"label": " each alone", "value": "each"},
                                            {"label": " cumulative", "value": "cumulative"},
                                            {"label": " both", "value": "both"}])]),
            ]),
            html.Fieldset([
                html.Legend("Choices to switch (in cumulative order)"),
                dcc.Checklist(id="ladder-rungs-choice", value=[r for r, _ in RUNG_CHOICES],
                              options=[{"label": f" {r}: {text}", "value": r}
                                       for r, text in RUNG_CHOICES],
                              labelStyle={"display": "block"}),
            ]),
            html.Button("Submit ladder", id="ladder-submit", className="button primary"),
            html.Div(id="ladder-submit-result"),
            dcc.Location(id="ladder-redirect", refresh=True),
        ])),
        card("Earlier ladders", html.Div(id="ladder-list")),
        dcc.Interval(id="ladder-list-load", interval=10_000, max_intervals=0),
    ])


@callback(Output("ladder-list", "children"), Input("ladder-list-load", "n_intervals"))
@threaded
def earlier_ladders(_n):
    try:
        listing = get_client().get_json("/ladders", limit=50)
    except ApiError as exc:
        return api_error(exc, "Could not list the ladders")
    if not listing["data"]:
        return html.Span("No ladder yet.", className="muted")
    return html.Ul([html.Li([dcc.Link(f"#{g['id']} {g.get('name') or ''}",
                                      href=g["links"]["page"]), " ", chip(g["state"]),
                             f" {len(g['rungs'])} rungs"]) for g in listing["data"]])


@callback(Output("ladder-submit-result", "children"), Output("ladder-redirect", "href"),
          Input("ladder-submit", "n_clicks"), State("ladder-base", "value"),
          State("ladder-path", "value"), State("ladder-rungs-choice", "value"),
          State("auth", "data"), prevent_initial_call=True,
          running=[(Output("ladder-submit", "disabled"), True, False)])
@threaded
def submit_ladder(_n, base, path, rungs, auth):
    if not rungs:
        return alert("Pick at least one choice to switch.", "warn"), no_update
    order = [r for r, _ in RUNG_CHOICES if r in rungs]
    body = {"base": {"preset": base}, "rungs": order, "path": path}
    try:
        response = get_client().request("POST", "/ladders", token=(auth or {}).get("token"),
                                        json=body)
    except ApiError as exc:
        return api_error(exc, "The API refused the ladder"), no_update
    ladder = response.json()
    return alert(f"Ladder #{ladder['id']}: {len(ladder['rungs'])} rungs queued.", "ok"), \
        ladder["links"]["page"]


@callback(Output("ladder-summary", "data"), Output("ladder-rungs", "children"),
          Output("ladder-error", "children"), Output("ladder-poll", "disabled"),
          Input("ladder-poll", "n_intervals"), State("ladder-id", "data"))
@threaded
def poll_ladder(_n, ladder_id):
    client = get_client()
    try:
        ladder = client.get_json(f"/ladders/{int(ladder_id)}")
    except (ValueError, TypeError):
        return None, None, alert(f"{ladder_id!r} is not a ladder id.", "error"), True
    except ApiError as exc:
        return None, None, api_error(exc, f"Ladder #{ladder_id}"), True
    rows = []
    for rung in ladder["rungs"]:
        study = rung["study"]
        state = study["state"] if study else "deleted"
        rows.append(html.Tr([
            html.Td(rung["label"]), html.Td(rung["path"]),
            html.Td(dcc.Link(f"#{study['id']}", href=f"/studies/{study['id']}")
                    if study else "–"),
            html.Td(chip(state)),
            html.Td(progress_bar(1.0 if state == "succeeded" else (study or {}).get("progress"))),
        ]))
    table = html.Div(className="table-wrap", children=html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("rung", "path", "study", "state",
                                                 "progress")])),
        html.Tbody(rows)]))  # scrolls inside its card on a phone, never the page
    summary = None
    try:
        summary = client.get_json(f"/ladders/{int(ladder_id)}/summary")
    except ApiError as exc:
        return None, table, api_error(exc, "The ladder's summary"), False
    done = ladder["state"] in ("succeeded", "failed")
    note = None
    if ladder["state"] == "failed":
        note = alert("Some rung failed, was cancelled or deleted: the table shows the rungs "
                     "that finished.", "warn")
    return summary, table, note, done


@callback(Output("ladder-alpha", "options"), Output("ladder-alpha", "value"),
          Input("ladder-summary", "data"), State("ladder-alpha", "value"))
def alpha_choices(summary, current):
    alphas = ladder_alphas(summary or {})
    if not alphas:
        return [], None
    value = current if current in alphas else ("0.5" if "0.5" in alphas else alphas[0])
    return [{"label": a, "value": a} for a in alphas], value


@callback(Output("ladder-table", "children"), Output("ladder-fig-delta", "figure"),
          Output("ladder-fig-lds", "figure"), Input("ladder-summary", "data"),
          Input("ladder-alpha", "value"), State("app-state", "data"))
def draw(summary, alpha, app_state):
    theme = (app_state or {}).get("theme", "light")
    if not summary or not alpha:
        return html.Span("No rung has finished yet.", className="muted"), no_update, no_update
    rows = ladder_table_rows(summary, alpha)
    methods = list(rows[0]["cells"]) if rows else []
    head = ["rung", "path", *methods, "EK-FAC > K-FAC", "mismatch share ‖E−K‖²",
            "hierarchy"]
    body = [html.Tr([html.Td(r["label"], title=r["description"]), html.Td(r["path"]),
                     *[html.Td(r["cells"].get(m, "–")) for m in methods],
                     html.Td(r["ekfac_beats_kfac"]), html.Td(r["mismatch_share"]),
                     html.Td(r["chain"])],
                    className="row-pitfalls" if r["pitfalls"] else None) for r in rows]
    table = html.Div(className="table-wrap", children=html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)]))
    return table, ladder_figure(summary, alpha, theme), ladder_lds_figure(summary, alpha, theme)
