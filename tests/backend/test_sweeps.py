"""POST /api/v1/sweeps on a real database (SQLite and PostgreSQL) and a real Redis broker: one
study per combination, checked whole before anything is stored, safe to repeat and extend."""

from __future__ import annotations

from backend.queue import broker_status
from tests.backend.servers import tiny
from tests.backend.test_api import assert_problem

GRID = {"inverse.damping": [1e-3, 1e-2], "model.hidden": [[4], [8]]}


def sweep(api, grid=None, **extra):
    return api.post("/api/v1/sweeps", json={"base": tiny(), "grid": grid or GRID, **extra})


def test_a_sweep_queues_one_study_per_combination(api, settings):
    response = sweep(api, name="damping x width")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["count"], body["created"], body["reused"]) == (4, 4, 0)
    assert body["fields"] == ["inverse.damping", "model.hidden"]
    values = [p["values"] for p in body["points"]]
    assert values == [{"inverse.damping": d, "model.hidden": h}
                      for d in (1e-3, 1e-2) for h in ([4], [8])]      # the grid's order
    ids = [p["study"]["id"] for p in body["points"]]
    for point, sid in zip(body["points"], ids, strict=True):
        stored = api.get(f"/api/v1/studies/{sid}").json()
        assert stored["state"] == "queued" and not point["reused"]
        assert stored["spec"]["inverse"]["damping"] == point["values"]["inverse.damping"]
        assert stored["spec"]["model"]["hidden"] == point["values"]["model.hidden"]
        assert stored["spec"]["training"]["epochs"] == 3                 # from the base
        assert stored["name"].startswith("damping x width: inverse.damping=")
    assert len({api.get(f"/api/v1/studies/{sid}").json()["spec_hash"] for sid in ids}) == 4
    assert body["compare"] == f"/compare?ids={','.join(map(str, ids))}&param=inverse.damping"
    assert response.headers["location"] == f"/api/v1/sweeps/{body['id']}"
    assert body["links"]["page"] == f"/sweeps/{body['id']}"              # the dashboard's page
    assert body["links"]["compare"] == body["compare"]
    listed = api.get(body["links"]["studies"]).json()                   # /studies?ids=…
    assert sorted(s["id"] for s in listed["data"]) == sorted(ids) and listed["count"] == 4
    assert broker_status(settings)["pending_messages"] == 4


def test_repeating_a_sweep_returns_its_studies_and_extending_it_adds_only_the_new(api):
    first = sweep(api).json()
    again = sweep(api)
    assert again.status_code == 200
    assert [p["study"]["id"] for p in again.json()["points"]] == [
        p["study"]["id"] for p in first["points"]]
    assert again.json()["reused"] == 4 and all(p["reused"] for p in again.json()["points"])
    wider = sweep(api, grid={**GRID, "inverse.damping": [1e-3, 1e-2, 1e-1]}).json()
    assert (wider["count"], wider["created"], wider["reused"]) == (6, 2, 4)
    assert api.get("/api/v1/studies").json()["count"] == 6


def test_an_invalid_point_names_itself_and_nothing_is_stored(api):
    body = assert_problem(sweep(api, grid={"inverse.damping": [1e-3, -1.0]}), 422)
    assert body["type"].endswith("invalid-sweep")
    assert body["errors"][0]["field"] == "point 1 (inverse.damping=-1.0): inverse.damping"
    assert "greater than" in body["errors"][0]["message"]
    unknown = assert_problem(sweep(api, grid={"model.widths": [[4]]}), 422)
    assert "unknown field" in unknown["detail"]
    path = assert_problem(sweep(api, grid={"Model-Hidden": [[4]], "training.seed": []}), 422)
    assert {e["field"] for e in path["errors"]} == {"grid.Model-Hidden", "grid.training.seed"}
    assert_problem(api.post("/api/v1/sweeps", json={"grid": {}}), 422)
    assert_problem(api.post("/api/v1/sweeps", json={"grid": GRID, "colour": 1}), 422)
    assert api.get("/api/v1/studies").json()["count"] == 0


def test_a_sweep_is_bounded_and_needs_the_token(api, settings):
    seeds = list(range(settings.max_sweep_studies + 1))
    body = assert_problem(sweep(api, grid={"training.seed": seeds, "model.hidden": [[4]]}), 422)
    assert f"{len(seeds)} × 1 = {len(seeds)} studies, more than the " \
           f"{settings.max_sweep_studies}" in body["detail"]
    bare = {"Authorization": ""}
    assert_problem(api.post("/api/v1/sweeps", json={"grid": GRID}, headers=bare), 401)
    assert api.get("/api/v1/studies").json()["count"] == 0
    assert_problem(api.get("/api/v1/studies", params={"ids": "3,x"}), 422)
