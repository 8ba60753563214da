"""The outbox: every message a committed transition owes the broker, sent after the commit;
what could not be sent (the broker was down, the process died between commit and send) is
sent by the sweeper.

What is owed is read off the rows themselves (``backend.crud`` sets ``sent_at`` to NULL):

* ``start``    a queued study with ``sent_at IS NULL``;
* ``chunk``    a pending chunk of a running study with ``sent_at IS NULL``;
* ``finalize`` a running study with ``finalize_enqueued`` and ``finalize_sent_at IS NULL``.

A message is sent first and marked sent afterwards, so a crash in between sends it twice
rather than never; the tasks are idempotent (a study already running is not started again, a
chunk running or done is skipped, a finalize held by another worker is skipped).

The sweeper (:func:`sweep`) runs in every worker's heartbeat thread and when the API starts.
Each message is tried on its own: a broker error on one leaves it owed and does not stop the
others (after the first error the rest are tried without the client's retries, so a broker
that is down costs milliseconds per message, not seconds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from backend import crud
from backend.core.config import Settings
from backend.db import read_session, write_session
from backend.models import Study, StudyChunk, utcnow
from backend.queue import TASK_CHUNK, TASK_FINALIZE, TASK_START, send

log = logging.getLogger("curvscope.outbox")


@dataclass
class Sent:
    start: list[int] = field(default_factory=list)
    chunks: list[tuple[int, int]] = field(default_factory=list)
    finalize: list[int] = field(default_factory=list)
    failed: int = 0
    error: str | None = None

    @property
    def count(self) -> int:
        return len(self.start) + len(self.chunks) + len(self.finalize)


def owed(settings: Settings, study_ids: list[int] | None = None, min_age_s: float = 0.0,
         limit: int = 1000) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """(start, chunk, finalize) messages owed, optionally only of some studies; start
    messages only once the row is ``min_age_s`` old (the request that committed it is
    probably sending it right now)."""
    with read_session(settings) as session:
        start_q = select(Study.id).where(Study.state == "queued", Study.sent_at.is_(None))
        chunk_q = (select(StudyChunk.study_id, StudyChunk.index).join(Study)
                   .where(Study.state == "running", StudyChunk.state == "pending",
                          StudyChunk.sent_at.is_(None)))
        final_q = select(Study.id).where(Study.state == "running",
                                         Study.finalize_enqueued.is_(True),
                                         Study.finalize_sent_at.is_(None))
        if min_age_s > 0:
            start_q = start_q.where(Study.updated_at < utcnow() - timedelta(seconds=min_age_s))
        if study_ids is not None:
            start_q = start_q.where(Study.id.in_(study_ids))
            chunk_q = chunk_q.where(StudyChunk.study_id.in_(study_ids))
            final_q = final_q.where(Study.id.in_(study_ids))
        start = list(session.scalars(start_q.order_by(Study.id).limit(limit)))
        chunks = [(int(s), int(i)) for s, i in session.execute(
            chunk_q.order_by(StudyChunk.study_id, StudyChunk.index).limit(limit))]
        finals = list(session.scalars(final_q.order_by(Study.id).limit(limit)))
    return start, chunks, finals


def flush(settings: Settings, study_ids: list[int] | None = None,
          min_age_s: float = 0.0) -> Sent:
    """Send what is owed (of these studies, or all); never raises for a broker error."""
    sent = Sent()
    try:
        start, chunks, finals = owed(settings, study_ids, min_age_s)
    except Exception as exc:  # the database is away: the next sweep tries again
        sent.error = f"{type(exc).__name__}: {exc}"
        return sent
    quick = False

    def attempt(task: str, args: list[int], mark) -> bool:
        nonlocal quick
        try:
            send(settings, task, args, retries=0 if quick else 2)
        except Exception as exc:
            quick = True
            sent.failed += 1
            sent.error = f"{type(exc).__name__}: {exc}"
            return False
        try:
            with write_session(settings) as session:
                session.execute(mark)
        except Exception:  # sent but not marked: it may be sent again, never lost
            log.exception("could not mark %s %s sent", task, args)
        return True

    now = utcnow()
    for study_id in finals:
        if attempt(TASK_FINALIZE, [study_id], update(Study).where(
                Study.id == study_id, Study.finalize_sent_at.is_(None))
                .values(finalize_sent_at=now)):
            sent.finalize.append(study_id)
    for study_id in start:
        if attempt(TASK_START, [study_id], update(Study).where(
                Study.id == study_id, Study.sent_at.is_(None)).values(sent_at=now)):
            sent.start.append(study_id)
    for study_id, index in chunks:
        if attempt(TASK_CHUNK, [study_id, index], update(StudyChunk).where(
                StudyChunk.study_id == study_id, StudyChunk.index == index,
                StudyChunk.sent_at.is_(None)).values(sent_at=now)):
            sent.chunks.append((study_id, index))
    if sent.failed:
        log.warning("outbox: %d message(s) stay owed, the broker is unreachable (%s); the "
                    "sweeper sends them later", sent.failed, sent.error)
    return sent


def sweep(settings: Settings) -> Sent:
    """The sweeper: repair any lost join (:func:`backend.crud.owe_lost_finalizes`), then send
    every owed message older than a moment (see :func:`owed`)."""
    try:
        with write_session(settings) as session:
            repaired = crud.owe_lost_finalizes(session)
    except SQLAlchemyError as exc:  # the database is away: the next beat repairs it
        log.warning("outbox sweeper could not check for lost joins: %s", exc)
        repaired = []
    if repaired:
        log.warning("outbox sweeper: studies %s had every chunk done but no finalize owed; "
                    "owed it now", repaired)
    sent = flush(settings, min_age_s=settings.outbox_grace_s)
    if sent.count:
        log.warning("outbox sweeper sent %d owed message(s): start %s, chunks %s, finalize %s",
                    sent.count, sent.start, sent.chunks, sent.finalize)
    return sent
