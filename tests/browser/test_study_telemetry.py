"""Live telemetry on the study page in Chromium, against the real service of conftest.py (one
real worker): a study whose training really diverges shows the worker's last log lines in a
collapsible block; while the worker is busy with a long study, queued studies say their place
in line, a retried one counts its wait from the retry, a sweep's study links its sweep; the
example digits of a finished study carry their class labels."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import SMALL

pytestmark = pytest.mark.browser

DIVERGING = {**SMALL, "training": {**SMALL["training"], "lr": 10.0, "seed": 77}}
#: keeps the one worker busy in its first retraining chunk until cancelled
LONG = {**SMALL, "training": {**SMALL["training"], "epochs": 10_000, "seed": 78}}


def _wait(service, study_id: int, until, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    study = {}
    while time.monotonic() < deadline:
        study = service.http.get(f"/api/v1/studies/{study_id}").json()
        if until(study):
            return study
        time.sleep(0.3)
    pytest.fail(f"study {study_id} never got there: {study}\n{service.log_tail()}")


def _post(service, path: str, body: dict | None = None) -> dict:
    reply = service.http.post(path, json=body)
    assert reply.status_code in (200, 202), reply.text
    return reply.json()


def test_a_failed_study_shows_its_workers_last_log_lines(tab, service):
    sid = service.submit(DIVERGING)
    study = _wait(service, sid, lambda s: s["state"] in ("failed", "succeeded", "cancelled"))
    assert study["state"] == "failed", study
    detail = service.http.get(f"/api/v1/studies/{sid}").json()
    tail = detail["log_tail"]
    assert "Traceback (most recent call last):" in tail and len(tail) <= 50
    assert tail[-1].endswith(detail["error"]) and "TrainingDivergedError" in tail[-1]
    tab.open(f"/studies/{sid}")
    block = tab.page.locator("#study-log-tail")
    block.wait_for()
    assert "diverged" in tab.page.locator(".alert").first.inner_text()
    assert block.get_attribute("open") is None                    # collapsed at first
    assert not tab.page.locator("#study-log").is_visible()
    assert block.locator("summary").inner_text() == f"The worker's last {len(tail)} log lines"
    block.locator("summary").click()
    pre = tab.page.locator("#study-log")
    pre.wait_for(state="visible")
    assert pre.inner_text().splitlines() == tail                  # every line, as the API has it
    tab.screenshot("study-failed-log")
    tab.assert_clean()
    service.failed_id = sid


def test_queued_studies_say_their_place_and_a_retry_counts_from_itself(tab, service):
    from frontend.logic import queue_text

    failed = getattr(service, "failed_id", None) or service.submit(DIVERGING)
    _wait(service, failed, lambda s: s["state"] == "failed")
    long_id = service.submit(LONG)
    cleanup = [long_id, failed]
    try:
        _wait(service, long_id, lambda s: any(c["state"] == "running" for c in s["chunks"]))
        sweep = _post(service, "/api/v1/sweeps", {
            "base": {**SMALL, "training": {**SMALL["training"], "seed": 79}},
            "grid": {"inverse.damping": [3e-3]}, "name": "telemetry"})
        first = sweep["points"][0]["study"]
        cleanup.append(first["id"])
        retried = _post(service, f"/api/v1/studies/{failed}/retry")
        place = first["queue_position"]
        assert place >= 1 and retried["queue_position"] == place + 1   # it joined the end
        assert retried["attempts"] == 2
        assert _epoch(retried["queued_at"]) > _epoch(retried["created_at"])

        tab.open(f"/studies/{first['id']}")
        line = tab.page.locator("#study-progress-line")
        line.wait_for()
        assert queue_text(place) in line.inner_text()
        link = tab.page.locator("a.study-sweep-link")
        assert link.inner_text() == f"#{sweep['id']} telemetry · inverse.damping=0.003"
        assert link.get_attribute("href") == f"/sweeps/{sweep['id']}"

        tab.open(f"/studies/{failed}")
        line = tab.page.locator("#study-progress-line")
        line.wait_for()
        assert queue_text(place + 1) in line.inner_text()
        if place == 1:
            assert "queued, 2nd in line" in line.inner_text()
        waited = tab.page.locator("#study-queued-for")
        assert waited.get_attribute("title") == "since the latest attempt was queued"
        detail = service.http.get(f"/api/v1/studies/{failed}").json()
        since_retry = time.time() - _epoch(detail["queued_at"])        # not from the creation
        assert abs(detail["timings"]["queued_seconds"] - since_retry) < 2
        names = tab.page.locator("table.kv th").all_inner_texts()
        assert "queued" in names and "attempts" in names
        tab.screenshot("study-queued-place")
        tab.assert_clean()
    finally:
        for sid in cleanup:
            service.http.post(f"/api/v1/studies/{sid}/cancel")
        _wait(service, long_id, lambda s: s["state"] in ("cancelled", "failed", "succeeded"))
        for sid in cleanup:  # leave the shared service as it was for the other pages' tests
            assert service.http.delete(f"/api/v1/studies/{sid}").status_code in (204, 404)


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_example_digits_carry_their_labels(tab, service):
    study = service.studies[0]
    labels = service.http.get(f"/api/v1/studies/{study['id']}/arrays/labels/test").json()
    tab.open(f"/studies/{study['id']}?test=3")
    tab.wait_graph("fig-examples")
    notes = tab.page.evaluate(
        """() => {
            const gd = document.querySelector('#fig-examples .js-plotly-plot');
            const t = gd._fullData.find(d => d.meta === 'captions');
            return Array.from(t.text);
        }""")
    assert notes[0] == f"test #3 · {labels['data'][3]}"
    train = service.http.get(f"/api/v1/studies/{study['id']}/arrays/labels/train").json()
    for note in notes[1:]:                                        # "#412 · 7 τ=-0.031"
        index, label = note.split(" τ=")[0].lstrip("#").split(" · ")
        assert int(label) == train["data"][int(index)]
    tab.assert_clean()


def test_the_training_figure_draws_the_retrained_models_spread(tab, service):
    """A real study's training figure: the base curve equals training.epoch_losses and the
    grey band and median equal training.retrained_loss_curves at α = 0.5 (or the smallest α),
    drawn at the recorded epochs."""
    study = service.studies[0]
    results = service.http.get(f"/api/v1/studies/{study['id']}/results").json()
    curves = results["training"]["retrained_loss_curves"]
    assert curves, "the study stored no retrained training losses"
    alpha = "0.5" if "0.5" in curves else sorted(curves, key=float)[0]
    tab.open(f"/studies/{study['id']}")
    tab.wait_graph("fig-loss")
    drawn = tab.page.evaluate(
        """() => {
            const gd = document.querySelector('#fig-loss .js-plotly-plot');
            return Object.fromEntries(gd._fullData.map(d => [d.meta,
                {x: Array.from(d.x), y: Array.from(d.y), name: d.name}]));
        }""")
    assert drawn["base"]["y"] == pytest.approx(results["training"]["epoch_losses"])
    for meta, key in (("retrained-p10", "p10"), ("retrained-median", "median"),
                      ("retrained-p90", "p90")):
        assert drawn[meta]["x"] == curves[alpha]["epochs"]
        assert drawn[meta]["y"] == pytest.approx(curves[alpha][key], rel=1e-6)
    assert drawn["retrained-p10"]["name"] == (
        f"retrained models ({curves[alpha]['n_models']}, α = {alpha}): 10–90 %")
    tab.screenshot("study-training-spread")
    tab.assert_clean()
