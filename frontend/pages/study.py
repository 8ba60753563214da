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
from frontend.data import (
    CACHE,
    FETCH_POOL,
    cached_call,
    cached_figure,
    load_arrays,
    load_results,
    load_rows,
    study_key,
)
from frontend.figures import (
    alignment_figure,
    decomposition_figure,
    examples_grid,
    groundtruth_scatter,
    heatmap_figure,
    lds_figure,
    spectra_figure,
)
from frontend.figures.study import block_labels, spectra_caption, training_figure
from frontend.figures.verdict import (
    decomposition_sentence,
    hierarchy_figure,
    known_pitfalls,
    link_table,
    mismatch_rows,
    study_warnings,
    unpaired_overlap_but_paired_differs,
    verdict_headline,
)
from frontend.runtime import threaded

dash.register_page(__name__, path_template="/studies/<study_id>", name="Study",
                   title=lambda study_id=None, **_: f"Study {study_id} · curvscope")

POLL_MS = 1500
HEATMAPS = [("H", "log10 |H|"), ("GGN", "log10 |G|"), ("H-GGN", "log10 |H − G|")]
WHOLE = "__whole__"
SPECTRUM_POINTS = 400  # per curve, log-spaced ranks: enough for the shape on log-log axes
HEATMAP_DIGITS = 3  # decimals of log10|M| shown; sent as float32 (half the bytes of float64)

#: how to read each figure (a caption under every one)
CAPTIONS = {
    "fig-verdict": "Each bar is LDS(higher) − LDS(lower) for two neighbours of the chain "
    "H ≥ GGN ≥ block-GGN ≥ EK-FAC ≥ K-FAC ≥ identity, one bar per α, with the 95 % interval "
    "of the paired bootstrap (both methods scored on the same resampled test points). Green: "
    "the interval lies above 0, the link holds; grey: it contains 0, level; red: below 0, "
    "the link breaks.",
    "fig-lds": "LDS (linear datamodeling score) = Spearman correlation, over random training "
    "subsets, between the loss change a method predicts and the one measured by retraining; "
    "the mean over test points. Higher is better; 1 is a perfect ranking. Whiskers: each "
    "method's own (unpaired) 95 % bootstrap interval; dashed: the seed-noise ceiling (the "
    "LDS of one retraining seed against another), the best any method can reach.",
    "fig-gt": "Each point is one random training subset: the loss change the method predicts "
    "(sum of its influence scores over the subset, x) against the test loss measured after "
    "retraining on it (y). A rising, tight cloud is good; its Spearman ρ is this test "
    "point's LDS.",
    "fig-spectra": "Eigenvalues of each method's curvature matrix, largest first, on log-log "
    "axes. Curves that coincide mean the approximation keeps the spectrum; a curve that "
    "drops early misses curvature.",
    "fig-align": "How well each method's curvature lines up with the GGN's, per layer: "
    "eigenbasis overlap = share of the GGN's top-k eigen-directions the method spans; "
    "eigenvalue overlap = agreement of the eigenvalues. 1 is perfect; higher is better.",
    "fig-decomp": "Left: how far each step of the chain moves the matrix (‖ΔM‖_F / ‖H‖_F, "
    "stacked; red adds error). Middle: LDS lost at each step at the chosen α (red: lost, "
    "green: gained). Right: K-FAC's squared distance to the GGN split into cross-layer, "
    "eigenbasis and eigenvalue shares.",
    "fig-examples": "The test digit, and for each method the three training digits whose "
    "up-weighting most lowers (helpful, most negative τ) or raises (harmful, most positive "
    "τ) its test loss; under each: the training index, its class label (when the study "
    "stores labels) and its score τ, e.g. “#412 · 7 τ=-0.031” is training digit 412, a 7. "
    "A helpful digit of another class than the test digit's is worth a look.",
    "fig-loss": "Training loss of the base model per epoch (the model every method explains). "
    "A curve still falling steeply means the model is not converged, which the influence "
    "approximations assume. The grey band is the 10–90 % range of the running training loss "
    "(mean minibatch loss over the epoch) of the ground truth's retrained models (the same "
    "recipe on random subsets, at α = 0.5 when the study has it) at up to 25 epochs, the "
    "dotted line their median. A running loss is taken while the epoch's steps move the "
    "model, so early on it sits above the base curve's loss after the epoch; a base curve "
    "far below the band late in training means they did not train alike. Studies from "
    "before this was recorded show the base curve alone.",
    "heat": "log10 of the absolute entries (tile means) of H, the GGN and their difference; "
    "white lines: layer boundaries. Bright off-diagonal tiles are cross-layer curvature, "
    "which block-diagonal methods drop.",
}


def caption(key: str, id_: str | None = None, extra=None) -> html.P:
    return html.P([CAPTIONS[key], *([" ", extra] if extra else [])], className="figure-note",
                  **({"id": id_} if id_ else {}))


def _control(label: str, component, id_: str | None = None) -> html.Div:
    return html.Div(className="control", children=[html.Label(label, htmlFor=id_), component])


async def layout(study_id=None, method=None, methods=None, block=None, test=None,
                 alpha=None, k=None, overlap=None, app_state=None, **_):
    """The whole page as the study stands now, figures included.

    The page router awaits this (``app_state`` is the theme, a routing State), so a finished
    study's page arrives with every figure of its view in one response: no placeholder is
    drawn and no callback round trip precedes the figures. The work runs off the event loop
    (:func:`first_view`). Afterwards the callbacks below change what the selectors change, and
    poll a queued or running study until it ends."""
    sid = logic.parse_int(study_id)
    if sid is None or sid < 1:
        return alert(f"{study_id!r} is not a study id; the studies are listed on the "
                     "Studies page.", "error", "No such study.")
    initial = {"method": method, "methods": logic.parse_list(methods) or None,
               "block": block, "test": test, "alpha": alpha,
               "k": logic.parse_int(k), "overlap": overlap}
    overlap = logic.pick(overlap, ["eigenbasis", "eigenvalue"], "eigenbasis")
    view = await first_view(sid, initial, overlap, _theme(app_state))
    return page(sid, initial, overlap, view)


def page(sid: int, initial: dict, overlap: str, view: dict) -> html.Div:
    """The page's components, filled from ``view`` (:func:`study_view` and the figures)."""
    figures = view.get("figures", {})

    def figure_graph(id_: str, height: int | None) -> dcc.Graph:
        return graph(id_, height, figure=figures.get(id_))

    head = html.Div(className="page-head", children=[
        html.H1(view["title"], id="study-title"),
        html.Span(view["chip"], id="study-chip"),
        html.Div(className="grow"),
        html.Span(dcc.Link("Edit and resubmit", href=f"/new?from={sid}", id="study-resubmit",
                           className="button ghost button-link",
                           title="Open the New study form with this study's spec filled in"),
                  id="study-resubmit-box", hidden=view.get("resubmit_hidden", True)),
        html.Button("Cancel", id="study-cancel", className="button ghost",
                    hidden=view["cancel_hidden"]),
        html.Button("Retry", id="study-retry", className="button ghost",
                    hidden=view["retry_hidden"]),
        dcc.ConfirmDialogProvider(
            html.Button("Delete", id="study-delete-button", className="button danger",
                        hidden=view["delete_hidden"]),
            id="study-delete", message=f"Delete study #{sid} and its files? This cannot be "
            "undone."),
    ])
    toolbar = html.Div(className="row", children=[
        _control("Method (ground truth)", dcc.Dropdown(
            id="study-method", clearable=False, style={"minWidth": "170px"},
            options=view["method_options"], value=view["method"]), "study-method"),
        _control("Test point", dcc.Input(id="study-test", type="number", min=0, step=1,
                                         value=view["test"], max=view["test_max"],
                                         debounce=0.5, className="input",
                                         style={"width": "90px"}),
                 "study-test"),
        _control("α (subset fraction)", dcc.Dropdown(
            id="study-alpha", clearable=False, style={"minWidth": "110px"},
            options=view["alpha_options"], value=view["alpha"]), "study-alpha"),
        html.Div(view.get("test_note"), id="study-test-note", className="small muted",
                 role="status"),
    ])
    spectra_controls = html.Div(className="row", children=[
        _control("Methods", dcc.Checklist(id="spectra-methods", inline=True,
                                          className="checklist",
                                          options=view["spectra_options"],
                                          value=view["spectra_methods"])),
        _control("Matrix", dcc.Dropdown(id="spectra-block", clearable=False,
                                        style={"minWidth": "160px"},
                                        options=view["block_options"], value=view["block"]),
                 "spectra-block"),
    ])
    align_controls = html.Div(className="row", children=[
        _control("Overlap", dcc.RadioItems(
            id="align-kind", inline=True, value=overlap,
            options=[{"label": " eigenbasis (top-k)", "value": "eigenbasis"},
                     {"label": " eigenvalue", "value": "eigenvalue"}])),
        _control("k", dcc.RadioItems(id="align-k", inline=True, className="k-choice",
                                     options=view["k_options"], value=view["k"])),
    ])
    examples = figure_graph("fig-examples", None)
    if view.get("examples_style"):
        examples.style = view["examples_style"]
    body = html.Div(id="study-body", hidden=view["body_hidden"], children=[
        card("Selection", toolbar),
        card("Verdict: does the hierarchy hold?", [
            html.Div(view.get("verdict"), id="study-verdict"),
            figure_graph("fig-verdict", 380), caption("fig-verdict")], id="verdict-card"),
        html.Div(className="grid-2", children=[
            card("Attribution quality (LDS)", [
                figure_graph("fig-lds", 430), caption("fig-lds"),
                html.P(view.get("lds_note"), id="lds-note", className="figure-note warn")]),
            card("Ground truth", [figure_graph("fig-gt", 430), caption("fig-gt")]),
        ]),
        card("Spectra", [spectra_controls, figure_graph("fig-spectra", 440),
                         caption("fig-spectra"),
                         html.P(view.get("spectra_note"), id="spectra-note",
                                className="figure-note")]),
        card("Alignment with the GGN block", [align_controls, figure_graph("fig-align", 400),
                                               caption("fig-align")]),
        card("Error decomposition", [
            html.P(view.get("decomp_sentence"), id="decomp-sentence", className="sentence"),
            figure_graph("fig-decomp", 440), caption("fig-decomp")]),
        card("Examples", [examples, caption("fig-examples")], id="examples-card"),
        card("Training", [figure_graph("fig-loss", 300), caption("fig-loss")],
             id="training-card"),
        card("Curvature matrices", [html.Div(className="grid-3", children=[
            figure_graph(f"fig-heat-{name}", 400) for name, _ in HEATMAPS]), caption("heat")]),
    ])
    return html.Div([
        dcc.Store(id="study-id", data=sid),
        dcc.Store(id="study-initial", data=initial),
        dcc.Store(id="study-meta", data=view["meta"]),
        dcc.Store(id="study-action"),
        dcc.Store(id="study-url"),
        dcc.Location(id="study-redirect", refresh="callback-nav"),
        dcc.Interval(id="study-poll", interval=POLL_MS, disabled=view["poll_disabled"]),
        head,
        html.Div(view["status"], id="study-status"),
        html.Div(view["error"], id="study-error"),
        html.Div(view.get("warnings"), id="study-warnings"),
        body,
        html.Div(view["provenance"], id="study-provenance"),
    ])


def warning_banners(results: dict) -> list:
    """The study's warnings as banners, and its known pitfalls as one distinct banner."""
    out = []
    for w in study_warnings(results):
        kind = "warn" if w.get("severity") == "warning" else "info"
        where = f" ({w['method']})" if w.get("method") else ""
        out.append(html.Div([html.Strong(f"{w.get('code', 'warning').replace('_', ' ')}"
                                         f"{where}: "), html.Span(w.get("message"))],
                            className=f"alert alert-{kind} study-warning", role="alert",
                            **{"data-code": w.get("code")}))
    pitfalls = known_pitfalls(results)
    if pitfalls:
        out.append(html.Div([
            html.Strong("This study replays the official code's choices, which carry known "
                        "pitfalls:"),
            html.Ul([html.Li(p) for p in pitfalls])],
            className="alert alert-pitfall", role="note", id="study-pitfalls"))
    return out


def verdict_block(results: dict) -> list:
    """The hierarchy in words: one headline, a table of links × α (holds / level / breaks,
    with the paired difference and its interval), and the per-α sentences."""
    rows = link_table(results)
    alphas = [str(a) for a in (results.get("groundtruth") or {}).get("alphas", [])]
    headline = html.P(verdict_headline(results), className="verdict-headline",
                      id="verdict-headline")
    if not rows:
        return [headline]

    def cell(link):
        if not link:
            return html.Td("–")
        return html.Td([html.Span(link["word"], className=f"verdict verdict-{link['word']}"),
                        html.Span(f" {link['value']:+.3f} [{link['ci_low']:+.3f}, "
                                  f"{link['ci_high']:+.3f}]", className="small")],
                       **{"data-verdict": link["verdict"], "data-alpha": link.get("alpha")})

    table = html.Div(className="table-wrap", children=html.Table(
        className="table verdict-table", id="verdict-table", children=[
            html.Thead(html.Tr([html.Th("link (higher ≥ lower)")] + [
                html.Th(f"α = {a}") for a in alphas] + [html.Th("overall")])),
            html.Tbody([html.Tr([html.Td(f"{r['higher']} ≥ {r['lower']}")]
                                + [cell({**r['by_alpha'][a], "alpha": a}
                                        if a in r["by_alpha"] else None) for a in alphas]
                                + [html.Td(html.Span(r["overall"],
                                                     className=f"verdict verdict-{r['overall']}"))],
                                **{"data-link": f"{r['higher']}|{r['lower']}"})
                        for r in rows])]))
    from frontend.figures.verdict import hierarchy_summary

    sentences = html.Ul([html.Li(e["sentence"]) for e in hierarchy_summary(results)],
                        className="small verdict-sentences")
    extra = []
    mismatch = mismatch_rows(results)
    if mismatch:
        extra = [html.H3("Eigenvalue mismatch's share of the K-FAC error"),
                 html.Div(className="table-wrap", children=html.Table(
                     className="table", id="mismatch-table", children=[
                         html.Thead(html.Tr([html.Th("definition"), html.Th("share"),
                                             html.Th("formula")])),
                         html.Tbody([html.Tr([html.Td(n), html.Td(v, className="num"),
                                              html.Td(html.Code(f))])
                                     for n, v, f in mismatch])]))]
    return [headline, table, sentences,
            html.P(decomposition_sentence(results), className="sentence",
                   id="verdict-decomposition"), *extra]


def lds_note(results: dict) -> str | None:
    """Next to the LDS chart: where overlapping whiskers hide a difference the paired test
    finds."""
    differ = unpaired_overlap_but_paired_differs(results)
    if not differ:
        return None
    return ("Overlapping whiskers do not mean two methods are level: the paired test (the "
            "verdict above) finds " + "; ".join(differ) + ".")


# -- the study, its state and the selectors' choices ------------------------------------------
def _status_block(detail: dict, position: int | None = None) -> list:
    state = detail["state"]
    out = []
    workers, devices = logic.study_workers(detail)
    where = [html.Span(f"worker {', '.join(workers)}", id="study-where-worker")] if workers \
        else []
    if devices:
        where.append(html.Span(f" · device {', '.join(devices)}", id="study-where-device"))
    if state in ("queued", "running"):
        stage = detail.get("stage") or ("waiting for a worker" if state == "queued" else "")
        eta = logic.eta_seconds(detail)
        lines = [] if state == "queued" and not detail.get("stage") else [
            f"Stage {stage}: {100 * (detail.get('stage_progress') or 0):.0f} %"]
        if eta is not None:
            lines.append(f"about {logic.fmt_seconds(eta)} left at its pace so far")
        if state == "queued":  # its place first: what a queued study's reader wants to know
            lines.insert(0, logic.queue_text(position) if position else "waiting in the queue")
        if detail.get("cancel_requested"):
            lines.append("cancel requested")
        chunks = logic.chunk_rows(detail)
        chunk_table = None
        if chunks:
            done = sum(c["state"] == "done" for c in chunks)
            chunk_table = html.Details([
                html.Summary(f"Retraining chunks: {done} of {len(chunks)} done"),
                html.Div(className="table-wrap", children=html.Table(
                    className="table", id="study-chunks", children=[
                        html.Thead(html.Tr([html.Th(h) for h in (
                            "chunk", "α", "subsets", "state", "progress", "worker",
                            "device")])),
                        html.Tbody([html.Tr([
                            html.Td(c["index"]), html.Td(f"{c['alpha']:g}"),
                            html.Td(c["subsets"]), html.Td(chip(c["state"])),
                            html.Td(progress_bar(c["progress"])), html.Td(c["worker"]),
                            html.Td(c["device"])]) for c in chunks])]))],
                open=state == "running")
        out.append(card("Progress", [
            progress_bar(detail.get("progress"), f"{100 * (detail.get('progress') or 0):.0f} %"
                         f" · {stage}"),
            html.P(" · ".join(lines), className="small muted", id="study-progress-line"),
            html.P(where or "No worker has taken it yet.", className="small",
                   id="study-where"),
            chunk_table,
        ]))
    elif state == "failed":
        helps, why = logic.retry_helps(detail)
        out.append(alert(detail.get("error") or "no reason was recorded", "error",
                         f"The study failed ({detail.get('error_type') or 'error'}):"))
        tail = detail.get("log_tail")
        if tail:  # what the worker logged while it ran the task that failed, traceback last
            tail = tail if isinstance(tail, list) else str(tail).splitlines()
            out.append(html.Details([
                html.Summary(f"The worker's last {len(tail)} log lines"),
                html.Pre("\n".join(map(str, tail)), id="study-log", className="log-tail")],
                id="study-log-tail"))
            chunk_errors = logic.error_lines({"chunks": detail.get("chunks")})
            if chunk_errors:
                out.append(html.Ul([html.Li(line) for line in chunk_errors],
                                   className="small", id="study-chunk-errors"))
        else:
            lines = logic.error_lines(detail)
            if lines:
                out.append(html.Details([html.Summary("Last lines of the worker's report"),
                                         html.Pre("\n".join(lines), id="study-log")],
                                        open=True))
        out.append(html.P([why, " ", dcc.Link("Edit and resubmit", href=logic.resubmit_href(
            detail))] if not helps else why, className="small", id="study-retry-why"))
    elif state == "cancelled":
        out.append(alert("It was cancelled before it finished; Retry runs it again, reusing "
                         "every finished stage.", "warn", "Cancelled."))
    return out


def _prefetch(client, detail: dict, meta: dict, method: str | None, alpha: str | None,
              test: int, chosen: list[str], block: str | None) -> None:
    """Start fetching the arrays of the view about to be drawn, in parallel, in the order the
    figures are built (:func:`first_view`), while this thread goes on. Of the scores, only
    the chosen test point's row of each method."""
    if not meta.get("ready"):
        return
    whole = []
    if meta.get("has_groundtruth") and alpha and method:
        whole += [f"masks/{alpha}", f"retrained_losses/{alpha}"]
    rows = [f"scores/{m}" for m in dict.fromkeys([method, *meta["methods"]]) if m]
    whole += [f"eigenvalues/{m}" if block in (None, WHOLE) else f"block_eigenvalues/{m}/{block}"
              for m in chosen]
    if meta.get("has_images"):
        whole += ["images/test", "images/train"]
    whole += [f"heatmaps/{n}" for n, _ in HEATMAPS]
    key = study_key(client, detail)
    for name in rows[:1]:
        FETCH_POOL.submit(_quiet, load_rows, client, detail, [name], test)
    for name in whole:
        if CACHE.get(("array", *key, name)) is None:
            FETCH_POOL.submit(_quiet, load_arrays, client, detail, [name])
    for name in rows[1:]:
        FETCH_POOL.submit(_quiet, load_rows, client, detail, [name], test)


def _quiet(fn, *args):
    try:
        fn(*args)
    except Exception:  # a prefetch failure is reported by the figure that needs it
        pass


#: what :func:`study_view` returns, in the order of :func:`load_study`'s outputs
VIEW_OUTPUTS = [
    ("title", Output("study-title", "children")), ("chip", Output("study-chip", "children")),
    ("status", Output("study-status", "children")), ("error", Output("study-error", "children")),
    ("body_hidden", Output("study-body", "hidden")),
    ("poll_disabled", Output("study-poll", "disabled")),
    ("meta", Output("study-meta", "data")),
    ("cancel_hidden", Output("study-cancel", "hidden")),
    ("retry_hidden", Output("study-retry", "hidden")),
    ("delete_hidden", Output("study-delete-button", "hidden")),
    ("method_options", Output("study-method", "options")),
    ("method", Output("study-method", "value")),
    ("alpha_options", Output("study-alpha", "options")),
    ("alpha", Output("study-alpha", "value")),
    ("test_max", Output("study-test", "max")), ("test", Output("study-test", "value")),
    ("spectra_options", Output("spectra-methods", "options")),
    ("spectra_methods", Output("spectra-methods", "value")),
    ("block_options", Output("spectra-block", "options")),
    ("block", Output("spectra-block", "value")),
    ("k_options", Output("align-k", "options")), ("k", Output("align-k", "value")),
    ("provenance", Output("study-provenance", "children")),
    ("warnings", Output("study-warnings", "children")),
    ("verdict", Output("study-verdict", "children")),
    ("lds_note", Output("lds-note", "children")),
    ("decomp_sentence", Output("decomp-sentence", "children")),
    ("resubmit_hidden", Output("study-resubmit-box", "hidden")),
]
VIEW_KEYS = [key for key, _ in VIEW_OUTPUTS]
SELECTOR_KEYS = ["method_options", "method", "alpha_options", "alpha", "test_max", "test",
                 "spectra_options", "spectra_methods", "block_options", "block", "k_options",
                 "k"]


def blank_view(sid: int) -> dict:
    """The page before anything is known of the study (what an API error leaves)."""
    return {"title": f"Study #{sid}", "chip": None, "status": None, "error": None,
            "body_hidden": True, "poll_disabled": True, "meta": None, "cancel_hidden": True,
            "retry_hidden": True, "delete_hidden": True, "method_options": [], "method": None,
            "alpha_options": [], "alpha": None, "test_max": None, "test": None,
            "spectra_options": [], "spectra_methods": [], "block_options": [], "block": None,
            "k_options": [], "k": None, "provenance": None, "warnings": None,
            "verdict": None, "lds_note": None, "decomp_sentence": None,
            "resubmit_hidden": True}


def study_view(client, sid: int, initial: dict | None, current: dict | None = None,
               old_meta: dict | None = None) -> dict:
    """The study's state on the page (title, chip, status, buttons, provenance) and the
    selectors' choices and values: the URL's ``initial`` view, else ``current`` values, else
    defaults (K-FAC, α = 0.5, test point 0, every method, the whole matrix, the study's k).
    Values left as ``no_update`` keep what the page shows: everything but the study's state
    when ``old_meta`` already describes the same finished study, and all but the error (and
    whether to keep polling) when the API cannot be reached."""
    current = current or {}
    try:
        detail = client.study(sid)
    except ApiError as exc:
        view = dict.fromkeys(VIEW_KEYS, no_update)
        view.update(error=api_error(exc, f"Could not load study #{sid}"), body_hidden=True,
                    poll_disabled=exc.status not in (0,) and exc.status < 500)  # transient
        return view
    state = detail["state"]
    active = state in logic.ACTIVE
    results, error = None, None
    if state == "succeeded":
        try:
            results = load_results(client, detail)
        except ApiError as exc:
            error = api_error(exc, "Could not load the results")
    meta = logic.study_meta(detail, results)
    position = detail.get("queue_position")
    if state == "queued" and "queue_position" not in detail:  # an API that does not say it
        try:
            queued = client.studies(state=["queued"], sort="created_at", limit=500)["data"]
            position = logic.queue_position(sid, queued)
        except ApiError:
            position = None
    view = {"title": f"#{sid} {detail.get('name') or ''}".strip(), "chip": chip(state),
            "status": _status_block(detail, position), "error": error,
            "cancel_hidden": not active,
            "retry_hidden": not logic.retry_helps(detail)[0], "delete_hidden": active,
            "resubmit_hidden": False}
    if old_meta and old_meta.get("ready") and meta.get("ready") and \
            old_meta.get("spec_hash") == meta.get("spec_hash"):
        # nothing new for the figures: leave the selectors as they are
        view.update(body_hidden=False, poll_disabled=True, meta=no_update,
                    provenance=no_update, warnings=no_update, verdict=no_update,
                    lds_note=no_update, decomp_sentence=no_update,
                    **dict.fromkeys(SELECTOR_KEYS, no_update))
        return view
    view["provenance"] = _provenance(detail, results, client)
    if results is not None:
        view.update(warnings=warning_banners(results), verdict=verdict_block(results),
                    lds_note=lds_note(results), decomp_sentence=decomposition_sentence(results))
    else:
        view.update(warnings=None, verdict=None, lds_note=None, decomp_sentence=None)
    if not meta.get("ready"):
        view.update(body_hidden=True, poll_disabled=not active, meta=meta,
                    **{key: value for key, value in blank_view(sid).items()
                       if key in SELECTOR_KEYS})
        return view
    initial = initial or {}
    methods_all = meta["methods"]
    method = logic.pick(current.get("method") or initial.get("method"), methods_all,
                        "K-FAC" if "K-FAC" in methods_all else methods_all[0])
    alphas = meta["alphas"]
    alpha = logic.pick(current.get("alpha") or initial.get("alpha"), alphas,
                       "0.5" if "0.5" in alphas else (alphas[0] if alphas else None))
    n_test = meta.get("n_test") or 1
    test = current.get("test")
    test = test if test is not None else initial.get("test")
    if test is not None and logic.test_point(test, n_test)[0] is None:
        test = logic.parse_int(test)  # out of range or junk: shown as asked, and said so
    else:
        test = logic.parse_int(test, 0)
    chosen = [m for m in (current.get("methods") or initial.get("methods") or methods_all)
              if m in methods_all]
    labels = meta.get("block_labels") or {}
    blocks = [{"label": "whole matrix", "value": WHOLE}] + [
        {"label": f"block {labels.get(b, b)}", "value": b} for b in meta["blocks"]]
    block = logic.pick(current.get("block") or initial.get("block"),
                       [WHOLE, *meta["blocks"]], WHOLE)
    ks = meta["ks"]
    _prefetch(client, detail, meta, method, alpha, test, chosen or methods_all, block)
    view.update(
        body_hidden=False, poll_disabled=True, meta=meta,
        method_options=logic.method_options(meta), method=method,
        alpha_options=[{"label": f"α = {a}", "value": a} for a in alphas], alpha=alpha,
        test_max=n_test - 1, test=test,
        spectra_options=logic.method_options(meta), spectra_methods=chosen or methods_all,
        block_options=blocks, block=block,
        k_options=[{"label": f" {j}", "value": j} for j in ks],
        k=logic.nearest_k(current.get("k") or initial.get("k"), ks, meta.get("k")))
    return view


@callback(
    *[output for _, output in VIEW_OUTPUTS],
    Input("study-poll", "n_intervals"), Input("study-action", "data"),
    State("study-id", "data"), State("study-initial", "data"), State("study-meta", "data"),
    State("study-method", "value"), State("study-alpha", "value"),
    State("study-test", "value"), State("spectra-methods", "value"),
    State("spectra-block", "value"), State("align-k", "value"), prevent_initial_call=True)
@threaded
def load_study(_tick, _action, sid, initial, old_meta, method, alpha, test, methods, block, k):
    """A queued or running study's progress (every poll), and the page after cancel or
    retry; when the study has just finished, its selectors (and so its figures)."""
    current = {"method": method, "alpha": alpha, "test": test, "methods": methods,
               "block": block, "k": k}
    view = study_view(get_client(), sid, initial, current, old_meta)
    return [view[key] for key in VIEW_KEYS]


@threaded
def first_view(sid: int, initial: dict, overlap: str, theme: str) -> dict:
    """:func:`study_view` for the page's layout and, for a finished study, every figure of
    that view (cached: a second visit only looks them up)."""
    client = get_client()
    view = blank_view(sid)
    view.update({key: value for key, value in study_view(client, sid, initial).items()
                 if value is not no_update})
    meta = view["meta"]
    if not _ready(meta):
        return view
    # one after another: _prefetch is already fetching their arrays in parallel, and building
    # figures is Python work that threads would only take turns at (the GIL)
    figures = {
        "fig-verdict": verdict_view(meta, theme),
        "fig-lds": lds_view(meta, theme),
        "fig-gt": groundtruth_view(meta, view["method"], view["test"], view["alpha"], theme),
        "fig-spectra": spectra_view(meta, view["spectra_methods"], view["block"], theme),
        "fig-align": alignment_view(meta, overlap, view["k"], theme),
        "fig-decomp": decomposition_view(meta, view["alpha"], theme),
        "fig-examples": examples_view(meta, view["test"], theme),
        "fig-loss": training_view(meta, theme),
        "heatmaps": heatmaps_view(meta, theme),
    }
    view["spectra_note"] = spectra_note(figures["fig-spectra"])
    figures["fig-gt"], view["test_note"] = figures["fig-gt"]
    figures["fig-examples"], view["examples_style"] = figures["fig-examples"]
    for (name, _), figure in zip(HEATMAPS, figures.pop("heatmaps"), strict=True):
        figures[f"fig-heat-{name}"] = figure
    view["figures"] = figures
    return view


def _provenance(detail: dict, results: dict | None, client) -> html.Div:
    sid = detail["id"]
    queued, since = logic.queued_for(detail)
    workers, devices = logic.study_workers(detail)
    spec = (results.get("spec") if results else None) or detail.get("spec") or {}
    names = None
    if (spec.get("data") or {}).get("name") == "file":  # only then: which upload it was
        try:
            names = logic.dataset_names(cached_call(f"{client.base}/datasets",
                                                    client.datasets))
        except ApiError:
            names = None
    rows = [("state", detail["state"]), ("spec hash", html.Code(detail.get("spec_hash"))),
            ("preset", detail.get("preset") or "–"),
            ("data set", logic.dataset_label(spec, names)),
            ("created", logic.fmt_time(detail.get("created_at"))),
            ("started", logic.fmt_time(detail.get("started_at"))),
            ("finished", logic.fmt_time(detail.get("finished_at"))),
            ("queued", logic.fmt_time(detail.get("queued_at"))) if (
                detail.get("attempts") or 1) > 1 else None,
            ("queued for", html.Span(logic.fmt_seconds(queued), title=since,
                                     id="study-queued-for")),
            ("ran for", logic.fmt_seconds((detail.get("timings") or {}).get(
                "running_seconds"))),
            ("worker", ", ".join(workers) or "–"), ("device", ", ".join(devices) or "–"),
            ("attempts", detail.get("attempts"))]
    rows = [row for row in rows if row is not None]
    for kind, text, href in logic.study_groups(detail):
        rows.append((kind, dcc.Link(text, href=href, className=f"study-{kind}-link")))
    columns = [html.Div([html.H3("Run"), kv_table(rows)])]
    if results is not None:
        training = results.get("training") or {}
        columns.append(html.Div([
            html.H3("Model and data"),
            kv_table([("parameters", logic.fmt_number(results.get("n_params"))),
                      ("train / test points", f"{logic.fmt_number(results.get('n_train'))} / "
                                              f"{logic.fmt_number(results.get('n_test'))}"),
                      ("blocks", ", ".join(
                          f"{block_labels(results).get(b['name'], b['name'])} "
                          f"({b['size']} parameters)" for b in results.get("blocks", []))),
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


# Each figure is a plain function of the page's state (used by the layout for the first view)
# and a callback that redraws it when that state changes. The callbacks make no initial call:
# the layout has drawn the view; they fire on a selector, the theme, or the study finishing.
def _figure(meta: dict, key: tuple, build, theme: str):
    """``build(client, study)``'s figure, cached per study and ``key`` (:func:`cached_figure`);
    an error figure with the reason if it fails (not cached)."""
    client = get_client()
    study = _study(meta)
    try:
        return cached_figure(client, study, key, lambda: build(client, study))
    except Exception as exc:
        return error_figure(exc, theme)


def lds_view(meta: dict, theme: str):
    return _figure(meta, ("lds", theme), lambda client, study: lds_figure(
        load_results(client, study), theme), theme)


def spectra_view(meta: dict, methods, block, theme: str):
    methods = [m for m in (methods or []) if m in meta["methods"]]
    if not methods:
        return empty_figure("pick at least one method", theme)
    block = None if block in (None, WHOLE) else block
    names = [f"eigenvalues/{m}" if block is None else f"block_eigenvalues/{m}/{block}"
             for m in methods]

    def build(client, study):
        arrays = load_arrays(client, study, names)
        if not arrays:
            return empty_figure("no eigenvalues were stored for these methods", theme)
        label = (meta.get("block_labels") or {}).get(block) if block else None
        return spectra_figure(arrays, methods, block, theme, max_points=SPECTRUM_POINTS,
                              block_label=label)

    return _figure(meta, ("spectra", tuple(methods), block, theme), build, theme)


def spectra_note(figure) -> str:
    return spectra_caption(((figure or {}).get("layout") or {}).get("meta") or {})


def alignment_view(meta: dict, kind, k, theme: str):
    kind = kind or "eigenbasis"
    k = logic.parse_int(k) if kind != "eigenvalue" else None
    return _figure(meta, ("alignment", kind, k, theme), lambda client, study: alignment_figure(
        load_results(client, study), kind, k, theme), theme)


def decomposition_view(meta: dict, alpha, theme: str):
    return _figure(meta, ("decomposition", alpha, theme),
                   lambda client, study: decomposition_figure(load_results(client, study),
                                                              alpha, theme), theme)


def groundtruth_view(meta: dict, method, test, alpha, theme: str) -> tuple:
    """The ground-truth scatter and the note under the test point's box (it says when the
    asked-for test point does not exist, instead of showing another one)."""
    if not meta.get("has_groundtruth") or not alpha:
        return empty_figure("this study has no ground truth (groundtruth.enabled = false)",
                            theme), ""
    n_test = meta.get("n_test") or 1
    index, why = logic.test_point(test, n_test)
    note = why or f"test points 0 … {n_test - 1}"
    if index is None:
        return empty_figure(why, theme), note
    if method not in meta["methods"]:
        return empty_figure("pick a method", theme), note

    def build(client, study):
        arrays = load_arrays(client, study, [f"masks/{alpha}", f"retrained_losses/{alpha}"],
                             missing_ok=False)
        arrays |= load_rows(client, study, [f"scores/{method}"], index, missing_ok=False)
        return groundtruth_scatter(arrays, method, index, alpha, theme)

    return _figure(meta, ("groundtruth", method, index, alpha, theme), build, theme), note


def examples_view(meta: dict, test, theme: str) -> tuple:
    """The examples mosaic and the style (height) of its graph."""
    n_test = meta.get("n_test") or 1
    index, why = logic.test_point(test, n_test)
    if index is None:
        return empty_figure(why, theme), {"height": "200px"}
    methods = meta["methods"]

    def build(client, study):
        arrays = load_rows(client, study, [f"scores/{m}" for m in methods], index)
        if meta.get("has_images"):  # the labels when the study stores them (missing: left out)
            arrays |= load_arrays(client, study, ["images/test", "images/train",
                                                  "labels/test", "labels/train"])
        return examples_grid(arrays, [m for m in methods if f"scores/{m}" in arrays], index,
                             theme=theme)

    fig = _figure(meta, ("examples", index, theme), build, theme)
    height = fig.get("layout", {}).get("height") or 300
    return fig, {"height": f"{height}px"}


def verdict_view(meta: dict, theme: str):
    return _figure(meta, ("verdict", theme), lambda client, study: hierarchy_figure(
        load_results(client, study), theme), theme)


def training_view(meta: dict, theme: str):
    return _figure(meta, ("training", theme), lambda client, study: training_figure(
        load_results(client, study), theme), theme)


def heatmaps_view(meta: dict, theme: str) -> list:
    """log10 |H|, |G|, |H − G| (one figure each, in :data:`HEATMAPS` order)."""

    def build(name: str, label: str):
        def one(client, study):
            arrays = load_arrays(client, study, [f"heatmaps/{name}"])
            if f"heatmaps/{name}" not in arrays:
                return empty_figure(f"{label}: not computed in this study (it needs the dense "
                                    "H and GGN methods)", theme)
            rounded = {f"heatmaps/{name}": np.round(arrays[f"heatmaps/{name}"],
                                                    HEATMAP_DIGITS).astype(np.float32)}
            fig = heatmap_figure(load_results(client, study), rounded, name, theme)
            fig.update_layout(title=f"{label} (lines: layer boundaries)")
            return fig
        return one

    return [_figure(meta, ("heatmap", name, theme), build(name, label), theme)
            for name, label in HEATMAPS]


@callback(Output("fig-lds", "figure"), Output("fig-verdict", "figure"),
          Output("fig-loss", "figure"), Input("study-meta", "data"),
          Input("app-state", "data"), prevent_initial_call=True)
@threaded
def fig_lds(meta, app_state):
    if not _ready(meta):
        return no_update, no_update, no_update
    theme = _theme(app_state)
    return lds_view(meta, theme), verdict_view(meta, theme), training_view(meta, theme)


@callback(Output("fig-spectra", "figure"), Output("spectra-note", "children"),
          Input("study-meta", "data"),
          Input("spectra-methods", "value"), Input("spectra-block", "value"),
          Input("app-state", "data"), prevent_initial_call=True)
@threaded
def fig_spectra(meta, methods, block, app_state):
    if not _ready(meta):
        return no_update, no_update
    figure = spectra_view(meta, methods, block, _theme(app_state))
    return figure, spectra_note(figure)


@callback(Output("fig-align", "figure"), Input("study-meta", "data"),
          Input("align-kind", "value"), Input("align-k", "value"), Input("app-state", "data"),
          prevent_initial_call=True)
@threaded
def fig_align(meta, kind, k, app_state):
    return alignment_view(meta, kind, k, _theme(app_state)) if _ready(meta) else no_update


@callback(Output("fig-decomp", "figure"), Input("study-meta", "data"),
          Input("study-alpha", "value"), Input("app-state", "data"), prevent_initial_call=True)
@threaded
def fig_decomp(meta, alpha, app_state):
    return decomposition_view(meta, alpha, _theme(app_state)) if _ready(meta) else no_update


@callback(Output("fig-gt", "figure"), Output("study-test-note", "children"),
          Input("study-meta", "data"), Input("study-method", "value"),
          Input("study-test", "value"), Input("study-alpha", "value"),
          Input("app-state", "data"), prevent_initial_call=True)
@threaded
def fig_groundtruth(meta, method, test, alpha, app_state):
    if not _ready(meta):
        return no_update, no_update
    return groundtruth_view(meta, method, test, alpha, _theme(app_state))


@callback(Output("fig-examples", "figure"), Output("fig-examples", "style"),
          Input("study-meta", "data"), Input("study-test", "value"),
          Input("app-state", "data"), prevent_initial_call=True)
@threaded
def fig_examples(meta, test, app_state):
    if not _ready(meta):
        return no_update, no_update
    return examples_view(meta, test, _theme(app_state))


@callback(*[Output(f"fig-heat-{name}", "figure") for name, _ in HEATMAPS],
          Input("study-meta", "data"), Input("app-state", "data"), prevent_initial_call=True)
@threaded
def fig_heatmaps(meta, app_state):
    if not _ready(meta):
        return [no_update] * len(HEATMAPS)
    return heatmaps_view(meta, _theme(app_state))


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
