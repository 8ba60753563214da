"""Compare studies: pick succeeded studies; every metric against the spec field that differs
between them; a table of only the differing spec fields. The studies are in the URL. Studies
still queued or running (a sweep just submitted) are waited for: their progress shows and the
comparison appears once they have all succeeded."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update

from frontend import logic
from frontend.api_client import ApiError, get_client
from frontend.components import (
    alert,
    api_error,
    card,
    chip,
    empty_figure,
    error_figure,
    graph,
    progress_bar,
)
from frontend.data import StudyNotReady, load_results
from frontend.figures import compare_figure, diff_spec
from frontend.figures.compare import (
    differing_fields,
    hierarchy_compare_figure,
    hierarchy_verdict_rows,
    lds_compare_figure,
    metrics_rows,
)
from frontend.runtime import threaded

dash.register_page(__name__, path="/compare", title="Compare · curvscope", name="Compare")

POLL_MS = 2000
METRICS = [("lds", "LDS"), ("residual_to_H", "relative residual to H"),
           ("residual_to_GGN", "relative residual to the GGN")]


def layout(ids=None, param=None, alpha=None, **_):
    chosen = logic.parse_ids(ids)
    return html.Div([
        html.Div(className="page-head", children=[html.H1("Compare studies")]),
        dcc.Store(id="compare-initial", data={"param": param, "alpha": alpha}),
        dcc.Store(id="compare-url"),
        dcc.Store(id="compare-ready", data=[]),  # the ids, once all of them have succeeded
        dcc.Interval(id="compare-poll", interval=POLL_MS, disabled=True),
        card(None, html.Div(className="row", children=[
            html.Div(className="control grow", children=[
                html.Label("Studies (succeeded)", htmlFor="compare-ids"),
                # Dash 4 drops values missing from the options: list them until the
                # callback below labels them
                dcc.Dropdown(id="compare-ids", multi=True, value=chosen,
                             options=[{"label": f"#{i}", "value": i} for i in chosen],
                             placeholder="pick two or more studies"),
            ]),
            html.Div(className="control", children=[
                html.Label("Parameter on the x-axis", htmlFor="compare-param"),
                dcc.Dropdown(id="compare-param", clearable=False,
                             style={"minWidth": "240px"}),
            ]),
            html.Div(className="control", children=[
                html.Label("α (for the LDS)", htmlFor="compare-alpha"),
                dcc.Dropdown(id="compare-alpha", clearable=False, style={"minWidth": "100px"}),
            ]),
        ])),
        html.Div(id="compare-error"),
        html.Div(id="compare-waiting"),
        html.Div(id="compare-body", children=[
            html.Div(id="compare-why"),
            html.Div(className="grid-2", children=[
                card("LDS against the swept field", [
                    graph("compare-fig-lds", 400),
                    html.P("Each method's LDS (higher is better) at the chosen α for each "
                           "value of the one field the studies differ in; whiskers: each "
                           "study's own 95 % bootstrap interval (unpaired, so overlapping "
                           "whiskers do not mean level: see the paired differences).",
                           className="figure-note")]),
                card("Links of the chain: paired differences", [
                    graph("compare-fig-hierarchy", 400),
                    html.P("LDS(higher) − LDS(lower) of each adjacent pair of H ≥ GGN ≥ "
                           "block-GGN ≥ EK-FAC ≥ K-FAC ≥ identity, with the paired bootstrap's "
                           "95 % interval: above 0 the link holds, across 0 it is level, "
                           "below 0 it breaks.", className="figure-note")]),
            ]),
            card("Which links hold, per value", html.Div(id="compare-verdicts",
                                                         className="table-wrap")),
            html.Div(className="grid-2", children=[
                card(label, [graph(f"compare-fig-{key}", 360), html.P(
                    "‖H − M‖_F / ‖H‖_F (or to the GGN) of each method: how far its curvature "
                    "is from the reference; lower is closer (log axis).",
                    className="figure-note")])
                for key, label in METRICS if key != "lds"]),
            card("Spec fields that differ", html.Div(id="compare-diff",
                                                     className="table-wrap")),
        ]),
    ])


@callback(Output("compare-ids", "options"), Output("compare-error", "children"),
          Input("compare-ids", "id"), Input("compare-ready", "data"),
          State("compare-ids", "value"))
@threaded
def study_options(_id, _ready, chosen):
    """The succeeded studies to pick from (again when the chosen ones have all succeeded)."""
    try:
        listing = get_client().studies(state=["succeeded"], limit=500)
    except ApiError as exc:
        return [{"label": f"#{i}", "value": i} for i in chosen or []], api_error(
            exc, "Could not list the studies")
    options = [{"label": f"#{s['id']} {s.get('name') or ''} ({s.get('preset') or 'custom'}, "
                         f"{s['spec_hash'][:8]})", "value": s["id"]} for s in listing["data"]]
    known = {o["value"] for o in options}
    options += [{"label": f"#{i} (not succeeded)", "value": i} for i in chosen or []
                if i not in known]
    return options, no_update  # the error box is load()'s too: leave what it says


@callback(Output("compare-param", "options"), Output("compare-param", "value"),
          Output("compare-alpha", "options"), Output("compare-alpha", "value"),
          Output("compare-diff", "children"), Output("compare-error", "children",
                                                     allow_duplicate=True),
          Output("compare-waiting", "children"), Output("compare-poll", "disabled"),
          # the ids once all have succeeded; None while some run; [] when there is nothing
          Output("compare-ready", "data"),
          Input("compare-ids", "value"), Input("compare-poll", "n_intervals"),
          State("compare-param", "value"), State("compare-alpha", "value"),
          State("compare-initial", "data"), State("compare-ready", "data"),
          prevent_initial_call="initial_duplicate")
@threaded
def load(ids, _tick, param, alpha, initial, ready):
    ids = logic.parse_ids(ids)
    if len(ids) < 2:
        return ([], None, [], None, html.P("Pick two or more studies.", className="muted"),
                None, None, True, [])
    if ready == ids:  # a poll after everything arrived: nothing new
        return [no_update] * 6 + [None, True, no_update]
    client = get_client()
    try:
        states = {s["id"]: s for s in client.studies(ids=ids, limit=len(ids))["data"]}
    except ApiError as exc:
        return [], None, [], None, None, api_error(exc, "Could not load the studies"), \
            None, False, []
    missing = [i for i in ids if i not in states]
    unfinished = [states[i] for i in ids if i in states and states[i]["state"] != "succeeded"]
    if missing or any(s["state"] not in logic.ACTIVE for s in unfinished):
        why = [f"#{i} does not exist" for i in missing] + [
            f"#{s['id']} {s['state']}" + (f" ({s['error']})" if s.get("error") else "")
            for s in unfinished if s["state"] not in logic.ACTIVE]
        return [], None, [], None, None, alert(
            "; ".join(why) + ". Remove it to compare the others (a failed or cancelled study "
            "can be retried on its page).", "error", "Cannot compare:"), None, True, []
    if unfinished:
        return [], None, [], None, None, None, _waiting(ids, states), False, None
    try:
        studies = _load(ids, states)
    except (ApiError, StudyNotReady) as exc:
        return [], None, [], None, None, api_error(exc, "Could not load the studies"), \
            None, True, []
    specs = [r["spec"] for _, r in studies]
    diff = diff_spec(specs)
    params = [p for p in diff if p != "name"] or list(diff)
    initial = initial or {}
    param = logic.pick(param or initial.get("param"), params, params[0] if params else None)
    alphas = sorted({str(a) for _, r in studies
                     for a in (r.get("groundtruth") or {}).get("alphas", [])}, key=float)
    alpha = logic.pick(alpha or initial.get("alpha"), alphas,
                       "0.5" if "0.5" in alphas else (alphas[0] if alphas else None))
    table = _diff_table([d for d, _ in studies], diff) if diff else html.P(
        "The specs are identical.", className="muted")
    return ([{"label": p, "value": p} for p in params], param,
            [{"label": f"α = {a}", "value": a} for a in alphas], alpha, table, None, None,
            True, ids)


def _waiting(ids: list[int], states: dict[int, dict]) -> html.Div:
    """Progress of the studies still queued or running (polled until all have succeeded)."""
    done = sum(states[i]["state"] == "succeeded" for i in ids)
    rows = [html.Li([dcc.Link(f"#{i}", href=f"/studies/{i}"), " ",
                     chip(states[i]["state"]), " ",
                     progress_bar(states[i].get("progress"),
                                  f"{100 * (states[i].get('progress') or 0):.0f} %"
                                  f" · {states[i].get('stage') or 'waiting for a worker'}")])
            for i in ids if states[i]["state"] != "succeeded"]
    return card(f"Waiting: {done} of {len(ids)} studies have finished", [
        html.P("The comparison appears when every study has succeeded.",
               className="small muted"), html.Ul(rows, className="waiting")],
        id="compare-waiting-card")


def _load(ids: list[int], rows: dict[int, dict] | None = None) -> list[tuple[dict, dict]]:
    """(study, results) of each id; ``rows`` are the studies as listed, when at hand (a list
    row names what the results cache keys on), else each study is fetched."""
    client = get_client()
    out = []
    for sid in ids:
        study = (rows or {}).get(sid) or client.study(sid)
        out.append((study, load_results(client, study)))
    return out


def _diff_table(details: list[dict], diff: dict) -> html.Table:
    head = html.Thead(html.Tr([html.Th("field")] + [
        html.Th(dcc.Link(f"#{d['id']} {d.get('name') or ''}", href=f"/studies/{d['id']}"))
        for d in details]))
    rows = [html.Tr([html.Td(html.Code(path))] + [html.Td(logic.value_to_text(
        "json", v) if isinstance(v, list | dict) else str(v)) for v in values])
        for path, values in diff.items()]
    return html.Table([head, html.Tbody(rows)], className="table diff")


FIGURE_OUTPUTS = [Output(f"compare-fig-{key}", "figure") for key, _ in METRICS] + [
    Output("compare-fig-hierarchy", "figure"), Output("compare-verdicts", "children"),
    Output("compare-why", "children")]


def _verdict_table(rows: list[dict], parameter: str) -> html.Table:
    links = list(dict.fromkeys(link for row in rows for link in row["links"]))
    return html.Table(className="table verdict-table", id="compare-verdict-table", children=[
        html.Thead(html.Tr([html.Th(parameter)] + [html.Th(link) for link in links]
                           + [html.Th("hierarchy")])),
        html.Tbody([html.Tr([html.Td(str(row["value"]))] + [
            html.Td(html.Span(row["links"].get(link) or "–",
                              className=f"verdict verdict-{row['links'].get(link)}"))
            for link in links] + [html.Td("holds" if row["holds"] else "breaks"
                                          if row["holds"] is False else "–")],
            **{"data-value": str(row["value"])}) for row in rows])])


def _several_fields(results: list[dict], fields: list[str], alpha: str) -> html.Div:
    methods, rows = metrics_rows(results, alpha)
    table = html.Table(className="table", id="compare-multi-table", children=[
        html.Thead(html.Tr([html.Th(f) for f in fields]
                           + [html.Th(f"LDS {m}", className="num") for m in methods]
                           + [html.Th("hierarchy")])),
        html.Tbody([html.Tr([html.Td(logic.value_to_text("json", v) if isinstance(
            v, list | dict) else str(v)) for v in row["fields"].values()]
            + [html.Td(logic.fmt_number(row["lds"][m]), className="num") for m in methods]
            + [html.Td("holds" if row["holds"] else "breaks" if row["holds"] is False
                       else "–")]) for row in rows])])
    return card("These studies differ in more than one field", [
        alert(f"They differ in {len(fields)} fields ({', '.join(fields)}), so no line is "
              "drawn through them: a line would suggest that one field changed while the "
              "others stayed put. Their metrics side by side instead (LDS at α = "
              f"{alpha}):", "warn"),
        html.Div(table, className="table-wrap")], id="compare-multi")


@callback(*FIGURE_OUTPUTS,
          Input("compare-ready", "data"), Input("compare-param", "value"),
          Input("compare-alpha", "value"), Input("app-state", "data"))
@threaded
def figures(ready, param, alpha, app_state):
    """Drawn once every chosen study has succeeded (``compare-ready``). One field differs:
    every method's LDS against it with intervals, the chain's paired differences and a row
    of link verdicts per value. Several differ: no lines, a table of fields and metrics."""
    theme = (app_state or {}).get("theme", "light")
    ids = logic.parse_ids(ready)
    n = len(METRICS) + 1
    if len(ids) < 2 or not param:
        text = ("the specs are identical" if len(ids) >= 2 else
                "waiting for the studies" if ready is None else "pick two or more studies")
        return [empty_figure(text, theme)] * n + [None, None]
    try:
        results = [r for _, r in _load(ids)]
    except Exception as exc:
        return [error_figure(exc, theme)] * n + [None, None]
    fields = differing_fields([r["spec"] for r in results])
    alpha = alpha or "0.5"
    if len(fields) > 1:
        text = "no line: the studies differ in more than one field (table above)"
        return [empty_figure(text, theme)] * n + [
            html.P("Not one axis: see the table above.", className="muted"),
            _several_fields(results, fields, alpha)]
    out = []
    for key, _ in METRICS:
        try:
            if key == "lds":
                fig = lds_compare_figure(results, param, alpha, theme)
            else:
                fig = compare_figure(results, param, metric=key, alpha=alpha, theme=theme)
                fig.update_layout(title=f"against {param}")
            out.append(fig)
        except Exception as exc:
            out.append(error_figure(exc, theme))
    try:
        out.append(hierarchy_compare_figure(results, param, alpha, theme))
        verdicts = _verdict_table(hierarchy_verdict_rows(results, param, alpha), param)
    except Exception as exc:
        out.append(error_figure(exc, theme))
        verdicts = api_error(exc, "Could not read the hierarchy")
    return out + [verdicts, None]


clientside_callback(
    logic.url_sync_js(["ids", "param", "alpha"]),
    Output("compare-url", "data"),
    Input("compare-ids", "value"), Input("compare-param", "value"),
    Input("compare-alpha", "value"), prevent_initial_call=True)
