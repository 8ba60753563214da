"""Studies list: status, live progress, headline LDS per method, data set and model, filters,
sort, pagination; the filters live in the URL."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, callback, clientside_callback, dcc, html

from frontend import logic
from frontend.api_client import ApiError, get_client
from frontend.components import api_error, card, chip, progress_bar
from frontend.runtime import threaded

dash.register_page(__name__, path="/", title="Studies · curvscope", name="Studies")

POLL_MS = 2000


def layout(state=None, q=None, preset=None, sort=None, page=None, **_):
    params = logic.list_params(state, q, preset, sort, page)
    controls = html.Div(className="row", children=[
        html.Div(className="control", children=[
            html.Label("State", htmlFor="studies-state"),
            dcc.Dropdown(id="studies-state", options=logic.STATES, value=params["state"],
                         multi=True, placeholder="any state", style={"minWidth": "240px"}),
        ]),
        html.Div(className="control", children=[
            html.Label("Name contains", htmlFor="studies-q"),
            dcc.Input(id="studies-q", value=params["q"] or "", debounce=0.4,
                      className="input", placeholder="search"),
        ]),
        html.Div(className="control", children=[
            html.Label("Preset", htmlFor="studies-preset"),
            dcc.Dropdown(id="studies-preset", options=["quick", "paper"],
                         value=params["preset"], placeholder="any",
                         style={"minWidth": "120px"}),
        ]),
        html.Div(className="control", children=[
            html.Label("Sort", htmlFor="studies-sort"),
            dcc.Dropdown(id="studies-sort", clearable=False, value=params["sort"],
                         options=[{"label": v, "value": k} for k, v in logic.SORTS.items()],
                         style={"minWidth": "170px"}),
        ]),
        html.Div(className="grow"),
        dcc.Link("Compare selected", id="studies-compare", href="/compare",
                 className="button ghost button-link"),
        dcc.Link("+ New study", href="/new", className="button button-link"),
    ])
    return html.Div([
        html.Div(className="page-head", children=[html.H1("Studies")]),
        card(None, [controls]),
        html.Div(id="studies-error"),
        card(None, [
            html.Div(id="studies-table", children=html.P("Loading studies…", className="muted")),
            html.Div(className="pager", children=[
                html.Button("← previous", id="studies-prev", className="button ghost small"),
                html.Span(id="studies-page-label", className="muted"),
                html.Button("next →", id="studies-next", className="button ghost small"),
            ]),
        ]),
        dcc.Store(id="studies-page", data=params["page"]),
        dcc.Store(id="studies-selected", data=[], storage_type="session"),
        dcc.Store(id="studies-url"),
        dcc.Interval(id="studies-poll", interval=POLL_MS, disabled=True),
    ])


@callback(Output("studies-page", "data"),
          Input("studies-prev", "n_clicks"), Input("studies-next", "n_clicks"),
          Input("studies-state", "value"), Input("studies-q", "value"),
          Input("studies-preset", "value"), Input("studies-sort", "value"),
          State("studies-page", "data"), State("studies-page-label", "title"),
          prevent_initial_call=True)
def change_page(_prev, _next, _state, _q, _preset, _sort, page, pages):
    trigger = dash.ctx.triggered_id
    page = logic.parse_int(page, 1, lo=1)
    if trigger == "studies-prev":
        return max(1, page - 1)
    if trigger == "studies-next":
        return min(logic.parse_int(pages, page + 1, lo=1), page + 1)
    return 1  # a filter changed: back to the first page


def _row(row: dict, methods: list[str]) -> html.Tr:
    status = [chip(row["state"])]
    if row["state"] == "running":
        status.append(progress_bar(row["progress"], f"{row['progress'] * 100:.0f} % · "
                                   f"{row['stage'] or ''}"))
    elif row["state"] == "failed" and row["error"]:
        status.append(html.Div(row["error"][:140], className="small muted",
                               title=row["error"]))
    return html.Tr([
        # persistence keeps a tick through the re-render of every poll (the row's layout
        # always says value=[]; Dash re-applies what the user chose)
        html.Td(dcc.Checklist(id={"type": "studies-pick", "id": row["id"]},
                              options=[{"label": html.Span(f"select study #{row['id']}",
                                                           className="sr-only"),
                                        "value": row["id"]}],
                              value=[], className="pick", persistence=True,
                              persistence_type="session")),
        html.Td(dcc.Link(f"#{row['id']}", href=f"/studies/{row['id']}")),
        html.Td(dcc.Link(row["name"], href=f"/studies/{row['id']}", className="study-link")),
        html.Td(status, className="status"),
        html.Td(row["dataset"]),
        html.Td(row["model"], title=f"{logic.fmt_number(row['n_params'])} parameters"
                if row["n_params"] else None),
        html.Td(row["preset"]),
        *[html.Td(logic.fmt_number(row["lds"].get(m)), className="num") for m in methods],
        html.Td(logic.fmt_percent(row["test_accuracy"]), className="num"),
        html.Td(row["created"], className="small muted"),
    ])


@callback(Output("studies-table", "children"), Output("studies-page-label", "children"),
          Output("studies-page-label", "title"), Output("studies-prev", "disabled"),
          Output("studies-next", "disabled"), Output("studies-poll", "disabled"),
          Output("studies-error", "children"),
          Input("studies-page", "data"), Input("studies-poll", "n_intervals"),
          State("studies-state", "value"), State("studies-q", "value"),
          State("studies-preset", "value"), State("studies-sort", "value"))
@threaded
def load_list(page, _tick, state, q, preset, sort):
    """(A filter change reaches this through the page store: back to page 1, one load.)"""
    params = logic.list_params(state, q, preset, sort, page)
    try:
        client = get_client()
        listing = client.studies(**logic.api_list_args(params))
    except ApiError as exc:
        return (html.P("No studies to show.", className="muted"), "", "1", True, True, True,
                api_error(exc, "Could not list the studies"))
    studies, count = listing["data"], listing["count"]
    pages = logic.page_count(count, params["page_size"])
    first = (params["page"] - 1) * params["page_size"]
    label = (f"{first + 1}–{first + len(studies)} of {count}" if studies else f"0 of {count}")
    if not studies:
        empty = "No study matches these filters." if (params["state"] or params["q"]
                                                      or params["preset"]) else (
            "No studies yet. Submit one on the New study page.")
        return (html.P(empty, className="muted"), label, str(pages), params["page"] <= 1,
                params["page"] >= pages, True, None)
    rows, methods, alpha = logic.list_rows(studies)
    head = html.Thead(html.Tr([
        html.Th(""), html.Th("ID"), html.Th("Name"), html.Th("Status"), html.Th("Data set"),
        html.Th("Model"), html.Th("Preset"),
        *[html.Th(m, className="num", title=f"LDS of {m} at α = {alpha}") for m in methods],
        html.Th("Test acc.", className="num"), html.Th("Created")]))
    caption = html.Caption(f"LDS columns: α = {alpha}" if alpha else "", className="small muted")
    table = html.Table(className="table studies", children=[
        caption, head, html.Tbody([_row(r, methods) for r in rows])])
    return (table, label, str(pages), params["page"] <= 1, params["page"] >= pages,
            not logic.any_active(studies), None)


@callback(Output("studies-selected", "data"), Output("studies-compare", "href"),
          Output("studies-compare", "children"),
          Input({"type": "studies-pick", "id": ALL}, "value"),
          State({"type": "studies-pick", "id": ALL}, "id"), State("studies-selected", "data"))
def remember_picks(picked, ids, selected):
    """The ticked studies, across pages and polls: the rows shown now replace their own
    entries, the others are kept."""
    chosen = logic.merge_selection(selected, [i["id"] for i in ids or []], picked or [])
    label = f"Compare selected ({len(chosen)})" if chosen else "Compare selected"
    return chosen, "/compare" + logic.query_string({"ids": chosen}), label


clientside_callback(
    logic.url_sync_js(["state", "q", "preset", "sort", "page"],
                      {"sort": "-created_at", "page": 1}),
    Output("studies-url", "data"),
    Input("studies-state", "value"), Input("studies-q", "value"),
    Input("studies-preset", "value"), Input("studies-sort", "value"),
    Input("studies-page", "data"))
