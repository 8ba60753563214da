"""New study: a form built from the spec's JSON schema (GET /api/v1/schema), checked live by
POST /api/v1/studies/validate (the API's own messages next to each field), a memory and time
estimate before submitting, presets, and on submit the new study's page. Or a sweep: up to
three fields, each with several values, one study per combination (POST /api/v1/sweeps),
then the sweep's page (its studies' progress and LDS, and a link to compare them)."""

from __future__ import annotations

import statistics

import dash
from dash import ALL, Input, Output, State, callback, dcc, html, no_update

from frontend import logic
from frontend.api_client import ApiError, get_client
from frontend.components import alert, api_error, card, kv_table
from frontend.data import cached_call, load_details
from frontend.runtime import threaded

dash.register_page(__name__, path="/new", title="New study · curvscope", name="New study")

PRESETS = ["quick", "paper"]


def layout(preset=None, **query):
    source = logic.parse_int(query.get("from"), None, lo=1)  # ?from=<id>: edit and resubmit
    preset = logic.pick(preset, PRESETS, "quick")
    return html.Div([
        dcc.Store(id="new-from", data=source),
        html.Div(className="page-head", children=[
            html.H1("New study"),
            dcc.RadioItems(id="new-preset", value=preset, inline=True, className="presets",
                           options=[{"label": " quick (seconds)", "value": "quick"},
                                    {"label": " paper (the paper's study)", "value": "paper"}]),
        ]),
        dcc.Store(id="new-state"),  # the form's fields and the preset's resolved spec
        dcc.Store(id="new-body"),  # what Submit sends
        dcc.Location(id="new-redirect", refresh="callback-nav"),
        html.Div(id="new-load-error"),
        html.Div(id="new-from-note"),
        html.Div(className="new-layout", children=[
            html.Div(id="new-form", className="form-sections",
                     children=html.P("Loading the spec's schema from the API…",
                                     className="muted")),
            html.Div(className="sticky-side", children=[
                card("Check", [
                    html.Div(id="new-validation", children=html.P("…", className="muted")),
                    html.Div(id="new-estimate"),
                    html.Button("Submit study", id="new-submit", className="button",
                                disabled=True, style={"width": "100%", "marginTop": "8px"}),
                    html.Div(id="new-submit-result"),
                ]),
                card("Sweep", [
                    html.P("Vary up to three fields of the spec above: one study per "
                           "combination, then compare them. Values separated by |, a list "
                           "field's items by commas (model.hidden: 32, 32 | 64).",
                           className="small muted"),
                    *[html.Div(className="sweep-row", children=[
                        html.Label(f"Sweep field {i + 1} and its values", className="sr-only"),
                        dcc.Dropdown(id={"type": "sweep-field", "row": i}, clearable=True,
                                     placeholder="field", className="field-input"),
                        dcc.Input(id={"type": "sweep-values", "row": i}, type="text",
                                  debounce=0.35, className="input", placeholder="values: a | b",
                                  name=f"sweep-values-{i}"),
                    ]) for i in range(logic.SWEEP_ROWS)],
                    html.Div(id="sweep-preview", className="small"),
                    html.Button("Submit sweep", id="sweep-submit", className="button",
                                disabled=True, style={"width": "100%", "marginTop": "8px"}),
                    html.Div(id="sweep-result"),
                ], id="sweep-card"),
            ]),
        ]),
    ])


def _input(field: dict, value) -> object:
    ident = {"type": "spec-field", "path": field["path"]}
    kind = field["kind"]
    if kind == "enum":
        return dcc.Dropdown(id=ident, options=field["enum"], value=value, clearable=False,
                            className="field-input")
    if kind == "bool":
        return dcc.RadioItems(id=ident, options=[{"label": " yes", "value": True},
                                                 {"label": " no", "value": False}],
                              value=bool(value), inline=True)
    if kind == "methods":
        return dcc.Checklist(id=ident, value=list(value or []), inline=True,
                             options=field.get("options") or [])
    if kind == "dataset":
        options = list(field.get("options") or [])
        if value and value not in [o["value"] for o in options]:
            options.append({"label": str(value), "value": value})
        return dcc.Dropdown(id=ident, options=options, value=value, clearable=True,
                            placeholder="(none: a built-in data set)",
                            className="field-input")
    return dcc.Input(id=ident, type="text", value=logic.value_to_text(kind, value),
                     debounce=0.35, className="input",
                     placeholder="(default)" if field["nullable"] else None,
                     name=field["path"])


def _field_row(field: dict, value) -> html.Div:
    help_text = " · ".join(t for t in (field["description"], field["bounds"]) if t)
    return html.Div(className="field", id=f"field-{field['path'].replace('.', '-')}", children=[
        html.Label([field["title"], html.Code(field["path"])], className="field-label"),
        _input(field, value),
        html.Div(help_text, className="field-help"),
        html.Div(id={"type": "spec-error", "path": field["path"]}, className="field-error"),
    ])


@callback(Output("new-form", "children"), Output("new-state", "data"),
          Output("new-load-error", "children"),
          Output({"type": "sweep-field", "row": ALL}, "options"),
          Output("new-preset", "value"), Output("new-from-note", "children"),
          Input("new-preset", "value"), State("new-from", "data"))
@threaded
def build_form(preset, source):
    """The form from the schema, filled with the preset's resolved spec, or (``?from=<id>``,
    *Edit and resubmit*) with that study's spec on its preset's base."""
    client = get_client()
    filled, note, preset_out = None, None, no_update
    try:
        schema = cached_call(f"{client.base}/schema", client.schema)
        methods = cached_call(f"{client.base}/methods", client.methods)
        if source and dash.ctx.triggered_id is None:  # the first build only
            study = client.study(source)
            filled = logic.resubmit_spec(study)
            wanted = study.get("preset") or (study.get("request") or {}).get("preset")
            if wanted in PRESETS and wanted != preset:
                preset, preset_out = wanted, wanted
            note = alert([f"Filled in from study #{source} ({study.get('name') or 'unnamed'}"
                          "): change what you want and submit it as a new study."], "info")
        base = client.validate({"preset": preset})["spec"]
    except ApiError as exc:
        return (html.P("The form needs the API's schema.", className="muted"), None,
                api_error(exc, "Could not load the study form"), [[]] * logic.SWEEP_ROWS,
                no_update, None)
    try:
        datasets = client.datasets()
    except ApiError:
        datasets = []  # the form still works with the built-in data sets
    dataset_options = [{"label": f"{d['name']} (#{d['id']}: {d['n_rows']} rows, "
                                 f"{d['n_features']} features, {d['n_classes']} classes)",
                        "value": d["reference"]} for d in datasets]
    sections = logic.form_sections(schema)
    method_options = [{"label": html.Span(f" {m['name']}", title=m.get("description")),
                       "value": m["name"]} for m in methods]
    fields = []
    children = []
    for section in sections:
        rows = []
        for field in section["fields"]:
            if field["kind"] == "methods":
                field = {**field, "options": method_options}
            elif field["path"] == "data.path":  # the service reads only uploaded files
                field = {**field, "kind": "dataset", "options": dataset_options,
                         "description": "An uploaded data set (POST /api/v1/datasets), used "
                         "with Name = file."}
            fields.append({k: field[k] for k in ("path", "kind", "nullable")})
            value = logic.get_path(filled if filled is not None else base, field["path"])
            rows.append(_field_row(field, value))
        children.append(card(section["title"], [
            html.P(section["description"], className="small muted") if section[
                "description"] else None, *rows], className=f"section-{section['name']}"))
    sweepable = [{"label": f["path"], "value": f["path"]} for f in fields
                 if f["kind"] in logic.SWEEP_KINDS]
    return (children, {"preset": preset, "fields": fields, "base": base}, None,
            [sweepable] * logic.SWEEP_ROWS, preset_out, note)


@callback(Output({"type": "spec-error", "path": ALL}, "children"),
          Output("new-validation", "children"), Output("new-estimate", "children"),
          Output("new-submit", "disabled"), Output("new-body", "data"),
          Input({"type": "spec-field", "path": ALL}, "value"),
          State({"type": "spec-field", "path": ALL}, "id"), State("new-state", "data"))
@threaded
def validate(values, ids, state):
    n = len(ids)
    if not state or not n:
        return [no_update] * n, no_update, no_update, True, no_update
    by_path = {i["path"]: v for i, v in zip(ids, values, strict=True)}
    fields = [f for f in state["fields"] if f["path"] in by_path]
    body = logic.form_config(state["preset"], fields, [by_path[f["path"]] for f in fields],
                             state["base"])
    client = get_client()
    try:
        answer = client.validate(body)
    except ApiError as exc:
        if exc.status != 422:
            return ([""] * n, api_error(exc, "Could not check the spec"), None, True, body)
        # the detail names every field; the fields of the form also show their own message
        per_field, _others = logic.split_errors(exc.errors, [i["path"] for i in ids])
        summary = alert(exc.detail, "error", "Not valid:")
        return ([per_field.get(i["path"], "") for i in ids], summary, None, True, body)
    existing = answer.get("existing_study_id")
    note = [alert("The API accepts this spec.", "ok")]
    if existing:
        note.append(alert(["An identical study exists: ",
                           dcc.Link(f"#{existing}", href=f"/studies/{existing}"),
                           "; submitting returns it instead of computing again."], "info"))
    return ([""] * n, note, _estimate(client, answer.get("estimate") or {}), False, body)


def _estimate(client, estimate: dict) -> html.Div:
    """The API's estimate: sizes, memory, time per stage group and in total, and its basis
    (the workers' calibration probe and this service's finished studies)."""
    measured = isinstance(estimate.get("seconds"), (int, float))
    seconds, how = logic.time_estimate(estimate, None if measured else _calibration(client))
    rows = logic.estimate_rows(estimate)
    if seconds is not None:
        rows.append(("time", f"≈ {logic.fmt_seconds(seconds)} on one worker"))
    return html.Div([html.H3("Estimate"), kv_table(rows),
                     html.P(f"Time and memory {how}." if measured else f"Time {how}.",
                            className="small muted")],
                    id="estimate")


def _calibration(client) -> list[tuple[float, float]]:
    """(GFLOP, seconds) of recent succeeded studies on this service: only for an API whose
    estimate carries no time of its own (before ``curvscope.cost``)."""
    def fetch():
        listing = client.studies(state=["succeeded"], sort="-finished_at", limit=10)
        details = load_details(client, listing["data"])
        out = []
        for detail in details.values():
            estimate = detail.get("estimate") or {}
            gflop = (estimate.get("retraining_gflop") or 0) + (estimate.get("dense_gflop") or 0)
            seconds = (detail.get("timings") or {}).get("running_seconds")
            if gflop > 0 and seconds:
                out.append((gflop, seconds))
        return out

    try:
        samples = cached_call(f"{client.base}/calibration", fetch, ttl=120)
    except ApiError:
        return []
    # drop outliers (a study whose time was mostly queueing or start-up)
    if len(samples) >= 3:
        median = statistics.median(s / g for g, s in samples)
        samples = [(g, s) for g, s in samples if s / g < 20 * median]
    return samples


@callback(Output("new-submit-result", "children"), Output("new-redirect", "href"),
          Input("new-submit", "n_clicks"), State("new-body", "data"), State("auth", "data"),
          prevent_initial_call=True, running=[(Output("new-submit", "disabled"), True, False)])
@threaded
def submit(_n, body, auth):
    if not body:
        return alert("Fill in the form first.", "warn"), no_update
    client = get_client()
    try:
        status, study = client.submit(body, (auth or {}).get("token"))
    except ApiError as exc:
        return api_error(exc, "The API refused the study"), no_update
    if status == 200:
        return alert(f"An identical study exists: #{study['id']}.", "info"), \
            f"/studies/{study['id']}"
    return alert(f"Submitted as #{study['id']}.", "ok"), f"/studies/{study['id']}"


@callback(Output("sweep-preview", "children"), Output("sweep-submit", "disabled"),
          Input({"type": "sweep-field", "row": ALL}, "value"),
          Input({"type": "sweep-values", "row": ALL}, "value"),
          Input("new-submit", "disabled"), State("new-state", "data"))
def sweep_preview(paths, texts, spec_invalid, state):
    """How many studies the sweep makes (or what is wrong with it); Submit sweep needs a valid
    spec above and at least one field with values."""
    if not state:
        return None, True
    grid, count, problems = logic.sweep_grid(state["fields"], list(zip(paths, texts,
                                                                        strict=True)))
    if problems:
        return alert("; ".join(problems) + ".", "warn"), True
    if not grid:
        return html.Span("Pick a field and its values.", className="muted"), True
    if spec_invalid:
        return html.Span(f"{count} studies, once the spec above is valid.",
                         className="muted"), True
    sizes = " × ".join(str(len(v)) for v in grid.values())
    return html.Span(f"{sizes} = {count} studies" if len(grid) > 1 else f"{count} studies"), \
        False


@callback(Output("sweep-result", "children"), Output("new-redirect", "href",
                                                     allow_duplicate=True),
          Input("sweep-submit", "n_clicks"), State("new-body", "data"),
          State({"type": "sweep-field", "row": ALL}, "value"),
          State({"type": "sweep-values", "row": ALL}, "value"), State("new-state", "data"),
          State("auth", "data"), prevent_initial_call=True,
          running=[(Output("sweep-submit", "disabled"), True, False)])
@threaded
def submit_sweep(_n, body, paths, texts, state, auth):
    if not body or not state:
        return alert("Fill in the form first.", "warn"), no_update
    grid, _, problems = logic.sweep_grid(state["fields"], list(zip(paths, texts, strict=True)))
    if problems or not grid:
        return alert("; ".join(problems) or "Pick a field and its values.", "warn"), no_update
    try:
        status, sweep = get_client().sweep({"base": body, "grid": grid},
                                           (auth or {}).get("token"))
    except ApiError as exc:
        return api_error(exc, "The API refused the sweep"), no_update
    how = (f"{sweep['created']} queued, {sweep['reused']} already there" if status == 202
           else "every study already exists")
    # the sweep's own page: its grid, its studies' progress and LDS, and a link to compare
    return alert(f"Sweep #{sweep['id']} of {sweep['count']} studies: {how}.", "ok"), \
        f"/sweeps/{sweep['id']}"
