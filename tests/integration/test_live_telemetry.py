"""Live telemetry end to end without a browser: a real uvicorn, a real redis-server and one
real ``celery worker`` process (SQLite). A study whose training really diverges (learning rate
10) fails, and GET /studies/{id} gives the last lines that worker wrote to its log while it
ran the failing task (its INFO line naming the chunk, then the traceback), each of them a line
of the worker's own log file; a retry clears them and counts the wait from itself."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)
from tests.backend.servers import service_env, start_api, start_worker, stop_process, tiny

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server):  # noqa: F811
    tmp = tmp_path_factory.mktemp("telemetry")
    env = service_env(tmp / "data", f"sqlite:///{tmp / 'curvscope.db'}", redis_server.url(9),
                      CURVSCOPE_QUEUE_NAME="telemetry-tests")
    api_log, worker_log = tmp / "api.log", tmp / "worker.log"
    api, base = start_api(env, api_log)
    worker = start_worker(env, "telemetry@itest", worker_log)
    http = httpx.Client(base_url=base, timeout=30)
    try:
        yield http, worker_log
    finally:
        http.close()
        for process in (worker, api):
            stop_process(process, timeout=20)


def _wait(http, sid: int, states: tuple[str, ...], log, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    study = {}
    while time.monotonic() < deadline:
        study = http.get(f"/api/v1/studies/{sid}").json()
        if study["state"] in states:
            return study
        time.sleep(0.3)
    pytest.fail(f"study {sid} stuck: {study}\n{log.read_text()[-3000:]}")


def test_a_diverging_study_returns_its_workers_last_log_lines(service):
    http, log = service
    reply = http.post("/api/v1/studies", json=tiny(training={"seed": 301, "lr": 10.0}))
    assert reply.status_code == 202, reply.text
    sid = reply.json()["id"]
    study = _wait(http, sid, ("failed", "succeeded", "cancelled"), log)
    assert study["state"] == "failed" and study["error_type"] == "TrainingDivergedError"
    tail = study["log_tail"]
    assert 10 < len(tail) <= 50
    assert f"INFO/MainProcess] study {sid}: retraining chunk 0" in tail[0]   # Celery's format
    assert tail[1].endswith(f"ERROR/MainProcess] study {sid} failed:")
    assert tail[2] == "Traceback (most recent call last):"
    assert tail[-1] == f"curvscope.training.trainer.TrainingDivergedError: {study['error']}"
    written = log.read_text().splitlines()
    assert all(line in written for line in tail)       # the worker's own log, line for line
    listed = http.get("/api/v1/studies", params={"ids": str(sid)}).json()["data"][0]
    assert "log_tail" not in listed                    # the detail only

    retried = http.post(f"/api/v1/studies/{sid}/retry").json()
    assert retried["attempts"] == 2
    queued_at = datetime.fromisoformat(retried["queued_at"].replace("Z", "+00:00"))
    assert queued_at > datetime.fromisoformat(study["finished_at"].replace("Z", "+00:00"))
    again = _wait(http, sid, ("failed", "succeeded", "cancelled"), log)
    assert again["state"] == "failed" and again["log_tail"][-1] == tail[-1]
    assert 0 <= again["timings"]["queued_seconds"] < (
        datetime.fromisoformat(again["started_at"].replace("Z", "+00:00"))
        - datetime.fromisoformat(again["created_at"].replace("Z", "+00:00"))).total_seconds()
