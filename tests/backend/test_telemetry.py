"""Live telemetry in the API (issue 12), on a real database (SQLite and PostgreSQL) and a real
Redis broker with no worker (studies stay queued): ``queued_at`` and the "queued for" of the
latest attempt, ``queue_position``, the sweep or ladder of each study and the
``?sweep_id=`` / ``?ladder_id=`` filters, and ``log_tail`` of a failed study."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete

from tests.backend.servers import tiny

GRID = {"inverse.damping": [1e-3, 1e-2]}


@pytest.fixture
def clean(api, settings):
    from backend.db import write_session
    from backend.groups import StudyGroup

    with write_session(settings) as session:
        session.execute(delete(StudyGroup))
    return api


def _submit(api, seed: int) -> dict:
    reply = api.post("/api/v1/studies", json=tiny(training={"seed": seed}))
    assert reply.status_code == 202, reply.text
    return reply.json()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _age(settings, study_id: int, minutes: float) -> None:
    """Move the study's creation and queueing ``minutes`` into the past."""
    from backend.db import write_session
    from backend.models import Study

    with write_session(settings) as session:
        study = session.get(Study, study_id)
        then = datetime.now(UTC) - timedelta(minutes=minutes)
        study.created_at = study.queued_at = then


def test_queue_positions_follow_the_order_of_queueing(clean, settings):
    studies = [_submit(clean, 200 + k) for k in range(3)]
    assert [s["queue_position"] for s in studies] == [1, 2, 3]     # the POST replies say it
    for study in studies:
        assert _time(study["queued_at"]) == _time(study["created_at"])
    detail = [clean.get(f"/api/v1/studies/{s['id']}").json() for s in studies]
    assert [d["queue_position"] for d in detail] == [1, 2, 3]
    listed = clean.get("/api/v1/studies", params={"sort": "created_at"}).json()["data"]
    assert [(r["id"], r["queue_position"]) for r in listed] == [
        (s["id"], k + 1) for k, s in enumerate(studies)]
    # the first leaves the queue: the others move up; it has no place any more
    cancelled = clean.post(f"/api/v1/studies/{studies[0]['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["queue_position"] is None
    assert [clean.get(f"/api/v1/studies/{s['id']}").json()["queue_position"]
            for s in studies[1:]] == [1, 2]
    # a retry joins the end of the queue
    retried = clean.post(f"/api/v1/studies/{studies[0]['id']}/retry").json()
    assert retried["queue_position"] == 3
    page = clean.get("/api/v1/studies", params={"sort": "queued_at"}).json()["data"]
    assert [r["id"] for r in page] == [studies[1]["id"], studies[2]["id"], studies[0]["id"]]
    assert [r["queue_position"] for r in page] == [1, 2, 3]
    # only queued studies have a place, but every queued one counts, listed or not
    two = clean.get("/api/v1/studies", params={"ids": str(studies[2]["id"])}).json()["data"]
    assert two[0]["queue_position"] == 2


def test_queued_for_counts_from_the_latest_retry_not_the_creation(clean, settings):
    study = _submit(clean, 210)
    _age(settings, study["id"], 16)
    before = clean.get(f"/api/v1/studies/{study['id']}").json()
    assert before["timings"]["queued_seconds"] == pytest.approx(16 * 60, abs=30)
    clean.post(f"/api/v1/studies/{study['id']}/cancel")
    retried = clean.post(f"/api/v1/studies/{study['id']}/retry").json()
    detail = clean.get(f"/api/v1/studies/{study['id']}").json()
    assert detail["attempts"] == 2 and detail["state"] == "queued"
    assert _time(detail["queued_at"]) == _time(retried["queued_at"])
    assert _time(detail["queued_at"]) - _time(detail["created_at"]) > timedelta(minutes=15)
    assert 0 <= detail["timings"]["queued_seconds"] < 60       # this attempt, not 16 min


def test_a_sweeps_studies_name_it_and_filter_by_it(clean):
    first = clean.post("/api/v1/sweeps", json={"base": tiny(), "grid": GRID,
                                               "name": "damping"}).json()
    ids = [p["study"]["id"] for p in first["points"]]
    assert [p["study"]["sweep_id"] for p in first["points"]] == [first["id"]] * 2
    assert [p["study"]["queue_position"] for p in first["points"]] == [1, 2]
    other = _submit(clean, 220)
    listed = clean.get("/api/v1/studies", params={"sweep_id": first["id"]}).json()
    assert sorted(r["id"] for r in listed["data"]) == sorted(ids) and listed["count"] == 2
    labels = dict(zip(ids, ["inverse.damping=0.001", "inverse.damping=0.01"], strict=True))
    for row in listed["data"]:
        assert (row["sweep_id"], row["sweep_name"]) == (first["id"], "damping")
        assert row["ladder_id"] is None
        assert row["groups"] == [{"kind": "sweep", "id": first["id"], "name": "damping",
                                  "label": labels[row["id"]]}]
    lone = clean.get(f"/api/v1/studies/{other['id']}").json()
    assert (lone["sweep_id"], lone["groups"]) == (None, [])
    # a wider sweep shares the two studies: they stay the first sweep's, and list both
    wider = clean.post("/api/v1/sweeps", json={"base": tiny(), "name": "wider",
                                               "grid": {"inverse.damping": [1e-3, 1e-2, 1e-1]}
                                               }).json()
    detail = clean.get(f"/api/v1/studies/{ids[0]}").json()
    assert detail["sweep_id"] == first["id"]
    assert [(g["id"], g["name"]) for g in detail["groups"]] == [(first["id"], "damping"),
                                                                  (wider["id"], "wider")]
    assert clean.get("/api/v1/studies", params={"sweep_id": wider["id"]}).json()["count"] == 3
    assert clean.get("/api/v1/studies", params={"sweep_id": wider["id"] + 100}
                     ).json() == {"data": [], "count": 0}
    assert clean.get("/api/v1/studies", params={"ladder_id": first["id"]}).json()["count"] == 0
    assert clean.get("/api/v1/studies", params={"sweep_id": 0}).status_code == 422


def test_a_ladders_studies_name_it(clean):
    body = {"base": tiny(), "rungs": ["schedule"], "path": "each", "name": "one rung"}
    reply = clean.post("/api/v1/ladders", json=body)
    assert reply.status_code == 202, reply.text
    ladder = reply.json()
    ids = [r["study"]["id"] for r in ladder["rungs"]]
    rows = clean.get("/api/v1/studies", params={"ladder_id": ladder["id"]}).json()["data"]
    assert sorted(r["id"] for r in rows) == sorted(ids)
    by_id = {r["id"]: r for r in rows}
    for rung in ladder["rungs"]:
        row = by_id[rung["study"]["id"]]
        assert (row["ladder_id"], row["ladder_name"], row["sweep_id"]) == (
            ladder["id"], "one rung", None)
        assert row["groups"][0]["label"] == rung["label"]


def test_log_tail_of_a_failed_study_and_only_of_one(clean, settings):
    from backend import crud
    from backend.db import write_session

    study = _submit(clean, 230)
    assert clean.get(f"/api/v1/studies/{study['id']}").json()["log_tail"] is None
    lines = [f"line {k}" for k in range(50)]
    with write_session(settings) as session:
        crud.fail(session, study["id"], "it broke", "RuntimeError", log_tail="\n".join(lines))
    detail = clean.get(f"/api/v1/studies/{study['id']}").json()
    assert detail["state"] == "failed" and detail["log_tail"] == lines
    assert "log_tail" not in clean.get("/api/v1/studies").json()["data"][0]  # detail only
    clean.post(f"/api/v1/studies/{study['id']}/retry")
    assert clean.get(f"/api/v1/studies/{study['id']}").json()["log_tail"] is None


def test_the_openapi_schema_documents_the_new_fields(clean):
    schema = clean.get("/api/v1/openapi.json").json()
    out = schema["components"]["schemas"]["StudyOut"]["properties"]
    for name in ("queued_at", "queue_position", "sweep_id", "sweep_name", "ladder_id",
                 "ladder_name", "groups"):
        assert out[name].get("description"), name
    assert schema["components"]["schemas"]["StudyDetail"]["properties"]["log_tail"][
        "description"]
    params = {p["name"] for p in schema["paths"]["/api/v1/studies"]["get"]["parameters"]}
    assert {"sweep_id", "ladder_id"} <= params


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0004_backfills_queued_at_and_the_group_members(tmp_path, kind):
    """A database at 0003 with a study and a sweep: after the upgrade the study's queued_at
    is its created_at and the sweep's members are rows (in order, with their labels)."""
    import sqlalchemy as sa

    from backend.core.config import Settings
    from backend.db import dispose_engines, get_engine, read_session, upgrade_database
    from backend.groups import StudyGroupMember, groups_of
    from backend.models import Study
    from tests.backend.servers import database_url

    url, pg = database_url(kind, tmp_path)
    settings = Settings(data_dir=tmp_path, database_url=url)
    created = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    try:
        upgrade_database(settings, "0003")
        engine = get_engine(settings)
        meta = sa.MetaData()
        studies = sa.Table("studies", meta, autoload_with=engine)
        groups = sa.Table("study_groups", meta, autoload_with=engine)
        with engine.begin() as conn:
            for sid in (1, 2):
                conn.execute(studies.insert().values(
                    id=sid, name=f"s{sid}", state="failed", stage_progress=0.0, progress=0.0,
                    spec_hash=f"h{sid}", spec={}, request={}, cancel_requested=False,
                    finalize_enqueued=False, attempts=2, created_at=created,
                    updated_at=created + timedelta(hours=1)))
            conn.execute(groups.insert().values(
                id=7, kind="sweep", name="old sweep", definition={}, created_at=created,
                members=[{"label": "a=1", "study_id": 2}, {"label": "a=2", "study_id": 1}]))
        upgrade_database(settings)
        with read_session(settings) as session:
            for sid in (1, 2):
                study = session.get(Study, sid)
                assert study.queued_at.replace(tzinfo=UTC) == created
                assert study.log_tail is None
            rows = session.scalars(sa.select(StudyGroupMember).order_by(
                StudyGroupMember.position)).all()
            assert [(r.group_id, r.position, r.study_id, r.label) for r in rows] == [
                (7, 0, 2, "a=1"), (7, 1, 1, "a=2")]
            assert groups_of(session, [1]) == {1: [{"kind": "sweep", "id": 7,
                                                    "name": "old sweep", "label": "a=2"}]}
    finally:
        dispose_engines()
        if pg is not None:
            pg.drop()
