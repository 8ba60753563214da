"""The worker's tasks, called in-process on a real database and broker: the workflow
start → chunks → finalize, progress and cooperative cancel through the study row,
finalize enqueued exactly once, failures recorded with their reason, Celery settings."""

from __future__ import annotations

import json

import pytest

from backend.db import read_session, write_session
from backend.models import Study, StudyChunk
from backend.queue import TASK_CHUNK, TASK_FINALIZE, TASK_START, broker_status
from tests.backend.servers import tiny


def add_study(settings, config: dict, state: str = "queued") -> int:
    from curvscope.spec import resolve_spec

    spec = resolve_spec(config)
    with write_session(settings) as session:
        study = Study(state=state, spec=spec.model_dump(mode="json"), request=config,
                      spec_hash=spec.spec_hash(), name=spec.name)
        session.add(study)
        session.flush()
        return study.id


def get(settings, study_id: int) -> Study:
    with read_session(settings) as session:
        study = session.get(Study, study_id)
        study.chunks  # noqa: B018  (load while the session is open)
        return study


def test_celery_is_configured_for_long_gpu_jobs():
    from worker import tasks
    from worker.celery_app import app, settings

    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_s
    assert settings.visibility_timeout_s >= 3600 and conf.result_expires
    assert {TASK_START, TASK_CHUNK, TASK_FINALIZE} <= set(app.tasks)
    for name in (TASK_START, TASK_CHUNK, TASK_FINALIZE):
        task = app.tasks[name]
        assert task.acks_late and task.max_retries >= 1 and task.retry_backoff
        assert set(tasks.RETRYABLE) <= set(task.autoretry_for)


def test_device_choice_is_applied_before_torch(monkeypatch):
    from worker.celery_app import apply_device_choice

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    apply_device_choice("cpu")
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    apply_device_choice("cuda:1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_whole_workflow_in_process(wsettings, monkeypatch):
    from worker import tasks

    seen: list[str] = []
    original = tasks.Reporter.__call__

    def recording(self, stage, fraction):
        seen.append(stage)
        return original(self, stage, fraction)

    monkeypatch.setattr(tasks.Reporter, "__call__", recording)
    sid = add_study(wsettings, tiny(training={"seed": 11}))
    assert tasks.start_study(sid)["chunks"] == 2
    study = get(wsettings, sid)
    assert study.state == "running" and [c.state for c in study.chunks] == ["pending"] * 2
    assert broker_status(wsettings)["pending_messages"] == 2      # two chunk messages
    assert tasks.retrain_chunk(sid, 0)["outcome"] == "done"
    assert get(wsettings, sid).finalize_enqueued is False         # one chunk still pending
    assert tasks.retrain_chunk(sid, 1)["outcome"] == "done"
    assert get(wsettings, sid).finalize_enqueued is True
    assert broker_status(wsettings)["pending_messages"] == 3      # + the finalize message
    assert tasks.finalize_study(sid)["outcome"] == "succeeded"
    study = get(wsettings, sid)
    assert study.state == "succeeded" and study.progress == 1.0 and study.device
    assert all(c.state == "done" and c.device for c in study.chunks)
    assert set(study.summary["methods"]) == {"EK-FAC", "K-FAC", "identity"}
    results = json.loads((wsettings.studies_dir / str(sid) / "results.json").read_text())
    assert results["cache"]["groundtruth/0.5/0-3"] == "reused"    # the chunks' work reused
    assert results["cache"]["groundtruth/0.5/3-6"] == "reused"
    assert results["device"] == study.device
    run_stages = [s for s in dict.fromkeys(seen) if s != "groundtruth/retrain"]
    assert run_stages == tasks.stage_plan(tasks._load_spec(study))  # progress plan is exact


def test_maybe_finalize_enqueues_exactly_once(wsettings):
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 12}), state="running")
    with write_session(wsettings) as session:
        for index, state in enumerate(["done", "pending"]):
            session.add(StudyChunk(study_id=sid, index=index, alpha=0.5, subset_start=index,
                                   subset_stop=index + 1, state=state))
    assert tasks.maybe_finalize(sid) is False
    with write_session(wsettings) as session:
        session.query(StudyChunk).filter_by(study_id=sid).update({"state": "done"})
    assert [tasks.maybe_finalize(sid) for _ in range(3)] == [True, False, False]
    assert broker_status(wsettings)["pending_messages"] == 1


def test_reporter_writes_progress_and_stops_on_cancel(wsettings):
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 13}), state="running")
    spec = tasks._load_spec(get(wsettings, sid))
    report = tasks.Reporter(sid, stages=tasks.stage_plan(spec), span=(0.5, 1.0))
    report("train", 0.5)
    study = get(wsettings, sid)
    assert study.stage == "train" and study.stage_progress == 0.5
    assert 0.5 < study.progress < 1.0
    with write_session(wsettings) as session:
        session.get(Study, sid).cancel_requested = True
    with pytest.raises(tasks.StudyStopped) as stopped:
        report("gradients", 0.0)
    assert stopped.value.cancelled


def test_cancel_before_start_and_during_a_chunk(wsettings):
    from worker import tasks

    queued = add_study(wsettings, tiny(training={"seed": 14}))
    with write_session(wsettings) as session:
        session.get(Study, queued).cancel_requested = True
    assert tasks.start_study(queued)["outcome"] == "cancelled"
    assert get(wsettings, queued).state == "cancelled"

    sid = add_study(wsettings, tiny(training={"seed": 15, "epochs": 40},
                                    groundtruth={"n_subsets": 30, "subsets_per_task": 30}))
    tasks.start_study(sid)
    calls = {"n": 0}
    original = tasks.Reporter.__call__

    def cancel_midway(self, stage, fraction):
        calls["n"] += 1
        if calls["n"] == 3:
            with write_session(wsettings) as session:
                session.get(Study, sid).cancel_requested = True
        return original(self, stage, fraction)

    tasks.Reporter.__call__ = cancel_midway
    try:
        assert tasks.retrain_chunk(sid, 0)["outcome"] == "cancelled"
    finally:
        tasks.Reporter.__call__ = original
    study = get(wsettings, sid)
    assert study.state == "cancelled" and study.chunks[0].state == "cancelled"
    assert tasks.finalize_study(sid)["outcome"] == "skipped"


def test_a_failing_study_records_its_reason(wsettings):
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 16}))
    with write_session(wsettings) as session:   # its data file vanished after submission
        study = session.get(Study, sid)
        study.spec = dict(study.spec, data=dict(study.spec["data"], name="file",
                                                path=str(wsettings.data_dir / "gone.csv")))
    tasks.start_study(sid)
    assert tasks.retrain_chunk(sid, 0)["outcome"] == "failed"
    study = get(wsettings, sid)
    assert study.state == "failed" and study.error_type == "DataValidationError"
    assert "gone.csv" in study.error and "no such file" in study.error
    assert study.chunks[0].state == "failed"
    assert tasks.retrain_chunk(sid, 1)["outcome"] == "skipped"   # the rest stops early


def test_a_warm_shutdown_puts_the_running_chunk_back(wsettings):
    from celery.exceptions import Retry

    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 17}))
    tasks.start_study(sid)
    tasks.shutting_down.set()            # what Celery's worker_shutting_down signal does
    try:
        with pytest.raises(Retry):       # called directly, retry() raises instead of sending
            tasks.retrain_chunk(sid, 0)
    finally:
        tasks.shutting_down.clear()
    study = get(wsettings, sid)
    assert study.state == "running" and study.stage.startswith("interrupted")
    assert study.chunks[0].state == "pending" and study.chunks[0].worker is None
