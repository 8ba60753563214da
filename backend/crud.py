"""The study lifecycle in one place: named transitions checked against a table of allowed
from-states.

A study is a row whose ``state`` column moves along

    queued ──start──▶ running ──succeed──▶ succeeded
       │                 │ └────fail────▶ failed ──retry──▶ queued
       │                 └─cancel (after request_cancel)──▶ cancelled ──retry──▶ queued
       └──cancel / fail──▶ cancelled / failed

and each of its retraining chunks along pending ──claim──▶ running ──chunk_done──▶ done (or
back to pending by ``requeue_chunk``, or failed / cancelled). Every function here takes an open
write session (the caller's transaction), locks the row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's write transactions are ``BEGIN IMMEDIATE`` already), checks the table and
raises :class:`TransitionError` (a sentence naming the study, its state and what is allowed)
otherwise. The API's routes answer a TransitionError with 409; a worker treats one as "this
message is stale" and skips it.

Messages owed to the broker are part of the same transaction (the outbox, ``backend.outbox``):
a transition that needs a task sets the row's ``sent_at`` to NULL, and the message is sent
after the commit; whatever is committed but not sent is sent by the sweeper. So an accepted
study always runs, or fails with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from backend.models import Study, StudyChunk, utcnow

#: action → (allowed from-states, resulting state; None: the state stays)
STUDY_TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "start": (("queued",), "running"),
    "succeed": (("running",), "succeeded"),
    "fail": (("queued", "running"), "failed"),
    "request_cancel": (("queued", "running"), None),
    "cancel": (("queued", "running"), "cancelled"),
    "retry": (("failed", "cancelled", "queued"), "queued"),  # queued: only if never sent
    "requeue": (("running",), None),                         # a chunk/finalize back on queue
    "delete": (("succeeded", "failed", "cancelled"), None),
}
CHUNK_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "claim": (("pending",), "running"),
    "chunk_done": (("pending", "running"), "done"),
    "requeue_chunk": (("running",), "pending"),
    "fail_chunk": (("pending", "running"), "failed"),
    "cancel_chunk": (("pending", "running"), "cancelled"),
}


class TransitionError(Exception):
    """A transition asked of a study (or chunk) in a state that does not allow it."""

    def __init__(self, action: str, study_id: int, state: str | None,
                 allowed: tuple[str, ...], what: str = "study", detail: str = ""):
        self.action, self.study_id, self.state, self.allowed = action, study_id, state, allowed
        where = "does not exist" if state is None else f"is {state}"
        super().__init__(f"Cannot {action.replace('_', ' ')} {what} {study_id}: it {where}"
                         f"{detail}; {action} is allowed from {' or '.join(allowed)}.")


class StudyNotFound(LookupError):
    def __init__(self, study_id: int):
        self.study_id = study_id
        super().__init__(f"There is no study with id {study_id}.")


def lock(session: Session, study_id: int) -> Study:
    """The study row, locked for this transaction; :class:`StudyNotFound` if absent."""
    study = session.get(Study, study_id, with_for_update=True, populate_existing=True)
    if study is None:
        raise StudyNotFound(study_id)
    return study


def check(study: Study, action: str) -> None:
    allowed, _ = STUDY_TRANSITIONS[action]
    if study.state not in allowed:
        raise TransitionError(action, study.id, study.state, allowed)


def _move(session: Session, study_id: int, action: str) -> Study:
    study = lock(session, study_id)
    check(study, action)
    target = STUDY_TRANSITIONS[action][1]
    if target is not None:
        study.state = target
    return study


# --- studies ------------------------------------------------------------------------------

def create(session: Session, *, name: str | None, spec: dict, request: dict, spec_hash: str,
           preset: str | None, estimate: dict | None, dataset_id: int | None) -> Study:
    """A new queued study whose start message is owed (sent after the commit)."""
    now = utcnow()
    study = Study(name=name, state="queued", spec=spec, request=request, spec_hash=spec_hash,
                  preset=preset, estimate=estimate, dataset_id=dataset_id, sent_at=None,
                  created_at=now, queued_at=now)
    session.add(study)
    session.flush()
    return study


def start(session: Session, study_id: int, plan: list[Any]) -> tuple[Study, list[int]]:
    """queued → running: store one chunk row per planned retraining task (once) and owe a
    message for each chunk not done. Returns the study and the indices of the owed chunks."""
    study = _move(session, study_id, "start")
    if not study.chunks:
        for index, task in enumerate(plan):
            session.add(StudyChunk(study_id=study_id, index=index, alpha=task.alpha,
                                   subset_start=task.subset_start,
                                   subset_stop=task.subset_stop, sent_at=None))
        session.flush()
        session.refresh(study)
    study.started_at = study.started_at or utcnow()
    study.stage, study.stage_progress = "queued for workers", 0.0
    todo = []
    for chunk in study.chunks:
        if chunk.state != "done":
            chunk.state, chunk.sent_at = "pending", None
            todo.append(chunk.index)
    if not todo:
        owe_finalize(session, study_id)
    return study, todo


def succeed(session: Session, study_id: int, *, summary: dict | None, timings: dict | None,
            device: str | None) -> Study:
    study = _move(session, study_id, "succeed")
    study.finished_at = utcnow()
    study.stage, study.stage_progress, study.progress = "done", 1.0, 1.0
    study.summary, study.timings = summary, timings
    study.device = device or study.device
    return study


def fail(session: Session, study_id: int, reason: str, error_type: str,
         log_tail: str | None = None) -> Study:
    """→ failed, always with a reason (a sentence) and its type; ``log_tail``: the last lines
    the worker logged while it ran the task that failed (its traceback included)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a study never fails without a reason")
    study = _move(session, study_id, "fail")
    study.finished_at = utcnow()
    study.error, study.error_type = reason, error_type or "Error"
    study.log_tail = log_tail or None
    for chunk in study.chunks:
        if chunk.state in ("pending", "running"):
            chunk.state = "cancelled"
    return study


def request_cancel(session: Session, study_id: int) -> tuple[Study, bool]:
    """A queued study is cancelled at once (True); a running one gets the flag its worker
    reads at its next progress report (False)."""
    study = lock(session, study_id)
    check(study, "request_cancel")
    study.cancel_requested = True
    if study.state == "queued":
        cancel(session, study_id)
        return study, True
    return study, False


def cancel(session: Session, study_id: int) -> Study:
    study = _move(session, study_id, "cancel")
    study.cancel_requested = True
    study.finished_at, study.stage = utcnow(), None
    for chunk in study.chunks:
        if chunk.state in ("pending", "running"):
            chunk.state = "cancelled"
    return study


def retry(session: Session, study_id: int) -> Study:
    """failed or cancelled → queued again, its start message owed; a queued study that never
    reached the broker is owed again too (finished chunks stay done: their work is cached)."""
    study = lock(session, study_id)
    check(study, "retry")
    if study.state == "queued" and study.sent_at is not None:
        raise TransitionError("retry", study_id, "queued", ("failed", "cancelled"),
                              detail=" and its start message was sent already")
    if study.state != "queued":
        study.attempts += 1
    study.state, study.stage, study.progress, study.stage_progress = "queued", None, 0.0, 0.0
    study.error = study.error_type = study.log_tail = None
    study.queued_at = utcnow()  # "queued for" counts from here, and it joins the queue's end
    study.cancel_requested = study.finalize_enqueued = False
    study.started_at = study.finished_at = study.finalize_sent_at = None
    study.sent_at, study.worker = None, None
    for chunk in study.chunks:
        if chunk.state != "done":
            chunk.state, chunk.progress, chunk.error, chunk.worker = "pending", 0.0, None, None
    return study


def queue_positions(session: Session, study_ids: list[int] | None = None) -> dict[int, int]:
    """Queued study id → its place in the queue, 1 = the next a worker takes: the queued
    studies in the order they were (last) enqueued (``queued_at``, then id), as the broker
    hands out their start messages. ``study_ids``: only these (the others are still counted).
    One study: a count of those ahead of it; several: the queue's ids in order."""
    queued = Study.state == "queued"
    if study_ids is not None and len(set(study_ids)) == 1:
        (sid,) = set(study_ids)
        mine = select(Study.queued_at).where(Study.id == sid, queued).scalar_subquery()
        ahead = session.scalar(select(func.count()).select_from(Study).where(
            queued, or_(Study.queued_at < mine, and_(Study.queued_at == mine, Study.id < sid))))
        known = session.scalar(select(func.count()).select_from(Study).where(
            Study.id == sid, queued))
        return {sid: int(ahead) + 1} if known else {}
    if study_ids is not None and not study_ids:
        return {}
    order = session.scalars(select(Study.id).where(queued)
                            .order_by(Study.queued_at, Study.id)).all()
    wanted = None if study_ids is None else set(study_ids)
    return {int(i): k + 1 for k, i in enumerate(order) if wanted is None or i in wanted}


def delete(session: Session, study_id: int) -> None:
    study = _move(session, study_id, "delete")
    session.delete(study)


def stopped_state(session: Session, study_id: int) -> Study | None:
    """The study if it may go on running (running and no cancel asked); when a cancel was
    asked it becomes cancelled here; None otherwise."""
    study = session.get(Study, study_id, with_for_update=True, populate_existing=True)
    if study is None or study.state != "running":
        return None
    if study.cancel_requested:
        cancel(session, study_id)
        return None
    return study


# --- chunks and the finalize --------------------------------------------------------------

def _chunk(session: Session, study_id: int, index: int) -> StudyChunk | None:
    return session.scalars(select(StudyChunk).where(
        StudyChunk.study_id == study_id, StudyChunk.index == index)
        .with_for_update()).first()


def chunk_move(session: Session, study_id: int, index: int, action: str,
               **values: Any) -> StudyChunk:
    """One chunk transition (CHUNK_TRANSITIONS), by a conditional UPDATE: of two workers
    that race for a chunk, one wins, the other gets a TransitionError."""
    allowed, target = CHUNK_TRANSITIONS[action]
    _lock_study_row(session, study_id)
    won = session.execute(
        update(StudyChunk).where(StudyChunk.study_id == study_id, StudyChunk.index == index,
                                 StudyChunk.state.in_(allowed))
        .values(state=target, **values)).rowcount == 1
    chunk = _chunk(session, study_id, index)
    if not won:
        raise TransitionError(action, study_id, None if chunk is None else chunk.state,
                              allowed, what=f"chunk {index} of study")
    session.refresh(chunk)
    return chunk


def claim_chunk(session: Session, study_id: int, index: int, worker: str,
                device: str) -> StudyChunk:
    return chunk_move(session, study_id, index, "claim", worker=worker, device=device,
                      started_at=utcnow(), progress=0.0, error=None)


def chunk_done(session: Session, study_id: int, index: int) -> bool:
    """The chunk is done; True when it completed the set, i.e. this call (and only this
    one, by a conditional UPDATE) made the finalize owed."""
    chunk_move(session, study_id, index, "chunk_done", progress=1.0, finished_at=utcnow())
    return owe_finalize(session, study_id)


def _lock_study_row(session: Session, study_id: int) -> None:
    """Take the study row's lock (``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``
    already serialises writers) before touching its chunks, so every chunk transition of one
    study runs one after another and always locks study before chunk (no deadlock)."""
    session.execute(select(Study.id).where(Study.id == study_id).with_for_update())


def _unfinished_chunks(study_id):
    """EXISTS a chunk of ``study_id`` (an id, or the ``Study.id`` column to correlate) not
    done."""
    return exists().where(StudyChunk.study_id == study_id, StudyChunk.state != "done")


def owe_finalize(session: Session, study_id: int) -> bool:
    """When every chunk is done, owe the finalize message — exactly once: a conditional
    UPDATE that only one concurrent caller can win (the chord's join lives in the database).

    The study row is locked first. Without it, under PostgreSQL's READ COMMITTED two workers
    that finish the last two chunks at the same moment each see the other's chunk as still
    running (not yet committed), neither UPDATE matches, and the study waits forever for a
    finalize nobody owes. With it, the second caller's check runs after the first committed."""
    _lock_study_row(session, study_id)
    return session.execute(
        update(Study).where(Study.id == study_id, Study.state == "running",
                            Study.finalize_enqueued.is_(False), ~_unfinished_chunks(study_id))
        .values(finalize_enqueued=True, finalize_sent_at=None)).rowcount == 1


def owe_lost_finalizes(session: Session) -> list[int]:
    """Repair a lost join: owe the finalize of every running study whose chunks are all done
    but whose finalize is not owed (the sweeper calls this; :func:`owe_finalize` prevents it,
    this makes sure no accepted study can wait forever if anything ever skips it)."""
    some = exists().where(StudyChunk.study_id == Study.id)
    ids = session.execute(
        update(Study).where(Study.state == "running", Study.finalize_enqueued.is_(False),
                            some, ~_unfinished_chunks(Study.id))
        .values(finalize_enqueued=True, finalize_sent_at=None)
        .returning(Study.id)).scalars().all()
    return sorted(int(i) for i in ids)


def requeue_chunk(session: Session, study_id: int, index: int, why: str) -> StudyChunk:
    """running → pending, its message owed again (a warm shutdown, a lost worker)."""
    chunk = chunk_move(session, study_id, index, "requeue_chunk", worker=None, progress=0.0,
                       sent_at=None)
    study = session.get(Study, study_id)
    if study is not None and study.state == "running":
        study.stage = f"re-queued: {why}"[:100]
    return chunk


def claim_finalize(session: Session, study_id: int, worker: str, device: str) -> Study | None:
    """The finalize of a running study whose chunks are all done, taken by this worker (None:
    another worker holds it, or the message is stale)."""
    study = stopped_state(session, study_id)
    if study is None or not study.finalize_enqueued:
        return None
    if study.worker not in (None, worker):
        return None
    study.worker, study.device = worker, device
    return study


def requeue_finalize(session: Session, study_id: int, why: str) -> bool:
    """A running finalize goes back on the queue (its message owed again)."""
    study = lock(session, study_id)
    check(study, "requeue")
    if not study.finalize_enqueued:
        return False
    study.worker, study.finalize_sent_at = None, None
    study.stage = f"re-queued: {why}"[:100]
    return True


@dataclass
class Requeued:
    chunks: list[tuple[int, int]]
    finalize: list[int]


def requeue_work_of(session: Session, hostname: str, why: str) -> Requeued:
    """Everything a worker held (running chunks, the finalize of a running study) goes back
    to pending with its message owed: for a lost worker, a restarted one, or a solo worker
    whose task ended without finishing what it held. The studies' rows are locked first (the
    order every chunk transition keeps: study, then chunk)."""
    session.execute(select(Study.id).where(or_(
        and_(Study.worker == hostname, Study.state == "running"),
        Study.id.in_(select(StudyChunk.study_id).where(StudyChunk.worker == hostname,
                                                      StudyChunk.state == "running"))))
        .order_by(Study.id).with_for_update())
    chunks = session.execute(
        update(StudyChunk).where(StudyChunk.worker == hostname, StudyChunk.state == "running")
        .values(state="pending", worker=None, progress=0.0, sent_at=None)
        .returning(StudyChunk.study_id, StudyChunk.index)).all()
    finals = session.execute(
        update(Study).where(Study.worker == hostname, Study.state == "running",
                            Study.finalize_enqueued.is_(True))
        .values(worker=None, finalize_sent_at=None, stage=f"re-queued: {why}"[:100])
        .returning(Study.id)).scalars().all()
    return Requeued(chunks=[(int(s), int(i)) for s, i in chunks],
                    finalize=[int(s) for s in finals])
