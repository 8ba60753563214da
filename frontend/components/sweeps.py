"""Pieces of the sweep pages and of the studies list's sweep groups: a sweep as GET
/api/v1/sweeps/{id} returns it (its grid, and per point the values and the study) turned into
table rows, counts and links. Pure functions (no I/O), tested in
``tests/frontend/test_sweep_helpers.py``.

A sweep is one study per point of the grid (the Cartesian product of each field's values); a
point's LDS is the number its study reports (results.json ``methods.<m>.lds.<α>.headline``,
which the API copies into the study's ``summary``), the linear datamodeling score of Hong et
al. 2025 (Spearman correlation of predicted and retrained losses over random subsets)."""

from __future__ import annotations

import json
from typing import Any

from dash import dcc, html

from frontend import logic
from frontend.components.common import chip, progress_bar
from frontend.figures.study import ordered_methods

#: states that count as failed for a sweep's progress (a deleted point counts too)
FAILED = ("failed", "cancelled")


def value_text(value: Any) -> str:
    """A grid value as people read it: numbers and strings plain, lists as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def sweep_counts(sweep: dict) -> dict[str, int]:
    """How many points the sweep has, how many finished (succeeded), failed (failed,
    cancelled or deleted) and are still queued or running."""
    points = sweep.get("points") or []
    total = int(sweep.get("count") or len(points))
    states = [p["study"]["state"] for p in points]
    deleted = max(0, total - len(points))
    return {"total": total, "finished": states.count("succeeded"),
            "failed": sum(s in FAILED for s in states) + deleted,
            "active": sum(s in logic.ACTIVE for s in states), "deleted": deleted}


def progress_text(sweep: dict) -> str:
    """``2 of 3 finished · 1 failed``"""
    counts = sweep_counts(sweep)
    text = f"{counts['finished']} of {counts['total']} finished"
    if counts["failed"]:
        text += f" · {counts['failed']} failed"
    return text


def sweep_alpha(sweep: dict) -> str | None:
    """The α the sweep's table shows: 0.5 when a finished point has it, else the smallest."""
    return logic.headline_alpha([p["study"].get("summary") for p in sweep.get("points") or []])


def sweep_methods(sweep: dict) -> list[str]:
    return ordered_methods({m for p in sweep.get("points") or []
                            for m in ((p["study"].get("summary") or {}).get("methods") or {})})


def point_rows(sweep: dict) -> tuple[str | None, list[str], list[dict]]:
    """(α, methods, one row per point): the study, its swept values, state, progress and
    stage, and (once it succeeded) each method's LDS at α; None where it has none."""
    alpha, methods = sweep_alpha(sweep), sweep_methods(sweep)
    rows = []
    for point in sweep.get("points") or []:
        study = point["study"]
        summary = (study.get("summary") or {}).get("methods") or {}
        lds = {m: (((summary.get(m) or {}).get("lds") or {}).get(alpha)
                   if study["state"] == "succeeded" and alpha else None) for m in methods}
        rows.append({"id": study["id"], "values": point.get("values") or {},
                     "state": study["state"],
                     "progress": 1.0 if study["state"] == "succeeded"
                     else float(study.get("progress") or 0.0),
                     "stage": study.get("stage"), "error": study.get("error"),
                     "reused": bool(point.get("reused")), "lds": lds})
    return alpha, methods, rows


def study_ids(sweep: dict) -> list[int]:
    return [p["study"]["id"] for p in sweep.get("points") or []]


def compare_href(sweep: dict) -> str | None:
    """The compare page of the sweep's studies (the first grid field on the x-axis), or None
    when fewer than two studies are left to compare."""
    ids = study_ids(sweep)
    if len(ids) < 2:
        return None
    fields = list(sweep.get("grid") or {})
    return "/compare" + logic.query_string({"ids": ids, "param": fields[0] if fields else None})


def sweep_title(sweep: dict) -> str:
    return f"Sweep #{sweep['id']}" + (f" {sweep['name']}" if sweep.get("name") else "")


def membership(sweeps: list[dict]) -> dict[int, dict]:
    """Study id → the sweep it belongs to, from GET /api/v1/sweeps (newest first). A study
    shared by several sweeps (posting a sweep again reuses its studies) goes with the newest."""
    out: dict[int, dict] = {}
    for sweep in sweeps:
        for sid in study_ids(sweep):
            out.setdefault(sid, sweep)
    return out


def group_by_sweep(studies: list[dict], sweeps: list[dict]
                   ) -> list[tuple[dict | None, list[dict]]]:
    """The listed studies in their order, those of one sweep gathered where its first one
    stands: [(sweep or None, studies)]. A study's own ``sweep_id`` (when the API lists it)
    decides its sweep, else the sweeps' points do; a sweep the listing of sweeps does not
    hold appears as ``{"id": …}`` alone."""
    by_id = {s["id"]: s for s in sweeps}
    member = membership(sweeps)
    groups: list[tuple[dict | None, list[dict]]] = []
    index: dict[int, int] = {}
    for study in studies:
        sweep_id = study.get("sweep_id")
        sweep = (by_id.get(sweep_id) or {"id": sweep_id}) if sweep_id is not None \
            else member.get(study["id"])
        if sweep is None:
            groups.append((None, [study]))
        elif sweep["id"] in index:
            groups[index[sweep["id"]]][1].append(study)
        else:
            index[sweep["id"]] = len(groups)
            groups.append((sweep, [study]))
    return groups


# -- layout pieces ----------------------------------------------------------------------------
def sweep_progress(sweep: dict) -> html.Div:
    """The sweep's progress bar (mean of its points') with ``n of m finished · k failed``."""
    return html.Div(progress_bar(sweep.get("progress"), progress_text(sweep)),
                    className="sweep-progress", **{"data-state": sweep.get("state") or ""})


def grid_table(grid: dict) -> html.Table:
    return html.Table(className="kv", id="sweep-grid", children=[html.Tbody([
        html.Tr([html.Th(html.Code(field)),
                 html.Td(" | ".join(value_text(v) for v in values),
                         **{"data-values": json.dumps(values)})],
                **{"data-field": field})
        for field, values in grid.items()])])


def points_table(sweep: dict) -> html.Table:
    """One row per point: the study (a link), the swept value(s), state, progress and each
    method's LDS at the sweep's α once the point has finished."""
    alpha, methods, rows = point_rows(sweep)
    fields = list(sweep.get("grid") or {})
    head = [html.Tr([html.Th("study"), *[html.Th(html.Code(f)) for f in fields],
                     html.Th("state"), html.Th("progress"),
                     *[html.Th(m, className="num",
                               title=f"LDS of {m} at α = {alpha} (higher is better)")
                       for m in methods]])]
    if methods:
        head.insert(0, html.Tr([html.Th("", colSpan=len(fields) + 3),
                                html.Th(f"LDS α = {alpha}", colSpan=len(methods),
                                        className="col-group")]))
    body = []
    for row in rows:
        status = [chip(row["state"])]
        if row["state"] in FAILED and row["error"]:
            status.append(html.Div(row["error"][:140], className="small muted",
                                   title=row["error"]))
        label = f"{100 * row['progress']:.0f} %"
        if row["state"] == "running" and row["stage"]:
            label += f" · {row['stage']}"
        body.append(html.Tr([
            html.Td(dcc.Link(f"#{row['id']}", href=f"/studies/{row['id']}",
                             title="open the study")),
            *[html.Td(value_text(row["values"].get(f))) for f in fields],
            html.Td(status, className="status"),
            html.Td(progress_bar(row["progress"], label)),
            *[html.Td(logic.fmt_number(row["lds"][m]), className="num",
                      **({"data-method": m, "data-value": repr(row["lds"][m])}
                         if row["lds"][m] is not None else {"data-method": m}))
              for m in methods],
        ], **{"data-study": row["id"], "data-state": row["state"]}))
    return html.Table(className="table sweep-points", id="sweep-points",
                      children=[html.Thead(head), html.Tbody(body)])
