"""The API's time estimate (``backend.estimate.timed``): seconds per stage from
``curvscope.cost`` at the workers' probed rates, corrected by this service's finished
studies, for a study (POST /studies/validate, POST /studies) and a sweep (POST
/sweeps/validate, POST /sweeps); real database and broker (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from backend.queue import broker_status
from curvscope import cost
from curvscope.spec import resolve_spec

KERNEL_RATES = [k for k in cost.KERNELS if k != "fixed"]


@pytest.fixture
def probe_file(settings):
    """A worker's calibration file: every kernel at a quarter of the reference rates."""
    folder = cost.calibration_dir(settings.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "worker1@test.json"
    rates = {k: cost.DEFAULT_RATES[k] / 4 for k in KERNEL_RATES}
    path.write_text(json.dumps({"host": "worker1@test", "threads": 2,
                                "measured_at": "2026-12-01T12:00:00+00:00", "rates": rates}))
    yield rates
    path.unlink()


def validate(api, body):
    response = api.post("/api/v1/studies/validate", json=body)
    assert response.status_code == 200, response.text
    return response.json()["estimate"]


def test_validate_gives_seconds_per_stage_and_says_how(api):
    estimate = validate(api, {"preset": "quick"})
    spec = resolve_spec(None, "quick")
    assert list(estimate["stage_seconds"]) == cost.stage_plan(spec)
    assert estimate["seconds"] == pytest.approx(sum(estimate["stage_seconds"].values()),
                                                rel=1e-3)
    assert estimate["peak_memory_bytes"] > estimate["dense_memory_bytes"] > 0
    assert "reference machine" in estimate["time_basis"]
    # the closed-form sizes are still there, unchanged
    assert estimate["n_params"] == 1482 and estimate["n_retrained_models"] == 500
    assert estimate["history_studies"] == 0


def test_a_workers_probe_sets_the_rates(api, probe_file):
    estimate = validate(api, {"preset": "quick"})
    budget = estimate["memory_budget_bytes"]
    spec = resolve_spec(None, "quick")
    reference = cost.estimate_time(spec, memory_budget_bytes=budget)
    assert "calibration probe (worker1@test, 2 threads, 2026-12-01)" in estimate["time_basis"]
    assert estimate["calibration"]["host"] == "worker1@test"
    assert estimate["seconds"] == pytest.approx(cost.estimate_time(
        spec, probe_file, memory_budget_bytes=budget)["seconds"], rel=1e-6)
    # a quarter of every rate: four times the time, less the stages' small fixed parts
    assert 3.8 * reference["seconds"] < estimate["seconds"] <= 4 * reference["seconds"]


def test_finished_studies_correct_each_stage(api, settings, probe_file):
    """Two succeeded studies whose training took 3× and 5× what the probe predicts, and whose
    retraining chunks ran 2× longer (the finalize step only read them from the cache): the
    next estimate's training is 4× (median), its retraining 2×, the rest unchanged."""
    from backend.db import write_session
    from backend.models import Study, StudyChunk

    spec = resolve_spec(None, "quick")
    predicted = cost.predict_stages(spec, probe_file,
                                    memory_budget_bytes=validate(api, {"preset": "quick"})
                                    ["memory_budget_bytes"])
    before = validate(api, {"preset": "quick"})
    ids = [api.post("/api/v1/studies", json={"preset": "quick", "training": {"seed": seed}})
           .json()["id"] for seed in (1, 2)]
    with write_session(settings) as session:
        for sid, factor, seed in ((ids[0], 3.0, 1), (ids[1], 5.0, 2)):
            study = session.get(Study, sid)
            timings = {stage: seconds for stage, seconds in predicted.items()}
            timings["train"] = factor * predicted["train"]
            timings["groundtruth/0.5"] = 0.001  # read from the cache
            study.state, study.timings = "succeeded", timings
            study.started_at = study.created_at
            study.finished_at = study.created_at + timedelta(seconds=60 + seed)
            session.add(StudyChunk(study_id=study.id, index=0, alpha=0.5, subset_start=0,
                                   subset_stop=100, state="done", started_at=study.created_at,
                                   finished_at=study.created_at + timedelta(
                                       seconds=2 * predicted["groundtruth/0.5"])))
    after = validate(api, {"preset": "quick", "training": {"seed": 3}})
    assert after["history_studies"] == 2
    assert after["time_basis"].startswith("from 2 finished studies on this service")
    assert after["stage_seconds"]["train"] == pytest.approx(
        4 * before["stage_seconds"]["train"], rel=0.01)
    assert after["stage_seconds"]["groundtruth/0.5"] == pytest.approx(
        2 * before["stage_seconds"]["groundtruth/0.5"], rel=0.01)
    assert after["stage_seconds"]["curvature/H"] == pytest.approx(
        before["stage_seconds"]["curvature/H"], rel=0.01)
    # a submitted study keeps the estimate it was given
    created = api.post("/api/v1/studies", json={"preset": "quick",
                                                "training": {"seed": 4}}).json()
    detail = api.get(f"/api/v1/studies/{created['id']}").json()
    assert detail["estimate"]["seconds"] == pytest.approx(after["seconds"], rel=1e-6)


def test_a_training_time_sweep_is_estimated_with_its_shared_stages(api, settings):
    """evaluate_at_epoch 10 and 20 of the quick preset share the trained model and the
    retraining: the sweep costs less than two studies; validating stores nothing."""
    body = {"base": {"preset": "quick"}, "grid": {"training.evaluate_at_epoch": [10, 20]}}
    response = api.post("/api/v1/sweeps/validate", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["valid"] and answer["count"] == 2 and api.get(
        "/api/v1/studies").json()["count"] == 0
    assert broker_status(settings)["pending_messages"] == 0
    first, second = answer["points"]
    assert first["cached_stages"] == [] and set(second["cached_stages"]) == {
        "train", "groundtruth/0.5"}
    single = validate(api, {"preset": "quick", "training": {"evaluate_at_epoch": 20}})
    shared = single["stage_seconds"]["train"] + single["stage_seconds"]["groundtruth/0.5"]
    assert answer["estimate"]["seconds"] == pytest.approx(
        first["seconds"] + single["seconds"] - shared, rel=0.01)
    created = api.post("/api/v1/sweeps", json=body)
    assert created.status_code == 202, created.text
    assert created.json()["estimate"]["seconds"] == pytest.approx(
        answer["estimate"]["seconds"], rel=1e-6)
    again = api.post("/api/v1/sweeps/validate", json=body).json()
    assert again["estimate"]["seconds"] == 0.0  # both points exist: reused
    assert [p["existing_study_id"] for p in again["points"]] == [
        p["study"]["id"] for p in created.json()["points"]]
    bad = api.post("/api/v1/sweeps/validate", json={"base": {"preset": "quick"}, "grid": {
        "training.evaluate_at_epoch": [15]}})
    assert bad.status_code == 422 and "point 0" in bad.text
