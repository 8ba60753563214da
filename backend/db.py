"""Engine, sessions and schema migrations of the SQL store.

SQLite (the default) runs in WAL mode with a busy timeout, so the API's readers never block
the workers' progress writes. Python's sqlite3 driver is put in autocommit mode and we emit
BEGIN ourselves: read sessions use a deferred ``BEGIN``, write sessions ``BEGIN IMMEDIATE``,
which takes the write lock up front (waiting up to the busy timeout) instead of failing with
SQLITE_BUSY when a read transaction later tries to write. PostgreSQL needs none of this.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from backend.core.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        if ":memory:" not in url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": settings.sqlite_busy_timeout_s,
                                                  "check_same_thread": False},
                               pool_size=20, max_overflow=20)
        busy_ms = int(settings.sqlite_busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN in the "begin" hook below
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            write = conn.get_execution_options().get("curvscope_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine(settings: Settings) -> Engine:
    """One engine per database URL and process."""
    url = settings.sqlalchemy_url
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(settings)
        return _engines[url]


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def write_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False,
                        execution_options={"curvscope_write": True})


@contextmanager
def write_session(settings: Settings) -> Iterator[Session]:
    """A write transaction: committed on success, rolled back on any exception."""
    with write_sessionmaker(get_engine(settings))() as session, session.begin():
        yield session


@contextmanager
def read_session(settings: Settings) -> Iterator[Session]:
    with read_sessionmaker(get_engine(settings))() as session:
        yield session


def alembic_config(settings: Settings):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic); safe to call on every start."""
    from alembic import command

    config = alembic_config(settings)
    with get_engine(settings).connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # a table rebuild must not cascade (see migration 0002); outside any BEGIN
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def current_revision(settings: Settings) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(settings).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
