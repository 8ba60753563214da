"""worker.healthcheck: the compose worker's healthcheck reads the heartbeat age from the
database (a busy solo worker cannot answer a ping), on a real SQLite database, in-process and
as the command docker runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hsettings(tmp_path):
    from backend.core.config import Settings
    from backend.db import dispose_engines, upgrade_database

    settings = Settings(data_dir=tmp_path / "data", database_url=None, heartbeat_s=5)
    settings.ensure_dirs()
    upgrade_database(settings)
    yield settings
    dispose_engines()


def _row(settings, hostname, state="online", age_s=0.0):
    from backend.db import write_session
    from backend.models import Worker, utcnow

    with write_session(settings) as session:
        seen = utcnow() - timedelta(seconds=age_s)
        session.merge(Worker(hostname=hostname, device="cpu", pid=1, state=state,
                             started_at=seen, last_seen=seen))


def test_healthy_only_while_the_heartbeat_is_fresh(hsettings):
    from worker.healthcheck import check

    healthy, why = check("w@h", settings=hsettings)
    assert not healthy and "no worker row" in why
    _row(hsettings, "w@h", age_s=2)
    healthy, why = check("w@h", settings=hsettings)          # limit 3 × 5 + 10 = 25 s
    assert healthy and "limit 25 s" in why, why
    _row(hsettings, "w@h", age_s=40)
    healthy, why = check("w@h", settings=hsettings)
    assert not healthy and "more than 25 s" in why, why
    assert check("w@h", max_age_s=60, settings=hsettings)[0]
    _row(hsettings, "w@h", state="lost", age_s=1)
    healthy, why = check("w@h", settings=hsettings)
    assert not healthy and "is lost" in why


def test_the_command_docker_runs_exits_0_or_1(hsettings):
    env = {**os.environ, "CURVSCOPE_DATA_DIR": str(hsettings.data_dir),
           "CURVSCOPE_HEARTBEAT_S": "5"}
    env.pop("CURVSCOPE_DATABASE_URL", None)
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "worker.healthcheck", "--name", "w@box"]
    missing = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 1 and "no worker row" in missing.stdout
    _row(hsettings, "w@box", age_s=1)
    fresh = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "w@box online" in fresh.stdout
    _row(hsettings, "w@box", age_s=100)
    stale = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert stale.returncode == 1 and "more than 25 s" in stale.stdout, stale.stdout
