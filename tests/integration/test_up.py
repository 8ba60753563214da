"""`curvscope up` on one machine: Redis, API and one worker come up on 127.0.0.1 with every
file under --data, a study submitted with `curvscope submit` succeeds, and Ctrl-C (SIGINT)
stops all of them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.launch import free_port
from tests.backend.servers import run_like_the_workers, tiny, wait_http

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "curvscope")


def up_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "CURVSCOPE_REDIS_URL", "CURVSCOPE_DATABASE_URL",
                        "DATABASE_URL", "CURVSCOPE_API_TOKEN")}
    env.update({"CURVSCOPE_WORKER_TORCH_THREADS": "1", "CURVSCOPE_PROGRESS_INTERVAL_S": "0.2"})
    return env


def start_up(data: Path, port: int, log: Path, env: dict) -> subprocess.Popen:
    with open(log, "ab") as handle:
        up = subprocess.Popen([CLI, "up", "--data", str(data), "--port", str(port)], env=env,
                              stdout=handle, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/api/v1/health", 90, up, log)
    deadline = time.monotonic() + 120
    while log.read_text().count("curvscope is up") < log.read_text().count("redis     "):
        assert up.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    return up


def auth(data: Path) -> dict:
    return {"Authorization": f"Bearer {(data / 'token').read_text().strip()}"}


def stop_up(up: subprocess.Popen, log: Path) -> int:
    up.send_signal(signal.SIGINT)
    try:
        return up.wait(60)
    except subprocess.TimeoutExpired:
        up.kill()
        pytest.fail("curvscope up did not stop on SIGINT:\n" + log.read_text())


def test_up_submit_and_ctrl_c(tmp_path):
    data, port, env, log = tmp_path / "data", free_port(), up_env(), tmp_path / "up.log"
    up = start_up(data, port, log, env)
    try:
        base = f"http://127.0.0.1:{port}"
        spec = tmp_path / "study.json"
        spec.write_text(json.dumps(tiny(training={"seed": 201})))
        token = data / "token"
        assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) > 30
        assert "token" in log.read_text() and str(token) in log.read_text()
        refused = httpx.post(f"{base}/api/v1/studies", json=tiny())
        assert refused.status_code == 401                          # secure by default
        submitted = subprocess.run([CLI, "submit", str(spec), "--url", base, "--data",
                                    str(data)], env=env,
                                   capture_output=True, text=True, timeout=240)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "succeeded" in submitted.stdout and "K-FAC" in submitted.stdout
        assert re.search(r"study (\d+) queued: http://\S+/api/v1/studies/\1; follow it at "
                         r"http://\S+/studies/\1\n", submitted.stderr), submitted.stderr
        health = httpx.get(f"{base}/api/v1/health").json()
        assert health["status"] == "ok" and health["database"]["dialect"] == "sqlite"
        workers = httpx.get(f"{base}/api/v1/workers").json()["data"]
        assert len(workers) == 1 and workers[0]["online"]
        names = {p.name for p in data.iterdir()}
        assert {"curvscope.db", "studies", "cache", "logs", "redis"} <= names
        assert (data / "studies" / "1" / "results.json").exists()
        assert any((data / "redis").iterdir())                       # append-only file
        sweep = tmp_path / "sweep.toml"                       # one point is study 1 again
        sweep.write_text('name = "seeds"\n[base]\npreset = "quick"\n[base.model]\n'
                         'hidden = [8]\n[base.training]\nepochs = 3\n[base.curvature]\n'
                         'methods = ["EK-FAC", "K-FAC", "identity"]\n[base.groundtruth]\n'
                         'n_subsets = 6\nn_seeds = 2\nsubsets_per_task = 3\n'
                         'n_bootstrap = 50\n[grid]\n"training.seed" = [201, 203]\n')
        swept = subprocess.run([CLI, "submit", str(sweep), "--url", base], env=dict(
            env, CURVSCOPE_DATA_DIR=str(data)),
                               capture_output=True, text=True, timeout=240)
        assert swept.returncode == 0, swept.stdout + swept.stderr
        assert re.search(r"sweep #(\d+) of 2 studies: 1 queued, 1 already there; follow it "
                         r"at http://\S+/sweeps/\1,", swept.stderr), swept.stderr
        lines = [line for line in swept.stdout.splitlines() if "succeeded" in line]
        assert len(lines) == 2 and "study 1 " in lines[0] and "training.seed=203" in lines[1]
        assert "K-FAC" in lines[1] and "/compare?ids=1,2&param=training.seed" in swept.stderr
        local = tmp_path / "specs"                       # a local data file, relative path
        local.mkdir()
        (local / "points.csv").write_text("a,b,label\n" + "".join(
            f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(60)))
        (local / "local.json").write_text(json.dumps(tiny(
            training={"seed": 205}, data={"name": "file", "path": "points.csv"})))
        for attempt in range(2):                         # the second reuses the upload
            uploaded = subprocess.run([CLI, "submit", str(local / "local.json"), "--url", base,
                                       "--data", str(data), "--no-follow"], env=env,
                                      capture_output=True, text=True, timeout=240, cwd="/")
            assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
            assert "points.csv → dataset:" in uploaded.stderr
            assert ("already uploaded, reused" in uploaded.stderr) == (attempt == 1)
        datasets = httpx.get(f"{base}/api/v1/datasets").json()
        assert datasets["count"] == 1 and datasets["data"][0]["n_rows"] == 60
        bad = subprocess.run([CLI, "submit", "-", "--url", base], env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "does not exist" in bad.stderr
    finally:
        code = stop_up(up, log)
    assert code == 0, log.read_text()
    assert "stopped" in log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
    leftover = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout


def test_ctrl_c_during_a_study_and_the_next_up_resumes_it(tmp_path):
    data, port, env, log = tmp_path / "data", free_port(), up_env(), tmp_path / "up.log"
    base = f"http://127.0.0.1:{port}/api/v1"
    up = start_up(data, port, log, env)
    try:
        spec = tiny(training={"seed": 202, "epochs": 40},
                    groundtruth={"n_subsets": 60, "subsets_per_task": 30})
        sid = httpx.post(f"{base}/studies", json=spec, headers=auth(data), timeout=120).json()["id"]
        deadline = time.monotonic() + 120
        while True:
            chunks = httpx.get(f"{base}/studies/{sid}", timeout=60).json()["chunks"]
            if any(c["state"] == "running" and c["progress"] > 0 for c in chunks):
                break
            assert time.monotonic() < deadline, chunks
            time.sleep(0.2)
    finally:
        start = time.monotonic()
        assert stop_up(up, log) == 0, log.read_text()
    assert time.monotonic() - start < 30                # the task gave way, not the timeout
    worker_log = (data / "logs" / "worker.log").read_text()
    assert "goes back on the queue" in worker_log
    up = start_up(data, port, log, env)                 # same data folder: same Redis AOF, db
    try:
        deadline = time.monotonic() + 240
        while (study := httpx.get(f"{base}/studies/{sid}", timeout=60).json())["state"] == "running":
            assert time.monotonic() < deadline, study
            time.sleep(0.5)
        assert study["state"] == "succeeded", study
        assert _lds(httpx.get(f"{base}/studies/{sid}/results", timeout=60).json()) == \
            _lds(_undisturbed(spec))                   # nothing about the stop shows
    finally:
        assert stop_up(up, log) == 0


def test_a_second_up_and_a_busy_port_are_refused_before_anything_says_up(tmp_path):
    data, port, env, log = tmp_path / "data", free_port(), up_env(), tmp_path / "up.log"
    up = start_up(data, port, log, env)
    try:
        second = subprocess.run([CLI, "up", "--data", str(data), "--port", str(free_port())],
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "in use by another `curvscope up` (pid" in (
            second.stderr)
        busy = subprocess.run([CLI, "up", "--data", str(tmp_path / "other"), "--port",
                               str(port)], env=env, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in (
            busy.stderr)
        assert "curvscope is up" not in second.stdout + busy.stdout
    finally:
        assert stop_up(up, log) == 0


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_a_dead_child_is_restarted_and_a_killed_up_takes_its_children(tmp_path):
    """SIGKILL the worker: `up` restarts it. SIGKILL `up` itself: its children go too (the
    worker with a warm shutdown), and the next `up` on the folder finishes the study with
    the LDS of an undisturbed run of its spec."""
    data, port, env, log = tmp_path / "data", free_port(), up_env(), tmp_path / "up.log"
    base = f"http://127.0.0.1:{port}/api/v1"
    up = start_up(data, port, log, env)
    children = _children(up.pid)
    assert len(children) == 3                                  # redis, api, worker
    worker_log = data / "logs" / "worker.log"
    worker_pid = next(p for p in children if "celery" in Path(f"/proc/{p}/cmdline")
                      .read_text())
    os.kill(worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "worker restarted" not in log.read_text():
        assert time.monotonic() < deadline and up.poll() is None, log.read_text()
        time.sleep(0.3)
    spec = tiny(training={"seed": 204, "epochs": 40},
                groundtruth={"n_subsets": 60, "subsets_per_task": 30})
    sid = httpx.post(f"{base}/studies", json=spec, headers=auth(data), timeout=120).json()["id"]
    deadline = time.monotonic() + 120
    while not any(c["state"] == "running" and c["progress"] > 0
                  for c in httpx.get(f"{base}/studies/{sid}", timeout=60).json()["chunks"]):
        assert time.monotonic() < deadline, worker_log.read_text()[-3000:]
        time.sleep(0.2)
    children = _children(up.pid)
    up.send_signal(signal.SIGKILL)
    up.wait(10)
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{p}").exists() and "zombie" not in Path(
            f"/proc/{p}/status").read_text() for p in children):
        assert time.monotonic() < deadline, "children outlived a SIGKILLed up"
        time.sleep(0.3)
    assert "goes back on the queue" in worker_log.read_text()    # a warm shutdown
    up = start_up(data, port, log, env)
    try:
        deadline = time.monotonic() + 240
        while (study := httpx.get(f"{base}/studies/{sid}", timeout=60).json())["state"] == "running":
            assert time.monotonic() < deadline, study
            time.sleep(0.5)
        assert study["state"] == "succeeded", study
        assert _lds(httpx.get(f"{base}/studies/{sid}/results", timeout=60).json()) == \
            _lds(_undisturbed(spec))                   # nothing about the stop shows
    finally:
        assert stop_up(up, log) == 0


def _lds(results: dict) -> dict:
    return {m: {a: v["value"] for a, v in r["lds"].items()}
            for m, r in results["methods"].items()}


def _undisturbed(config: dict) -> dict:
    """The same spec run in this process as the worker runs it (one thread, no cache)."""
    return run_like_the_workers(config)
