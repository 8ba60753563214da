"""Sweeps have an identity: GET /api/v1/sweeps and /sweeps/{id} (grid, points, states,
progress), on a real database and broker."""

from __future__ import annotations

from sqlalchemy import delete

from tests.backend.servers import tiny

GRID = {"inverse.damping": [1e-3, 1e-2]}


def _clean(settings):
    from backend.db import write_session
    from backend.groups import StudyGroup

    with write_session(settings) as session:
        session.execute(delete(StudyGroup))


def test_a_posted_sweep_is_stored_with_its_grid_and_points(api, settings):
    _clean(settings)
    posted = api.post("/api/v1/sweeps", json={"base": tiny(), "grid": GRID,
                                              "name": "damping"}).json()
    one = api.get(f"/api/v1/sweeps/{posted['id']}").json()
    assert one["grid"] == GRID and one["name"] == "damping"
    assert one["state"] == "queued" and one["progress"] == 0.0
    assert [p["values"] for p in one["points"]] == [{"inverse.damping": 1e-3},
                                                    {"inverse.damping": 1e-2}]
    assert [p["study"]["id"] for p in one["points"]] == [p["study"]["id"]
                                                         for p in posted["points"]]
    # the same sweep again is a second sweep over the same (reused) studies
    again = api.post("/api/v1/sweeps", json={"base": tiny(), "grid": GRID}).json()
    assert again["id"] != posted["id"] and again["reused"] == 2
    listed = api.get("/api/v1/sweeps").json()
    assert listed["count"] == 2 and [s["id"] for s in listed["data"]] == [again["id"],
                                                                          posted["id"]]


def test_unknown_sweeps_and_ids_out_of_range(api, settings):
    _clean(settings)
    assert api.get("/api/v1/sweeps/12345").status_code == 404
    assert api.get(f"/api/v1/sweeps/{2**63}").status_code == 422
    assert api.get("/api/v1/sweeps", params={"limit": 0}).status_code == 422


def test_group_state_from_the_points_studies():
    from types import SimpleNamespace as S

    from backend.groups import group_state

    assert group_state([S(state="succeeded", progress=1.0)] * 2) == ("succeeded", 1.0)
    assert group_state([S(state="succeeded", progress=1.0), S(state="running", progress=0.5)]
                       ) == ("running", 0.75)
    assert group_state([S(state="queued", progress=0.0)] * 2) == ("queued", 0.0)
    assert group_state([S(state="succeeded", progress=1.0), None])[0] == "failed"  # deleted
    assert group_state([S(state="cancelled", progress=0.2), S(state="running", progress=0.1)]
                       )[0] == "failed"
