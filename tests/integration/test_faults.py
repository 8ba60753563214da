"""Nothing lost under faults: real processes that the test starts and kills. One API, one
worker and a Redis with an append-only file (fsync always), on SQLite; the worker's heartbeat
(0.5 s) runs the outbox sweeper. Each scenario ends with every accepted study succeeded and
its LDS identical to an undisturbed run of the same spec (``curvscope.study.run_study`` in
this process, no cache).

* Redis SIGKILLed in the middle of a study, then restarted on its port;
* the broker down while a sweep is posted (202: the points are owed, sent once it is back);
* the API SIGKILLed during a burst of POSTs (studies it committed and never sent are sent by
  the next API's start sweep or a worker's heartbeat);
* the worker SIGKILLed in the middle of a chunk and restarted under its name.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from backend.launch import find_redis_server, free_port, redis_ping
from tests.backend.servers import (
    run_like_the_workers,
    service_env,
    start_api,
    start_worker,
    stop_process,
    tiny,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: a study of a second or two: 2 retraining chunks
MICRO = {"model": {"hidden": [6]}, "training": {"epochs": 2},
         "curvature": {"methods": ["K-FAC", "identity"]},
         "groundtruth": {"n_subsets": 6, "n_seeds": 1, "subsets_per_task": 3,
                         "n_bootstrap": 20}}


def micro(seed: int, **overrides) -> dict:
    from curvscope.spec import deep_merge

    return deep_merge(tiny(**MICRO), deep_merge({"training": {"seed": seed}}, overrides))


def long_study(seed: int) -> dict:
    """A study whose 2 retraining chunks take seconds, so that a fault lands in the middle of
    one: each chunk trains its 12 subsets' models one after another (max_models_per_chunk 1;
    about 2.4 s on an idle machine, 100 epochs each, where the batched trainer does all 12 in
    0.7 s even at 200 epochs) while the studied model's own training stays short (100 epochs).

    Its ``groundtruth.seed`` is its own: the stage cache shares a retraining chunk between
    studies that differ only in ``training.seed`` (the retrained models do not depend on it,
    ``curvscope.study.retrain_material``), and a chunk found in the cache is done in
    milliseconds, never seen running. (Two studies of this module with one groundtruth seed
    is what kept the worker-kill case waiting 240 s for a running chunk after the Redis case
    had filled the cache: its chunks were done in 0.02 s each.)"""
    return micro(seed, training={"epochs": 100},
                 groundtruth={"n_subsets": 24, "subsets_per_task": 12,
                              "max_models_per_chunk": 1, "seed": seed})


class Redis:
    """redis-server on a fixed port with an append-only file: SIGKILL and start again."""

    def __init__(self, folder: Path):
        self.binary, self.port, self.folder = find_redis_server(), free_port(), folder
        folder.mkdir(parents=True, exist_ok=True)
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.folder), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not redis_ping("127.0.0.1", self.port):
            assert self.process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.redis = Redis(tmp / "redis")
        self.env = service_env(tmp / "data", f"sqlite:///{tmp / 'curvscope.db'}",
                               self.redis.url, CURVSCOPE_HEARTBEAT_S="0.5",
                               CURVSCOPE_OUTBOX_GRACE_S="1", CURVSCOPE_LOST_AFTER_S="3")
        self.logs = [tmp / "api.log", tmp / "worker.log"]
        self.api, self.base = start_api(self.env, self.logs[0])
        self.worker = start_worker(self.env, "w@faults", self.logs[1])
        self.http = httpx.Client(base_url=f"{self.base}/api/v1", timeout=60)

    def restart_api(self) -> None:
        """A new API process on the killed one's port. Should that port have been taken in
        the meantime (it is free from the kill until the new process binds it, seconds
        later, and other services on this machine pick free ports too), on a free one: the
        workers never talk to the API, its address is the test's own. A new API that exits
        otherwise fails the test at once, with its log."""
        self.api.wait(10)
        port = int(self.base.rsplit(":", 1)[1])
        for attempt in range(2):
            start = self.logs[0].stat().st_size if self.logs[0].exists() else 0
            self.api = self._uvicorn(port)
            if wait_for("the API again", self._up_or_exited, 90, self.logs) == "up":
                return
            log = self.logs[0].read_bytes()[start:].decode(errors="replace")
            if attempt == 0 and "address already in use" in log.lower():
                port = free_port()
                self.base = f"http://127.0.0.1:{port}"
                self.http.close()
                self.http = httpx.Client(base_url=f"{self.base}/api/v1", timeout=60)
                continue
            pytest.fail(f"the new API exited with {self.api.returncode}:\n{log[-4000:]}")

    def _up_or_exited(self) -> str | None:
        """'up' once this API process (its pid, not whatever else answers on the port)
        answers /health; 'exited' once it has exited; None meanwhile."""
        try:
            response = httpx.get(f"{self.base}/api/v1/health", timeout=5)
            if response.status_code == 200 and response.json().get("pid") == self.api.pid:
                return "up"
        except (httpx.TransportError, ValueError):
            pass
        return "exited" if self.api.poll() is not None else None

    def _uvicorn(self, port: int) -> subprocess.Popen:
        import sys

        handle = open(self.logs[0], "ab")  # noqa: SIM115 (the process owns it)
        return subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.app:app", "--host",
                                 "127.0.0.1", "--port", str(port), "--no-access-log"],
                                env=self.env, stdout=handle, stderr=subprocess.STDOUT)

    def study(self, sid: int) -> dict:
        return self.http.get(f"/studies/{sid}").json()

    def wait_all(self, ids: list[int], timeout: float = 240) -> dict[int, dict]:
        assert ids, "no studies to wait for"

        def done():
            rows = {s: self.study(s) for s in ids}
            return rows if all(r["state"] in ("succeeded", "failed", "cancelled")
                               for r in rows.values()) else None
        return wait_for(f"studies {ids} to end", done, timeout, self.logs)

    def lds(self, sid: int) -> dict:
        results = self.http.get(f"/studies/{sid}/results").json()
        return {m: {a: v["value"] for a, v in r["lds"].items()}
                for m, r in results["methods"].items()}

    def close(self) -> None:
        self.http.close()
        for process in (self.worker, self.api):
            stop_process(process, timeout=20)
        stop_process(self.redis.process)


def wait_for(what: str, check, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"{what}: not after {timeout} s\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs if p.exists()))


def undisturbed_lds(config: dict) -> dict:
    results = run_like_the_workers(config)
    return {m: {a: v["value"] for a, v in r["lds"].items()}
            for m, r in results["methods"].items()}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("faults"))
    wait_for("the worker online", lambda: any(
        w["online"] for w in stack.http.get("/workers").json()["data"]), 120, stack.logs)
    yield stack
    stack.close()


def _mid_chunk(stack: Stack, sid: int) -> list[dict]:
    """The chunks of study ``sid`` being trained right now and not yet half done (0 <
    progress < 0.5: past their claim, well before their end); an empty list while there is
    none yet. Fails at once when the study is past its chunks without one seen so (a chunk
    found in the stage cache, a chunk shorter than the poll), rather than waiting for one."""
    study = stack.study(sid)
    chunks = study["chunks"]
    running = [c for c in chunks if c["state"] == "running" and 0 < c["progress"] < 0.5]
    if running:
        return running
    if study["state"] not in ("queued", "running") or (
            chunks and all(c["state"] == "done" for c in chunks)):
        pytest.fail(f"study {sid} got past its retraining chunks before one was seen half-way "
                    f"through: {study['state']}, chunks {chunks}\n" + "\n".join(
                        f"--- {p.name}\n{p.read_text()[-4000:]}" for p in stack.logs
                        if p.exists()))
    return []


def test_redis_sigkilled_mid_study_and_restarted(stack):
    spec = long_study(1001)
    sid = stack.http.post("/studies", json=spec).json()["id"]
    wait_for("a chunk half-way", lambda: _mid_chunk(stack, sid), 240, stack.logs)
    stack.redis.kill()
    time.sleep(1.5)
    assert stack.study(sid)["state"] == "running"
    stack.redis.start()
    study = stack.wait_all([sid])[sid]
    assert study["state"] == "succeeded", study
    assert stack.lds(sid) == undisturbed_lds(spec)


def test_the_broker_down_while_a_sweep_is_posted(stack):
    stack.redis.kill()
    base = micro(1100)
    posted = stack.http.post("/sweeps", json={"base": base, "grid": {
        "training.seed": [1101, 1102]}})
    assert posted.status_code == 202, posted.text
    ids = [p["study"]["id"] for p in posted.json()["points"]]
    assert all(p["study"]["state"] == "queued" for p in posted.json()["points"])
    assert "broker" in posted.json()["points"][1]["study"]["stage"]
    time.sleep(1.0)
    stack.redis.start()
    studies = stack.wait_all(ids)
    assert all(s["state"] == "succeeded" for s in studies.values()), studies
    for sid, seed in zip(ids, (1101, 1102), strict=True):
        assert stack.lds(sid) == undisturbed_lds(micro(seed))


def test_the_api_sigkilled_during_a_burst_of_posts(stack):
    """Four clients post new studies one after another; once three are accepted the API is
    SIGKILLed with more in flight. Every study it accepted is stored once and runs; so does
    every study it stored (a request it committed but never answered, or never sent)."""
    accepted: dict[int, int] = {}
    lock = threading.Lock()
    seeds = iter(range(1200, 1300))
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with lock:
                seed = next(seeds)
            try:
                response = httpx.post(f"{stack.base}/api/v1/studies", json=micro(seed),
                                      timeout=60)
            except httpx.TransportError:
                return  # the API is gone: this one may or may not have been stored
            if response.status_code in (200, 202):
                with lock:
                    accepted[seed] = response.json()["id"]

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for("three accepted studies", lambda: len(accepted) >= 3, 120, stack.logs)
    stack.api.send_signal(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(90)
    stack.restart_api()
    seeds_stored = {}
    for row in stack.http.get("/studies", params={"limit": 500}).json()["data"]:
        seed = stack.study(row["id"])["spec"]["training"]["seed"]
        if 1200 <= seed < 1300:
            assert seed not in seeds_stored, f"seed {seed} stored twice"   # no duplicates
            seeds_stored[seed] = row["id"]
    assert len(accepted) >= 3 and set(accepted) <= set(seeds_stored)   # none lost
    assert all(accepted[s] == seeds_stored[s] for s in accepted)
    studies = stack.wait_all(list(seeds_stored.values()))      # every stored one runs
    assert all(s["state"] == "succeeded" for s in studies.values()), studies
    for seed in sorted(accepted)[:2]:
        assert stack.lds(accepted[seed]) == undisturbed_lds(micro(seed))


def test_the_worker_sigkilled_mid_chunk_and_restarted(stack):
    spec = long_study(1301)
    sid = stack.http.post("/studies", json=spec).json()["id"]
    wait_for("a chunk half-way", lambda: _mid_chunk(stack, sid), 240, stack.logs)
    stack.worker.send_signal(signal.SIGKILL)   # over a second of the chunk still to train
    stack.worker.wait(10)
    stack.worker = start_worker(stack.env, "w@faults", stack.logs[1])   # same name
    study = stack.wait_all([sid])[sid]
    assert study["state"] == "succeeded", study
    assert "worker w@faults restarted: re-queued 1 chunk" in stack.logs[1].read_text()
    assert stack.lds(sid) == undisturbed_lds(spec)
