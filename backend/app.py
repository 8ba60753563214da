"""The FastAPI application: ``uvicorn backend.app:app`` (or ``curvscope api`` / ``up``).

On start it creates the data folders and upgrades the database schema (Alembic). Routes live
under ``/api/v1``; OpenAPI at ``/docs``. Every error is RFC 9457 problem+json.

Dashboard hook: if a ``frontend`` package is importable and exposes
``mount(app: FastAPI, api_prefix: str) -> None``, it is called to serve the dashboard at ``/``
from this same process (Dash on FastAPI); otherwise ``/`` redirects to ``/docs``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api.main import api_router
from backend.core.config import Settings, get_settings
from backend.core.problems import (
    PROBLEM_MEDIA_TYPE,
    TITLES,
    Problem,
    pydantic_errors,
    sentence,
)
from backend.db import get_engine, read_sessionmaker, upgrade_database, write_sessionmaker
from backend.schemas import API_PREFIX

log = logging.getLogger("curvscope.api")


def _problem_response(request: Request, problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(instance=request.url.path), status_code=problem.status,
                        media_type=PROBLEM_MEDIA_TYPE, headers=problem.headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return _problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        errors = pydantic_errors(list(exc.errors()))
        for item, raw in zip(errors, exc.errors(), strict=True):
            if raw.get("type") == "json_invalid":
                item["field"] = "(body)"
                item["message"] = ("the body is not valid JSON "
                                   f"({(raw.get('ctx') or {}).get('error', 'parse error')})")
        return _problem_response(request, Problem(
            422, sentence("The request is invalid", errors), kind="invalid-request",
            errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            detail = f"Nothing is served at {request.method} {request.url.path}."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        else:
            detail = str(exc.detail)
        return _problem_response(request, Problem(
            exc.status_code, detail, title=TITLES.get(exc.status_code),
            headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem_response(request, Problem(
            500, "An internal error occurred; the server's log has the details.",
            kind="internal-error"))


def mount_dashboard(app: FastAPI) -> bool:
    """Serve the dashboard at / if the ``frontend`` package exists (see module doc)."""
    if importlib.util.find_spec("frontend") is None:
        return False
    try:
        frontend = importlib.import_module("frontend")
        mount = getattr(frontend, "mount", None)
        if mount is None:
            log.info("package 'frontend' has no mount(app, api_prefix); dashboard not served")
            return False
        mount(app, API_PREFIX)
    except ImportError as exc:  # e.g. dash not installed: the API still serves
        log.warning("dashboard not served: %s (install the service extra)", exc)
        return False
    return True


def _sweep_quietly(settings: Settings) -> None:
    from backend import outbox

    try:
        sent = outbox.flush(settings)
        if sent.count:
            log.warning("sent %d message(s) owed since before this start: start %s, chunks "
                        "%s, finalize %s", sent.count, sent.start, sent.chunks, sent.finalize)
    except Exception:
        log.exception("outbox sweep at start failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.ensure_dirs()
        if settings.migrate_on_start:
            upgrade_database(settings)
        # the outbox sweeper, once at start: what a previous API process committed but never
        # sent (killed between its commit and its send) is sent now; in a thread, so a
        # broker that is down does not hold up the start
        threading.Thread(target=_sweep_quietly, args=(settings,), daemon=True,
                         name="curvscope-outbox-sweep").start()
        yield

    app = FastAPI(
        title="curvscope",
        summary="Queue curvature-approximation studies, follow them, read their results.",
        version="1",
        docs_url="/docs",
        openapi_url=f"{API_PREFIX}/openapi.json",
        lifespan=lifespan,
    )
    engine = get_engine(settings)
    app.state.settings = settings
    app.state.read_sessions = read_sessionmaker(engine)
    app.state.write_sessions = write_sessionmaker(engine)
    install_problem_handlers(app)
    app.include_router(api_router, prefix=API_PREFIX)
    dashboard = settings.serve_dashboard and mount_dashboard(app)
    app.state.dashboard = dashboard
    if not dashboard:
        @app.get("/", include_in_schema=False)
        def _root():
            return RedirectResponse("/docs")
    return app


def __getattr__(name: str):
    # ``uvicorn backend.app:app`` builds the app from the environment on first access, so
    # importing this module (tests, tools) creates no engine and touches no disk.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
