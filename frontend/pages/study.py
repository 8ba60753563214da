"""One study: state and progress while it runs; once it has succeeded every figure (LDS,
spectra, alignment, decomposition, ground truth, examples, curvature heat maps) and its
provenance with downloads. The selectors (method, block, test point, α, k) live in the URL."""

from __future__ import annotations

import json

import dash
import numpy as np
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update

from frontend import logic
from frontend.api_client import ApiError, download_href, get_client
from frontend.components import (
    alert,
    api_error,
    card,
    chip,
    empty_figure,
    error_figure,
    graph,
    kv_table,
    progress_bar,
)
from frontend.data import CACHE, FETCH_POOL, load_arrays, load_results, study_key
from frontend.figures import (
    alignment_figure,
    decomposition_figure,
    examples_grid,
    groundtruth_scatter,
    heatmap_figure,
    lds_figure,
    spectra_figure,
)
from frontend.runtime import threaded

dash.register_page(__name__, path_template="/studies/<study_id>", name="Study",
                   title=lambda study_id=None, **_: f"Study {study_id} · curvscope")

POLL_MS = 1500
HEATMAPS = [("H", "log10 |H|"), ("GGN", "log10 |G|"), ("H-GGN", "log10 |H − G|")]
WHOLE = "__whole__"
SPECTRUM_POINTS = 400  # per curve, log-spaced ranks: enough for the shape on log-log axes
HEATMAP_DIGITS = 3  # decimals of log10|M| sent to the browser


def _control(label: str, component, id_: str | None = None) -> html.Div:
    return html.Div(className="control", children=[html.Label(label, htmlFor=id_), component])


def layout(study_id=None, method=None, methods=None, block=None, test=None, alpha=None,
           k=None, overlap=None, **_):
    sid = logic.parse_int(study_id)
    if sid is None or sid < 1:
        return alert(f"{study_id!r} is not a study id; the studies are listed on the "
                     "Studies page.", "error", "No such study.")
    initial = {"method": method, "methods": logic.parse_list(methods) or None,
               "block": block, "test": logic.parse_int(test, None, lo=0), "alpha": alpha,
               "k": logic.parse_int(k), "overlap": overlap}
    head = html.Div(className="page-head", children=[
        html.H1(f"Study #{sid}", id="study-title"),
        html.Span(id="study-chip"),
        html.Div(className="grow"),
        html.Button("Cancel", id="study-cancel", className="button ghost", hidden=True),
        html.Button("Retry", id="study-retry", className="button ghost", hidden=True),
        dcc.ConfirmDialogProvider(
            html.Button("Delete", id="study-delete-button", className="button danger",
                        hidden=True),
            id="study-delete", message=f"Delete study #{sid} and its files? This cannot be "
            "undone."),
    ])
    toolbar = html.Div(className="row", children=[
        _control("Method (ground truth)", dcc.Dropdown(id="study-method", clearable=False,
                                                        style={"minWidth": "170px"}),
                 "study-method"),
        _control("Test point", dcc.Input(id="study-test", type="number", min=0, step=1,
                                         value=initial["test"], debounce=0.5,
                                         className="input", style={"width": "90px"}),
                 "study-test"),
        _control("α (subset fraction)", dcc.Dropdown(id="study-alpha", clearable=False,
                                                     style={"minWidth": "110px"}),
                 "study-alpha"),
        html.Div(id="study-test-note", className="small muted"),
    ])
    spectra_controls = html.Div(className="row", children=[
        _control("Methods", dcc.Checklist(id="spectra-methods", inline=True,
                                          className="checklist")),
        _control("Matrix", dcc.Dropdown(id="spectra-block", clearable=False,
                                        style={"minWidth": "160px"}), "spectra-block"),
    ])
    align_controls = html.Div(className="row", children=[
        _control("Overlap", dcc.RadioItems(
            id="align-kind", inline=True, value=logic.pick(overlap, ["eigenbasis",
                                                                     "eigenvalue"],
                                                           "eigenbasis"),
            options=[{"label": " eigenbasis (top-k)", "value": "eigenbasis"},
                     {"label": " eigenvalue", "value": "eigenvalue"}])),
        _control("k", dcc.RadioItems(id="align-k", inline=True, className="k-choice")),
    ])
    body = html.Div(id="study-body", hidden=True, children=[
        card("Selection", toolbar),
        html.Div(className="grid-2", children=[
            card("Attribution quality (LDS)", [
                graph("fig-lds", 430),
                html.P("Bars: mean Spearman correlation over test points between predicted "
                       "and retrained loss changes; whiskers: 95 % bootstrap interval; dashed: "
                       "seed-noise ceiling.", className="figure-note")]),
            card("Ground truth", [
                graph("fig-gt", 430),
                html.P("Each point is one random training subset: the loss change the method "
                       "predicts against the one measured by retraining.",
                       className="figure-note")]),
        ]),
        card("Spectra", [spectra_controls, graph("fig-spectra", 440)]),
        card("Alignment with the GGN block", [align_controls, graph("fig-align", 400)]),
        card("Error decomposition", [
            graph("fig-decomp", 440),
            html.P("Left: Frobenius norm of each step's change, relative to ‖H‖; middle: LDS "
                   "lost at each step at the chosen α; right: K-FAC's error split into "
                   "cross-layer, eigenbasis and eigenvalue shares.", className="figure-note")]),
        card("Examples", [graph("fig-examples", None)], id="examples-card"),
        card("Curvature matrices", html.Div(className="grid-3", children=[
            graph(f"fig-heat-{name}", 400) for name, _ in HEATMAPS])),
    ])
    return html.Div([
        dcc.Store(id="study-id", data=sid),
        dcc.Store(id="study-initial", data=initial),
        dcc.Store(id="study-meta"),
        dcc.Store(id="study-action"),
        dcc.Store(id="study-url"),
        dcc.Location(id="study-redirect", refresh="callback-nav"),
        dcc.Interval(id="study-poll", interval=POLL_MS, disabled=True),
        head,
        html.Div(id="study-status"),
        html.Div(id="study-error"),
        body,
        html.Div(id="study-provenance"),
    ])


# -- the study, its state and the selectors' choices ------------------------------------------
def _status_block(detail: dict) -> list:
    state = detail["state"]
    out = []
    if state in ("queued", "running"):
        stage = detail.get("stage") or ("waiting for a worker" if state == "queued" else "")
        out.append(card("Progress", [
            progress_bar(detail.get("progress"), f"{100 * (detail.get('progress') or 0):.0f} %"
                         f" · {stage}"),
            html.P(f"Stage {stage}: {100 * (detail.get('stage_progress') or 0):.0f} %"
                   + (" · cancel requested" if detail.get("cancel_requested") else ""),
                   className="small muted"),
        ]))
    elif state == "failed":
        out.append(alert(detail.get("error") or "no reason was recorded", "error",
                         f"The study failed ({detail.get('error_type') or 'error'}):"))
    elif state == "cancelled":
        out.append(alert("It was cancelled before it finished; Retry runs it again, reusing "
                         "every finished stage.", "warn", "Cancelled."))
    return out


def _prefetch(client, detail: dict, meta: dict) -> None:
    """Start fetching the arrays of the default view while the browser asks for figures."""
    if not meta.get("ready"):
        return
    names = [f"eigenvalues/{m}" for m in meta["methods"]]
    names += [f"heatmaps/{n}" for n, _ in HEATMAPS]
    if meta.get("has_groundtruth") and meta.get("alphas"):
        names += [f"masks/{meta['alphas'][0]}", f"retrained_losses/{meta['alphas'][0]}"]
    names += [f"scores/{m}" for m in meta["methods"]]
    if meta.get("has_images"):
        names += ["images/test", "images/train"]
    for name in names:
        if CACHE.get(("array", *study_key(client, detail), name)) is None:
            FETCH_POOL.submit(_quiet, load_arrays, client, detail, [name])


def _quiet(fn, *args):
    try:
        fn(*args)
    except Exception:  # a prefetch failure is reported by the figure that needs it
        pass


@callback(
    Output("study-title", "children"), Output("study-chip", "children"),
    Output("study-status", "children"), Output("study-error", "children"),
    Output("study-body", "hidden"), Output("study-poll", "disabled"),
    Output("study-meta", "data"),
    Output("study-cancel", "hidden"), Output("study-retry", "hidden"),
    Output("study-delete-button", "hidden"),
    Output("study-method", "options"), Output("study-method", "value"),
    Output("study-alpha", "options"), Output("study-alpha", "value"),
    Output("study-test", "max"), Output("study-test", "value"),
    Output("spectra-methods", "options"), Output("spectra-methods", "value"),
    Output("spectra-block", "options"), Output("spectra-block", "value"),
    Output("align-k", "options"), Output("align-k", "value"),
    Output("study-provenance", "children"),
    Input("study-id", "data"), Input("study-poll", "n_intervals"),
    Input("study-action", "data"),
    State("study-initial", "data"), State("study-meta", "data"),
    State("study-method", "value"), State("study-alpha", "value"),
    State("study-test", "value"), State("spectra-methods", "value"),
    State("spectra-block", "value"), State("align-k", "value"))
@threaded
def load_study(sid, _tick, _action, initial, old_meta, method, alpha, test, methods, block, k):
    n_out = 23
    client = get_client()
    try:
        detail = client.study(sid)
    except ApiError as exc:
        out = [no_update] * n_out
        out[3] = api_error(exc, f"Could not load study #{sid}")
        out[5] = exc.status not in (0,) and exc.status < 500  # keep polling if transient
        out[4] = True
        return out
    state = detail["state"]
    title = f"#{sid} {detail.get('name') or ''}".strip()
    active = state in logic.ACTIVE
    results, error = None, None
    if state == "succeeded":
        try:
            results = load_results(client, detail)
        except ApiError as exc:
            error = api_error(exc, "Could not load the results")
    meta = logic.study_meta(detail, results)
    actions = (not active, state not in ("failed", "cancelled"), active)
    if old_meta and old_meta.get("ready") and meta.get("ready") and \
            old_meta.get("spec_hash") == meta.get("spec_hash"):
        # nothing new for the figures: leave the selectors as they are
        return [title, chip(state), _status_block(detail), error, False, True, no_update,
                *actions, *[no_update] * 12, no_update]
    provenance = _provenance(detail, results, client)
    if not meta.get("ready"):
        return [title, chip(state), _status_block(detail), error, True, not active, meta,
                *actions, [], None, [], None, None, None, [], [], [], None, [], None,
                provenance]
    _prefetch(client, detail, meta)
    initial = initial or {}
    methods_all = meta["methods"]
    method = logic.pick(method or initial.get("method"), methods_all,
                        "K-FAC" if "K-FAC" in methods_all else methods_all[0])
    alphas = meta["alphas"]
    alpha = logic.pick(alpha or initial.get("alpha"), alphas,
                       "0.5" if "0.5" in alphas else (alphas[0] if alphas else None))
    n_test = meta.get("n_test") or 1
    test = logic.parse_int(test if test is not None else initial.get("test"), 0, lo=0,
                           hi=n_test - 1)
    chosen = [m for m in (methods or initial.get("methods") or methods_all) if m in methods_all]
    blocks = [{"label": "whole matrix", "value": WHOLE}] + [
        {"label": f"block {b}", "value": b} for b in meta["blocks"]]
    block = logic.pick(block or initial.get("block"), [WHOLE, *meta["blocks"]], WHOLE)
    ks = meta["ks"]
    k = logic.nearest_k(k or initial.get("k"), ks, meta.get("k"))
    return [title, chip(state), _status_block(detail), error, False, True, meta, *actions,
            logic.method_options(meta), method,
            [{"label": f"α = {a}", "value": a} for a in alphas], alpha,
            n_test - 1, test,
            logic.method_options(meta), chosen or methods_all, blocks, block,
            [{"label": f" {j}", "value": j} for j in ks], k,
            provenance]


def _provenance(detail: dict, results: dict | None, client) -> html.Div:
    sid = detail["id"]
    rows = [("state", detail["state"]), ("spec hash", html.Code(detail.get("spec_hash"))),
            ("preset", detail.get("preset") or "–"),
            ("created", logic.fmt_time(detail.get("created_at"))),
            ("started", logic.fmt_time(detail.get("started_at"))),
            ("finished", logic.fmt_time(detail.get("finished_at"))),
            ("queued for", logic.fmt_seconds((detail.get("timings") or {}).get(
                "queued_seconds"))),
            ("ran for", logic.fmt_seconds((detail.get("timings") or {}).get(
                "running_seconds"))),
            ("worker", detail.get("worker") or "–"), ("device", detail.get("device") or "–"),
            ("attempts", detail.get("attempts"))]
    columns = [html.Div([html.H3("Run"), kv_table(rows)])]
    if results is not None:
        training = results.get("training") or {}
        columns.append(html.Div([
            html.H3("Model and data"),
            kv_table([("parameters", logic.fmt_number(results.get("n_params"))),
                      ("train / test points", f"{logic.fmt_number(results.get('n_train'))} / "
                                              f"{logic.fmt_number(results.get('n_test'))}"),
                      ("blocks", ", ".join(f"{b['name']} ({b['size']})"
                                           for b in results.get("blocks", []))),
                      ("train loss", logic.fmt_number(training.get("train_loss"))),
                      ("test accuracy", logic.fmt_percent(training.get("test_accuracy")))]),
            html.H3("Versions"),
            kv_table(list((results.get("versions") or {}).items())),
        ]))
        columns.append(html.Div([html.H3("Timings (s per stage)"),
                                 kv_table(logic.timing_rows(results.get("timings")))]))
    downloads: list = []
    if detail["state"] == "succeeded":
        downloads = [html.H3("Downloads"), html.Ul(
            [html.Li(html.A(label, href=download_href(path), target="_blank",
                            className="download")) for label, path in logic.api_links(sid)]
            + [html.Li(html.A("arrays (list; each array as .npy from the API)",
                              href=download_href(f"/studies/{sid}/arrays"),
                              target="_blank"))])]
    spec = results.get("spec") if results else detail.get("spec")
    return card("Provenance", [
        html.Div(className="grid-3", children=columns),
        *downloads,
        html.Details([html.Summary("Full spec"), html.Pre(json.dumps(spec, indent=2),
                                                          id="study-spec")], open=False),
    ], id="provenance-card")


# -- figures ----------------------------------------------------------------------------------
def _theme(app_state) -> str:
    return (app_state or {}).get("theme", "light")


def _ready(meta) -> bool:
    return bool(meta and meta.get("ready"))


def _study(meta) -> dict:
    """The study record the cache keys on, from the page's state (no extra request)."""
    return {"id": meta["id"], "state": "succeeded", "spec_hash": meta["spec_hash"],
            "finished_at": meta.get("finished_at")}


@callback(Output("fig-lds", "figure"), Input("study-meta", "data"), Input("app-state", "data"))
@threaded
def fig_lds(meta, app_state):
    if not _ready(meta):
        return no_update
    theme = _theme(app_state)
    try:
        client = get_client()
        return lds_figure(load_results(client, _study(meta)), theme)
    except Exception as exc:
        return error_figure(exc, theme)


@callback(Output("fig-spectra", "figure"), Input("study-meta", "data"),
          Input("spectra-methods", "value"), Input("spectra-block", "value"),
          Input("app-state", "data"))
@threaded
def fig_spectra(meta, methods, block, app_state):
    if not _ready(meta):
        return no_update
    theme = _theme(app_state)
    methods = [m for m in (methods or []) if m in meta["methods"]]
    if not methods:
        return empty_figure("pick at least one method", theme)
    block = None if block in (None, WHOLE) else block
    names = [f"eigenvalues/{m}" if block is None else f"block_eigenvalues/{m}/{block}"
             for m in methods]
    try:
        client = get_client()
        arrays = load_arrays(client, _study(meta), names)
        if not arrays:
            return empty_figure("no eigenvalues were stored for these methods", theme)
        return spectra_figure(arrays, methods, block, theme, max_points=SPECTRUM_POINTS)
    except Exception as exc:
        return error_figure(exc, theme)


@callback(Output("fig-align", "figure"), Input("study-meta", "data"),
          Input("align-kind", "value"), Input("align-k", "value"), Input("app-state", "data"))
@threaded
def fig_align(meta, kind, k, app_state):
    if not _ready(meta):
        return no_update
    theme = _theme(app_state)
    try:
        client = get_client()
        results = load_results(client, _study(meta))
        return alignment_figure(results, kind or "eigenbasis",
                                logic.parse_int(k) if kind != "eigenvalue" else None, theme)
    except Exception as exc:
        return error_figure(exc, theme)


@callback(Output("fig-decomp", "figure"), Input("study-meta", "data"),
          Input("study-alpha", "value"), Input("app-state", "data"))
@threaded
def fig_decomp(meta, alpha, app_state):
    if not _ready(meta):
        return no_update
    theme = _theme(app_state)
    try:
        client = get_client()
        results = load_results(client, _study(meta))
        return decomposition_figure(results, alpha, theme)
    except Exception as exc:
        return error_figure(exc, theme)


@callback(Output("fig-gt", "figure"), Output("study-test-note", "children"),
          Input("study-meta", "data"), Input("study-method", "value"),
          Input("study-test", "value"), Input("study-alpha", "value"),
          Input("app-state", "data"))
@threaded
def fig_groundtruth(meta, method, test, alpha, app_state):
    if not _ready(meta):
        return no_update, no_update
    theme = _theme(app_state)
    if not meta.get("has_groundtruth") or not alpha:
        return empty_figure("this study has no ground truth (groundtruth.enabled = false)",
                            theme), ""
    n_test = meta.get("n_test") or 1
    index = logic.parse_int(test, 0, lo=0, hi=n_test - 1)
    note = f"test points 0 … {n_test - 1}"
    if method not in meta["methods"]:
        return empty_figure("pick a method", theme), note
    try:
        client = get_client()
        arrays = load_arrays(client, _study(meta),
                             [f"masks/{alpha}", f"retrained_losses/{alpha}", f"scores/{method}"],
                             missing_ok=False)
        return groundtruth_scatter(arrays, method, index, alpha, theme), note
    except Exception as exc:
        return error_figure(exc, theme), note


@callback(Output("fig-examples", "figure"), Output("fig-examples", "style"),
          Input("study-meta", "data"), Input("study-test", "value"),
          Input("app-state", "data"))
@threaded
def fig_examples(meta, test, app_state):
    if not _ready(meta):
        return no_update, no_update
    theme = _theme(app_state)
    n_test = meta.get("n_test") or 1
    index = logic.parse_int(test, 0, lo=0, hi=n_test - 1)
    methods = meta["methods"]
    try:
        client = get_client()
        names = [f"scores/{m}" for m in methods]
        if meta.get("has_images"):
            names += ["images/test", "images/train"]
        arrays = load_arrays(client, _study(meta), names)
        fig = examples_grid(arrays, [m for m in methods if f"scores/{m}" in arrays], index,
                              theme=theme)
        height = fig.layout.height or 300
        return fig, {"height": f"{height}px"}
    except Exception as exc:
        return error_figure(exc, theme), {"height": "300px"}


@callback(*[Output(f"fig-heat-{name}", "figure") for name, _ in HEATMAPS],
          Input("study-meta", "data"), Input("app-state", "data"))
@threaded
def fig_heatmaps(meta, app_state):
    if not _ready(meta):
        return [no_update] * len(HEATMAPS)
    theme = _theme(app_state)
    try:
        client = get_client()
        study = _study(meta)
        results = load_results(client, study)
        arrays = {name: np.round(values, HEATMAP_DIGITS) for name, values in load_arrays(
            client, study, [f"heatmaps/{n}" for n, _ in HEATMAPS]).items()}
    except Exception as exc:
        return [error_figure(exc, theme)] * len(HEATMAPS)
    out = []
    for name, label in HEATMAPS:
        if f"heatmaps/{name}" not in arrays:
            out.append(empty_figure(f"{label}: not computed in this study (it needs the dense "
                                    "H and GGN methods)", theme))
            continue
        try:
            fig = heatmap_figure(results, arrays, name, theme)
            fig.update_layout(title=f"{label} (lines: layer boundaries)")
            out.append(fig)
        except Exception as exc:
            out.append(error_figure(exc, theme))
    return out


# -- actions ----------------------------------------------------------------------------------
@callback(Output("study-action", "data"), Output("study-error", "children", allow_duplicate=True),
          Output("study-redirect", "href"),
          Input("study-cancel", "n_clicks"), Input("study-retry", "n_clicks"),
          Input("study-delete", "submit_n_clicks"),
          State("study-id", "data"), State("auth", "data"), prevent_initial_call=True)
@threaded
def act(_cancel, _retry, _delete, sid, auth):
    trigger = dash.ctx.triggered_id
    token = (auth or {}).get("token")
    client = get_client()
    try:
        if trigger == "study-cancel":
            client.cancel(sid, token)
            return {"did": "cancel", "n": _cancel}, alert(
                "Cancel requested; a running study stops at its next check.", "info"), no_update
        if trigger == "study-retry":
            client.retry(sid, token)
            return {"did": "retry", "n": _retry}, alert("Queued again.", "info"), no_update
        if trigger == "study-delete":
            client.delete(sid, token)
            return no_update, None, "/"
    except ApiError as exc:
        return no_update, api_error(exc, f"Could not {trigger.removeprefix('study-')} "
                                         f"study #{sid}"), no_update
    return no_update, no_update, no_update


clientside_callback(
    logic.url_sync_js(["method", "test", "alpha", "methods", "block", "overlap", "k"],
                      {"block": WHOLE, "overlap": "eigenbasis", "test": 0}, {"methods": 7}),
    Output("study-url", "data"),
    Input("study-method", "value"), Input("study-test", "value"),
    Input("study-alpha", "value"), Input("spectra-methods", "value"),
    Input("spectra-block", "value"), Input("align-kind", "value"), Input("align-k", "value"),
    State("spectra-methods", "options"), prevent_initial_call=True)
