"""The REST API on a real database (SQLite and PostgreSQL) with a real Redis broker; no
worker runs here (tests/integration has those), so studies stay queued unless a test moves
them on through the database."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sqlalchemy import select

from backend.db import write_session
from backend.models import Study
from backend.queue import broker_status
from tests.backend.servers import tiny

PROBLEM = "application/problem+json"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("urn:")
    assert body["detail"].endswith(".") and len(body["detail"]) > 20
    return body


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from backend.db import MIGRATIONS_DIR

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def finish(settings, study_id: int, state: str = "succeeded", write_files: bool = True):
    """Move a study on as a worker would, writing small real result files."""
    from backend import artifacts
    from curvscope.storage import write_json_atomic, write_npz_atomic

    with write_session(settings) as session:
        study = session.get(Study, study_id)
        study.state, study.progress, study.stage = state, 1.0, "done"
        spec_hash = study.spec_hash
        if state == "succeeded":
            results = {"spec_hash": spec_hash, "device": "cpu (test)",
                       "methods": {"K-FAC": {"relative_residual_to_H": 0.5,
                                             "lds": {"0.5": {"value": 0.3, "ci_low": 0.2,
                                                             "ci_high": 0.4}}},
                                   "identity": {"relative_residual_to_H": 0.9,
                                                "lds": {"0.5": {"value": 0.1, "ci_low": 0.0,
                                                                "ci_high": 0.2}}}},
                       "timings": {"train": 1.0}}
            study.summary = artifacts.summarize(results)
            study.timings = results["timings"]
            if write_files:
                folder = artifacts.study_dir(settings, study_id)
                write_npz_atomic(folder / "arrays.npz", {
                    "scores/K-FAC": np.arange(6.0).reshape(2, 3),
                    "eigenvalues/H": np.array([1.0, np.nan, np.inf])})
                write_json_atomic(folder / "results.json", results)


def create(api, spec=None, **kwargs):
    response = api.post("/api/v1/studies", json=spec if spec is not None else tiny(), **kwargs)
    assert response.status_code in (200, 202), response.text
    return response


def test_health_reports_database_and_broker(api, settings):
    body = api.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "dialect": settings.sqlalchemy_url.split(":")[0]
                                .split("+")[0], "revision": head_revision()}
    assert body["broker"]["ok"] is True


def test_openapi_and_docs(api):
    assert api.get("/docs").status_code == 200
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/studies", "/api/v1/studies/{study_id}", "/api/v1/studies/validate",
                 "/api/v1/studies/{study_id}/arrays/{name}", "/api/v1/datasets",
                 "/api/v1/health", "/api/v1/workers", "/api/v1/queue", "/api/v1/schema",
                 "/api/v1/methods", "/api/v1/sweeps"):
        assert path in paths


def test_create_is_202_with_location_and_resolved_spec(api, settings):
    response = create(api, {"preset": "quick", "training": {"epochs": 7}})
    assert response.status_code == 202
    study = response.json()
    assert response.headers["location"] == f"/api/v1/studies/{study['id']}"
    assert study["state"] == "queued" and study["preset"] == "quick"
    detail = api.get(response.headers["location"]).json()
    assert detail["spec"]["training"]["epochs"] == 7           # the override
    assert detail["spec"]["model"]["hidden"] == [16, 16]       # from the preset
    assert detail["spec"]["inverse"]["damping"] == 1e-4        # a default, resolved
    assert detail["request"] == {"preset": "quick", "training": {"epochs": 7}}
    assert detail["estimate"]["n_retrained_models"] == 500
    assert detail["timings"]["queued_seconds"] >= 0 and detail["chunks"] == []
    assert broker_status(settings)["pending_messages"] == 1     # really on the queue


def test_identical_spec_returns_the_existing_study(api, settings):
    first = create(api).json()
    again = create(api)                      # still queued: the same study, not a new one
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    finish(settings, first["id"])
    named = create(api, tiny(name="another label"))   # the name is not part of the hash
    assert named.status_code == 200 and named.json()["id"] == first["id"]
    assert named.json()["state"] == "succeeded"
    other = create(api, tiny(training={"seed": 5}))
    assert other.status_code == 202 and other.json()["id"] != first["id"]
    assert broker_status(settings)["pending_messages"] == 2


def test_idempotency_key(api):
    key = {"Idempotency-Key": "key-1"}
    first = create(api, tiny(training={"seed": 1}), headers=key)
    again = create(api, tiny(training={"seed": 1}), headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    changed = api.post("/api/v1/studies", json=tiny(training={"seed": 2}), headers=key)
    assert "Idempotency-Key" in assert_problem(changed, 422)["detail"]
    assert api.get("/api/v1/studies").json()["count"] == 1


def test_list_filters_sort_limit_offset(api, settings):
    ids = [create(api, tiny(name=f"study {i}", training={"seed": i})).json()["id"]
           for i in range(5)]
    finish(settings, ids[1])
    finish(settings, ids[2], state="failed")
    everything = api.get("/api/v1/studies").json()
    assert everything["count"] == 5
    assert [s["id"] for s in everything["data"]] == ids[::-1]   # newest first by default
    stored = api.get(f"/api/v1/studies/{ids[0]}").json()["spec"]
    listed = everything["data"][-1]                              # what a list shows per row
    assert listed["data"] == stored["data"] and listed["model"] == stored["model"]
    assert listed["data"]["name"] and "hidden" in listed["model"]
    page = api.get("/api/v1/studies", params={"sort": "id", "limit": 2, "offset": 1}).json()
    assert page["count"] == 5 and [s["id"] for s in page["data"]] == ids[1:3]
    done = api.get("/api/v1/studies", params={"state": "succeeded,failed"}).json()
    assert sorted(s["id"] for s in done["data"]) == sorted(ids[1:3])
    assert api.get("/api/v1/studies", params={"q": "STUDY 3"}).json()["data"][0]["id"] == ids[3]
    summary = api.get(f"/api/v1/studies/{ids[1]}").json()["summary"]
    assert summary["methods"]["K-FAC"]["lds"] == {"0.5": 0.3}
    assert api.get("/api/v1/studies", params={"sort": "-name"}).json()["data"][0]["id"] == ids[4]
    assert_problem(api.get("/api/v1/studies", params={"sort": "colour"}), 422)
    assert_problem(api.get("/api/v1/studies", params={"state": "sleeping"}), 422)
    assert_problem(api.get("/api/v1/studies", params={"limit": 0}), 422)


def test_results_arrays_and_exports(api, settings):
    sid = create(api).json()["id"]
    body = assert_problem(api.get(f"/api/v1/studies/{sid}/results"), 409)
    assert "queued" in body["detail"]
    finish(settings, sid)
    results = api.get(f"/api/v1/studies/{sid}/results")
    assert results.status_code == 200 and results.json()["device"] == "cpu (test)"
    listing = api.get(f"/api/v1/studies/{sid}/arrays").json()
    assert listing["data"] == [{"name": "eigenvalues/H", "shape": [3], "dtype": "float64"},
                               {"name": "scores/K-FAC", "shape": [2, 3], "dtype": "float64"}]
    array = api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC").json()
    assert array["shape"] == [2, 3] and array["data"] == [[0, 1, 2], [3, 4, 5]]
    assert api.get(f"/api/v1/studies/{sid}/arrays/eigenvalues/H").json()["data"] == [
        1.0, None, None]
    npy = api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC", params={"format": "npy"})
    assert npy.headers["content-type"] == "application/x-npy"
    assert np.array_equal(np.load(io.BytesIO(npy.content)), np.arange(6.0).reshape(2, 3))
    by_accept = api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC",
                        headers={"Accept": "application/x-npy"})
    assert by_accept.content == npy.content
    assert_problem(api.get(f"/api/v1/studies/{sid}/arrays/nope"), 404)
    row = api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC", params={"index": 1}).json()
    assert row == {"name": "scores/K-FAC[1]", "shape": [3], "dtype": "float64",
                   "data": [3, 4, 5]}
    npy_row = api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC",
                      params={"index": 1, "format": "npy"})
    assert np.array_equal(np.load(io.BytesIO(npy_row.content)), [3.0, 4.0, 5.0])
    assert 'filename="scores_K-FAC[1].npy"' in npy_row.headers["content-disposition"]
    body = assert_problem(api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC",
                                  params={"index": 2}), 422)
    assert "0 ≤ index < 2" in body["detail"] and "(2, 3)" in body["detail"]
    assert_problem(api.get(f"/api/v1/studies/{sid}/arrays/scores/K-FAC",
                           params={"index": -1}), 422)
    csv = api.get(f"/api/v1/studies/{sid}/export", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("study_id,spec_hash,method,alpha,lds") and len(lines) == 3
    assert lines[1].split(",")[2:5] == ["K-FAC", "0.5", "0.3"]
    exported = api.get(f"/api/v1/studies/{sid}/export", params={"format": "json"}).json()
    assert exported["study"]["id"] == sid and exported["results"]["spec_hash"]


def test_cancel_retry_delete_lifecycle(api, settings):
    sid = create(api).json()["id"]
    assert_problem(api.delete(f"/api/v1/studies/{sid}"), 409)          # active
    assert_problem(api.post(f"/api/v1/studies/{sid}/retry"), 409)      # not failed
    cancelled = api.post(f"/api/v1/studies/{sid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert_problem(api.post(f"/api/v1/studies/{sid}/cancel"), 409)     # already final
    retried = api.post(f"/api/v1/studies/{sid}/retry")
    assert retried.status_code == 202
    assert retried.json()["state"] == "queued" and retried.json()["attempts"] == 2
    with write_session(settings) as session:                           # a worker took it
        session.get(Study, sid).state = "running"
    running = api.post(f"/api/v1/studies/{sid}/cancel")
    assert running.status_code == 202 and running.json()["cancel_requested"] is True
    assert running.json()["state"] == "running"                        # the worker decides
    finish(settings, sid, state="cancelled")
    assert api.delete(f"/api/v1/studies/{sid}").status_code == 204
    assert_problem(api.get(f"/api/v1/studies/{sid}"), 404)
    assert_problem(api.delete(f"/api/v1/studies/{sid}"), 404)


def test_writes_need_the_token_reads_do_not(api):
    bare = {"Authorization": ""}
    body = assert_problem(api.post("/api/v1/studies", json=tiny(), headers=bare), 401)
    assert "Bearer" in body["detail"]
    wrong = api.post("/api/v1/studies", json=tiny(), headers={"Authorization": "Bearer nope"})
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert_problem(api.post("/api/v1/datasets", files={"file": ("a.csv", b"x,y\n")},
                            headers=bare), 401)
    assert api.get("/api/v1/studies", headers=bare).status_code == 200
    assert api.get("/api/v1/studies").json()["count"] == 0


def test_schema_methods_presets(api):
    schema = api.get("/api/v1/schema").json()
    assert schema["title"] == "StudySpec" and "training" in schema["properties"]
    methods = api.get("/api/v1/methods").json()
    assert [m["name"] for m in methods["data"]][:2] == ["H", "GGN"]
    assert {m["kind"] for m in methods["data"]} == {"dense", "structured", "baseline"}
    assert {"quick", "paper"} <= set(api.get("/api/v1/presets").json())


def test_validate_estimates_and_stores_nothing(api, settings):
    body = api.post("/api/v1/studies/validate", json={"preset": "quick"}).json()
    assert body["valid"] is True and body["existing_study_id"] is None
    assert body["estimate"]["n_params"] > 0 and body["spec"]["name"] == "quick"
    assert api.get("/api/v1/studies").json()["count"] == 0
    assert broker_status(settings)["pending_messages"] == 0
    assert_problem(api.post("/api/v1/studies/validate", json={"training": {"lr": -1}}), 422)
    sid = create(api, {"preset": "quick"}).json()["id"]
    again = api.post("/api/v1/studies/validate", json={"preset": "quick"}).json()
    assert again["existing_study_id"] == sid


CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(40))


def test_datasets_upload_list_use_delete(api, settings):
    up = api.post("/api/v1/datasets", files={"file": ("my data.csv", CSV.encode())})
    assert up.status_code == 201, up.text
    dataset = up.json()
    assert dataset["name"] == "my_data.csv" and dataset["n_rows"] == 40
    assert dataset["n_features"] == 2 and dataset["n_classes"] == 2
    assert up.headers["location"] == f"/api/v1/datasets/{dataset['id']}"
    same = api.post("/api/v1/datasets", files={"file": ("copy.csv", CSV.encode())})
    assert same.status_code == 200 and same.json()["id"] == dataset["id"]
    assert api.get("/api/v1/datasets").json()["count"] == 1
    spec = tiny(data={"name": "file", "path": dataset["reference"]})
    study = create(api, spec).json()
    stored = api.get(f"/api/v1/studies/{study['id']}").json()
    assert stored["dataset_id"] == dataset["id"]
    assert stored["spec"]["data"]["path"].startswith(str(settings.datasets_dir))
    assert_problem(api.delete(f"/api/v1/datasets/{dataset['id']}"), 409)   # in use
    api.post(f"/api/v1/studies/{study['id']}/cancel")
    assert api.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204
    assert api.get("/api/v1/datasets").json()["count"] == 0
    assert list(settings.datasets_dir.glob("*.csv")) == []


def test_a_study_accepted_while_the_broker_is_down_is_sent_once_it_is_back(api, settings):
    """202, queued, its start message owed (stage says so); `retry` accepts the never-sent
    study; the sweeper sends what is owed, once, when the broker answers again."""
    from fastapi.testclient import TestClient

    from backend import outbox
    from backend.app import create_app
    from tests.backend.conftest import TOKEN

    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0",
                                       "migrate_on_start": False})
    with TestClient(create_app(dead), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        accepted = client.post("/api/v1/studies", json=tiny())
        assert accepted.status_code == 202, accepted.text
        study = accepted.json()
        assert study["state"] == "queued" and "broker" in study["stage"]
        health = client.get("/api/v1/health").json()
        assert health["status"] == "degraded" and health["broker"]["ok"] is False
        sweep = client.post("/api/v1/sweeps", json={"base": tiny(), "grid": {
            "training.seed": [1, 2, 3]}})
        assert sweep.status_code == 202 and sweep.json()["created"] == 3
        assert outbox.sweep(dead.model_copy(update={"outbox_grace_s": 0})).failed == 4
        retried = client.post(f"/api/v1/studies/{study['id']}/retry")   # still no broker
        assert retried.status_code == 202 and retried.json()["attempts"] == 1
    assert broker_status(settings)["pending_messages"] == 0
    assert api.post(f"/api/v1/studies/{study['id']}/retry").status_code == 202  # sends it
    assert broker_status(settings)["pending_messages"] == 1
    sent = outbox.sweep(settings.model_copy(update={"outbox_grace_s": 0}))
    assert sorted(sent.start) == [study["id"] + 1, study["id"] + 2, study["id"] + 3]
    assert broker_status(settings)["pending_messages"] == 4
    assert outbox.sweep(settings.model_copy(update={"outbox_grace_s": 0})).count == 0
    assert_problem(api.post(f"/api/v1/studies/{study['id']}/retry"), 409)  # sent: not again
    with write_session(settings) as session:
        assert all(s.sent_at is not None for s in session.scalars(select(Study)))


def test_ids_are_never_reused_and_huge_ids_are_422(api, settings):
    first = create(api, tiny(training={"seed": 901})).json()["id"]
    second = create(api, tiny(training={"seed": 902})).json()["id"]
    for sid in (second, first):
        api.post(f"/api/v1/studies/{sid}/cancel")
        assert api.delete(f"/api/v1/studies/{sid}").status_code == 204
    third = create(api, tiny(training={"seed": 903})).json()["id"]
    assert third > second > first
    for path in ("/api/v1/studies/9223372036854775808", "/api/v1/studies/99999999999",
                 "/api/v1/studies?offset=9223372036854775808",
                 "/api/v1/studies?ids=1,99999999999999999999",
                 "/api/v1/datasets/9223372036854775808",
                 f"/api/v1/studies/{third}/arrays/x?index=9223372036854775808"):
        assert_problem(api.get(path), 422)


def test_workers_and_queue(api, settings):
    from datetime import UTC, datetime

    from backend.models import Worker

    with write_session(settings) as session:
        session.add(Worker(hostname="w@test", device="cpu (test)", pid=1,
                           started_at=datetime.now(UTC), last_seen=datetime.now(UTC)))
    workers = api.get("/api/v1/workers").json()
    assert workers["count"] == 1 and workers["data"][0]["device"] == "cpu (test)"
    assert workers["data"][0]["online"] is False            # no such worker answers a ping
    create(api)
    queue = api.get("/api/v1/queue").json()
    assert queue["studies"] == {"queued": 1} and queue["broker"]["pending_messages"] == 1


def test_unknown_route_and_method_are_problems(api):
    assert "Nothing is served" in assert_problem(api.get("/api/v1/nothing"), 404)["detail"]
    assert_problem(api.put("/api/v1/studies"), 405)


@pytest.mark.parametrize("study_id", ["abc", "-1"])
def test_bad_ids(api, study_id):
    response = api.get(f"/api/v1/studies/{study_id}")
    assert response.status_code in (404, 422)
    assert response.headers["content-type"].startswith(PROBLEM)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(settings):
    from sqlalchemy import text

    from backend.db import read_session

    if not settings.sqlalchemy_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    with read_session(settings) as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.scalars(select(Study)).all() is not None


def test_the_dashboard_is_served_at_root_beside_the_api(api):
    root = api.get("/", follow_redirects=False)
    if api.app.state.dashboard:
        assert root.status_code == 200 and "text/html" in root.headers["content-type"]
    else:
        assert root.status_code in (302, 307) and root.headers["location"] == "/docs"
    assert api.get("/api/v1/health").json()["status"] == "ok"     # the API keeps its paths
    assert api.get("/docs").status_code == 200
