"""Studies list: a run table. Status and live progress, data set and model, and every metric
as a column (the LDS of every method at every α, the relative residual to H, the test
accuracy): sort by any of them (click a header), filter on one, choose the columns, studies
of one sweep grouped; ticks that survive the list's polling; the chosen studies compared or
exported as one CSV. Everything but the ticks lives in the URL."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, callback, clientside_callback, dcc, html, no_update

from frontend import logic
from frontend.api_client import ApiError, get_client
from frontend.components import api_error, card, chip, progress_bar
from frontend.components.sweeps import compare_href, group_by_sweep, progress_text
from frontend.data import cached_call
from frontend.runtime import threaded

dash.register_page(__name__, path="/", title="Studies · curvscope", name="Studies")

POLL_MS = 2000


def _sort_options(extra: list[dict] | None = None, current: str | None = None) -> list[dict]:
    options = [{"label": v, "value": k} for k, v in logic.SORTS.items()]
    for column in extra or []:
        if column["kind"] != "num" or column["key"] == "id":
            continue
        name = column.get("title") or column["label"]
        options += [{"label": f"{name}: high → low", "value": f"-{column['key']}"},
                    {"label": f"{name}: low → high", "value": column["key"]}]
    if current and current not in {o["value"] for o in options}:
        options.append({"label": current, "value": current})
    return options


def _control(label: str, id_: str, component) -> html.Div:
    return html.Div(className="control", children=[html.Label(label, htmlFor=id_),
                                                   component])


def layout(state=None, q=None, preset=None, sort=None, page=None, cols=None, mf=None,
           mop=None, mv=None, group=None, **_):
    params = logic.list_params(state, q, preset, None, page)
    sort = str(sort) if sort else "-created_at"
    controls = html.Div(className="row", children=[
        _control("State", "studies-state", dcc.Dropdown(
            id="studies-state", options=logic.STATES, value=params["state"], multi=True,
            placeholder="any state", style={"minWidth": "220px"})),
        _control("Name contains", "studies-q", dcc.Input(
            id="studies-q", value=params["q"] or "", debounce=0.4, className="input",
            placeholder="search")),
        _control("Preset", "studies-preset", dcc.Dropdown(
            id="studies-preset", options=["quick", "paper", "paper-code"],
            value=params["preset"], placeholder="any", style={"minWidth": "110px"})),
        _control("Sort", "studies-sort", dcc.Dropdown(
            id="studies-sort", clearable=False, value=sort, options=_sort_options(None, sort),
            style={"minWidth": "200px"})),
        html.Div(className="control filter-control", children=[
            html.Label("Only studies where", htmlFor="studies-mf"),
            html.Div(className="row tight", children=[
                dcc.Dropdown(id="studies-mf", value=mf, placeholder="a metric",
                             options=[{"label": mf, "value": mf}] if mf else [],
                             style={"minWidth": "170px"}),
                dcc.Dropdown(id="studies-mop", value=logic.pick(mop, list(logic.FILTER_OPS),
                                                                "ge"),
                             clearable=False, style={"width": "64px"},
                             options=[{"label": v, "value": k}
                                      for k, v in logic.FILTER_OPS.items()]),
                dcc.Input(id="studies-mv", value=mv or "", debounce=0.4, className="input",
                          placeholder="value", style={"width": "80px"}),
            ]),
        ]),
    ])
    actions = html.Div(className="row", children=[
        html.Div(className="control grow", children=[
            html.Label("Columns", htmlFor="studies-cols"),
            dcc.Dropdown(id="studies-cols", multi=True, value=logic.parse_list(cols) or None,
                         options=[{"label": c, "value": c} for c in logic.parse_list(cols)],
                         placeholder="the default columns (LDS at the headline α)"),
        ]),
        dcc.Checklist(id="studies-group", value=["group"] if group != "0" else [],
                      options=[{"label": " group the studies of a sweep", "value": "group"}],
                      className="checklist"),
        dcc.Link("Compare selected", id="studies-compare", href="/compare",
                 className="button ghost button-link"),
        html.Button("Export CSV", id="studies-export", className="button ghost",
                    title="The chosen columns of the ticked studies (all listed ones when none "
                    "is ticked) as one CSV"),
        dcc.Download(id="studies-download"),
        dcc.Link("+ New study", href="/new", className="button button-link"),
    ])
    return html.Div([
        html.Div(className="page-head", children=[html.H1("Studies")]),
        card(None, [controls, actions]),
        html.Div(id="studies-error"),
        card(None, [
            html.Div(id="studies-table", className="table-wrap",
                     children=html.P("Loading studies…", className="muted")),
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
          Input("studies-mf", "value"), Input("studies-mop", "value"),
          Input("studies-mv", "value"), Input("studies-group", "value"),
          State("studies-page", "data"), State("studies-page-label", "title"),
          prevent_initial_call=True)
def change_page(_prev, _next, _state, _q, _preset, _sort, _mf, _mop, _mv, _group, page,
                pages):
    trigger = dash.ctx.triggered_id
    page = logic.parse_int(page, 1, lo=1)
    if trigger == "studies-prev":
        return max(1, page - 1)
    if trigger == "studies-next":
        return min(logic.parse_int(pages, page + 1, lo=1), page + 1)
    return 1  # a filter or the order changed: back to the first page


@callback(Output("studies-sort", "value"),
          Input({"type": "studies-sort-head", "key": ALL}, "n_clicks"),
          State("studies-sort", "value"), prevent_initial_call=True)
def sort_by_header(clicks, sort):
    """A header clicked: sort by its column, high → low first (names A → Z), again to
    reverse."""
    trigger = dash.ctx.triggered_id
    if not trigger or not any(clicks or []):
        return no_update
    key = trigger["key"]
    first = key if key in ("name", "dataset", "model", "preset") else f"-{key}"
    if (sort or "").lstrip("-") == key:
        return key if sort.startswith("-") else f"-{key}"
    return first


def _head(column: dict, sort: str) -> html.Th:
    active = sort.lstrip("-") == column["key"] or (
        column["key"] == "created" and sort.lstrip("-") == "created_at")
    arrow = (" ▼" if sort.startswith("-") else " ▲") if active else ""
    label = column["label"]
    return html.Th(html.Button(
        label + arrow, id={"type": "studies-sort-head", "key": column["key"]},
        className="th-sort", title=(column.get("title") or label) + ": click to sort"),
        className="num" if column["kind"] == "num" else None,
        **{"aria-sort": ("descending" if sort.startswith("-") else "ascending")
           if active else "none"})


def _cell(study: dict, column: dict, names) -> html.Td:
    key = column["key"]
    value = logic.row_value(study, key, names)
    if key == "id":
        return html.Td(dcc.Link(f"#{study['id']}", href=f"/studies/{study['id']}"))
    if key == "name":
        return html.Td(dcc.Link(value, href=f"/studies/{study['id']}", className="study-link"))
    if key == "state":
        status = [chip(study["state"])]
        if study["state"] == "running":
            progress = study.get("progress") or 0.0
            status.append(progress_bar(progress, f"{progress * 100:.0f} % · "
                                       f"{study.get('stage') or ''}"))
        elif study["state"] == "failed" and study.get("error"):
            status.append(html.Div(study["error"][:140], className="small muted",
                                   title=study["error"]))
        return html.Td(status, className="status")
    if key == "test_accuracy":
        return html.Td(logic.fmt_percent(value), className="num")
    if key == "created":
        return html.Td(logic.fmt_time(value), className="small muted")
    if key == "model":
        n_params = (study.get("summary") or {}).get("n_params")
        return html.Td(value, title=f"{logic.fmt_number(n_params)} parameters"
                       if n_params else None)
    if column["kind"] == "num":
        return html.Td(logic.fmt_number(value), className="num")
    return html.Td(value)


def _row(study: dict, columns: list[dict], names) -> html.Tr:
    return html.Tr([
        # persistence keeps a tick through the re-render of every poll (the row's layout
        # always says value=[]; Dash re-applies what the user chose)
        html.Td(dcc.Checklist(id={"type": "studies-pick", "id": study["id"]},
                              options=[{"label": html.Span(f"select study #{study['id']}",
                                                           className="sr-only"),
                                        "value": study["id"]}],
                              value=[], className="pick", persistence=True,
                              persistence_type="session")),
        *[_cell(study, c, names) for c in columns],
    ], **{"data-study": study["id"]})


def _names(client) -> dict[str, str]:
    try:
        return logic.dataset_names(cached_call(f"{client.base}/datasets", client.datasets))
    except ApiError:
        return {}


def _listed(client, state, q, preset) -> list[dict]:
    params = logic.list_params(state, q, preset, None, 1)
    args = logic.api_list_args({**params, "page_size": logic.TABLE_FETCH})
    return client.studies(**{**args, "sort": "-created_at", "offset": 0})


@callback(Output("studies-table", "children"), Output("studies-page-label", "children"),
          Output("studies-page-label", "title"), Output("studies-prev", "disabled"),
          Output("studies-next", "disabled"), Output("studies-poll", "disabled"),
          Output("studies-error", "children"), Output("studies-sort", "options"),
          Output("studies-cols", "options"), Output("studies-mf", "options"),
          Input("studies-page", "data"), Input("studies-poll", "n_intervals"),
          Input("studies-cols", "value"),
          State("studies-state", "value"), State("studies-q", "value"),
          State("studies-preset", "value"), State("studies-sort", "value"),
          State("studies-mf", "value"), State("studies-mop", "value"),
          State("studies-mv", "value"), State("studies-group", "value"))
@threaded
def load_list(page, _tick, cols, state, q, preset, sort, mf, mop, mv, group):
    """(A filter change reaches this through the page store: back to page 1, one load.) The
    studies matching the API's filters are fetched at once (up to TABLE_FETCH) and sorted,
    filtered and paged here, so any metric can order them."""
    params = logic.list_params(state, q, preset, None, page)
    sort = sort or "-created_at"
    try:
        client = get_client()
        listing = _listed(client, state, q, preset)
    except ApiError as exc:
        return (html.P("No studies to show.", className="muted"), "", "1", True, True, True,
                api_error(exc, "Could not list the studies"), no_update, no_update,
                no_update)
    names = _names(client) if any((s.get("data") or {}).get("name") == "file"
                                  for s in listing["data"]) else {}
    studies = listing["data"]
    columns = logic.table_columns(studies)
    metric_options = [{"label": (c.get("title") or c["label"]).split(" (")[0],
                       "value": c["key"]} for c in columns
                      if c["kind"] == "num" and c["key"] != "id"]
    column_options = [{"label": f"{c['group']}: {c['label']}" if c["group"] != "study"
                       else c["label"], "value": c["key"]} for c in columns]
    studies = logic.filter_studies(studies, mf, mop, mv, names)
    studies = logic.sort_studies(studies, sort, names)
    count = len(studies)
    pages = logic.page_count(count, params["page_size"])
    current = min(params["page"], pages)
    groups = _grouped(client, studies) if group else [(None, [s]) for s in studies]
    # pages hold whole groups where they fit: a page is the groups starting on it
    flat, starts = [], []
    for sweep, members in groups:
        starts.append(len(flat))
        flat += [(sweep, m, i == 0) for i, m in enumerate(members)]
    first = (current - 1) * params["page_size"]
    shown = flat[first:first + params["page_size"]]
    label = (f"{first + 1}–{first + len(shown)} of {count}" if shown else f"0 of {count}")
    if listing["count"] > logic.TABLE_FETCH:
        label += f" (the newest {logic.TABLE_FETCH} of {listing['count']} are sorted here)"
    sort_options = _sort_options(columns, sort)
    if not shown:
        empty = "No study matches these filters." if (params["state"] or params["q"]
                                                      or params["preset"] or mv) else (
            "No studies yet. Submit one on the New study page.")
        return (html.P(empty, className="muted"), label, str(pages), current <= 1,
                current >= pages, not logic.any_active(listing["data"]), None, sort_options,
                column_options, metric_options)
    visible = logic.chosen_columns(columns, cols)
    groups_row = []
    for column in visible:
        if groups_row and groups_row[-1][0] == column["group"]:
            groups_row[-1][1] += 1
        else:
            groups_row.append([column["group"], 1])
    head = html.Thead([
        html.Tr([html.Th("")] + [html.Th(g if g != "study" else "", colSpan=n,
                                         className="col-group") for g, n in groups_row]),
        html.Tr([html.Th(html.Span("select", className="sr-only"))]
                + [_head(c, sort) for c in visible])])
    body = []
    members_of = {_key(sweep): [m["id"] for m in members] for sweep, members in groups
                  if sweep}
    for position, (sweep, study, opens) in enumerate(shown):
        if sweep and (opens or position == 0):
            body.append(_group_row(sweep, members_of[_key(sweep)], len(visible) + 1))
        body.append(_row(study, visible, names))
    table = html.Table(className="table studies", children=[head, html.Tbody(body)])
    return (table, label, str(pages), current <= 1, current >= pages,
            not logic.any_active(listing["data"]), None, sort_options, column_options,
            metric_options)


def _grouped(client, studies: list[dict]) -> list[tuple[dict | None, list[dict]]]:
    """The studies with those of one sweep gathered: by each row's ``sweep_id`` when the API
    lists it, else by the sweeps' points (GET /sweeps, the newest 200); without that listing,
    by the name POST /sweeps gives its studies (``'<sweep>: field=value'``)."""
    try:
        sweeps = client.get_json("/sweeps", limit=200)["data"]
    except ApiError:
        return [({"name": name} if name else None, members)
                for name, members in logic.group_sweeps(studies)]
    return group_by_sweep(studies, sweeps)


def _key(sweep: dict):
    return ("id", sweep["id"]) if sweep.get("id") is not None else ("name", sweep.get("name"))


def _group_row(sweep: dict, listed: list[int], span: int) -> html.Tr:
    """The row over a sweep's studies: its name (a link to its page), how many of its studies
    are listed, its progress, and a link comparing them."""
    name = sweep.get("name")
    title = html.Strong(f"sweep #{sweep['id']}" if sweep.get("id") is not None else "sweep")
    if name:
        title.children += f" “{name}”"
    parts: list = [dcc.Link(title, href=f"/sweeps/{sweep['id']}", className="sweep-link")
                   if sweep.get("id") is not None else title]
    total = sweep.get("count")
    parts.append(f" · {len(listed)} studies listed" + (f" of {total}" if total and
                                                        total != len(listed) else ""))
    if sweep.get("points") is not None:
        parts.append(f" · {progress_text(sweep)}")
    href = compare_href(sweep) if sweep.get("points") else None
    parts += [" · ", dcc.Link("compare them", href=href or "/compare" + logic.query_string(
        {"ids": listed}))]
    cells = [html.Div(parts)]
    if sweep.get("points") is not None and sweep.get("state") in logic.ACTIVE:
        cells.append(progress_bar(sweep.get("progress"), progress_text(sweep)))
    return html.Tr(html.Td(cells, colSpan=span), className="group-row",
                   **{"data-sweep": str(sweep.get("id") if sweep.get("id") is not None
                                        else name)})


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


@callback(Output("studies-download", "data"), Input("studies-export", "n_clicks"),
          State("studies-selected", "data"), State("studies-cols", "value"),
          State("studies-state", "value"), State("studies-q", "value"),
          State("studies-preset", "value"), State("studies-sort", "value"),
          State("studies-mf", "value"), State("studies-mop", "value"),
          State("studies-mv", "value"), prevent_initial_call=True)
@threaded
def export_csv(_n, selected, cols, state, q, preset, sort, mf, mop, mv):
    """The ticked studies (else every listed one), the chosen columns, as one CSV."""
    client = get_client()
    try:
        if selected:
            studies = client.studies(ids=selected, limit=len(selected))["data"]
        else:
            studies = _listed(client, state, q, preset)["data"]
            studies = logic.filter_studies(studies, mf, mop, mv)
    except ApiError:
        return no_update
    names = _names(client)
    studies = logic.sort_studies(studies, sort, names)
    columns = logic.table_columns(studies)
    if cols:  # the columns the user chose; without a choice every metric
        columns = logic.chosen_columns(columns, cols)
    return {"content": logic.studies_csv(studies, columns, names),
            "filename": "curvscope-studies.csv", "type": "text/csv"}


clientside_callback(
    logic.url_sync_js(["state", "q", "preset", "sort", "page", "cols", "mf", "mop", "mv",
                       "group"],
                      {"sort": "-created_at", "page": 1, "mop": "ge", "group": "group"},
                      empty={"group": "0"}),
    Output("studies-url", "data"),
    Input("studies-state", "value"), Input("studies-q", "value"),
    Input("studies-preset", "value"), Input("studies-sort", "value"),
    Input("studies-page", "data"), Input("studies-cols", "value"),
    Input("studies-mf", "value"), Input("studies-mop", "value"),
    Input("studies-mv", "value"), Input("studies-group", "value"))
