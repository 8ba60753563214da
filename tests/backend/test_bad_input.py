"""Bad input: every spec field's bounds, unknown methods, a dense study over the memory budget,
malformed uploads. Each answers 422 problem+json naming the field with a readable message,
and nothing stored changes (database rows, files, queue)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from backend.db import read_session
from backend.models import Dataset, IdempotencyKey, Study, StudyChunk
from backend.queue import broker_status
from curvscope.spec import StudySpec
from tests.backend.servers import tiny
from tests.backend.test_api import assert_problem


def _bad_values(prop: dict[str, Any]) -> list[tuple[str, Any]]:
    """(why, value) pairs just outside each bound the JSON schema states for one field."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    out: list[tuple[str, Any]] = []
    for b in branches:
        kind = b.get("type")
        if "enum" in b or "const" in b:
            out.append(("not a choice", "no-such-choice"))
        if kind in ("integer", "number"):
            step = 1 if kind == "integer" else 1e-9
            if "minimum" in b:
                out.append(("below minimum", b["minimum"] - step))
            if "exclusiveMinimum" in b:
                out.append(("at exclusive minimum", b["exclusiveMinimum"]))
            if "maximum" in b:
                out.append(("above maximum", b["maximum"] + step if kind == "integer"
                            else b["maximum"] * 1.5 + 1))
            if "exclusiveMaximum" in b:
                out.append(("at exclusive maximum", b["exclusiveMaximum"]))
        if kind == "string":
            if b.get("minLength", 0) >= 1:
                out.append(("too short", ""))
            if "maxLength" in b:
                out.append(("too long", "x" * (b["maxLength"] + 1)))
        if kind == "array":
            if b.get("minItems", 0) >= 1:
                out.append(("too few items", []))
            if "maxItems" in b:
                item = {"integer": 1, "number": 0.5, "string": "H"}.get(
                    b.get("items", {}).get("type"), 1)
                out.append(("too many items", [item] * (b["maxItems"] + 1)))
    out.append(("wrong type", {"not": "a scalar"}))
    return out


def field_cases() -> list[tuple[str, Any]]:
    schema = StudySpec.model_json_schema()
    cases = []
    for section, ref in schema["properties"].items():
        if "$ref" not in ref:
            cases += [(section, v) for _, v in _bad_values(ref)]
            continue
        sub = schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]
        for name, prop in sub["properties"].items():
            cases += [(f"{section}.{name}", v) for _, v in _bad_values(prop)]
    return cases


CASES = field_cases()


def set_path(spec: dict, path: str, value) -> dict:
    section, _, name = path.partition(".")
    if not name:
        return dict(spec, **{section: value})
    return dict(spec, **{section: dict(spec.get(section, {}), **{name: value})})


@pytest.fixture
def unchanged(api, settings):
    """Asserts, after the test, that no row, file or queued message was added."""
    def snapshot():
        with read_session(settings) as session:
            rows = {m.__name__: session.scalar(select(func.count()).select_from(m))
                    for m in (Study, StudyChunk, Dataset, IdempotencyKey)}
        files = sorted(str(p) for p in settings.data_dir.rglob("*")
                       if p.is_file() and "curvscope.db" not in p.name)
        return rows, files, broker_status(settings)["pending_messages"]

    before = snapshot()
    yield
    assert snapshot() == before


def test_cases_cover_every_section():
    sections = {path.split(".")[0] for path, _ in CASES}
    assert sections == {"name", "data", "model", "training", "curvature", "inverse", "compute",
                        "groundtruth"}
    assert len({path for path, _ in CASES}) >= 40


@pytest.mark.parametrize(("path", "value"), CASES,
                         ids=[f"{p}={str(v)[:20]}" for p, v in CASES])
def test_every_field_bound_is_a_422(api, unchanged, path, value):
    body = assert_problem(api.post("/api/v1/studies", json=set_path(tiny(), path, value)), 422)
    fields = [e["field"] for e in body["errors"]]
    assert any(f == path or f.startswith(path + ".") or f.startswith(path + "[")
               for f in fields), (path, body)
    assert all(e["message"] for e in body["errors"]) and path in body["detail"]


def test_unknown_method(api, unchanged):
    body = assert_problem(api.post("/api/v1/studies", json=tiny(
        curvature={"methods": ["K-FAC", "Shampoo"]})), 422)
    assert body["errors"][0]["field"] == "curvature.methods"
    assert "unknown method 'Shampoo'" in body["detail"] and "EK-FAC" in body["detail"]


def test_dense_study_over_the_memory_budget(api, unchanged):
    spec = tiny(model={"hidden": [256, 256]}, curvature={"methods": ["H", "K-FAC"]},
                compute={"memory_budget_gib": 0.01})
    body = assert_problem(api.post("/api/v1/studies", json=spec), 422)
    assert body["type"].endswith("over-memory-budget")
    assert "memory budget" in body["detail"] and "GiB" in body["detail"]
    assert body["errors"][0]["field"] == "curvature.methods"
    assert_problem(api.post("/api/v1/studies/validate", json=spec), 422)


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"preset": "huge"}, "preset", "unknown preset"),
    ({"preset": 3}, "preset", "preset name"),
    ({"trainig": {"epochs": 3}}, "trainig", "unknown field"),
    ({"training": {"epochs": "many"}}, "training.epochs", "integer"),
    ({"data": {"name": "file", "path": "/etc/passwd"}}, "data.path", "uploaded data set"),
    ({"data": {"name": "file", "path": "dataset:999"}}, "data.path", "no uploaded data set"),
    ({"data": {"name": "file"}}, "data", "path"),
    ({"groundtruth": {"alphas": [0.5, 1.5]}}, "groundtruth.alphas", "between 0 and 1"),
], ids=lambda x: str(x)[:30])
def test_bad_specs(api, unchanged, spec, field, words):
    body = assert_problem(api.post("/api/v1/studies", json=spec), 422)
    assert body["errors"][0]["field"] == field, body
    assert words in body["detail"], body


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{not json", b'"quick"'])
def test_bodies_that_are_not_a_spec_object(api, unchanged, raw):
    response = api.post("/api/v1/studies", content=raw,
                        headers={"content-type": "application/json"})
    assert_problem(response, 422)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD_ROWS = "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30))
UPLOADS = [
    ("notes.txt", b"a,b\n1,2\n", {}, ".csv"),
    ("empty.csv", b"", {}, "empty"),
    ("words.csv", ("a,b,label\n1,2,0\n3,4,1\n5,six,0\n" + GOOD_ROWS).encode(), {}, "line 4"),
    ("ragged.csv", ("a,b,label\n1,2,0\n3,1\n" + GOOD_ROWS).encode(), {}, "line 3"),
    ("float-labels.csv", ("a,b,label\n" + "".join(f"{i},1,0.5\n" for i in range(30))).encode(),
     {}, "label"),
    ("one-class.csv", ("a,b,label\n" + "".join(f"{i},1,1\n" for i in range(30))).encode(), {},
     "2 distinct labels"),
    ("header-only.csv", b"a,b,label\n", {}, "no data rows"),
    ("binary.csv", b"\xff\xfe\x00\x01garbage", {}, "UTF-8"),
    ("garbage.npz", b"this is not a zip archive", {}, "garbage.npz"),
    ("no-labels.npz", _npz(X=np.ones((30, 2))), {}, "y"),
    ("mismatch.npz", _npz(X=np.ones((30, 2)), y=np.arange(29) % 2), {}, "garbage"),
    ("nan.npz", _npz(X=np.full((30, 2), np.nan), y=np.arange(30) % 2), {}, "garbage"),
    ("labelcol.csv", ("a,b,label\n" + GOOD_ROWS).encode(), {"label_column": "colour"},
     "colour"),
]


@pytest.mark.parametrize(("name", "content", "form", "words"), UPLOADS,
                         ids=[u[0] for u in UPLOADS])
def test_malformed_uploads(api, unchanged, name, content, form, words):
    body = assert_problem(api.post("/api/v1/datasets", files={"file": (name, content)},
                                   data=form), 422)
    assert body["errors"][0]["field"] in ("file", "label_column")
    if words != "garbage":
        assert words in body["detail"], body["detail"]
    assert "/tmp" not in body["detail"] and ".upload-" not in body["detail"]


def test_upload_over_the_size_limit_is_413(api, unchanged, settings):
    big = b"a,b,label\n" + b"1,2,0\n" * (settings.max_upload_bytes // 6 + 10)
    body = assert_problem(api.post("/api/v1/datasets", files={"file": ("big.csv", big)}), 413)
    assert f"{settings.max_upload_bytes:,}" in body["detail"]


def test_dataset_count_limit(api, settings):
    for k in range(settings.max_datasets):
        rows = "".join(f"{i + k},{i % 3},{i % 2}\n" for i in range(30))
        assert api.post("/api/v1/datasets", files={
            "file": (f"d{k}.csv", ("a,b,label\n" + rows).encode())}).status_code == 201
    body = assert_problem(api.post("/api/v1/datasets", files={
        "file": ("one-more.csv", ("a,b,label\n" + GOOD_ROWS + "99,1,1\n").encode())}), 409)
    assert "limit" in body["detail"]
