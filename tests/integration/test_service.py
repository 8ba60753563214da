"""End to end over HTTP: a real uvicorn API, a real redis-server and two real celery worker
processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.backend.servers import tiny
from tests.integration.conftest import WORKERS

pytestmark = pytest.mark.integration


def test_submit_poll_and_read_results(service):
    sid = service.submit(tiny(training={"seed": 101}))
    progress = []
    study = service.wait(sid, lambda s: progress.append(s["progress"]) or s["state"] in (
        "succeeded", "failed", "cancelled"))
    assert study["state"] == "succeeded", study
    assert progress == sorted(progress)                       # progress never goes back
    detail = service.http.get(f"/api/v1/studies/{sid}").json()
    assert detail["timings"]["running_seconds"] > 0 and detail["timings"]["stages"]["train"] > 0
    assert detail["device"].startswith("cpu") and detail["worker"] in WORKERS
    assert all(c["state"] == "done" and c["worker"] in WORKERS for c in detail["chunks"])
    results = service.http.get(f"/api/v1/studies/{sid}/results").json()
    assert results["spec_hash"] == detail["spec_hash"]
    assert results["device"] == detail["device"]
    assert set(results["methods"]) == {"EK-FAC", "K-FAC", "identity"}
    assert results["methods"]["K-FAC"]["lds"]["0.5"]["value"] == pytest.approx(
        detail["summary"]["methods"]["K-FAC"]["lds"]["0.5"])
    names = {a["name"] for a in service.http.get(f"/api/v1/studies/{sid}/arrays").json()["data"]}
    assert {"scores/K-FAC", "split/train", "masks/0.5"} <= names
    scores = service.http.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC").json()
    npy = service.http.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC.npy")
    assert np.allclose(np.load(io.BytesIO(npy.content)), np.array(scores["data"]))
    assert scores["shape"] == [results["n_test"], results["n_train"]]
    csv = service.http.get(f"/api/v1/studies/{sid}/export", params={"format": "csv"}).text
    assert len(csv.strip().splitlines()) == 1 + 3
    again = service.http.post("/api/v1/studies", json=tiny(training={"seed": 101}))
    assert again.status_code == 200 and again.json()["id"] == sid   # not recomputed


def test_two_workers_share_one_studys_retraining(service):
    spec = tiny(training={"seed": 102, "epochs": 10},
                groundtruth={"n_subsets": 16, "subsets_per_task": 1})
    sid = service.submit(spec)
    study = service.wait_done(sid)
    assert study["state"] == "succeeded", study
    chunks = service.http.get(f"/api/v1/studies/{sid}").json()["chunks"]
    assert len(chunks) == 16 and all(c["state"] == "done" for c in chunks)
    assert {c["worker"] for c in chunks} == set(WORKERS), chunks   # both workers took chunks
    results = service.http.get(f"/api/v1/studies/{sid}/results").json()
    retraining = {k: v for k, v in results["cache"].items() if k.startswith("groundtruth/")}
    assert len(retraining) == 16 and set(retraining.values()) == {"reused"}


def test_cancel_a_running_study(service):
    spec = tiny(training={"seed": 103, "epochs": 60},
                groundtruth={"n_subsets": 200, "n_seeds": 3, "subsets_per_task": 50})
    sid = service.submit(spec)
    service.wait(sid, lambda s: s["state"] == "running" and s["progress"] > 0, timeout=120)
    response = service.http.post(f"/api/v1/studies/{sid}/cancel")
    assert response.status_code == 202 and response.json()["cancel_requested"]
    study = service.wait(sid, lambda s: s["state"] == "cancelled", timeout=60)
    assert study["progress"] < 1
    # the first chunk to read the flag cancels the study; a chunk on the other worker stops at
    # its own next progress report, a moment later
    detail = service.wait(sid, lambda s: not [c for c in s["chunks"] if c["state"] == "running"],
                          timeout=30)
    assert {c["state"] for c in detail["chunks"]} <= {"cancelled", "pending", "done"}
    assert "cancelled" in {c["state"] for c in detail["chunks"]}
    assert service.http.get(f"/api/v1/studies/{sid}/results").status_code == 409
    # the workers are free again: a new study still runs
    assert service.wait_done(service.submit(tiny(training={"seed": 104})))["state"] == \
        "succeeded"


def test_workers_and_queue_status(service):
    workers = service.http.get("/api/v1/workers").json()["data"]
    assert {w["hostname"] for w in workers} == set(WORKERS)
    assert all(w["online"] and w["device"].startswith("cpu") for w in workers)
    queue = service.http.get("/api/v1/queue").json()
    assert queue["broker"]["ok"] is True
