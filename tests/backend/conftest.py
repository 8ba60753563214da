"""API tests on a real database (SQLite file and PostgreSQL) and a real Redis broker."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from tests.backend.servers import RedisServer, database_url

TOKEN = "test-token-123"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory, redis_server):
    """(Settings, TestClient) of an app on a fresh database of each kind."""
    from backend.app import create_app
    from backend.core.config import Settings
    from backend.db import dispose_engines

    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    url, pg = database_url(request.param, tmp)
    settings = Settings(data_dir=tmp / "data", database_url=url, redis_url=redis_server.url(1),
                        api_token=TOKEN, max_upload_bytes=64 * 1024, max_datasets=5)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield settings, c
    dispose_engines()
    if pg is not None:
        pg.drop()


@pytest.fixture
def api(service):
    """A clean database and an empty queue before each test."""
    from backend.db import write_session
    from backend.models import Dataset, IdempotencyKey, Study, StudyChunk, Worker
    from backend.queue import redis_client

    settings, client = service
    with write_session(settings) as session:
        for model in (IdempotencyKey, StudyChunk, Study, Dataset, Worker):
            session.execute(delete(model))
    redis_client(settings).flushdb()
    return client


@pytest.fixture
def settings(service):
    return service[0]
