"""Live telemetry on the study page in Chromium, against the real service of conftest.py (one
real worker): a study whose training really diverges shows the worker's last log lines in a
collapsible block; while the worker is busy with a long study, queued studies say their place
in line, a retried one counts its wait from the retry, a sweep's study links its sweep; the
example digits of a finished study carry their class labels; a diverged study offers no Retry
(on its page and on Jobs); Edit and resubmit fills the form with the study's spec; a running
study's page names its worker and device, lists its chunks as the API has them and an ETA."""

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


def test_a_diverged_study_offers_no_retry_on_its_page_nor_on_the_jobs_page(tab, service):
    """issue 12: Retry only where a retry can help. The training diverges (lr 10, the same
    seed diverges again): its page has no Retry but says why and links Edit and resubmit;
    on Jobs its Retry is disabled with that reason as its title, and every other listed
    study's Retry is enabled exactly where ``logic.retry_helps`` of the API's study says."""
    from frontend import logic

    sid = getattr(service, "failed_id", None) or service.submit(DIVERGING)
    study = _wait(service, sid, lambda s: s["state"] in ("failed", "succeeded", "cancelled"))
    assert study["state"] == "failed" and study["error_type"] == "TrainingDivergedError"
    helps, why = logic.retry_helps(study)
    assert helps is False and why.startswith("A retry would fail the same way")
    tab.open(f"/studies/{sid}")
    line = tab.page.locator("#study-retry-why")
    line.wait_for()
    assert line.inner_text().startswith(why)
    assert line.get_by_role("link", name="Edit and resubmit").get_attribute("href") == \
        f"/new?from={sid}"
    assert tab.page.locator("#study-retry").is_hidden()
    assert tab.page.get_by_role("button", name="Retry").count() == 0   # none in the a11y tree
    tab.screenshot("study-failed-no-retry")
    tab.assert_clean()

    tab.open("/jobs")
    row = tab.page.locator(f"#jobs-finished tr[data-study='{sid}']")
    row.wait_for()
    button = row.get_by_role("button", name="Retry")
    assert button.is_disabled() and button.get_attribute("title") == why
    assert button.get_attribute("data-retry") == "would-fail"
    assert row.get_by_role("link", name="Edit and resubmit").get_attribute("href") == \
        f"/new?from={sid}"
    listed = tab.page.locator("#jobs-finished tr[data-study]")
    assert listed.count() >= 1
    for k in range(listed.count()):
        other = service.http.get(f"/api/v1/studies/{listed.nth(k).get_attribute('data-study')}"
                                 ).json()
        retry = listed.nth(k).get_by_role("button", name="Retry")
        assert retry.is_enabled() == logic.retry_helps(other)[0], other
    tab.screenshot("jobs-no-retry")
    tab.assert_clean()


def test_edit_and_resubmit_opens_the_form_with_the_studys_spec(tab, service):
    """``/new?from=<id>`` of a real study (the fixture's damping 1e-2 one): every text field
    of the form holds the study's spec (``logic.resubmit_spec``), the concrete values the
    API stores among them, the methods ticked are its methods, and the API names the
    study as the identical one: the whole spec came back."""
    from frontend import logic

    sid = service.studies[1]["id"]
    detail = service.http.get(f"/api/v1/studies/{sid}").json()
    spec = detail["spec"]
    expected = logic.resubmit_spec(detail)
    schema = service.http.get("/api/v1/schema").json()
    tab.open(f"/new?from={sid}")
    tab.page.locator("#new-from-note").get_by_text(f"Filled in from study #{sid}").wait_for()
    tab.page.locator("#new-validation").get_by_text("The API accepts this spec.").wait_for()
    values = tab.page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#new-form input[name]')]"
        ".map(e => [e.name, e.value]))")
    assert spec["inverse"]["damping"] == 0.01 and values["inverse.damping"] == "0.01"
    assert values["model.hidden"] == ", ".join(map(str, spec["model"]["hidden"])) == "8"
    assert values["training.epochs"] == str(spec["training"]["epochs"]) == "3"
    assert values["groundtruth.n_subsets"] == str(spec["groundtruth"]["n_subsets"]) == "6"
    assert values["training.seed"] == str(spec["training"]["seed"])
    compared = 0
    for section in logic.form_sections(schema):
        for field in section["fields"]:
            if field["path"] in values:
                shown = logic.value_to_text(field["kind"], logic.get_path(expected,
                                                                          field["path"]))
                assert values[field["path"]] == shown, field["path"]
                compared += 1
    assert compared >= 15, values
    ticked = tab.page.evaluate(
        """() => [...document.querySelectorAll('#new-form input[type=checkbox]:checked')]
            .filter(e => e.closest('[id*="curvature.methods"]'))
            .map(e => e.closest('label').innerText.trim())""")
    assert ticked == spec["curvature"]["methods"]
    assert tab.page.locator("#new-preset input:checked").get_attribute("value") == \
        detail["preset"]
    identical = tab.page.locator(f"#new-validation a[href='/studies/{sid}']")
    identical.wait_for()                                  # the form's spec hashes to this study
    tab.screenshot("new-from-study")
    tab.assert_clean()


def test_a_running_studys_page_names_its_worker_and_device_lists_its_chunks_and_an_eta(
        tab, service):
    """While the one worker trains a long study's first retraining chunk: the page's
    worker/device line is the API's (``logic.study_workers``), the chunk table's rows equal
    the API's chunks (``logic.chunk_rows``: index, α, subsets, state, worker, device), and an
    ETA appears once the progress is above 0. The study is cancelled and deleted after."""
    from frontend import logic

    long_id = service.submit(LONG)
    try:
        detail = _wait(service, long_id, lambda s: s["progress"] > 0.02 and any(
            c["state"] == "running" and c.get("worker") for c in s["chunks"]))
        workers, devices = logic.study_workers(detail)
        assert workers == ["browser@itest"] and devices, detail
        tab.open(f"/studies/{long_id}")
        where = tab.page.locator("#study-where")
        where.wait_for()
        expected = f"worker {', '.join(workers)} · device {', '.join(devices)}"
        tab.page.wait_for_function(
            "t => document.querySelector('#study-where').innerText.trim() === t", arg=expected)
        rows = tab.page.locator("#study-chunks tbody tr")
        rows.first.wait_for()
        deadline = time.monotonic() + 30
        while True:  # the page polls: compare the rows with the API read around them
            before = service.http.get(f"/api/v1/studies/{long_id}").json()
            shown = tab.page.evaluate(
                """() => [...document.querySelectorAll('#study-chunks tbody tr')].map(r => {
                    const td = r.querySelectorAll('td');
                    return [td[0].innerText, td[1].innerText, td[2].innerText,
                            td[3].querySelector('[data-state]').dataset.state,
                            td[5].innerText, td[6].innerText]; })""")
            after = service.http.get(f"/api/v1/studies/{long_id}").json()
            want = [[str(c["index"]), f"{c['alpha']:g}", c["subsets"], c["state"], c["worker"],
                     c["device"]] for c in logic.chunk_rows(after)]
            if shown == want and logic.chunk_rows(before) == logic.chunk_rows(after):
                break
            assert time.monotonic() < deadline, (shown, want)
            tab.page.wait_for_timeout(500)
        assert len(want) == len(after["chunks"]) >= 1    # SMALL: 6 subsets, one chunk
        assert "running" in [w[3] for w in want]
        done = sum(c["state"] == "done" for c in after["chunks"])
        summary = tab.page.locator("#study-chunks").locator("xpath=ancestor::details/summary")
        assert summary.inner_text() == (f"Retraining chunks: {done} of {len(want)} done")
        line = tab.page.locator("#study-progress-line")
        tab.page.wait_for_function(
            "() => /about .+ left at its pace so far/.test("
            "document.querySelector('#study-progress-line').innerText)")
        assert logic.eta_seconds(service.http.get(f"/api/v1/studies/{long_id}").json()) > 0
        assert "Stage " in line.inner_text()
        tab.screenshot("study-running-telemetry")
        tab.assert_clean()
    finally:
        service.http.post(f"/api/v1/studies/{long_id}/cancel")
        _wait(service, long_id, lambda s: s["state"] in ("cancelled", "failed", "succeeded"))
        assert service.http.delete(f"/api/v1/studies/{long_id}").status_code in (204, 404)


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
