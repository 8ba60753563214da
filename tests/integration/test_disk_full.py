"""The data folder's disk fills up (a small tmpfs mounted as the data folder; needs root):
earlier studies stay readable, the database passes ``PRAGMA integrity_check``, new work is
refused with a sentence (507) and /health says degraded; once space is back a new study
runs and succeeds. Real uvicorn, real worker, real Redis."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)
from tests.backend.servers import service_env, start_api, start_worker, stop_process
from tests.integration.test_faults import micro, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def fill(folder: Path) -> Path:
    """Write until the disk is full; the filler file is returned (delete it for space)."""
    filler = folder / "filler.bin"
    block = b"\0" * (1 << 20)
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_new_work_keeps_old_work_and_recovers(small_disk, tmp_path,
                                                                  redis_server):  # noqa: F811
    env = service_env(small_disk, f"sqlite:///{small_disk / 'curvscope.db'}",
                      redis_server.url(11), CURVSCOPE_MIN_FREE_BYTES=str(4 * 2**20),
                      CURVSCOPE_QUEUE_NAME="disk-full", CURVSCOPE_HEARTBEAT_S="0.5")
    logs = [tmp_path / "api.log", tmp_path / "worker.log"]
    api, base = start_api(env, logs[0])
    worker = start_worker(env, "w@disk", logs[1])
    http = httpx.Client(base_url=f"{base}/api/v1", timeout=60)
    try:
        first = http.post("/studies", json=micro(1401)).json()["id"]
        wait_for("the first study", lambda: http.get(f"/studies/{first}").json()["state"]
                 == "succeeded", 240, logs)
        before = http.get(f"/studies/{first}/results").json()
        filler = fill(small_disk)
        refused = http.post("/studies", json=micro(1402))
        assert refused.status_code == 507, refused.text
        assert "is full" in refused.json()["detail"] and "free some space" in (
            refused.json()["detail"])
        assert http.post("/datasets", files={"file": ("a.csv", b"a,b\n1,0\n")}
                         ).status_code == 507
        health = http.get("/health").json()
        assert health["status"] == "degraded" and health["disk"]["ok"] is False
        assert http.get(f"/studies/{first}/results").json() == before     # still readable
        assert http.get(f"/studies/{first}/arrays").status_code == 200
        with sqlite3.connect(small_disk / "curvscope.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert http.get("/studies", params={"limit": 500}).json()["count"] == 1  # no row
        filler.unlink()                                                       # space back
        time.sleep(0.5)
        again = http.post("/studies", json=micro(1402))
        assert again.status_code == 202, again.text
        sid = again.json()["id"]
        wait_for("the study after the space came back", lambda: http.get(
            f"/studies/{sid}").json()["state"] == "succeeded", 240, logs)
        assert http.get("/health").json()["disk"]["ok"] is True
    finally:
        http.close()
        for process in (worker, api):
            stop_process(process, timeout=20)
