"""Many workers, one study: three separate `celery worker` processes sharing one database, one
broker and one data folder (the artifact store and the stage cache, as machines sharing a
volume would) finish one paper-shaped study, its retraining cut into small chunks
(`groundtruth.subsets_per_task`) that all three take; every stored number equals the same
study run by one worker on its own database and data folder. Real uvicorn, real
redis-server, real celery workers (docs/service.md, "Workers on other machines")."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)
from tests.backend.servers import (
    database_url,
    service_env,
    start_api,
    start_worker,
    stop_process,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The paper preset's shape (every method, four α, several checkpoints), made small: a narrow
#: MLP, few epochs and subsets, and 2 subsets per retraining task → 4 α × 3 = 12 chunks.
SPEC = {
    "preset": "paper",
    "model": {"hidden": [8, 8]},
    "training": {"epochs": 8, "checkpoints": [4, 8], "seed": 7},
    "groundtruth": {"alphas": [0.3, 0.5, 0.7, 0.9], "n_subsets": 6, "n_seeds": 2,
                    "subsets_per_task": 2, "n_bootstrap": 50},
}
#: results.json fields that say how and where a run went, not what it computed
RUN_FIELDS = {"timings", "cache", "worker", "workers", "created_at", "finished_at"}


class Stack:
    """An API and `n` workers on their own database, data folder and queue."""

    def __init__(self, tmp, kind, redis_url, names, queue):
        tmp.mkdir(parents=True, exist_ok=True)
        self.url, self.pg = database_url(kind, tmp)
        self.data = tmp / "data"
        env = service_env(self.data, self.url, redis_url, CURVSCOPE_QUEUE_NAME=queue)
        self.logs = [tmp / "api.log", *(tmp / f"{n.split('@')[0]}.log" for n in names)]
        self.api, base = start_api(env, self.logs[0])
        self.http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)
        self.workers = [start_worker(env, n, log) for n, log in zip(names, self.logs[1:],
                                                                     strict=True)]
        self.names = set(names)
        self.wait("every worker online", lambda: self.names <= {
            w["hostname"] for w in self.http.get("/workers").json()["data"] if w["online"]},
            120)

    def wait(self, what, check, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            exited = [p.args[-4] for p in self.workers if p.poll() is not None]
            if exited:
                break
            time.sleep(0.3)
        pytest.fail(f"{what}: not after {timeout} s\n" + "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs if p.exists()))

    def run(self, spec) -> dict:
        response = self.http.post("/studies", json=spec)
        assert response.status_code == 202, response.text
        sid = response.json()["id"]
        study = self.wait("the study to end", lambda: (
            s := self.http.get(f"/studies/{sid}").json())["state"] in (
                "succeeded", "failed", "cancelled") and s, 600)
        assert study["state"] == "succeeded", study
        return study

    def stop(self):
        self.http.close()
        for process in [*self.workers, self.api]:
            stop_process(process, timeout=20)
        if self.pg is not None:
            self.pg.drop()


def _numbers(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in RUN_FIELDS}


def _is_timing(path: str) -> bool:
    """Wall-clock seconds (a method's ``timing_seconds``, a stage's time) differ run to run."""
    return "timing" in path or path.endswith("seconds")


def _leaves(tree, path=""):
    """{"a/b/0": leaf} of a JSON tree."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _leaves(sub, f"{path}/{i}").items()}
    return {path: tree}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_three_workers_finish_one_study_as_one_worker_does(kind, tmp_path, redis_server):  # noqa: F811
    base = 11 if kind == "sqlite" else 13
    many = Stack(tmp_path / "many", kind, redis_server.url(base),
                 ["w1@many", "w2@many", "w3@many"], f"many-{kind}")
    try:
        study = many.run(SPEC)
        chunks = study["chunks"]
        assert len(chunks) == 12 and all(c["state"] == "done" for c in chunks)
        assert {c["worker"] for c in chunks} == many.names, [
            (c["index"], c["worker"]) for c in chunks]       # all three took chunks
        sid_many = study["id"]
        results_many = json.loads((many.data / "studies" / str(sid_many) /
                                   "results.json").read_text())
        arrays_many = dict(np.load(many.data / "studies" / str(sid_many) / "arrays.npz"))
        retraining = {k: v for k, v in results_many["cache"].items()
                      if k.startswith("groundtruth/")}
        assert len(retraining) == 12 and set(retraining.values()) == {"reused"}
    finally:
        many.stop()

    one = Stack(tmp_path / "one", kind, redis_server.url(base + 1), ["w@one"], f"one-{kind}")
    try:
        study = one.run(SPEC)
        assert {c["worker"] for c in study["chunks"]} == {"w@one"}
        sid_one = study["id"]
        results_one = json.loads((one.data / "studies" / str(sid_one) /
                                  "results.json").read_text())
        arrays_one = dict(np.load(one.data / "studies" / str(sid_one) / "arrays.npz"))
    finally:
        one.stop()

    assert results_one["spec_hash"] == results_many["spec_hash"]
    one_leaves, many_leaves = _leaves(_numbers(results_one)), _leaves(_numbers(results_many))
    differ = sorted(k for k in one_leaves.keys() | many_leaves.keys()
                    if one_leaves.get(k, "?") != many_leaves.get(k, "?") and not _is_timing(k))
    assert not differ, [(k, one_leaves.get(k), many_leaves.get(k)) for k in differ[:20]]
    assert set(arrays_one) == set(arrays_many)
    different = [name for name in arrays_one
                 if not np.array_equal(arrays_one[name], arrays_many[name], equal_nan=True)]
    assert not different, different
    assert any(name.startswith("retrained_losses/") for name in arrays_one)
