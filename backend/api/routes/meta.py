"""/api/v1: health, workers, queue, and the spec's schema, presets and methods (for forms)."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from backend.api.deps import SessionDep, SettingsDep
from backend.db import current_revision
from backend.disk import disk_report
from backend.models import Study, StudyChunk, Worker
from backend.queue import broker_status, live_workers
from backend.schemas import PROBLEM_RESPONSES, WorkerList, worker_out

router = APIRouter(tags=["service"], responses=PROBLEM_RESPONSES)


def _version() -> str:
    try:
        return metadata.version("curvscope")
    except metadata.PackageNotFoundError:
        return "unknown"


@router.get("/health", summary="Database and broker reachability, free disk space",
            responses={503: {"description": "The database is unreachable."}})
def health(session: SessionDep, settings: SettingsDep) -> JSONResponse:
    body: dict[str, Any] = {"version": _version(), "pid": os.getpid()}
    try:
        session.execute(text("SELECT 1"))
        body["database"] = {"ok": True, "dialect": session.get_bind().dialect.name,
                            "revision": current_revision(settings)}
    except Exception as exc:
        body["database"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    body["broker"] = broker_status(settings)
    try:
        body["disk"] = disk_report(settings)
    except OSError as exc:
        body["disk"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    ok_db = body["database"]["ok"]
    body["status"] = "ok" if ok_db and body["broker"]["ok"] is not False and body["disk"][
        "ok"] else ("degraded" if ok_db else "down")
    return JSONResponse(body, status_code=200 if ok_db else 503)


@router.get("/workers", response_model=WorkerList, summary="Workers: device, liveness, "
            "active tasks")
def workers(session: SessionDep, settings: SettingsDep) -> WorkerList:
    live = live_workers(settings)
    rows = session.scalars(select(Worker).order_by(Worker.hostname)).all()
    out = [worker_out(w, None if live is None else w.hostname in live,
                      None if live is None else live.get(w.hostname)) for w in rows]
    return WorkerList(data=out, count=len(out))


@router.get("/queue", summary="Broker queue length and studies/chunks by state")
def queue(session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    studies = dict(session.execute(select(Study.state, func.count()).group_by(Study.state))
                   .all())
    chunks = dict(session.execute(select(StudyChunk.state, func.count())
                                  .group_by(StudyChunk.state)).all())
    return {"broker": broker_status(settings), "queue": settings.queue_name,
            "studies": studies, "chunks": chunks}


@router.get("/schema", summary="JSON schema of the study spec (every field, bound and "
            "description)")
def schema() -> dict[str, Any]:
    from curvscope.spec import StudySpec

    return StudySpec.model_json_schema()


@router.get("/presets", summary="The presets a spec may start from")
def presets() -> dict[str, Any]:
    from curvscope.spec import PRESETS

    return PRESETS


@router.get("/methods", summary="Curvature methods of the registry with their capabilities")
def methods() -> dict[str, Any]:
    from curvscope.registry import METHODS

    data = [{"name": m.name, "kind": m.kind, "dense_matrix": m.dense_matrix,
             "chain_step": m.chain_step, "description": m.description}
            for m in METHODS.values()]
    return {"data": data, "count": len(data)}
