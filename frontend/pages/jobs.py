"""Jobs: the broker queue, the workers, the studies running or waiting with their stages;
cancel a queued or running study, retry a cancelled one or one that failed for a reason a retry
can change (a disabled Retry says why it would fail the same way)."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, callback, dcc, html, no_update

from frontend import logic
from frontend.api_client import ApiError, get_client
from frontend.components import alert, api_error, card, chip, kv_table, progress_bar
from frontend.data import FETCH_POOL
from frontend.runtime import threaded

dash.register_page(__name__, path="/jobs", title="Jobs · curvscope", name="Jobs")

FAST_MS, SLOW_MS = 2000, 10000


def layout(**_):
    return html.Div([
        html.Div(className="page-head", children=[html.H1("Jobs and workers")]),
        dcc.Interval(id="jobs-poll", interval=FAST_MS),
        dcc.Store(id="jobs-action"),
        html.Div(id="jobs-message"),
        html.Div(id="jobs-error"),
        html.Div(className="grid-2", children=[
            card("Queue", html.Div(id="jobs-queue", children=html.P("…", className="muted"))),
            card("Workers", html.Div(id="jobs-workers", children=html.P("…",
                                                                         className="muted"))),
        ]),
        card("Running and queued studies", html.Div(id="jobs-active")),
        card("Recently failed or cancelled", html.Div(id="jobs-finished")),
    ])


def _counts(counts: dict) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _queue(queue: dict) -> html.Div:
    broker = queue.get("broker") or {}
    if broker.get("ok") is False:
        status = alert(broker.get("detail") or "unreachable", "error", "Broker down:")
    else:
        status = None
    return html.Div([status, kv_table([
        ("queue", queue.get("queue")),
        ("broker", "up" if broker.get("ok") else ("down" if broker.get("ok") is False
                                                  else "unknown")),
        ("messages waiting", logic.fmt_number(broker.get("pending_messages"))),
        ("studies", _counts(queue.get("studies") or {})),
        ("retraining chunks", _counts(queue.get("chunks") or {})),
    ])])


def _workers(workers: list[dict], details: list[dict]) -> object:
    if not workers:
        return html.P("No worker has registered yet. Start one with `curvscope worker`.",
                      className="muted")
    doing_of = logic.worker_tasks(details)
    rows = []
    for w in workers:
        tasks = [f"{(t.get('name') or '').removeprefix('curvscope.')}"
                 f"{tuple(t.get('args') or [])}" for t in (w.get("active") or [])]
        doing = doing_of.get(w["hostname"], []) or tasks
        label, css, why = logic.worker_status(w, doing)
        status = html.Span(label, className=f"chip chip-{css}", title=why,
                           **{"data-state": label})
        rows.append(html.Tr([html.Td(w["hostname"]), html.Td(status), html.Td(w.get("device")),
                             html.Td(w.get("tasks_done"), className="num"),
                             html.Td(html.Ul([html.Li(d) for d in doing], className="plain")
                                     if doing else ("idle" if label == "idle" else "–"),
                                     className="small worker-doing"),
                             html.Td(logic.fmt_time(w.get("last_seen")), className="small")],
                            **{"data-worker": w["hostname"]}))
    return html.Div(className="table-wrap", children=html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("worker", "status", "device", "tasks done",
                                                 "doing", "last heartbeat")])),
        html.Tbody(rows)]))


def _active(studies: list[dict], details: list[dict]) -> object:
    by_id = {d["id"]: d for d in details}
    if not studies:
        return html.P("Nothing is running or waiting.", className="muted")
    rows = [html.Tr([
        html.Td(dcc.Link(f"#{s['id']} {s.get('name') or ''}", href=f"/studies/{s['id']}")),
        html.Td(chip(s["state"], "cancelling" if s.get("cancel_requested") else None)),
        html.Td(s.get("stage") or "–"),
        html.Td(progress_bar(s.get("progress"))),
        html.Td(logic.fmt_percent(s.get("stage_progress")), className="num"),
        html.Td(", ".join(logic.study_workers(by_id.get(s["id"], s))[0]) or "–",
                className="small"),
        html.Td(html.Button("Cancel", id={"type": "jobs-cancel", "id": s["id"]},
                            className="button ghost small",
                            disabled=bool(s.get("cancel_requested")))),
    ]) for s in studies]
    return html.Div(html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("study", "state", "stage", "progress",
                                                 "stage progress", "worker", "")])),
        html.Tbody(rows)]), className="table-wrap")


def _retry_button(study: dict) -> html.Button:
    """Retry where a retry can help (``logic.retry_helps``: cancelled, or failed for a
    reason of the machine); disabled, with the reason in its title, where it would fail
    the same way (a diverged training, a data set or spec the code rejects)."""
    helps, why = logic.retry_helps(study)
    return html.Button("Retry", id={"type": "jobs-retry", "id": study["id"]},
                       className="button ghost small", disabled=not helps, title=why,
                       **{"data-retry": "helps" if helps else "would-fail"})


def _finished(studies: list[dict]) -> object:
    if not studies:
        return html.P("None.", className="muted")
    rows = [html.Tr([
        html.Td(dcc.Link(f"#{s['id']} {s.get('name') or ''}", href=f"/studies/{s['id']}")),
        html.Td(chip(s["state"])),
        html.Td((s.get("error") or "")[:200], className="small", title=s.get("error")),
        html.Td(logic.fmt_time(s.get("finished_at")), className="small"),
        html.Td([_retry_button(s)] + ([" ", dcc.Link("Edit and resubmit",
                                                      href=logic.resubmit_href(s),
                                                      className="small")]
                                       if not logic.retry_helps(s)[0] else [])),
    ], **{"data-study": s["id"]}) for s in studies]
    return html.Div(html.Table(className="table", children=[
        html.Thead(html.Tr([html.Th(h) for h in ("study", "state", "why", "finished", "")])),
        html.Tbody(rows)]), className="table-wrap")


@callback(Output("jobs-queue", "children"), Output("jobs-workers", "children"),
          Output("jobs-active", "children"), Output("jobs-finished", "children"),
          Output("jobs-poll", "interval"), Output("jobs-error", "children"),
          Input("jobs-poll", "n_intervals"), Input("jobs-action", "data"))
@threaded
def refresh(_tick, _action):
    client = get_client()
    try:
        queue = client.queue()
        active = client.studies(state=["running", "queued"], sort="created_at", limit=100)
        finished = client.studies(state=["failed", "cancelled"], sort="-finished_at", limit=10)
    except ApiError as exc:
        return (no_update, no_update, no_update, no_update, SLOW_MS,
                api_error(exc, "Could not read the queue"))
    running = [s for s in active["data"] if s.get("state") == "running"][:10]
    try:
        details = list(FETCH_POOL.map(lambda s: client.study(s["id"]), running))
    except ApiError:
        details = running  # the list rows still name the finalizing worker
    try:
        workers = _workers(client.workers(), details)
    except ApiError as exc:
        workers = api_error(exc, "Could not list the workers")
    interval = FAST_MS if active["data"] else SLOW_MS
    return (_queue(queue), workers, _active(active["data"], details), _finished(finished["data"]),
            interval, None)


@callback(Output("jobs-action", "data"), Output("jobs-message", "children"),
          Input({"type": "jobs-cancel", "id": ALL}, "n_clicks"),
          Input({"type": "jobs-retry", "id": ALL}, "n_clicks"),
          State("auth", "data"), prevent_initial_call=True)
@threaded
def act(cancels, retries, auth):
    trigger = dash.ctx.triggered_id
    if not trigger or not any((cancels or []) + (retries or [])):
        return no_update, no_update  # buttons re-rendered, not clicked
    sid, kind = trigger["id"], trigger["type"].removeprefix("jobs-")
    token = (auth or {}).get("token")
    try:
        if kind == "cancel":
            get_client().cancel(sid, token)
            message = alert(f"Cancel requested for study #{sid}.", "info")
        else:
            get_client().retry(sid, token)
            message = alert(f"Study #{sid} is queued again.", "info")
    except ApiError as exc:
        return no_update, api_error(exc, f"Could not {kind} study #{sid}")
    return {"did": kind, "id": sid, "clicks": [cancels, retries]}, message
