"""Alembic environment: the database URL comes from Settings (never from alembic.ini).

The app calls ``backend.db.upgrade_database`` on start, which passes its own connection in
``config.attributes["connection"]``. From a shell: ``alembic -c backend/alembic.ini upgrade
head`` (uses CURVSCOPE_DATABASE_URL / CURVSCOPE_DATA_DIR like the app).
"""

from __future__ import annotations

from alembic import context

from backend.core.config import Settings
from backend.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from backend.db import get_engine

    settings = config.attributes.get("settings") or Settings()
    with get_engine(settings).connect() as connection:
        _run(connection)
        connection.commit()


def run_migrations_offline() -> None:
    settings = config.attributes.get("settings") or Settings()
    context.configure(url=settings.sqlalchemy_url, target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
