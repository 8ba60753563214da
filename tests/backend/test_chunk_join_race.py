"""The join of a study's retraining chunks under concurrency, on SQLite and PostgreSQL: two
workers that finish the last two chunks at the same moment owe the finalize exactly once.

CI at 5dffff9 caught the lost join on PostgreSQL: under READ COMMITTED each worker's
``owe_finalize`` saw the other's chunk as still running (not yet committed), neither won, and
the study stayed "running" with every chunk done. This test holds the first worker's
transaction open at exactly that point, so it fails without the study-row lock."""

from __future__ import annotations

import threading
import time

import pytest

from backend import crud
from backend.core.config import Settings
from backend.db import dispose_engines, upgrade_database, write_session
from tests.backend.servers import database_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url, pg = database_url(request.param, tmp_path)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    upgrade_database(settings)
    yield settings
    dispose_engines()
    if pg is not None:
        pg.drop()


def running_study_with_two_running_chunks(settings) -> int:
    from curvscope.study import RetrainTask

    with write_session(settings) as session:
        study = crud.create(session, name="t", spec={}, request={}, spec_hash="h" * 32,
                            preset=None, estimate=None, dataset_id=None)
        study.sent_at = None
        session.flush()
        sid = study.id
    with write_session(settings) as session:
        crud.start(session, sid, [RetrainTask(0.5, 0, 2), RetrainTask(0.5, 2, 4)])
    with write_session(settings) as session:
        crud.claim_chunk(session, sid, 0, "w1", "cpu")
        crud.claim_chunk(session, sid, 1, "w2", "cpu")
    return sid


def test_the_last_two_chunks_finishing_together_owe_the_finalize_once(store):
    sid = running_study_with_two_running_chunks(store)
    won: dict[str, bool] = {}
    errors: list[BaseException] = []
    first_checked, release_first = threading.Event(), threading.Event()

    def first():
        try:
            with write_session(store) as session:
                won["w1"] = crud.chunk_done(session, sid, 0)
                first_checked.set()
                assert release_first.wait(20)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
            first_checked.set()

    def second():
        try:
            assert first_checked.wait(20)
            with write_session(store) as session:
                won["w2"] = crud.chunk_done(session, sid, 1)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    try:
        assert first_checked.wait(20)
        time.sleep(0.5)  # the second worker reaches its check, or waits on the lock
        second_waited = "w2" not in won
    finally:
        release_first.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    assert second_waited, "the second worker decided before the first committed"
    assert won == {"w1": False, "w2": True}
    with write_session(store) as session:
        study = session.get(crud.Study, sid)
        assert study.finalize_enqueued and study.finalize_sent_at is None
        assert crud.owe_lost_finalizes(session) == []


def test_the_sweeper_sends_the_finalize_of_a_lost_join_once(store, redis_server):
    """Belt and braces: a running study with every chunk done and no finalize owed (a join
    skipped by anything) gets its finalize owed and sent by the outbox sweeper, once."""
    from sqlalchemy import update

    from backend import outbox

    sid = running_study_with_two_running_chunks(store)
    with write_session(store) as session:
        session.execute(update(crud.StudyChunk).where(crud.StudyChunk.study_id == sid)
                        .values(state="done"))
    settings = store.model_copy(update={"redis_url": redis_server.url(2), "outbox_grace_s": 0})
    sent = outbox.sweep(settings)
    assert sent.finalize == [sid] and sent.failed == 0
    assert outbox.sweep(settings).count == 0
    with write_session(store) as session:
        study = session.get(crud.Study, sid)
        assert study.finalize_enqueued and study.finalize_sent_at is not None
