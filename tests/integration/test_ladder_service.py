"""The ablation ladder end to end: one POST, real workers, rungs sharing the trained model and
the retraining through the stage cache, and the summary's numbers."""

from __future__ import annotations

import time

import pytest

from tests.backend.servers import tiny

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_ladder_runs_through_the_workers_and_shares_cached_stages(service):
    body = {"name": "itest", "base": tiny(training={"seed": 301}),
            "rungs": ["blocks", "kfac_damping", "lds_summary"], "path": "both"}
    reply = service.http.post("/api/v1/ladders", json=body)
    assert reply.status_code == 202, reply.text
    ladder = reply.json()
    assert [r["label"] for r in ladder["rungs"]] == [
        "base", "blocks", "kfac_damping", "lds_summary", "blocks +kfac_damping",
        "blocks +kfac_damping +lds_summary"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ladder = service.http.get(f"/api/v1/ladders/{ladder['id']}").json()
        if ladder["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert ladder["state"] == "succeeded", ladder
    results = {r["label"]: service.http.get(f"/api/v1/studies/{r['study']['id']}/results")
               .json() for r in ladder["rungs"]}
    # one training and one retraining for the whole ladder: every rung but one reused them
    train_events = [r["cache"]["train"] for r in results.values()]
    assert train_events.count("computed") == 1, train_events
    # retraining runs in chunk tasks before each study's finalize, so every finalize reads it
    # back ("reused"); that it ran once is in the cache folder: one entry per retraining task
    tasks = [k for k in results["base"]["cache"] if k.startswith("groundtruth/")]
    assert tasks and all(r["cache"][k] == "reused" for r in results.values() for k in tasks)
    entries = sorted(p.name for p in (service.data_dir / "cache").glob("groundtruth_*.pt"))
    assert len(entries) == len(tasks), entries
    # the structured curvature is shared between rungs that switch only the inverse or the
    # summary: one of them computes it, the others reuse it (which one is first depends on
    # how the two workers interleave the rungs' tasks)
    shared = [results[label]["cache"]["curvature/K-FAC"]
              for label in ("base", "kfac_damping", "lds_summary")]
    assert sorted(shared) == ["computed", "reused", "reused"], shared
    assert results["kfac_damping"]["methods"]["K-FAC"]["damping_received"]["rule"] == \
        "heuristic"
    assert results["blocks"]["spec"]["curvature"]["block_structure"] == "tensor"

    summary = service.http.get(f"/api/v1/ladders/{ladder['id']}/summary").json()
    assert summary["finished"]
    rows = {r["label"]: r for r in summary["rungs"]}
    # kfac_damping leaves EK-FAC's scores as they were: its paired difference is exactly 0
    ekfac = rows["kfac_damping"]["delta_vs_base"]["EK-FAC"]["0.5"]
    assert ekfac["value"] == pytest.approx(0.0, abs=1e-12)
    assert ekfac["ci_low"] == pytest.approx(0.0, abs=1e-12)
    # K-FAC's difference is the one the rung's own results give
    kfac = rows["kfac_damping"]["delta_vs_base"]["K-FAC"]["0.5"]
    assert kfac["value"] == pytest.approx(
        results["kfac_damping"]["methods"]["K-FAC"]["lds"]["0.5"]["headline"]
        - results["base"]["methods"]["K-FAC"]["lds"]["0.5"]["headline"])
    # the summary rung reports the interval's midpoint as its headline
    cell = rows["lds_summary"]["lds"]["K-FAC"]["0.5"]
    official = results["lds_summary"]["methods"]["K-FAC"]["lds"]["0.5"]["official_interval"]
    assert cell["headline"] == pytest.approx(official["midpoint"])
    assert rows["lds_summary"]["known_pitfalls"]
    assert not rows["base"]["known_pitfalls"]
    assert rows["base"]["hierarchy"]["0.5"]["chain"].startswith("EK-FAC")
