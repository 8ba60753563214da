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
import ipaddress
import logging
import secrets
import sys
import threading
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

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


def allowed_methods(app, scope) -> list[str]:
    """Every method the OpenAPI document names for this path (Starlette names only the
    first matching route's, but GET and POST of one path are two routes)."""
    import re

    table = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, item in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{pattern}$"), sorted(m.upper() for m in item)))
        app.state.allow_table = table
    path = scope.get("path", "")
    for pattern, methods in table:
        if pattern.match(path):
            return methods
    return ["GET"]


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
            allowed = allowed_methods(request.app, request.scope)
            detail = (f"{request.method} is not allowed on {request.url.path}; allowed: "
                      f"{', '.join(allowed)}.")
            return _problem_response(request, Problem(
                405, detail, title=TITLES.get(405), headers={"Allow": ", ".join(allowed)}))
        else:
            detail = str(exc.detail)
        return _problem_response(request, Problem(
            exc.status_code, detail, title=TITLES.get(exc.status_code),
            headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        from backend.disk import disk_full_problem, is_disk_full

        if is_disk_full(exc):
            log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
            return _problem_response(request, disk_full_problem(request.app.state.settings))
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem_response(request, Problem(
            500, "An internal error occurred; the server's log has the details.",
            kind="internal-error"))


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").strip("[]")).is_loopback
    except ValueError:
        return address == "localhost"


def _host_name(host: str) -> str:
    """'127.0.0.1:8000' → '127.0.0.1'; '[::1]:8000' → '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestGuard:
    """Two checks before any route (a pure ASGI middleware):

    * DNS rebinding: on a connection that arrived on a loopback address, the Host header must
      name this machine (localhost, 127.0.0.1, [::1]) or one of Settings.allowed_hosts; else
      400. A page of another site whose name resolves to 127.0.0.1 sends its own name.
    * Cross-site writes: a POST/PUT/PATCH/DELETE whose ``Origin`` is not this server's (or
      whose ``Sec-Fetch-Site`` is cross-site or same-site) is 403, so a page of another origin
      can neither use the mounted dashboard's callbacks (which write without the user typing
      the token) nor replay a write. Clients that are not browsers send neither header.

    CORS stays closed: no ``Access-Control-Allow-Origin`` is ever sent, so a page of another
    origin cannot read an answer either.
    """

    def __init__(self, app, settings: Settings):
        self.app, self.settings = app, settings
        self.allowed = LOOPBACK_NAMES | settings.allowed_host_names

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        problem = None
        server = scope.get("server")
        if server and _loopback(server[0]) and "*" not in self.allowed and (
                _host_name(host) not in self.allowed):
            problem = Problem(400, f"The Host header {host[:100]!r} does not name this server "
                              "(a loopback address answers only to localhost, 127.0.0.1 and "
                              "[::1]; add names with CURVSCOPE_ALLOWED_HOSTS).",
                              kind="host-not-allowed", title="Bad request")
        elif scope.get("method", "GET") not in SAFE_METHODS:
            site = headers.get("sec-fetch-site")
            origin = headers.get("origin")
            if site is not None and site not in ("same-origin", "none"):
                problem = Problem(403, f"A write from a page of another site ({site}) is "
                                  "refused; use the dashboard served by this server or a "
                                  "client with the token.", kind="cross-site-write")
            elif origin is not None and (origin == "null" or urlsplit(origin).netloc.lower()
                                         != host.lower()):
                problem = Problem(403, f"A write from the origin {origin[:100]!r} is refused: "
                                  f"only pages of this server ({host[:100]}) may write from a "
                                  "browser.", kind="cross-origin-write")
        if problem is None:
            return await self.app(scope, receive, send)
        response = JSONResponse(problem.body(instance=scope.get("path")),
                                status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE)
        await response(scope, receive, send)


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
    # the mounted dashboard's own credential (this process only, never shown): its callbacks
    # write without the user typing the token; RequestGuard keeps other origins out of them
    app.state.dashboard_key = secrets.token_urlsafe(32)
    if settings.api_token is None:
        log.warning("CURVSCOPE_API_TOKEN is not set: every write is open to whoever can reach "
                    "this server (`curvscope up` sets a token for you)")
    app.state.read_sessions = read_sessionmaker(engine)
    app.state.write_sessions = write_sessionmaker(engine)
    install_problem_handlers(app)
    app.include_router(api_router, prefix=API_PREFIX)
    dashboard = settings.serve_dashboard and mount_dashboard(app)
    app.state.dashboard = dashboard
    if dashboard and settings.api_token is not None:
        try:
            from frontend.api_client import configure

            configure(token=app.state.dashboard_key)
        except ImportError:
            pass
    app.add_middleware(RequestGuard, settings=settings)
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
        from pydantic import ValidationError

        try:
            settings = get_settings()
        except ValidationError as exc:  # e.g. an empty token: refuse to start, say why
            lines = [f"  {'.'.join(map(str, e['loc'])) or 'settings'}: "
                     f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
            print("curvscope API: refusing to start, the settings are invalid:\n"
                  + "\n".join(lines), file=sys.stderr)
            raise SystemExit(2) from None
        app = create_app(settings)
        return app
    raise AttributeError(name)
