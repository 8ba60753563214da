"""The dashboard's only way to the data: the REST API (``/api/v1``) over HTTP with httpx.

Where the API is:

1. ``configure(api_url=...)`` (``python -m frontend --api-url``), else
2. the environment variable ``CURVSCOPE_API_URL``, else
3. the dashboard's own server (when :func:`frontend.mount` serves it from the API's process):
   the address of the socket the current request came in on, set per request by
   :func:`set_request_origin`.

Either a service root (``http://host:8000``) or the API's prefix (``http://host:8000/api/v1``)
is accepted. Writes (POST, DELETE) send ``Authorization: Bearer <token>`` when a token is
given: the one typed into the dashboard, else the configured one (a standalone dashboard's
``--token`` / ``CURVSCOPE_API_TOKEN``). A dashboard mounted on the API does not borrow the
API's own ``CURVSCOPE_API_TOKEN``: it would make every write open to whoever can open the
dashboard, on the API's own port.

Every failure becomes :class:`ApiError` with a sentence a person can read: the API's own
problem+json ``detail`` (and its per-field ``errors``), or why the API could not be reached.
"""

from __future__ import annotations

import contextvars
import io
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

DEFAULT_PREFIX = "/api/v1"
TIMEOUT = httpx.Timeout(60.0, connect=5.0)

_request_origin: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "curvscope_request_origin", default=None)


@dataclass
class Config:
    api_url: str | None = None
    api_prefix: str = DEFAULT_PREFIX
    token: str | None = None
    mounted: bool = False  # served by the API's own process (same origin)


CONFIG = Config()


def configure(api_url: str | None = None, api_prefix: str | None = None,
              token: str | None = None, mounted: bool | None = None) -> Config:
    """Set where the API is (see the module doc); returns the process's Config."""
    if api_url is not None:
        CONFIG.api_url = api_url
    if api_prefix is not None:
        CONFIG.api_prefix = "/" + api_prefix.strip("/")
    if token is not None:
        CONFIG.token = token
    if mounted is not None:
        CONFIG.mounted = mounted
    return CONFIG


def split_api_url(url: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """``http://h:8000/api/v1/`` → (``http://h:8000``, ``/api/v1``); a URL without the prefix
    is taken as the service root."""
    url = url.strip().rstrip("/")
    prefix = "/" + prefix.strip("/")
    if url.endswith(prefix):
        return url[: -len(prefix)], prefix
    return url, prefix


def origin_of_scope(scope: dict) -> str | None:
    """The address a request arrived on (``scope["server"]``): reachable from this process
    even behind a proxy, unlike the Host header."""
    server = scope.get("server")
    if not server or server[1] is None:
        return None
    host, port = server
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{host}:{port}"


def set_request_origin(scope: dict) -> contextvars.Token:
    return _request_origin.set(origin_of_scope(scope))


def reset_request_origin(token: contextvars.Token) -> None:
    _request_origin.reset(token)


class ApiError(Exception):
    """A failed API call, as the API explained it (problem+json) or as the transport failed."""

    def __init__(self, status: int, title: str, detail: str,
                 errors: list[dict[str, str]] | None = None, url: str | None = None):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.url = url

    @property
    def unreachable(self) -> bool:
        return self.status == 0

    def field_errors(self) -> dict[str, str]:
        """field path → message (several messages on one field joined by '; ')."""
        out: dict[str, str] = {}
        for item in self.errors:
            path, message = item.get("field", "(body)"), item.get("message", "invalid")
            out[path] = f"{out[path]}; {message}" if path in out else message
        return out

    def __str__(self) -> str:
        head = f"{self.title} ({self.status})" if self.status else self.title
        return f"{head}: {self.detail}"


def error_from_response(response: httpx.Response) -> ApiError:
    """problem+json → ApiError; any other error body → a sentence with its status."""
    url = str(response.request.url) if response.request else None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body and isinstance(body["detail"], str):
        return ApiError(response.status_code, body.get("title") or response.reason_phrase,
                        body["detail"], body.get("errors") or [], url)
    text = response.text.strip()[:300] if response.text else ""
    return ApiError(response.status_code, response.reason_phrase or "Error",
                    f"The API answered {response.status_code} {response.reason_phrase}"
                    + (f": {text}" if text else "."), url=url)


@dataclass
class ApiClient:
    """A thin typed client of /api/v1; one per service root, shared by threads."""

    root: str
    prefix: str = DEFAULT_PREFIX
    token: str | None = None
    transport: httpx.BaseTransport | None = None
    _http: httpx.Client | None = field(default=None, repr=False)

    def __post_init__(self):
        self.root = self.root.rstrip("/")
        self._http = httpx.Client(base_url=self.root + self.prefix, timeout=TIMEOUT,
                                  transport=self.transport, follow_redirects=False)

    @property
    def base(self) -> str:
        return self.root + self.prefix

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, *, token: str | None = None,
                **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        secret = token or self.token
        if secret and method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
            headers["Authorization"] = f"Bearer {secret}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(0, "API timed out", f"The API at {self.base} did not answer "
                           f"{method} {path} in time.", url=self.base + path) from None
        except httpx.TransportError as exc:
            raise ApiError(0, "API unreachable", f"Could not reach the API at {self.base} "
                           f"({type(exc).__name__}: {exc or 'no answer'}). Is it running? "
                           "Set CURVSCOPE_API_URL to its address.",
                           url=self.base + path) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v not in (None, "", [])}
        return self.request("GET", path, params=params).json()

    # -- reads -----------------------------------------------------------------------------
    def health(self) -> dict:
        try:
            return self.get_json("/health")
        except ApiError as exc:  # 503 still carries the body of /health
            if exc.status == 503:
                return {"status": "down", "detail": exc.detail}
            raise

    def studies(self, *, state: list[str] | None = None, q: str | None = None,
                preset: str | None = None, sort: str = "-created_at", limit: int = 20,
                offset: int = 0, ids: list[int] | None = None) -> dict:
        return self.get_json("/studies", state=",".join(state) if state else None, q=q,
                             preset=preset, sort=sort, limit=limit, offset=offset,
                             ids=",".join(str(int(i)) for i in ids) if ids else None)

    def study(self, study_id: int) -> dict:
        return self.get_json(f"/studies/{int(study_id)}")

    def results(self, study_id: int) -> dict:
        return self.get_json(f"/studies/{int(study_id)}/results")

    def array_names(self, study_id: int) -> list[dict]:
        return self.get_json(f"/studies/{int(study_id)}/arrays")["data"]

    def array(self, study_id: int, name: str, index: int | None = None) -> np.ndarray:
        """One array as .npy; with ``index`` only its row ``[index]`` (first axis)."""
        params: dict[str, Any] = {"format": "npy"}
        if index is not None:
            params["index"] = int(index)
        response = self.request("GET", f"/studies/{int(study_id)}/arrays/{name}",
                                params=params)
        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def schema(self) -> dict:
        return self.get_json("/schema")

    def presets(self) -> dict:
        return self.get_json("/presets")

    def methods(self) -> list[dict]:
        return self.get_json("/methods")["data"]

    def workers(self) -> list[dict]:
        return self.get_json("/workers")["data"]

    def queue(self) -> dict:
        return self.get_json("/queue")

    def datasets(self) -> list[dict]:
        return self.get_json("/datasets")["data"]

    # -- writes ----------------------------------------------------------------------------
    def validate(self, spec: dict) -> dict:
        """POST /studies/validate (a read in effect: nothing is stored, no token needed)."""
        return self.request("POST", "/studies/validate", json=spec).json()

    def submit(self, spec: dict, token: str | None = None) -> tuple[int, dict]:
        response = self.request("POST", "/studies", json=spec, token=token)
        return response.status_code, response.json()

    def sweep(self, body: dict, token: str | None = None) -> tuple[int, dict]:
        """POST /sweeps: one study per combination of ``body["grid"]``."""
        response = self.request("POST", "/sweeps", json=body, token=token)
        return response.status_code, response.json()

    def cancel(self, study_id: int, token: str | None = None) -> dict:
        return self.request("POST", f"/studies/{int(study_id)}/cancel", token=token).json()

    def retry(self, study_id: int, token: str | None = None) -> dict:
        return self.request("POST", f"/studies/{int(study_id)}/retry", token=token).json()

    def delete(self, study_id: int, token: str | None = None) -> None:
        self.request("DELETE", f"/studies/{int(study_id)}", token=token)


_clients: dict[tuple[str, str, str | None], ApiClient] = {}
_clients_lock = threading.Lock()


def api_location() -> tuple[str, str]:
    """(service root, prefix) of the API for the current request."""
    url = CONFIG.api_url or os.environ.get("CURVSCOPE_API_URL") or _request_origin.get()
    if not url:
        raise ApiError(0, "API not configured", "The dashboard does not know where the API "
                       "is: set CURVSCOPE_API_URL (e.g. http://127.0.0.1:8000) or start it "
                       "with `python -m frontend --api-url URL`.")
    return split_api_url(url, CONFIG.api_prefix)


def get_client() -> ApiClient:
    """The shared client for the API of the current request (see the module doc)."""
    root, prefix = api_location()
    token = CONFIG.token or None
    key = (root, prefix, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = ApiClient(root, prefix, token)
        return client


def download_href(path: str) -> str:
    """A browser link for an API path (``/studies/3/export?format=csv``): same origin when
    the API serves the dashboard, else through the dashboard's download proxy."""
    if CONFIG.mounted:
        return CONFIG.api_prefix + path
    return "/_download" + path
