"""The Dash app and the two ways it is served.

* In the API's process: ``backend.app`` calls :func:`mount` (through ``frontend.mount``), which
  serves the dashboard at ``/`` next to ``/api/v1`` on one port (``curvscope up``).
* On its own: :func:`create_app` (``python -m frontend --api-url http://api:8000``) builds a
  FastAPI app that serves only the dashboard and reaches the API over the network.

Both serve the same Dash app, which runs on Dash's FastAPI backend: one Dash app per process
(Dash keeps its page registry and callbacks in module globals), built on first use on its own
FastAPI instance and attached to the host app by a route that takes every path outside the
API's prefix. So the API keeps its routes, its problem+json 404s under ``/api/v1`` and its
``/docs``; Dash's catch-all and middleware never see API requests. Either way the pages read
and write only through the REST API (:mod:`frontend.api_client`).
"""

from __future__ import annotations

import inspect
import os
import re
import threading
import time
from pathlib import Path

import dash
from dash import Dash, Input, Output, State, dcc, html
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from frontend.api_client import (
    DEFAULT_PREFIX,
    ApiError,
    configure,
    get_client,
    reset_request_origin,
    set_request_origin,
)
from frontend.components import alert, navbar
from frontend.runtime import TIMING, log

HERE = Path(__file__).resolve().parent
TITLE = "curvscope"

_dash: Dash | None = None
_lock = threading.Lock()


#: the <script> of Dash's @babel/polyfill (core-js 2 and regenerator-runtime)
POLYFILL_SCRIPT = re.compile(r'<script src="[^"]*/deps/polyfill@[^"]*"></script>')


class DashApp(Dash):
    """Dash, with its @babel/polyfill replaced by regenerator-runtime alone.

    Dash's scripts need only the global ``regeneratorRuntime`` from that polyfill (they are
    compiled for browsers every current one outdoes). The rest, core-js 2, replaces some of
    the browser's own functions with slower ones (String.prototype.trim, which plotly.js calls
    for every label it measures, among them): on this project's 2-core machine the polyfill
    cost about 0.1 s of a study page's first load. ``interpolate_index`` is Dash's documented
    hook for changing the index page."""

    def interpolate_index(self, **kwargs):
        runtime = self.get_asset_url("vendor/regenerator-runtime.js")
        kwargs["scripts"], found = POLYFILL_SCRIPT.subn(
            f'<script src="{runtime}"></script>', kwargs.get("scripts", ""), count=1)
        if not found:  # another Dash version: keep its scripts as they are
            log.warning("Dash's polyfill script was not found in the index page")
        page = super().interpolate_index(**kwargs)
        return page.replace("<html>", '<html lang="en">', 1)  # WCAG 3.1.1


def _layout():
    return html.Div(id="app-root", children=[
        # the one shared state of every page: the theme (kept in the browser)
        dcc.Store(id="app-state", storage_type="local", data={"theme": "light"}),
        dcc.Store(id="auth", storage_type="session"),
        html.Div(id="theme-applied", hidden=True),
        navbar(),
        html.Div(id="global-error"),
        html.Main(dash.page_container, className="container"),
    ])


def _on_error(err: Exception):
    """Any exception a callback did not handle: shown on the page, never a blank page."""
    message = err.detail if isinstance(err, ApiError) else f"{type(err).__name__}: {err}"
    dash.set_props("global-error", {"children": alert(
        message, "error", "Something went wrong.", None)})


def build_dash() -> Dash:
    """The process's Dash app (built once)."""
    global _dash
    with _lock:
        if _dash is not None:
            return _dash
        server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app = DashApp("frontend", server=server, backend="fastapi", use_pages=True,
                      pages_folder=str(HERE / "pages"), assets_folder=str(HERE / "assets"),
                      suppress_callback_exceptions=True, title=TITLE, update_title=None,
                      on_error=_on_error, compress=True,
                      # async page router: a page's layout may be a coroutine (the study
                      # page awaits the study and its figures off the event loop)
                      use_async=True,
                      # vendor/: plotly.js, run by assets/plotly-preload.js, and the
                      # regenerator runtime, put in the polyfill's place (DashApp)
                      assets_path_ignore=["vendor"],
                      # a page's layout may draw figures in the theme the browser keeps
                      routing_callback_inputs={"app_state": State("app-state", "data")})
        # no websocket callbacks here: without this the renderer still opens a websocket on
        # every page (a warning in the API's log when uvicorn has no websocket library)
        app.backend.websocket_capability = False
        app.layout = _layout
        _register_shell_callbacks(app)
        import scipy.stats  # noqa: F401  (the ground-truth figure's Spearman; slow 1st import)

        from frontend.figures.study import warm_up

        threading.Thread(target=warm_up, name="curvscope-dash-warm-up", daemon=True).start()

        _add_catchall(app, server)
        _dash = app
        return app


def _register_shell_callbacks(app: Dash) -> None:
    app.clientside_callback(
        """function(n, state) {
            state = Object.assign({theme: 'light'}, state || {});
            if (!n) { return window.dash_clientside.no_update; }
            state.theme = state.theme === 'dark' ? 'light' : 'dark';
            return state;
        }""",
        Output("app-state", "data"), Input("theme-toggle", "n_clicks"), State("app-state", "data"))
    app.clientside_callback(
        """function(state) {
            const theme = (state && state.theme) || 'light';
            document.documentElement.setAttribute('data-theme', theme);
            return theme;
        }""",
        Output("theme-applied", "children"), Input("app-state", "data"))
    app.clientside_callback(  # a new page starts without the last page's error banner
        "function(path) { return null; }",
        Output("global-error", "children"), Input("_pages_location", "pathname"),
        prevent_initial_call=True)
    app.clientside_callback(
        "function(token) { return token ? {token: token} : null; }",
        Output("auth", "data"), Input("token-input", "value"), prevent_initial_call=True)


STUDY_PATH = re.compile(r"^/studies/([^/]+)/?$")
SWEEP_PATH = re.compile(r"^/sweeps/([^/]+)/?$")
#: pages of one API resource: (the page's path, the resource under the API's prefix); an id
#: the API does not know answers HTTP 404
RESOURCE_PAGES = ((STUDY_PATH, "/studies/{}"), (SWEEP_PATH, "/sweeps/{}"))


def known_path(path: str) -> bool:
    """Whether a registered page answers ``path`` (its path, or its path template with the
    placeholders filled); the not-found page answers the rest."""
    path = "/" + path.strip("/") if path.strip("/") else "/"
    for page in dash.page_registry.values():
        if page.get("module", "").endswith("not_found_404"):
            continue
        if page.get("path") == path:
            return True
        template = page.get("path_template")
        if template:
            pattern = "^" + re.sub(r"<[^>]+>", "[^/]+", template.rstrip("/")) + "/?$"
            if re.match(pattern, path):
                return True
    return False


async def page_status(path: str) -> int:
    """HTTP status of the dashboard's answer for ``path``: 404 for a path no page serves and
    for a study or sweep the API does not know (the page itself still explains), else 200."""
    if not known_path(path):
        return 404
    found = [(m, resource) for pattern, resource in RESOURCE_PAGES
             if (m := pattern.match(path)) is not None]
    if not found:
        return 200
    match, resource = found[0]
    from frontend.runtime import EXECUTOR

    def exists() -> int:
        sid = match.group(1)
        if not sid.isdigit() or not 1 <= int(sid) < 2**63:
            return 404
        try:
            get_client().get_json(resource.format(int(sid)))
        except ApiError as exc:
            return 404 if exc.status == 404 else 200
        return 200

    import asyncio
    import contextvars

    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(EXECUTOR, context.run, exists)


def _add_catchall(app: Dash, server: FastAPI) -> None:
    """Deep links (/studies/3, /compare?ids=…) answer with Dash's index page; Dash's own
    catch-all is only installed by its lifespan hook, which a mounted app does not get."""
    try:
        from dash.backends._fastapi import reset_current_request, set_current_request
    except ImportError:  # pragma: no cover - other Dash versions
        set_current_request = reset_current_request = None

    async def index(request: Request, path: str = ""):
        token = set_current_request(request) if set_current_request else None
        try:
            for hook in getattr(app.backend, "_before_request_funcs", []):
                # first request: Dash reads its assets and sets up the page router (whose
                # clientside callback must be in this very page)
                done = hook()
                if inspect.isawaitable(done):
                    await done
            status = await page_status("/" + path)
            return Response(content=app.index(), media_type="text/html", status_code=status)
        finally:
            if token is not None:
                reset_current_request(token)

    server.add_api_route("/{path:path}", index, methods=["GET"], include_in_schema=False)


class DashRoute(BaseRoute):
    """Hands every request outside ``exclude`` (the API's prefix) to the Dash app, and sets
    the request's own address so that the dashboard can call the API it is mounted on."""

    def __init__(self, asgi, exclude: tuple[str, ...] = ()):
        self.asgi = asgi
        self.exclude = tuple(e.rstrip("/") for e in exclude if e)

    def _excluded(self, path: str) -> bool:
        return any(path == e or path.startswith(e + "/") for e in self.exclude)

    def matches(self, scope: Scope):
        if scope["type"] in ("http", "websocket") and not self._excluded(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params):
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = set_request_origin(scope)
        started = time.perf_counter()
        try:
            await self.asgi(scope, receive, send)
        finally:
            reset_request_origin(token)
            if TIMING:
                log.warning("%s %s took %.0f ms", scope.get("method"), scope["path"],
                            1000 * (time.perf_counter() - started))


def mount(app: FastAPI, api_prefix: str | None = DEFAULT_PREFIX, *,
          mounted: bool = True) -> Dash:
    """Serve the dashboard at ``/`` of ``app`` (every path outside ``api_prefix``).

    Routes added to ``app`` after this call are shadowed by the dashboard."""
    configure(api_prefix=api_prefix or DEFAULT_PREFIX, mounted=mounted)
    dash_app = build_dash()
    exclude = (api_prefix,) if mounted and api_prefix else ()
    app.router.routes.append(DashRoute(dash_app.server, exclude))
    app.state.dash = dash_app
    return dash_app


def _download_proxy(app: FastAPI) -> None:
    """GET /_download/studies/{id}/… → the API (a standalone dashboard's browser may not
    reach the API's address): results, exports and arrays only."""
    allowed = ("results", "export", "arrays")

    def download(study_id: int, rest: str, request: Request):
        kind = rest.split("/", 1)[0]
        if kind not in allowed:
            return Response("not a download", status_code=404, media_type="text/plain")
        client = get_client()
        try:
            upstream = client.request("GET", f"/studies/{study_id}/{rest}",
                                      params=dict(request.query_params))
        except ApiError as exc:
            return Response(str(exc), status_code=exc.status or 502, media_type="text/plain")
        headers = {k: v for k, v in upstream.headers.items()
                   if k.lower() in ("content-type", "content-disposition")}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    app.add_api_route("/_download/studies/{study_id}/{rest:path}", download, methods=["GET"],
                      include_in_schema=False)


def create_app(api_url: str | None = None, api_token: str | None = None,
               api_prefix: str = DEFAULT_PREFIX) -> FastAPI:
    """A FastAPI app serving only the dashboard, talking to the API at ``api_url`` (default
    ``$CURVSCOPE_API_URL``) and sending ``api_token`` (default ``$CURVSCOPE_API_TOKEN``)
    with writes; run it with uvicorn."""
    url = api_url or os.environ.get("CURVSCOPE_API_URL")
    if not url:
        raise ValueError("the dashboard needs the API's address: pass api_url or set "
                         "CURVSCOPE_API_URL (e.g. http://127.0.0.1:8000)")
    configure(api_url=url, token=api_token or os.environ.get("CURVSCOPE_API_TOKEN") or None,
              api_prefix=api_prefix)
    app = FastAPI(title="curvscope dashboard", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.get("/_health", include_in_schema=False)
    def health():
        return {"status": "ok", "api": url}

    _download_proxy(app)
    mount(app, None, mounted=False)
    return app
