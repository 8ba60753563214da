"""The lifecycle's one home (backend/crud.py): every named transition is checked against the
table of allowed from-states, on a real SQLite file; a refused one is a sentence naming the
study, its state and what is allowed."""

from __future__ import annotations

import pytest

from backend import crud
from backend.core.config import Settings
from backend.db import dispose_engines, upgrade_database, write_session
from backend.models import STATES


@pytest.fixture
def store(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=None)
    upgrade_database(settings)
    yield settings
    dispose_engines()


def new_study(settings, state: str) -> int:
    with write_session(settings) as session:
        study = crud.create(session, name="t", spec={}, request={}, spec_hash="h" * 32,
                            preset=None, estimate=None, dataset_id=None)
        study.state = state
        if state == "queued":
            study.sent_at = None
        return study.id


def apply(session, action: str, study_id: int):
    if action == "start":
        return crud.start(session, study_id, [])
    if action == "succeed":
        return crud.succeed(session, study_id, summary=None, timings=None, device=None)
    if action == "fail":
        return crud.fail(session, study_id, "a reason.", "Error")
    if action == "requeue":
        return crud.requeue_finalize(session, study_id, "test")
    return getattr(crud, action)(session, study_id)


@pytest.mark.parametrize("action", sorted(crud.STUDY_TRANSITIONS))
@pytest.mark.parametrize("state", STATES)
def test_every_transition_from_every_state(store, action, state):
    sid = new_study(store, state)
    allowed, target = crud.STUDY_TRANSITIONS[action]
    with write_session(store) as session:
        if state in allowed:
            apply(session, action, sid)
            if action != "delete":
                expected = target or (
                    "cancelled" if action == "request_cancel" and state == "queued" else state)
                assert session.get(crud.Study, sid).state == expected
        else:
            with pytest.raises(crud.TransitionError) as refused:
                apply(session, action, sid)
            message = str(refused.value)
            assert f"study {sid}" in message and f"is {state}" in message
            assert all(a in message for a in allowed) and message.endswith(".")


def test_retry_of_a_queued_study_only_while_its_message_was_never_sent(store):
    sid = new_study(store, "queued")
    with write_session(store) as session:
        crud.retry(session, sid)                          # never sent: accepted
        session.get(crud.Study, sid).sent_at = crud.utcnow()
    with write_session(store) as session, pytest.raises(crud.TransitionError) as refused:
        crud.retry(session, sid)
    assert "was sent already" in str(refused.value)


def test_no_failure_without_a_reason(store):
    sid = new_study(store, "running")
    with write_session(store) as session, pytest.raises(ValueError):
        crud.fail(session, sid, "  ", "Error")


def test_the_sweeper_repairs_a_lost_join_and_nothing_else(store):
    """A running study whose chunks are all done but whose finalize nobody owes (a lost join)
    gets it owed; a study with a chunk still pending, or already owed, is left alone."""
    from sqlalchemy import update

    from curvscope.study import RetrainTask

    lost, pending, owed = (new_study(store, "queued") for _ in range(3))
    with write_session(store) as session:
        for sid in (lost, pending, owed):
            crud.start(session, sid, [RetrainTask(0.5, 0, 2), RetrainTask(0.5, 2, 4)])
        for sid, index in ((lost, 0), (lost, 1), (pending, 0), (owed, 0), (owed, 1)):
            crud.claim_chunk(session, sid, index, "w1", "cpu")
        session.execute(update(crud.StudyChunk).where(crud.StudyChunk.study_id == lost)
                        .values(state="done"))  # as if the join had been skipped
        crud.chunk_done(session, pending, 0)
        crud.chunk_done(session, owed, 0)
        assert crud.chunk_done(session, owed, 1) is True
    with write_session(store) as session:
        assert crud.owe_lost_finalizes(session) == [lost]
        assert crud.owe_lost_finalizes(session) == []
        study = session.get(crud.Study, lost)
        assert study.finalize_enqueued and study.finalize_sent_at is None
        assert not session.get(crud.Study, pending).finalize_enqueued


def test_chunks_claim_once_and_the_finalize_is_owed_once(store):
    from curvscope.study import RetrainTask

    sid = new_study(store, "queued")
    with write_session(store) as session:
        _, todo = crud.start(session, sid, [RetrainTask(0.5, 0, 2), RetrainTask(0.5, 2, 4)])
    assert todo == [0, 1]
    with write_session(store) as session:
        crud.claim_chunk(session, sid, 0, "w1", "cpu")
        with pytest.raises(crud.TransitionError, match="chunk 0 of study"):
            crud.claim_chunk(session, sid, 0, "w2", "cpu")    # a duplicate message
        assert crud.chunk_done(session, sid, 0) is False
        assert crud.chunk_done(session, sid, 1) is True       # the last one owes the finalize
        assert crud.owe_finalize(session, sid) is False
        study = session.get(crud.Study, sid)
        assert study.finalize_enqueued and study.finalize_sent_at is None
        assert crud.claim_finalize(session, sid, "w1", "cpu") is not None
        assert crud.claim_finalize(session, sid, "w2", "cpu") is None   # held by w1
        held = crud.requeue_work_of(session, "w1", "lost")
        assert held.finalize == [sid] and study.worker is None
