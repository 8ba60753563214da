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
from typing import Any

from celery import Task, signals
from celery.exceptions import Retry
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError as DBOperationalError

from backend import artifacts, crud, outbox
from backend.crud import TransitionError
from backend.db import write_session
from backend.disk import full_sentence, is_disk_full
from backend.models import Study, StudyChunk
from backend.queue import TASK_CHUNK, TASK_FINALIZE, TASK_START
from worker.celery_app import app, settings
from worker.logtail import MAX_LINES, TailHandler, capture

log = logging.getLogger("curvscope.worker")

#: The database is away for a moment: retry with backoff (the retry message goes to the
#: broker). Everything else but a broker error fails the study at once, with its reason.
RETRYABLE = (DBOperationalError,)
#: The broker is away: nothing is retried through it; the work stays owed in the database
#: (``backend.outbox``) and the sweeper sends it once the broker is back.
BROKER_ERRORS = (RedisConnectionError, RedisTimeoutError, KombuOperationalError)
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
        self.logged_stage: str | None = None

    def chunk(self, fraction: float) -> None:
        self("groundtruth/retrain", fraction)

    def __call__(self, stage: str, fraction: float, final: bool = False) -> None:
        """``final``: the last report of finished work; a shutdown or a cancel no longer
        stops anything, so neither raises."""
        if shutting_down.is_set() and not final:
            raise WorkerShuttingDown()
        if self.chunk_index is None and stage != self.logged_stage:  # a line per stage
            self.logged_stage = stage
            log.info("study %s: stage %s", self.study_id, stage)
        now = time.monotonic()
        if (stage == self.last_stage and fraction < 1.0
                and now - self.last_write < settings.progress_interval_s):
            return
        self.last_write, self.last_stage = now, stage
        with write_session(settings) as session:  # study row first, then chunk (crud's order)
            study = session.get(Study, self.study_id, with_for_update=True)
            if study is None or study.state != "running" or study.cancel_requested:
                if final:
                    return
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


def reason(exc: BaseException) -> str:
    """A failure's message: never empty (the exception's type when it says nothing)."""
    text = str(exc).strip()
    return text if text else f"{type(exc).__name__} (raised without a message)"


def _fail(study_id: int, exc: BaseException | str, error_type: str | None = None,
          log_tail: str | None = None) -> None:
    message = exc if isinstance(exc, str) else reason(exc)
    with write_session(settings) as session:
        try:
            crud.fail(session, study_id, message,
                      error_type or (type(exc).__name__ if not isinstance(exc, str) else "Error"),
                      log_tail=log_tail)
        except (TransitionError, crud.StudyNotFound):
            pass  # finished (or deleted) meanwhile: nothing to fail


def _cancelled(study_id: int) -> None:
    with write_session(settings) as session:
        try:
            crud.cancel(session, study_id)
        except (TransitionError, crud.StudyNotFound):
            pass


def _load_spec(study: Study):
    from curvscope.spec import StudySpec

    return StudySpec.model_validate(study.spec)


class StudyTask(Task):
    """Base of the study tasks: retry a database that is away with backoff; when a task
    finally fails anyway, the study is marked failed with the reason (never left running)."""

    autoretry_for = RETRYABLE
    retry_backoff = 2
    retry_backoff_max = settings.retry_backoff_max_s
    retry_jitter = True
    max_retries = settings.task_max_retries
    acks_late = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if args:
            lines = str(getattr(einfo, "traceback", "") or "").splitlines()[-MAX_LINES:]
            try:
                _fail(int(args[0]), f"{self.name} gave up after {self.request.retries} "
                      f"retries: {type(exc).__name__}: {reason(exc)}", "TaskGaveUp",
                      log_tail="\n".join(lines) or None)
            except Exception:  # the database itself is gone: nothing more to do
                log.exception("could not mark study %s failed", args[0])


def _guard(study_id: int, work) -> dict[str, Any]:
    """Run ``work``; map expected outcomes to study states, let a database hiccup retry,
    leave work owed on a broker error, fail the study (with its reason) on anything else,
    keeping the last lines this task logged, its traceback last (``Study.log_tail``)."""
    with capture() as tail:
        return _guarded(study_id, work, tail)


def _guarded(study_id: int, work, tail: TailHandler) -> dict[str, Any]:
    try:
        return work()
    except StudyStopped as stop:
        if stop.cancelled:
            _cancelled(study_id)
        return {"study": study_id, "outcome": "cancelled" if stop.cancelled else "stopped"}
    except WorkerShuttingDown:
        return {"study": study_id, "outcome": "requeued"}
    except TransitionError as stale:  # a duplicate or late message: nothing to do
        log.info("skipped: %s", stale)
        return {"study": study_id, "outcome": "skipped", "why": str(stale)}
    except BROKER_ERRORS as exc:  # what this task held is put back by task_postrun
        log.warning("study %s: broker unreachable (%s); the work stays owed", study_id, exc)
        return {"study": study_id, "outcome": "broker-unreachable"}
    except (Retry, *RETRYABLE):
        raise
    except Exception as exc:  # a bad spec/data, a diverged training, a bug: fail with reason
        trace, before = traceback.format_exc(), tail.records
        log.error("study %s failed:\n%s", study_id, trace)
        if tail.records == before:  # the log's level dropped it: the tail keeps it anyway
            tail.add(f"study {study_id} failed:\n{trace}")
        if is_disk_full(exc):  # not torch's "unexpected pos": what happened, what to do
            message = (full_sentence(settings).replace("try again; nothing was stored",
                                                       "retry the study (its finished stages "
                                                       "and chunks are kept)")
                       + f" ({type(exc).__name__}: {reason(exc)[:200]})")
            _fail(study_id, message, "DiskFull", log_tail=tail.text())
            return {"study": study_id, "outcome": "failed", "error": message}
        _fail(study_id, exc, log_tail=tail.text())
        return {"study": study_id, "outcome": "failed", "error": reason(exc)}


@app.task(name=TASK_START, bind=True, base=StudyTask)
def start_study(self, study_id: int) -> dict[str, Any]:
    """queued → running: plan the retraining chunks and owe a message for each (or the
    finalize when there are none); a study already started is skipped (a duplicate)."""

    def work():
        from curvscope.study import plan_retraining

        with write_session(settings) as session:
            study = session.get(Study, study_id)
            if study is None or study.state != "queued":
                return {"study": study_id, "outcome": "skipped"}
            if study.cancel_requested:
                crud.cancel(session, study_id)
                return {"study": study_id, "outcome": "cancelled"}
            plan = [] if study.chunks else plan_retraining(_load_spec(study))
            _, todo = crud.start(session, study_id, plan)
        outbox.flush(settings, [study_id])
        return {"study": study_id, "outcome": "started", "chunks": len(todo)}

    return _guard(study_id, work)


def maybe_finalize(study_id: int) -> bool:
    """Owe the finalize once every chunk is done (exactly once: ``crud.owe_finalize``), and
    send it."""
    with write_session(settings) as session:
        won = crud.owe_finalize(session, study_id)
    if won:
        outbox.flush(settings, [study_id])
    return won


def _requeue_chunk(study_id: int, index: int, why: str) -> None:
    log.warning("%s: chunk %s of study %s goes back on the queue", why, index, study_id)
    with write_session(settings) as session:
        try:
            crud.requeue_chunk(session, study_id, index, why)
        except TransitionError:
            return
    outbox.flush(settings, [study_id])


def _chunk_state(study_id: int, index: int, action: str, **values) -> None:
    with write_session(settings) as session:
        try:
            crud.chunk_move(session, study_id, index, action, **values)
        except TransitionError:
            pass


@app.task(name=TASK_CHUNK, bind=True, base=StudyTask)
def retrain_chunk(self, study_id: int, index: int) -> dict[str, Any]:
    """Run one retraining chunk into the shared stage cache. A chunk done already, or running
    on another worker, is skipped (a duplicate message)."""
    hostname = self.request.hostname or "unknown"

    def work():
        from curvscope.study import RetrainTask, run_retraining_task

        device = worker_device()
        with write_session(settings) as session:
            study = crud.stopped_state(session, study_id)
            chunk = session.scalars(select(StudyChunk).where(
                StudyChunk.study_id == study_id, StudyChunk.index == index)).first()
            if study is None or chunk is None:
                return {"study": study_id, "outcome": "skipped"}
            if chunk.state == "done":
                done_already = True
            else:
                crud.claim_chunk(session, study_id, index, hostname, device)
                done_already = False
            spec = _load_spec(study)
            task = RetrainTask(chunk.alpha, chunk.subset_start, chunk.subset_stop)
        if not done_already:
            log.info("study %s: retraining chunk %s (alpha %s, subsets %s-%s) on %s, %s",
                     study_id, index, task.alpha, task.subset_start, task.subset_stop - 1,
                     hostname, device)
            reporter = Reporter(study_id, chunk_index=index, span=(0.0, RETRAIN_SHARE))
            try:
                run_retraining_task(spec, task, settings.stage_cache_dir,
                                    progress=reporter.chunk)
            except StudyStopped:
                _chunk_state(study_id, index, "cancel_chunk")
                raise
            except WorkerShuttingDown:
                _requeue_chunk(study_id, index, f"worker {hostname} shutting down")
                _requeued(study_id)
                raise
            except (*RETRYABLE, *BROKER_ERRORS):
                raise  # task_postrun puts the chunk back (pending, owed)
            except Exception as exc:
                _chunk_state(study_id, index, "fail_chunk", error=reason(exc))
                raise
            with write_session(settings) as session:
                won = crud.chunk_done(session, study_id, index)
            try:  # the chunk is done: a shutdown or cancel noticed now stops nothing
                Reporter(study_id, chunk_index=index, span=(0.0, RETRAIN_SHARE))(
                    "groundtruth/retrain", 1.0, final=True)
            except Exception:
                log.exception("could not report chunk %s of study %s done", index, study_id)
        else:
            with write_session(settings) as session:
                won = crud.owe_finalize(session, study_id)
        if won:
            outbox.flush(settings, [study_id])
        return {"study": study_id, "chunk": index, "outcome": "done", "worker": hostname}

    return _guard(study_id, work)


def _requeued(study_id: int) -> None:
    log.warning("worker shutting down: study %s goes back on the queue", study_id)
    with write_session(settings) as session:
        study = session.get(Study, study_id)
        if study is not None and study.state == "running":
            study.stage = "interrupted: back on the queue"


@app.task(name=TASK_FINALIZE, bind=True, base=StudyTask)
def finalize_study(self, study_id: int) -> dict[str, Any]:
    """Run the whole study (reusing the cached chunks) and store its results. A finalize
    held by another worker, or of a study no longer running, is skipped."""
    hostname = self.request.hostname or "unknown"

    def work():
        from curvscope.study import run_study

        device = worker_device()
        with write_session(settings) as session:
            study = crud.claim_finalize(session, study_id, hostname, device)
            if study is None:
                return {"study": study_id, "outcome": "skipped"}
            spec = _load_spec(study)
            has_chunks = bool(study.chunks)
        log.info("study %s: finalize on %s, %s", study_id, hostname, device)
        span = (RETRAIN_SHARE, 1.0) if has_chunks else (0.0, 1.0)
        reporter = Reporter(study_id, stages=stage_plan(spec), span=span)
        try:
            result = run_study(spec, artifacts.study_dir(settings, study_id),
                               settings.stage_cache_dir, progress=reporter)
        except WorkerShuttingDown:
            why = f"worker {hostname} shutting down"
            with write_session(settings) as session:
                crud.requeue_finalize(session, study_id, why)
            _requeued(study_id)
            outbox.flush(settings, [study_id])
            raise
        results = result.results
        with write_session(settings) as session:
            if session.get(Study, study_id) is None:
                return {"study": study_id, "outcome": "deleted"}
            crud.succeed(session, study_id, summary=artifacts.summarize(results),
                         timings=results.get("timings"), device=results.get("device", device))
        return {"study": study_id, "outcome": "succeeded", "worker": hostname}

    return _guard(study_id, work)


# heartbeats, the lost-worker reaper, the outbox sweeper and the worker's signals
from worker import heartbeat  # noqa: E402,F401
from worker.heartbeat import Heartbeat, reap_lost_workers, requeue_work_of  # noqa: E402,F401
