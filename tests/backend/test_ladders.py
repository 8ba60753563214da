"""POST/GET /api/v1/ladders on a real database and broker (no worker: studies stay queued)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

LADDER = {"base": {"preset": "quick"}, "rungs": ["blocks", "schedule"], "path": "both"}


@pytest.fixture
def ladders(api, settings):
    from backend.db import write_session
    from backend.groups import StudyGroup

    with write_session(settings) as session:
        session.execute(delete(StudyGroup))
    return api


def test_a_ladder_queues_one_study_per_rung_and_shares_identical_ones(ladders):
    reply = ladders.post("/api/v1/ladders", json=LADDER)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert reply.headers["Location"] == f"/api/v1/ladders/{body['id']}"
    assert [r["label"] for r in body["rungs"]] == ["base", "blocks", "schedule",
                                                    "blocks +schedule"]
    assert [r["path"] for r in body["rungs"]] == ["base", "each", "each", "cumulative"]
    assert body["rungs"][3]["switched"] == ["blocks", "schedule"]
    specs = [r["study"] for r in body["rungs"]]
    assert len({s["spec_hash"] for s in specs}) == 4
    assert all(s["state"] == "queued" for s in specs)
    assert all(r["reused"] is False for r in body["rungs"])
    assert body["state"] == "queued" and body["links"]["page"] == f"/ladder/{body['id']}"
    blocks = ladders.get(f"/api/v1/studies/{specs[1]['id']}").json()
    assert blocks["spec"]["curvature"]["block_structure"] == "tensor"
    assert blocks["spec"]["training"]["schedule"] == "constant"

    # the same ladder again: a new ladder whose rungs are the same (queued) studies
    again = ladders.post("/api/v1/ladders", json=LADDER).json()
    assert again["id"] != body["id"]
    assert [r["study"]["id"] for r in again["rungs"]] == [s["id"] for s in specs]
    assert all(r["reused"] for r in again["rungs"])

    listed = ladders.get("/api/v1/ladders").json()
    assert listed["count"] == 2 and listed["data"][0]["id"] == again["id"]
    one = ladders.get(f"/api/v1/ladders/{body['id']}").json()
    assert [r["study"]["id"] for r in one["rungs"]] == [s["id"] for s in specs]
    summary = ladders.get(f"/api/v1/ladders/{body['id']}/summary").json()
    assert summary["finished"] is False
    assert [r["study_id"] for r in summary["rungs"]] == [s["id"] for s in specs]


@pytest.mark.parametrize("body, field, text", [
    ({"rungs": ["split", "warp"]}, "rungs", "unknown ladder rung 'warp'; allowed: split"),
    ({"path": "up"}, "path", "'each', 'cumulative' or 'both'"),
    ({"base": {"preset": "quick"}, "surprise": 1}, "surprise", "Extra inputs"),
    ({"base": {"preset": "quick", "training": {"epochs": -3}}, "rungs": ["blocks"]},
     "rung base: training.epochs", "greater than or equal to 1"),
])
def test_a_bad_ladder_is_a_422_naming_the_field_and_stores_nothing(ladders, body, field, text):
    reply = ladders.post("/api/v1/ladders", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert any(e["field"].startswith(field) and text in e["message"] for e in problem["errors"]), \
        problem
    assert ladders.get("/api/v1/ladders").json()["count"] == 0
    assert ladders.get("/api/v1/studies").json()["count"] == 0


def test_unknown_and_out_of_range_ladder_ids(ladders):
    assert ladders.get("/api/v1/ladders/999").status_code == 404
    assert ladders.get("/api/v1/ladders/999/summary").status_code == 404
    assert ladders.get(f"/api/v1/ladders/{2**63}").status_code == 422


def test_writing_a_ladder_needs_the_token(ladders):
    reply = ladders.post("/api/v1/ladders", json=LADDER, headers={"Authorization": ""})
    assert reply.status_code == 401


def test_a_fisher_type_for_a_method_without_one_is_a_422_naming_the_key(ladders):
    reply = ladders.post("/api/v1/studies/validate", json={
        "preset": "quick", "curvature": {"fisher_types": {"GGN": "mc"}}})
    assert reply.status_code == 422, reply.text
    errors = reply.json()["errors"]
    assert any(e["field"].startswith("curvature.fisher_types") and "'GGN'" in e["message"]
               and "K-FAC" in e["message"] and "EK-FAC" in e["message"] for e in errors), errors
