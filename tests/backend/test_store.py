"""The store: Alembic migrations produce exactly the models' schema (SQLite and PostgreSQL),
upgrade is idempotent, downgrade removes everything; import rules of the layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from backend.core.config import Settings
from backend.db import dispose_engines, get_engine, upgrade_database
from backend.models import Base
from tests.backend.servers import database_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_match_the_models(tmp_path, kind):
    from alembic import command

    from backend.db import alembic_config

    url, pg = database_url(kind, tmp_path)
    settings = Settings(data_dir=tmp_path, database_url=url)
    try:
        upgrade_database(settings)
        upgrade_database(settings)  # a second start changes nothing
        engine = get_engine(settings)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
        assert set(inspect(engine).get_table_names()) >= {
            "studies", "study_chunks", "datasets", "idempotency_keys", "workers",
            "alembic_version"}
        config = alembic_config(settings)
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
            conn.commit()
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        dispose_engines()
        if pg is not None:
            pg.drop()


def _imports(package: str, skip: tuple[str, ...] = ()) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        if str(path.relative_to(ROOT)) in skip:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_dependencies_point_one_way():
    """The science library imports nothing of the service; only the ``curvscope`` command's
    entry point registers the service's sub-commands (backend.launch: subprocesses and HTTP,
    no FastAPI, Celery or SQLAlchemy at import)."""
    assert not _imports("curvscope", skip=("curvscope/cli.py",)) & {
        "backend", "worker", "fastapi", "celery", "sqlalchemy"}
    cli = ast.parse((ROOT / "curvscope" / "cli.py").read_text())
    service = [node for node in ast.walk(cli) if isinstance(node, ast.ImportFrom)
               and (node.module or "").split(".")[0] in ("backend", "worker")]
    assert [(n.module, [a.name for a in n.names]) for n in service] == [("backend", ["launch"])]
    launch = {a.name.split(".")[0] for node in ast.walk(ast.parse(
        (ROOT / "backend" / "launch.py").read_text())) if isinstance(node, ast.Import)
        for a in node.names}
    assert not launch & {"fastapi", "celery", "sqlalchemy", "torch"}
    assert "worker" not in _imports("backend")
    assert "fastapi" not in _imports("worker")


def test_the_api_process_imports_neither_torch_nor_the_worker():
    code = ("import sys, backend.app; from fastapi.testclient import TestClient; "
            "print(sorted(m for m in ('torch', 'worker', 'worker.tasks', 'celery.worker') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
