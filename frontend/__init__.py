"""curvscope's dashboard: a multi-page Dash app that reads and writes only through the REST
API (``frontend.api_client``). ``frontend.mount(app, api_prefix)`` serves it at ``/`` of the
API's FastAPI app (``backend.app`` calls it); ``python -m frontend --api-url URL`` serves it on
its own. See docs/dashboard.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI


def mount(app: FastAPI, api_prefix: str = "/api/v1") -> None:
    """Serve the dashboard at ``/`` of ``app``; requests under ``api_prefix`` stay the API's.
    The pages call the API of the process they are served by (or ``$CURVSCOPE_API_URL``)."""
    from frontend.app import mount as _mount

    _mount(app, api_prefix)


__all__ = ["mount"]
