"""A worker's liveness and the work of lost workers, beside the tasks.

Every ``heartbeat_s`` a thread of each worker (its tasks hold the main thread for minutes, so
a solo worker cannot answer a ping) writes ``last_seen`` on its row, reaps workers silent for
``lost_after_s`` (:func:`reap_lost_workers`) and runs the outbox sweeper
(``backend.outbox.sweep``: messages committed but never sent, e.g. while the broker was down,
or by an API killed between its commit and its send).

A lost worker (killed with SIGKILL, out of memory, its machine gone) cannot put its work
back: the live workers do, by ``backend.crud.requeue_work_of`` (pending again, message owed,
sent). A worker restarted under the same name does the same for its previous run at start,
and a solo worker does it after each task for anything that task still held (a task that
ended on a broker or database error), so nothing stays "running" on a worker that is not
running it.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from celery import signals
from sqlalchemy import select, update

from backend import crud, outbox
from backend.db import read_session, write_session
from backend.models import Worker, utcnow
from worker import tasks as _tasks

log = logging.getLogger("curvscope.worker")


def _settings():
    return _tasks.settings  # one place (tests swap it)


def requeue_work_of(hostname: str, why: str) -> dict[str, list]:
    """Put the work a worker held back on the queue: its running chunks and the finalize of
    a study it was running (each taken back by a conditional UPDATE, so two reapers re-send it
    once; the tasks are idempotent, so a late redelivery of the lost worker's own message
    does no harm)."""
    settings = _settings()
    with write_session(settings) as session:
        held = crud.requeue_work_of(session, hostname, why)
    if held.chunks or held.finalize:
        log.warning("%s: re-queued %d chunk(s) %s and the finalize of %s", why,
                    len(held.chunks), held.chunks, held.finalize)
        outbox.flush(settings, sorted({s for s, _ in held.chunks} | set(held.finalize)))
    return {"chunks": held.chunks, "finalize": held.finalize}


def reap_lost_workers() -> dict[str, dict]:
    """Workers that have not written for ``lost_after_s`` are lost: mark each (a conditional
    UPDATE: one reaper wins) and put its work back on the queue."""
    settings = _settings()
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
    """Every ``heartbeat_s``: write this worker's ``last_seen``, reap lost workers, sweep the
    outbox."""

    def __init__(self, hostname: str):
        super().__init__(name=f"curvscope-heartbeat-{hostname}", daemon=True)
        self.hostname = hostname
        self.stopped = threading.Event()

    def beat(self) -> None:
        with write_session(_settings()) as session:
            session.execute(update(Worker).where(Worker.hostname == self.hostname)
                            .values(last_seen=utcnow(), state="online"))
        reap_lost_workers()
        outbox.sweep(_settings())
        limit = _settings().cache_max_bytes
        if limit:
            from curvscope.storage import evict

            gone = evict(_settings().stage_cache_dir, limit)
            if gone:
                log.info("stage cache over %d bytes: evicted %d entries", limit, len(gone))

    def run(self) -> None:
        while not self.stopped.wait(_settings().heartbeat_s):
            try:
                self.beat()
            except Exception:  # the database or broker is away for a moment: try again
                log.exception("heartbeat of %s failed", self.hostname)


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _worker_ready(sender=None, **_):
    global _heartbeat
    settings = _settings()
    hostname = getattr(sender, "hostname", None) or "unknown"
    try:
        device = _tasks.worker_device()
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
        outbox.sweep(settings)
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
        with write_session(_settings()) as session:
            row = session.get(Worker, hostname)
            if row is not None:
                row.state, row.last_seen = "offline", utcnow()
    except Exception:
        log.exception("could not record worker %s shutdown", hostname)


@signals.task_postrun.connect
def _task_done(sender=None, task=None, **_):
    """After each task of a solo worker nothing may still be running under its name: what
    is (a task that ended on a broker or database error) goes back on the queue."""
    hostname = getattr(getattr(task, "request", None), "hostname", None)
    if not hostname:
        return
    try:
        with write_session(_settings()) as session:
            session.execute(update(Worker).where(Worker.hostname == hostname).values(
                last_seen=utcnow(), tasks_done=Worker.tasks_done + 1))
        requeue_work_of(hostname, f"a task of {hostname} ended without finishing it")
    except Exception:
        log.exception("could not update worker %s", hostname)
