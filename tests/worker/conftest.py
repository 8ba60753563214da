"""Worker tasks run in this process on a real SQLite database and a real redis-server."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)


def reset_pools(app) -> None:
    """Drop the app's broker connections so the next send uses the current broker_url."""
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def wsettings(tmp_path, redis_server, monkeypatch):  # noqa: F811
    from backend.core.config import Settings
    from backend.db import dispose_engines, upgrade_database, write_session
    from backend.models import Study, StudyChunk
    from backend.queue import redis_client
    from worker import tasks
    from worker.celery_app import app

    settings = Settings(data_dir=tmp_path / "data", database_url=None,
                        redis_url=redis_server.url(2), progress_interval_s=0.05)
    settings.ensure_dirs()
    upgrade_database(settings)
    monkeypatch.setattr(tasks, "settings", settings)
    monkeypatch.setattr(app.conf, "broker_url", settings.celery_broker_url)
    reset_pools(app)
    redis_client(settings).flushdb()
    yield settings
    with write_session(settings) as session:
        session.execute(delete(StudyChunk))
        session.execute(delete(Study))
    reset_pools(app)
    dispose_engines()
