"""A real service: redis-server, uvicorn (backend.app:app) and two celery workers, on a
SQLite file and on PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)
from tests.backend.servers import (
    database_url,
    service_env,
    start_api,
    start_worker,
    stop_process,
)

WORKERS = ("w1@itest", "w2@itest")


class Service:
    def __init__(self, base: str, data_dir, logs):
        self.base, self.data_dir, self.logs = base, data_dir, logs
        self.http = httpx.Client(base_url=base, timeout=30)

    def submit(self, spec: dict) -> int:
        response = self.http.post("/api/v1/studies", json=spec)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def wait(self, study_id: int, until, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        study = {}
        while time.monotonic() < deadline:
            study = self.http.get(f"/api/v1/studies/{study_id}").json()
            if until(study):
                return study
            if study["state"] in ("failed",) and not until(study):
                break
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs)
        pytest.fail(f"study {study_id} stuck: {study}\n{logs}")

    def wait_done(self, study_id: int, timeout: float = 180) -> dict:
        return self.wait(study_id, lambda s: s["state"] in ("succeeded", "failed", "cancelled"),
                         timeout)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory, redis_server):  # noqa: F811
    tmp = tmp_path_factory.mktemp(f"service-{request.param}")
    url, pg = database_url(request.param, tmp)
    db = {"sqlite": 3, "postgresql": 4}[request.param]
    redis_server_url = redis_server.url(db)
    env = service_env(tmp / "data", url, redis_server_url)
    logs = [tmp / "api.log"] + [tmp / f"{name.split('@')[0]}.log" for name in WORKERS]
    api, base = start_api(env, logs[0])        # the API migrates the database on start
    workers = [start_worker(env, name, log) for name, log in zip(WORKERS, logs[1:],
                                                                  strict=True)]
    svc = Service(base, tmp / "data", logs)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        online = [w for w in svc.http.get("/api/v1/workers").json()["data"] if w["online"]]
        if len(online) == len(WORKERS):
            break
        for process, log in zip(workers, logs[1:], strict=True):
            if process.poll() is not None:
                pytest.fail(f"a worker exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    else:
        pytest.fail("workers not online:\n" + "\n".join(p.read_text()[-2000:] for p in logs))
    yield svc
    svc.http.close()
    for process in [*workers, api]:
        stop_process(process, timeout=20)
    if pg is not None:
        pg.drop()
