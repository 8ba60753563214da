"""The ablation ladder's page in Chromium: a ladder posted over REST, run by the real worker,
drawn with its table and figures and no console error; the New ladder form lists the choices."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import SMALL

pytestmark = pytest.mark.browser


def _wait_ladder(service, ladder_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    ladder = {}
    while time.monotonic() < deadline:
        ladder = service.http.get(f"/api/v1/ladders/{ladder_id}").json()
        if ladder["state"] in ("succeeded", "failed"):
            return ladder
        time.sleep(0.5)
    pytest.fail(f"ladder {ladder_id} did not finish: {ladder}\n{service.log_tail()}")


def test_the_ladder_page_draws_its_table_and_figures(tab, service):
    body = {"base": SMALL, "rungs": ["kfac_damping", "inverse_rule"], "path": "both"}
    reply = service.http.post("/api/v1/ladders", json=body)
    assert reply.status_code == 202, reply.text
    ladder = _wait_ladder(service, reply.json()["id"])
    assert ladder["state"] == "succeeded", ladder
    tab.open(f"/ladder/{ladder['id']}")
    traces = tab.wait_graph("ladder-fig-delta")
    assert {t["type"] for t in traces} == {"scatter"}
    assert "K-FAC" in {t["name"] for t in traces}
    tab.wait_graph("ladder-fig-lds")
    table = tab.page.locator("#ladder-table table")
    table.wait_for()
    rows = table.locator("tbody tr")
    assert rows.count() == 4  # base, each of the two, and the cumulative one
    assert rows.nth(0).locator("td").first.inner_text() == "base"
    assert "kfac_damping +inverse_rule" in table.inner_text()
    summary = service.http.get(f"/api/v1/ladders/{ladder['id']}/summary").json()
    kfac = summary["rungs"][1]["lds"]["K-FAC"]["0.5"]["headline"]
    assert f"{kfac:.3f}" in rows.nth(1).inner_text()
    tab.screenshot("ladder")
    tab.assert_clean()


def test_the_new_ladder_form_lists_every_choice(tab, service):
    tab.open("/ladder/new")
    tab.page.get_by_text("Choices to switch").wait_for()
    for rung in ("split", "schedule", "blocks", "fisher", "kfac_damping", "inverse_rule",
                 "lds_summary"):
        assert tab.page.get_by_label(f"{rung}:", exact=False).count() == 1
    tab.screenshot("ladder-new")
    tab.assert_clean()
