"""Dependencies: settings, a read session per request, write transactions, the bearer token."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.problems import Problem


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.read_sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def write_tx(request: Request) -> AbstractContextManager[Session]:
    """``with write_tx(request) as s:`` a write transaction (SQLite: BEGIN IMMEDIATE),
    committed at the end of the block."""
    return request.app.state.write_sessions.begin()


def require_token(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> None:
    """Writes need ``Authorization: Bearer <token>`` when Settings.api_token is set."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip().encode()
    accepted = [token.get_secret_value().encode(),
                getattr(request.app.state, "dashboard_key", "").encode()]
    if scheme.lower() != "bearer" or not given or not any(
            secret and secrets.compare_digest(given, secret) for secret in accepted):
        raise Problem(401, "This request changes data and needs the API token: send the "
                      "header 'Authorization: Bearer <token>' (the token is "
                      "CURVSCOPE_API_TOKEN of the server).", kind="unauthorized",
                      headers={"WWW-Authenticate": 'Bearer realm="curvscope"'})


WriteAuth = Depends(require_token)
