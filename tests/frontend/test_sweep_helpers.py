"""The sweep pages' pieces (frontend.components.sweeps) on a sweep shaped as GET
/api/v1/sweeps/{id} returns it, its finished point carrying the summary the service stores
for the golden results (backend.artifacts.summarize); and the pages' HTTP status when served
by the API's app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.artifacts import summarize
from frontend.components.sweeps import (
    compare_href,
    grid_table,
    group_by_sweep,
    point_rows,
    points_table,
    progress_text,
    sweep_counts,
)

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "golden" / "results.json")
                    .read_text())


def _study(sid: int, state: str, progress: float = 0.0, summary=None, **extra) -> dict:
    return {"id": sid, "name": f"s{sid}", "state": state, "progress": progress,
            "stage": "train" if state == "running" else None, "summary": summary,
            "error": extra.get("error")}


def _sweep(sid=7, points=None, grid=None, count=None) -> dict:
    grid = grid or {"inverse.damping": [0.001, 0.01, 0.1]}
    points = points if points is not None else [
        {"values": {"inverse.damping": 0.001}, "reused": True,
         "study": _study(11, "succeeded", 1.0, summarize(GOLDEN))},
        {"values": {"inverse.damping": 0.01}, "reused": False,
         "study": _study(12, "running", 0.4)},
        {"values": {"inverse.damping": 0.1}, "reused": False,
         "study": _study(13, "failed", 0.2, error="ValueError: boom")},
    ]
    return {"id": sid, "name": "damping", "grid": grid, "state": "failed", "progress": 0.53,
            "count": count or len(points), "reused": 1, "points": points}


def test_counts_rows_and_the_lds_of_finished_points_only():
    sweep = _sweep()
    assert sweep_counts(sweep) == {"total": 3, "finished": 1, "failed": 1, "active": 1,
                                   "deleted": 0}
    assert progress_text(sweep) == "1 of 3 finished · 1 failed"
    alpha, methods, rows = point_rows(sweep)
    assert alpha == "0.5" and methods == ["H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC",
                                          "identity"]
    assert [r["id"] for r in rows] == [11, 12, 13]
    assert rows[0]["lds"] == {m: e["lds"]["0.5"]["headline"] for m, e in
                              GOLDEN["methods"].items()}
    assert rows[0]["progress"] == 1.0 and rows[1]["progress"] == 0.4
    assert all(v is None for r in rows[1:] for v in r["lds"].values())


def test_a_deleted_point_counts_as_failed():
    sweep = _sweep(count=4)            # four points stored, one study since deleted
    assert sweep_counts(sweep)["failed"] == 2 and sweep_counts(sweep)["deleted"] == 1
    assert progress_text(sweep) == "1 of 4 finished · 2 failed"


def test_the_compare_link_names_every_study_and_the_first_field():
    assert compare_href(_sweep()) == "/compare?ids=11,12,13&param=inverse.damping"
    one = _sweep(points=_sweep()["points"][:1])
    assert compare_href(one) is None                         # nothing to compare with
    two = _sweep(grid={"inverse.damping": [0.001], "model.hidden": [[4], [8]]})
    assert compare_href(two).endswith("&param=inverse.damping")


def test_tables_carry_the_values_and_the_full_lds():
    grid = grid_table({"inverse.damping": [0.001, 0.01], "model.hidden": [[4], [8]]})
    rows = grid.children[0].children
    assert [r.children[1].children for r in rows] == ["0.001 | 0.01", "[4] | [8]"]
    table = points_table(_sweep())
    body = table.children[1].children
    kfac = [c for c in body[0].children if getattr(c, "data-method", None) == "K-FAC"][0]
    assert float(getattr(kfac, "data-value")) == GOLDEN["methods"]["K-FAC"]["lds"]["0.5"][
        "headline"]
    assert kfac.children == f"{GOLDEN['methods']['K-FAC']['lds']['0.5']['headline']:.3f}"
    running = [c for c in body[1].children if getattr(c, "data-method", None) == "K-FAC"][0]
    assert running.children == "–" and not hasattr(running, "data-value")


def test_studies_are_grouped_by_their_sweep_where_the_first_stands():
    newer = _sweep(sid=8, points=[{"values": {}, "study": _study(13, "failed")},
                                  {"values": {}, "study": _study(20, "queued")}])
    older = _sweep(sid=7)
    listed = [{"id": i} for i in (20, 19, 13, 12, 11)]
    groups = group_by_sweep(listed, [newer, older])          # newest first, as the API lists
    assert [(g and g["id"], [s["id"] for s in m]) for g, m in groups] == [
        (8, [20, 13]), (None, [19]), (7, [12, 11])]          # 13 is shared: the newest sweep
    # a sweep_id on the row (when the API lists it) decides
    listed[2]["sweep_id"] = 7
    listed[1]["sweep_id"] = 99
    groups = group_by_sweep(listed, [newer, older])
    assert [(g and g["id"], [s["id"] for s in m]) for g, m in groups] == [
        (8, [20]), (99, [19]), (7, [13, 12, 11])]


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.core.config import Settings
    from backend.db import dispose_engines

    tmp = tmp_path_factory.mktemp("sweep-pages")
    settings = Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'db.sqlite'}",
                        redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(settings)) as client:
        yield client
    dispose_engines()


def test_the_sweep_pages_are_served_and_a_bad_id_is_a_404(api_app):
    # (an unknown numeric id is a 404 too: tests/browser checks it against a real server;
    # this test client cannot answer the dashboard's own API calls)
    for path, status in (("/sweeps", 200), ("/sweeps/x", 404), ("/sweeps/0", 404),
                         ("/sweeps/1/2", 404)):
        response = api_app.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith("text/html")
    nav = api_app.get("/_dash-layout").json()
    assert '"nav-sweeps"' in json.dumps(nav) and '"/sweeps"' in json.dumps(nav)
