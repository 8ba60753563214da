"""The sweep pages in Chromium against the real service: a sweep of two tiny studies posted
over REST and run by the real worker. Its page shows the grid, the studies with their states
(redrawn without a reload until both finish) and each method's LDS equal to the study's
results.json; the Sweeps list and the studies list group them; *Compare* opens the compare
view along the swept field; a selection differing in several fields gets the table of the
differing fields instead of lines; an unknown sweep is the not-found page with HTTP 404."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from frontend.logic import fmt_number

pytestmark = pytest.mark.browser

A11Y_JS = (Path(__file__).parent / "a11y_checks.js").read_text(encoding="utf-8")
#: a study that finishes in a few seconds on a CPU (its own seed: never one of the fixture's)
TINY = {"preset": "quick", "model": {"hidden": [6]}, "training": {"epochs": 2, "seed": 21},
        "groundtruth": {"n_subsets": 6, "n_seeds": 2, "n_bootstrap": 50}}
DAMPINGS = [0.001, 0.01]


@pytest.fixture(scope="module")
def sweep(service):
    """A sweep of two damping values, as POST /api/v1/sweeps answered it; its studies are
    deleted afterwards (tests elsewhere rank the studies they list)."""
    reply = service.http.post("/api/v1/sweeps", json={
        "base": TINY, "grid": {"inverse.damping": DAMPINGS}, "name": "sweep page"})
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert reply.headers["location"] == f"/api/v1/sweeps/{body['id']}"
    yield body
    for point in body["points"]:
        sid = point["study"]["id"]
        service.wait_done(sid)
        assert service.http.delete(f"/api/v1/studies/{sid}").status_code == 204


def test_the_sweep_page_shows_grid_states_and_the_studies_lds(tab, service, sweep):
    ids = [p["study"]["id"] for p in sweep["points"]]
    assert tab.open(f"/sweeps/{sweep['id']}") == 200
    tab.page.locator("#sweep-title").get_by_text("sweep page").wait_for()
    grid = tab.page.locator("#sweep-grid tr[data-field='inverse.damping'] td")
    assert grid.inner_text() == "0.001 | 0.01"
    rows = tab.page.locator("#sweep-points tbody tr")
    assert [int(rows.nth(k).get_attribute("data-study")) for k in range(2)] == ids
    assert [rows.nth(k).locator("td").nth(1).inner_text() for k in range(2)] == ["0.001",
                                                                                 "0.01"]
    first_states = [rows.nth(k).get_attribute("data-state") for k in range(2)]
    assert set(first_states) <= {"queued", "running", "succeeded"}, first_states
    if "succeeded" not in first_states:
        tab.screenshot("sweep-running")
    # live: the page redraws (no reload) until both studies have succeeded
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('#sweep-points tbody tr')]"
        ".every(r => r.dataset.state === 'succeeded')", timeout=240_000)
    assert tab.page.locator(".sweep-progress").inner_text().strip() == "2 of 2 finished"
    assert tab.page.locator("#sweep-chip").inner_text() == "succeeded"
    for k, sid in enumerate(ids):
        results = service.http.get(f"/api/v1/studies/{sid}/results").json()
        assert results["spec"]["inverse"]["damping"] == DAMPINGS[k]
        cells = rows.nth(k).locator("td[data-method]")
        shown = {cells.nth(j).get_attribute("data-method"):
                 (cells.nth(j).get_attribute("data-value"), cells.nth(j).inner_text())
                 for j in range(cells.count())}
        assert set(shown) == set(results["methods"])
        for method, entry in results["methods"].items():
            headline = entry["lds"]["0.5"]["headline"]
            assert float(shown[method][0]) == headline, (sid, method)
            assert shown[method][1] == fmt_number(headline)
        link = rows.nth(k).get_by_role("link", name=f"#{sid}")
        assert link.get_attribute("href") == f"/studies/{sid}"
    tab.screenshot("sweep")
    # Compare: the compare view of the sweep's studies along the swept field
    tab.page.click("#sweep-compare")
    tab.page.wait_for_url(re.compile(rf"/compare\?ids={ids[0]},{ids[1]}&param=inverse.damping"))
    traces = tab.wait_graph("compare-fig-lds", text="inverse.damping")
    assert traces and all(t["n"] == 2 for t in traces)
    assert tab.page.locator("#compare-multi").count() == 0
    tab.assert_clean()


def test_the_sweep_list_and_the_studies_list_group_the_sweeps_studies(tab, service, sweep):
    ids = [p["study"]["id"] for p in sweep["points"]]
    for sid in ids:
        service.wait_done(sid)
    tab.open("/sweeps")
    row = tab.page.locator(f"#sweeps-table tr[data-sweep='{sweep['id']}']")
    row.wait_for()
    assert "sweep page" in row.inner_text() and "2 of 2 finished" in row.inner_text()
    assert tab.page.locator("#sweeps-table tbody tr").first.get_attribute(
        "data-sweep") == str(max(s["id"] for s in service.http.get(
            "/api/v1/sweeps").json()["data"]))                     # newest first
    tab.screenshot("sweeps")
    tab.open("/")
    head = tab.page.locator(f"tr.group-row[data-sweep='{sweep['id']}']")
    head.wait_for()
    assert head.get_by_role("link", name=re.compile("sweep page")).get_attribute(
        "href") == f"/sweeps/{sweep['id']}"
    assert "2 of 2 finished" in head.inner_text()
    # its studies are the rows right under it (newest first)
    after = tab.page.locator(f"tr.group-row[data-sweep='{sweep['id']}'] ~ tr")
    assert [int(after.nth(k).get_attribute("data-study")) for k in range(2)] == sorted(
        ids, reverse=True)
    head.get_by_role("link", name=re.compile("sweep page")).click()
    tab.page.wait_for_url(re.compile(rf"/sweeps/{sweep['id']}$"))
    tab.page.locator("#sweep-points").wait_for()
    # a selection differing in several fields (the fixture's study: other width, epochs,
    # seed): compare shows the table of the differing fields, no lines
    other = service.studies[1]["id"]
    tab.open(f"/compare?ids={ids[0]},{other}")
    multi = tab.page.locator("#compare-multi")
    multi.get_by_text("so no line is drawn").wait_for()
    for field in ("inverse.damping", "model.hidden", "training.epochs", "training.seed"):
        assert field in multi.inner_text(), field
    assert tab.page.locator("#compare-multi-table tbody tr").count() == 2
    assert tab.traces("compare-fig-lds") == []
    tab.assert_clean()


def test_an_unknown_sweep_is_the_not_found_page_and_the_pages_fit_a_phone(browser, service,
                                                                          sweep):
    from tests.browser.conftest import Page

    context = browser.new_context(viewport={"width": 390, "height": 900})
    tab = Page(context.new_page(), service.base)
    tab.page.set_default_timeout(60_000)
    assert tab.open("/sweeps/987654") == 404
    tab.page.get_by_text("Nothing here").wait_for()
    tab.page.locator("#sweep-missing").get_by_text("There is no sweep with id 987654.") \
        .wait_for()
    tab.forget_own_404()
    tab.screenshot("sweep-missing")
    for path, ready in ((f"/sweeps/{sweep['id']}", "#sweep-points"),
                        ("/sweeps", "#sweeps-table table")):
        assert tab.open(path) == 200
        tab.page.wait_for_selector(ready)
        report = tab.page.evaluate(A11Y_JS)
        assert report["width"] <= 390, (path, report["width"])
        assert not report["n_unnamed"] and not report["n_contrast"], (path, report)
    tab.assert_clean()
    context.close()
