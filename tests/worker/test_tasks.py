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

#: real studies through the tasks on a real broker: the slow tier, not the fast one
pytestmark = pytest.mark.slow


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
    """The chunk goes back to pending and its message is sent again (no Celery retry: that
    needs the broker and turns into Reject(OperationalError) when it is down)."""
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 17}))
    tasks.start_study(sid)
    before = broker_status(wsettings)["pending_messages"]
    tasks.shutting_down.set()            # what Celery's worker_shutting_down signal does
    try:
        assert tasks.retrain_chunk(sid, 0)["outcome"] == "requeued"
    finally:
        tasks.shutting_down.clear()
    study = get(wsettings, sid)
    assert study.state == "running" and study.stage.startswith("interrupted")
    assert study.chunks[0].state == "pending" and study.chunks[0].worker is None
    assert study.chunks[0].sent_at is not None                       # sent again
    assert broker_status(wsettings)["pending_messages"] == before + 1


def test_the_work_of_a_lost_worker_goes_back_on_the_queue(wsettings, monkeypatch):
    """A worker silent for lost_after_s is marked lost by a live one, which re-sends its
    running chunk and the finalize it was running; the live workers' own work is untouched,
    and a second reap (or a second reaper) re-sends nothing."""
    from datetime import timedelta

    from backend.models import Worker, utcnow
    from worker import tasks

    monkeypatch.setattr(wsettings, "lost_after_s", 60.0)
    chunked = add_study(wsettings, tiny(training={"seed": 31}))
    tasks.start_study(chunked)                               # 2 chunks queued
    finalizing = add_study(wsettings, tiny(training={"seed": 32}), state="running")
    long_ago, now = utcnow() - timedelta(seconds=600), utcnow()
    with write_session(wsettings) as session:
        session.add_all([Worker(hostname="gone@x", device="cpu", pid=1, state="online",
                                last_seen=long_ago),
                         Worker(hostname="alive@x", device="cpu", pid=2, state="online",
                                last_seen=now)])
        chunks = session.query(StudyChunk).filter_by(study_id=chunked).order_by(
            StudyChunk.index).all()
        chunks[0].state, chunks[0].worker, chunks[0].progress = "running", "gone@x", 0.4
        chunks[1].state, chunks[1].worker = "running", "alive@x"
        study = session.get(Study, finalizing)
        study.worker, study.finalize_enqueued = "gone@x", True
    before = broker_status(wsettings)["pending_messages"]
    reaped = tasks.reap_lost_workers()
    assert reaped == {"gone@x": {"chunks": [(chunked, 0)], "finalize": [finalizing]}}
    assert broker_status(wsettings)["pending_messages"] == before + 2
    study = get(wsettings, chunked)
    assert (study.chunks[0].state, study.chunks[0].worker, study.chunks[0].progress) == (
        "pending", None, 0.0)
    assert (study.chunks[1].state, study.chunks[1].worker) == ("running", "alive@x")
    assert get(wsettings, finalizing).stage.startswith("re-queued: worker gone@x silent")
    with read_session(wsettings) as session:
        assert session.get(Worker, "gone@x").state == "lost"
        assert session.get(Worker, "alive@x").state == "online"
    assert tasks.reap_lost_workers() == {}
    assert broker_status(wsettings)["pending_messages"] == before + 2


def test_a_restarted_worker_takes_back_what_its_previous_run_left_running(wsettings):
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 33}))
    tasks.start_study(sid)
    with write_session(wsettings) as session:
        chunk = session.query(StudyChunk).filter_by(study_id=sid, index=1).one()
        chunk.state, chunk.worker = "running", "w1@host"              # then: kill -9
    assert tasks.requeue_work_of("w1@host", "worker w1@host restarted") == {
        "chunks": [(sid, 1)], "finalize": []}
    assert get(wsettings, sid).chunks[1].state == "pending"
    tasks.retrain_chunk(sid, 1)                                       # the re-sent task
    assert get(wsettings, sid).chunks[1].state == "done"


def test_the_heartbeat_writes_last_seen(wsettings, monkeypatch):
    from backend.models import Worker
    from worker import tasks

    monkeypatch.setattr(wsettings, "heartbeat_s", 0.05)
    with write_session(wsettings) as session:
        session.add(Worker(hostname="beat@x", device="cpu", pid=3, state="online"))
    with read_session(wsettings) as session:
        first = session.get(Worker, "beat@x").last_seen
    beat = tasks.Heartbeat("beat@x")
    beat.start()
    try:
        import time

        deadline = time.monotonic() + 10
        while True:
            with read_session(wsettings) as session:
                if session.get(Worker, "beat@x").last_seen > first:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        beat.stopped.set()
        beat.join(5)
    assert not beat.is_alive()


def test_a_shutdown_noticed_after_the_chunk_is_done_does_not_fail_the_study(wsettings,
                                                                          monkeypatch):
    """The shutdown signal lands between the chunk's last step and its final progress report:
    the chunk stays done, the study running, the finalize owed and sent, no error."""
    from backend import crud
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 18}, groundtruth={
        "n_subsets": 3, "subsets_per_task": 3}))
    tasks.start_study(sid)
    original = crud.chunk_done

    def then_shutdown(*args, **kwargs):
        won = original(*args, **kwargs)
        tasks.shutting_down.set()          # SIGTERM right now
        return won

    monkeypatch.setattr(crud, "chunk_done", then_shutdown)
    try:
        assert tasks.retrain_chunk(sid, 0)["outcome"] == "done"
    finally:
        tasks.shutting_down.clear()
    study = get(wsettings, sid)
    assert study.state == "running" and study.error is None
    assert study.chunks[0].state == "done" and study.finalize_enqueued
    assert study.finalize_sent_at is not None


def test_a_broker_that_is_down_leaves_the_work_owed_not_failed(wsettings, monkeypatch):
    """start_study and a chunk with the broker gone: no Reject, no failure; the messages stay
    owed and the sweeper sends them once the broker answers."""
    from backend import outbox
    from worker import tasks

    sid = add_study(wsettings, tiny(training={"seed": 19}))
    alive = wsettings
    dead = wsettings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    monkeypatch.setattr(tasks, "settings", dead)
    assert tasks.start_study(sid)["outcome"] == "started"         # chunks owed, not sent
    assert tasks.retrain_chunk(sid, 0)["outcome"] == "done"
    assert tasks.retrain_chunk(sid, 1)["outcome"] == "done"       # the finalize is owed
    study = get(wsettings, sid)
    assert study.state == "running" and study.error is None
    assert study.finalize_enqueued and study.finalize_sent_at is None
    assert broker_status(alive)["pending_messages"] == 0
    sent = outbox.sweep(alive.model_copy(update={"outbox_grace_s": 0}))
    assert sent.finalize == [sid]
    assert broker_status(alive)["pending_messages"] == 1 + 0      # chunks done: not re-sent
    monkeypatch.setattr(tasks, "settings", alive)
    assert tasks.finalize_study(sid)["outcome"] == "succeeded"
