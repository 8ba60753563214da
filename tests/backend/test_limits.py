"""Bounded input: the estimate is closed form (validating a 118-million-parameter spec builds
no model), every size a client asks for is capped by the server, uploads are bounded by what
they decompress to, and a full disk is a 507 with a sentence (the health check says so)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from tests.backend.servers import tiny
from tests.backend.test_api import assert_problem


@pytest.mark.parametrize(("features", "classes", "hidden", "bias"), [
    (64, 10, [16, 16], True), (4, 3, [7], False), (30, 2, [], True), (13, 3, [5, 9, 2], True)])
def test_the_parameter_count_in_closed_form_is_the_models(features, classes, hidden, bias):
    from backend.estimate import n_params
    from curvscope.models.mlp import ModelSpec, build_mlp

    model = build_mlp(features, classes, ModelSpec(hidden=hidden, bias=bias), seed=0)
    assert n_params(features, classes, hidden, bias) == sum(p.numel() for p in
                                                            model.parameters())


def test_validate_never_builds_a_model(api):
    import psutil

    process = psutil.Process()
    spec = {"preset": "quick", "model": {"hidden": [4096] * 8},
            "curvature": {"methods": ["K-FAC", "identity"]}}
    api.post("/api/v1/studies/validate", json=tiny())             # imports done
    before = process.memory_info().rss
    body = api.post("/api/v1/studies/validate", json=spec).json()
    grown = process.memory_info().rss - before
    assert body["estimate"]["n_params"] == 64 * 4096 + 4096 + 7 * (4096 * 4096 + 4096) + (
        4096 * 10 + 10)                                            # 117.7 million
    assert grown < 200 * 2**20, f"validation grew the API by {grown / 2**20:.0f} MiB"


def test_the_memory_budget_is_capped_by_the_server(api, settings, monkeypatch):
    monkeypatch.setattr(settings, "max_memory_budget_gib", 2.0)
    huge = tiny(compute={"memory_budget_gib": 100000})
    body = assert_problem(api.post("/api/v1/studies/validate", json=huge), 422)
    assert body["errors"][0]["field"] == "compute.memory_budget_gib"
    assert "at most 2 GiB on this server" in body["errors"][0]["message"]
    dense = tiny(model={"hidden": [512, 512]}, curvature={"methods": ["H", "K-FAC"]})
    body = assert_problem(api.post("/api/v1/studies", json=dense), 422)   # no budget named:
    assert body["errors"][0]["field"] == "curvature.methods"               # the cap applies
    assert "above the memory budget of 2.0 GiB" in body["errors"][0]["message"]
    ok = api.post("/api/v1/studies/validate", json=tiny(compute={"memory_budget_gib": 1}))
    assert ok.status_code == 200 and ok.json()["estimate"]["memory_budget_bytes"] == 2**30
    monkeypatch.setattr(settings, "max_retrained_models", 10)
    body = assert_problem(api.post("/api/v1/studies/validate", json=tiny()), 422)
    assert "retrained models" in body["detail"]
    assert api.get("/api/v1/studies").json()["count"] == 0


def _npz_claiming(shape: tuple[int, ...]) -> bytes:
    """An .npz whose X.npy header claims ``shape`` (float64) but holds only a few bytes."""
    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                        "shape": shape})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", header.getvalue() + b"\0" * 64)
        y = io.BytesIO()
        np.save(y, np.zeros(shape[0], dtype=np.int64)[:10])
        archive.writestr("y.npy", y.getvalue())
    return out.getvalue()


def test_an_npz_is_bounded_by_what_it_decompresses_to(api, settings, monkeypatch):
    import psutil

    monkeypatch.setattr(settings, "max_decompressed_bytes", 8 * 2**20)
    rss = psutil.Process().memory_info().rss
    claimed = api.post("/api/v1/datasets", files={"file": ("bomb.npz",
                                                           _npz_claiming((20000, 20000)))})
    body = assert_problem(claimed, 413)
    assert "would decompress to more than 8,388,608 bytes" in body["detail"]
    assert "(20000, 20000)" in body["detail"]
    real = io.BytesIO()                                   # a real one: 32 MB of zeros, ~30 kB
    np.savez_compressed(real, X=np.zeros((2000, 2000)), y=np.zeros(2000, dtype=np.int64))
    assert len(real.getvalue()) < settings.max_upload_bytes
    assert_problem(api.post("/api/v1/datasets", files={"file": ("zeros.npz",
                                                                real.getvalue())}), 413)
    assert psutil.Process().memory_info().rss - rss < 100 * 2**20   # nothing was inflated
    pickled = io.BytesIO()
    np.savez(pickled, X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    body = assert_problem(api.post("/api/v1/datasets", files={"file": (
        "objects.npz", pickled.getvalue())}), 422)
    assert "pickle" in body["detail"]
    assert api.get("/api/v1/datasets").json()["count"] == 0


def test_a_full_disk_is_507_with_a_sentence_and_health_says_degraded(api, settings,
                                                                     monkeypatch):
    health = api.get("/api/v1/health").json()
    assert health["disk"]["ok"] is True and health["disk"]["free_bytes"] > 0
    monkeypatch.setattr(settings, "min_free_bytes", 2**62)
    body = assert_problem(api.post("/api/v1/studies", json=tiny()), 507)
    assert "is full" in body["detail"] and "nothing was stored" in body["detail"]
    assert_problem(api.post("/api/v1/sweeps", json={"base": tiny(), "grid": {
        "training.seed": [1, 2]}}), 507)
    assert_problem(api.post("/api/v1/datasets", files={"file": ("a.csv", b"a,b\n1,0\n")}),
                   507)
    health = api.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["disk"]["ok"] is False
    assert api.get("/api/v1/studies").json()["count"] == 0


def test_a_full_disk_is_recognised_in_its_disguises():
    import errno
    import sqlite3

    from backend.disk import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    wrapped = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
    assert is_disk_full(wrapped)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("saving the stage failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(ValueError("training diverged"))
    assert not is_disk_full(OSError(errno.ENOENT, "No such file or directory"))
