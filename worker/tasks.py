"""Thin tasks: a study runs as start → retraining chunks (any worker) → finalize.

``start_study`` plans the retraining with ``curvscope.study.plan_retraining``, stores one
``StudyChunk`` row per task and enqueues them; each ``retrain_chunk`` runs
``run_retraining_task`` into the shared stage cache and records its worker and device; the
chunk that completes the set enqueues ``finalize_study`` exactly once (a conditional UPDATE on
the study row: the database, not a Celery chord, is the source of truth), which runs
``run_study`` — reusing every cached chunk — and writes results.json and arrays.npz.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

from celery import Task, signals
from celery.exceptions import Retry
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import OperationalError as DBOperationalError

from backend import artifacts
from backend.db import read_session, write_session
from backend.models import Study, StudyChunk, Worker, utcnow
from backend.queue import TASK_CHUNK, TASK_FINALIZE, TASK_START
from worker.celery_app import app, settings

log = logging.getLogger("curvscope.worker")

#: Transient failures worth a retry with backoff; everything else fails the study at once.
RETRYABLE = (DBOperationalError, RedisConnectionError, RedisTimeoutError, KombuOperationalError)
#: Share of the overall progress taken by the retraining chunks (when the study has any).
RETRAIN_SHARE = 0.7

_device: str | None = None


def worker_device() -> str:
    """This worker's device, as curvscope describes it (e.g. 'cpu (x86_64, 2 threads)')."""
    global _device
    if _device is None:
        import torch

        from curvscope.study import describe_device, resolve_device

        if settings.worker_torch_threads:
            torch.set_num_threads(settings.worker_torch_threads)
        if settings.worker_device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"worker_device={settings.worker_device} but torch sees no "
                               "CUDA device")
        _device = describe_device(resolve_device("auto"))
    return _device


class StudyStopped(Exception):
    """Raised from a progress callback: the study was cancelled, or failed elsewhere."""

    def __init__(self, cancelled: bool):
        super().__init__("cancelled" if cancelled else "stopped")
        self.cancelled = cancelled


class WorkerShuttingDown(Exception):
    """Raised from a progress callback once this worker begins a warm shutdown: the task puts
    itself back on the queue (a retry, persisted by Redis) and returns, so the worker stops
    within a progress interval and the next worker resumes from the stage cache."""


#: Set by Celery's worker_shutting_down signal (SIGTERM / Ctrl-C of ``curvscope up``).
shutting_down = threading.Event()


@signals.worker_shutting_down.connect
def _on_shutting_down(**_):
    shutting_down.set()


class Reporter:
    """Progress callback for curvscope: writes stage and progress to the study (and chunk)
    row at most every Settings.progress_interval_s, and on each new stage; at each write it
    reads the cancel flag and raises :class:`StudyStopped` to stop the work cooperatively."""

    def __init__(self, study_id: int, chunk_index: int | None = None,
                 stages: list[str] | None = None, span: tuple[float, float] = (0.0, 1.0)):
        self.study_id, self.chunk_index = study_id, chunk_index
        self.stages, self.span = stages or [], span
        self.last_write, self.last_stage, self.position = 0.0, None, 0

    def chunk(self, fraction: float) -> None:
        self("groundtruth/retrain", fraction)

    def __call__(self, stage: str, fraction: float) -> None:
        if shutting_down.is_set():
            raise WorkerShuttingDown()
        now = time.monotonic()
        if (stage == self.last_stage and fraction < 1.0
                and now - self.last_write < settings.progress_interval_s):
            return
        self.last_write, self.last_stage = now, stage
        with write_session(settings) as session:
            study = session.get(Study, self.study_id)
            if study is None or study.state != "running" or study.cancel_requested:
                raise StudyStopped(cancelled=study is None or study.cancel_requested)
            if self.chunk_index is not None:
                session.execute(update(StudyChunk).where(
                    StudyChunk.study_id == self.study_id, StudyChunk.index == self.chunk_index)
                    .values(progress=fraction))
                mean = session.scalar(select(func.avg(StudyChunk.progress)).where(
                    StudyChunk.study_id == self.study_id)) or 0.0
                study.stage, study.stage_progress = "groundtruth/retrain", float(mean)
                study.progress = self.span[0] + (self.span[1] - self.span[0]) * float(mean)
            else:
                if stage in self.stages:
                    self.position = self.stages.index(stage)
                overall = (self.position + fraction) / max(len(self.stages), 1)
                study.stage, study.stage_progress = stage, fraction
                study.progress = max(study.progress, self.span[0] + (
                    self.span[1] - self.span[0]) * min(overall, 1.0))


def stage_plan(spec) -> list[str]:
    """The stages run_study reports, in order (for the overall progress fraction)."""
    from curvscope.study import stage_plan as plan

    return plan(spec)


def _fail(study_id: int, exc: BaseException, *, only_if_running: bool = True) -> None:
    message = str(exc) or type(exc).__name__
    with write_session(settings) as session:
        study = session.get(Study, study_id)
        if study is None or study.state in ("succeeded", "failed", "cancelled"):
            return
        if only_if_running and study.state not in ("running", "queued"):
            return
        study.state, study.finished_at = "failed", utcnow()
        study.error, study.error_type = message, type(exc).__name__


def _cancelled(study_id: int) -> None:
    with write_session(settings) as session:
        study = session.get(Study, study_id)
        if study is not None and study.state in ("queued", "running"):
            study.state, study.finished_at = "cancelled", utcnow()


def _load_spec(study: Study):
    from curvscope.spec import StudySpec

    return StudySpec.model_validate(study.spec)


class StudyTask(Task):
    """Base of the study tasks: retry transient errors with backoff; when a task finally
    fails anyway, the study is marked failed with the reason (never left 'running')."""

    autoretry_for = RETRYABLE
    retry_backoff = 2
    retry_backoff_max = settings.retry_backoff_max_s
    retry_jitter = True
    max_retries = settings.task_max_retries
    acks_late = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if args:
            try:
                _fail(int(args[0]), RuntimeError(
                    f"{self.name} gave up after {self.request.retries} retries: "
                    f"{type(exc).__name__}: {exc}"))
            except Exception:  # the database itself is gone: nothing more to do
                log.exception("could not mark study %s failed", args[0])


def _guard(study_id: int, work) -> dict[str, Any]:
    """Run ``work``; map expected outcomes to study states, let transient errors retry."""
    try:
        return work()
    except StudyStopped as stop:
        if stop.cancelled:
            _cancelled(study_id)
        return {"study": study_id, "outcome": "cancelled" if stop.cancelled else "stopped"}
    except (Retry, *RETRYABLE):
        raise
    except Exception as exc:  # a bad spec/data, a diverged training, a bug: fail with reason
        log.error("study %s failed:\n%s", study_id, traceback.format_exc())
        _fail(study_id, exc)
        return {"study": study_id, "outcome": "failed", "error": str(exc)}


@app.task(name=TASK_START, bind=True, base=StudyTask)
def start_study(self, study_id: int) -> dict[str, Any]:
    """Plan the study's retraining chunks and enqueue them (or finalize when none)."""

    def work():
        from curvscope.study import plan_retraining

        with write_session(settings) as session:
            study = session.get(Study, study_id)
            if study is None or study.state not in ("queued", "running"):
                return {"study": study_id, "outcome": "skipped"}
            if study.cancel_requested:
                study.state, study.finished_at = "cancelled", utcnow()
                return {"study": study_id, "outcome": "cancelled"}
            spec = _load_spec(study)
            if not study.chunks:
                for index, task in enumerate(plan_retraining(spec)):
                    session.add(StudyChunk(study_id=study_id, index=index, alpha=task.alpha,
                                           subset_start=task.subset_start,
                                           subset_stop=task.subset_stop))
                session.flush()
                session.refresh(study)
            study.state = "running"
            study.started_at = study.started_at or utcnow()
            study.stage, study.stage_progress = "queued for workers", 0.0
            todo = [c.index for c in study.chunks if c.state != "done"]
        for index in todo:
            retrain_chunk.apply_async((study_id, index), queue=settings.queue_name)
        if not todo:
            maybe_finalize(study_id)
        return {"study": study_id, "outcome": "started", "chunks": len(todo)}

    return _guard(study_id, work)


def maybe_finalize(study_id: int) -> bool:
    """Enqueue the finalize task once every chunk is done — exactly once, by a conditional
    UPDATE that only one concurrent caller can win."""
    with write_session(settings) as session:
        pending = exists().where(StudyChunk.study_id == study_id, StudyChunk.state != "done")
        won = session.execute(
            update(Study).where(Study.id == study_id, Study.state == "running",
                                Study.finalize_enqueued.is_(False), ~pending)
            .values(finalize_enqueued=True)).rowcount == 1
    if won:
        finalize_study.apply_async((study_id,), queue=settings.queue_name)
    return won


@app.task(name=TASK_CHUNK, bind=True, base=StudyTask)
def retrain_chunk(self, study_id: int, index: int) -> dict[str, Any]:
    """Run one retraining chunk into the shared stage cache."""
    hostname = self.request.hostname or "unknown"

    def work():
        from curvscope.study import RetrainTask, run_retraining_task

        device = worker_device()
        with write_session(settings) as session:
            study = session.get(Study, study_id)
            chunk = session.scalars(select(StudyChunk).where(
                StudyChunk.study_id == study_id, StudyChunk.index == index)).first()
            if study is None or chunk is None:
                return {"study": study_id, "outcome": "skipped"}
            if study.state != "running" or study.cancel_requested:
                if chunk.state != "done":
                    chunk.state = "cancelled"
                if study.cancel_requested and study.state == "running":
                    study.state, study.finished_at = "cancelled", utcnow()
                return {"study": study_id, "outcome": "skipped"}
            if chunk.state == "done":
                done_already = True
            else:
                done_already = False
                chunk.state, chunk.worker, chunk.device = "running", hostname, device
                chunk.started_at, chunk.progress, chunk.error = utcnow(), 0.0, None
            spec = _load_spec(study)
            task = RetrainTask(chunk.alpha, chunk.subset_start, chunk.subset_stop)
        if not done_already:
            reporter = Reporter(study_id, chunk_index=index, span=(0.0, RETRAIN_SHARE))
            try:
                run_retraining_task(spec, task, settings.stage_cache_dir,
                                    progress=reporter.chunk)
            except StudyStopped:
                _set_chunk(study_id, index, state="cancelled")
                raise
            except WorkerShuttingDown:
                _set_chunk(study_id, index, state="pending", worker=None, progress=0.0)
                _requeued(study_id)
                raise self.retry(countdown=0, max_retries=None) from None
            except RETRYABLE:
                _set_chunk(study_id, index, state="pending")
                raise
            except Exception as exc:
                _set_chunk(study_id, index, state="failed", error=str(exc))
                raise
            _set_chunk(study_id, index, state="done", progress=1.0, finished_at=utcnow())
            Reporter(study_id, chunk_index=index, span=(0.0, RETRAIN_SHARE)).chunk(1.0)
        maybe_finalize(study_id)
        return {"study": study_id, "chunk": index, "outcome": "done", "worker": hostname}

    return _guard(study_id, work)


def _requeued(study_id: int) -> None:
    log.warning("worker shutting down: study %s goes back on the queue", study_id)
    with write_session(settings) as session:
        study = session.get(Study, study_id)
        if study is not None and study.state == "running":
            study.stage = "interrupted: back on the queue"


def _set_chunk(study_id: int, index: int, **values) -> None:
    with write_session(settings) as session:
        session.execute(update(StudyChunk).where(StudyChunk.study_id == study_id,
                                                 StudyChunk.index == index).values(**values))


@app.task(name=TASK_FINALIZE, bind=True, base=StudyTask)
def finalize_study(self, study_id: int) -> dict[str, Any]:
    """Run the whole study (reusing the cached chunks) and store its results."""
    hostname = self.request.hostname or "unknown"

    def work():
        from curvscope.study import run_study

        device = worker_device()
        with write_session(settings) as session:
            study = session.get(Study, study_id)
            if study is None or study.state != "running":
                return {"study": study_id, "outcome": "skipped"}
            if study.cancel_requested:
                study.state, study.finished_at = "cancelled", utcnow()
                return {"study": study_id, "outcome": "cancelled"}
            spec = _load_spec(study)
            has_chunks = bool(study.chunks)
            study.worker, study.device = hostname, device
        span = (RETRAIN_SHARE, 1.0) if has_chunks else (0.0, 1.0)
        reporter = Reporter(study_id, stages=stage_plan(spec), span=span)
        try:
            result = run_study(spec, artifacts.study_dir(settings, study_id),
                               settings.stage_cache_dir, progress=reporter)
        except WorkerShuttingDown:
            _requeued(study_id)
            raise self.retry(countdown=0, max_retries=None) from None
        results = result.results
        with write_session(settings) as session:
            study = session.get(Study, study_id)
            if study is None:
                return {"study": study_id, "outcome": "deleted"}
            study.state, study.finished_at = "succeeded", utcnow()
            study.stage, study.stage_progress, study.progress = "done", 1.0, 1.0
            study.summary = artifacts.summarize(results)
            study.timings = results.get("timings")
            study.device = results.get("device", device)
        return {"study": study_id, "outcome": "succeeded", "worker": hostname}

    return _guard(study_id, work)


# --- the worker's own row: device, liveness; the work of lost workers -------------------

def requeue_work_of(hostname: str, why: str) -> dict[str, list]:
    """Put the work a worker was doing back on the queue: its running chunks (pending again,
    re-sent) and the finalize of a study it was running (re-sent). Each row is taken back by
    a conditional UPDATE, so two workers reaping the same loss re-send it once. The tasks are
    idempotent (a chunk already done is skipped; the stage cache keeps finished stages), so a
    late redelivery of the lost worker's own message does no harm."""
    with write_session(settings) as session:
        chunks = session.execute(
            update(StudyChunk).where(StudyChunk.worker == hostname,
                                     StudyChunk.state == "running")
            .values(state="pending", worker=None, progress=0.0)
            .returning(StudyChunk.study_id, StudyChunk.index)).all()
        finals = session.execute(
            update(Study).where(Study.worker == hostname, Study.state == "running",
                                Study.finalize_enqueued.is_(True))
            .values(worker=None, stage=f"re-queued: {why}")
            .returning(Study.id)).scalars().all()
    for study_id, index in chunks:
        retrain_chunk.apply_async((study_id, index), queue=settings.queue_name)
    for study_id in finals:
        finalize_study.apply_async((study_id,), queue=settings.queue_name)
    if chunks or finals:
        log.warning("%s: re-queued %d chunk(s) %s and the finalize of %s", why, len(chunks),
                    [tuple(c) for c in chunks], list(finals))
    return {"chunks": [tuple(c) for c in chunks], "finalize": list(finals)}


def reap_lost_workers() -> dict[str, dict]:
    """Workers that have not written for ``lost_after_s`` are lost: mark each (a conditional
    UPDATE: one reaper wins) and put its work back on the queue (:func:`requeue_work_of`).
    Run by every live worker's heartbeat thread."""
    cutoff = utcnow() - timedelta(seconds=settings.lost_after_s)
    with read_session(settings) as session:
        silent = session.scalars(select(Worker.hostname).where(
            Worker.state == "online", Worker.last_seen < cutoff)).all()
    reaped = {}
    for hostname in silent:
        with write_session(settings) as session:
            won = session.execute(update(Worker).where(
                Worker.hostname == hostname, Worker.state == "online",
                Worker.last_seen < cutoff).values(state="lost")).rowcount == 1
        if won:
            reaped[hostname] = requeue_work_of(
                hostname, f"worker {hostname} silent for over {settings.lost_after_s:g} s")
    return reaped


class Heartbeat(threading.Thread):
    """Beside the tasks: every ``heartbeat_s`` write this worker's ``last_seen`` (its tasks
    hold the main thread for minutes, so it cannot answer a ping), then reap lost workers."""

    def __init__(self, hostname: str):
        super().__init__(name=f"curvscope-heartbeat-{hostname}", daemon=True)
        self.hostname = hostname
        self.stopped = threading.Event()

    def beat(self) -> None:
        with write_session(settings) as session:
            session.execute(update(Worker).where(Worker.hostname == self.hostname)
                            .values(last_seen=utcnow(), state="online"))
        reap_lost_workers()

    def run(self) -> None:
        while not self.stopped.wait(settings.heartbeat_s):
            try:
                self.beat()
            except Exception:  # the database or broker is away for a moment: try again
                log.exception("heartbeat of %s failed", self.hostname)


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _worker_ready(sender=None, **_):
    import os

    global _heartbeat
    hostname = getattr(sender, "hostname", None) or "unknown"
    try:
        device = worker_device()
        # chunks still 'running' under this name are a previous run's of this worker, killed
        # before it could put them back (this one has not started a task yet)
        requeue_work_of(hostname, f"worker {hostname} restarted")
        with write_session(settings) as session:
            row = session.get(Worker, hostname) or Worker(hostname=hostname)
            row.device, row.pid, row.state = device, os.getpid(), "online"
            row.started_at = row.last_seen = utcnow()
            session.add(row)
        log.info("worker %s ready on %s", hostname, device)
        reap_lost_workers()
    except Exception:
        log.exception("could not record worker %s", hostname)
    _heartbeat = Heartbeat(hostname)
    _heartbeat.start()


@signals.worker_shutdown.connect
def _worker_shutdown(sender=None, **_):
    hostname = getattr(sender, "hostname", None) or "unknown"
    if _heartbeat is not None:
        _heartbeat.stopped.set()
    try:
        with write_session(settings) as session:
            row = session.get(Worker, hostname)
            if row is not None:
                row.state, row.last_seen = "offline", utcnow()
    except Exception:
        log.exception("could not record worker %s shutdown", hostname)


@signals.task_postrun.connect
def _task_done(sender=None, task=None, **_):
    hostname = getattr(getattr(task, "request", None), "hostname", None)
    if not hostname:
        return
    try:
        with write_session(settings) as session:
            session.execute(update(Worker).where(Worker.hostname == hostname).values(
                last_seen=utcnow(), tasks_done=Worker.tasks_done + 1))
    except Exception:
        log.exception("could not update worker %s", hostname)
