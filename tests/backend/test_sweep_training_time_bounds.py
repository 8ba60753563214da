"""A training-time sweep over a point the base model never reaches: POST /sweeps answers 422
naming the point and the field, and stores nothing (issue 11's bad-input list)."""

from __future__ import annotations

from tests.backend.servers import tiny
from tests.backend.test_api import assert_problem


def test_a_training_time_point_beyond_the_trained_epochs_names_itself(api):
    base = tiny(training={"epochs": 3, "checkpoints": [1, 2]})
    body = assert_problem(api.post("/api/v1/sweeps", json={
        "base": base, "grid": {"training.evaluate_at_epoch": [1, 3, 5]}}), 422)
    [error] = body["errors"]
    assert error["field"].startswith("point 2 (training.evaluate_at_epoch=5)")
    assert "beyond the trained epochs (3)" in error["message"]
    assert "1, 2, 3" in error["message"]                 # what is allowed
    assert api.get("/api/v1/studies").json()["count"] == 0
    assert api.get("/api/v1/sweeps").json()["count"] == 0


def test_a_training_time_point_between_checkpoints_says_it_is_not_one(api):
    base = tiny(training={"epochs": 4, "checkpoints": [2]})
    body = assert_problem(api.post("/api/v1/sweeps", json={
        "base": base, "grid": {"training.evaluate_at_epoch": [2, 3]}}), 422)
    assert body["errors"][0]["field"].startswith("point 1 (training.evaluate_at_epoch=3)")
    assert "not a checkpoint epoch" in body["errors"][0]["message"]
    assert api.get("/api/v1/studies").json()["count"] == 0
