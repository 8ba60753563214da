"""A worker killed outright (kill -9: out of memory, its machine gone) in the middle of a
retraining chunk: once it has been silent for CURVSCOPE_LOST_AFTER_S, a live worker marks it
lost and puts its chunk back on the queue, and the study still succeeds. Real uvicorn, real
redis-server, real celery workers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import signal
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
    tiny,
)

pytestmark = pytest.mark.integration


def _wait(what: str, check, timeout: float, logs: list) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} not after {timeout} s:\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists()))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_killed_workers_chunk_is_taken_up_by_a_live_worker(kind, tmp_path, redis_server):  # noqa: F811
    url, pg = database_url(kind, tmp_path)
    env = service_env(tmp_path / "data", url, redis_server.url(7 if kind == "sqlite" else 8),
                      CURVSCOPE_QUEUE_NAME=f"lost-worker-{kind}", CURVSCOPE_HEARTBEAT_S="0.5",
                      CURVSCOPE_LOST_AFTER_S="3")
    logs = [tmp_path / "api.log", tmp_path / "doomed.log", tmp_path / "rescuer.log"]
    api, base = start_api(env, logs[0])
    http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)
    doomed = start_worker(env, "doomed@itest", logs[1])
    rescuer = None
    try:
        spec = tiny(training={"seed": 301, "epochs": 30},
                    groundtruth={"n_subsets": 40, "subsets_per_task": 20})
        sid = http.post("/studies", json=spec).json()["id"]
        running = _wait("a chunk running on doomed@itest", lambda: [
            c for c in http.get(f"/studies/{sid}").json()["chunks"]
            if c["state"] == "running" and c["worker"] == "doomed@itest" and c["progress"] > 0],
            120, logs)
        doomed.send_signal(signal.SIGKILL)                 # no warm shutdown, no requeue
        doomed.wait(10)
        study = http.get(f"/studies/{sid}").json()
        assert study["state"] == "running"
        assert any(c["state"] == "running" and c["worker"] == "doomed@itest"
                   for c in study["chunks"])                # left as it was
        rescuer = start_worker(env, "rescuer@itest", logs[2])
        done = _wait("the study to succeed", lambda: (
            s := http.get(f"/studies/{sid}").json())["state"] in ("succeeded", "failed") and s,
            180, logs)
        assert done["state"] == "succeeded", done
        chunk = next(c for c in done["chunks"] if c["index"] == running[0]["index"])
        assert chunk["state"] == "done" and chunk["worker"] == "rescuer@itest"
        workers = {w["hostname"]: w for w in http.get("/workers").json()["data"]}
        assert workers["doomed@itest"]["state"] == "lost"
        assert "doomed@itest silent for over 3 s: re-queued 1 chunk" in logs[2].read_text()
        assert http.get(f"/studies/{sid}/results").status_code == 200
    finally:
        http.close()
        for process in (doomed, rescuer, api):
            if process is not None:
                stop_process(process, timeout=20)
        if pg is not None:
            pg.drop()
