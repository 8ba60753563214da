"""Schemathesis (`st run --checks all`) over every operation of the OpenAPI document of a real
uvicorn on SQLite with a real Redis: no 5xx, every status, header and body as documented,
bad input refused, the right Allow header on 405, nothing served after a DELETE. Bounded
examples and time; 0 failures.

Two runs: every check on every operation but five, then every check but one on those five:
positive_data_acceptance ("a schema-valid request was rejected") cannot hold where the body
is a study spec given as a preset plus overrides (its OpenAPI schema is a free-form object;
the rules are StudySpec's, GET /api/v1/schema, with cross-field ones: alphas without repeats,
path iff file, dense memory within the server's cap) nor for an upload (a .csv or .npz is
valid by its content, not by its multipart schema). Bad input to them is still checked
(negative_data_rejection)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)
from tests.backend.servers import service_env, start_api, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FREE_FORM = r"^POST /api/v1/(studies|studies/validate|sweeps|sweeps/validate|ladders|datasets)$"
TOKEN = "schemathesis-token-0123456789"


def test_schemathesis_finds_nothing(tmp_path, redis_server):  # noqa: F811
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which(
        "schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    env = service_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}",
                      redis_server.url(10), CURVSCOPE_API_TOKEN=TOKEN,
                      CURVSCOPE_SERVE_DASHBOARD="false", CURVSCOPE_MAX_DATASETS="5",
                      CURVSCOPE_MAX_UPLOAD_BYTES="65536")
    api, base = start_api(env, tmp_path / "api.log")
    import httpx

    httpx.get(f"{base}/api/v1/schema", timeout=300)  # the spec's first (lazy) import
    common = [st, "run", "--request-timeout", "60", f"{base}/api/v1/openapi.json", "--checks", "all", "--max-examples",
              "8", "--seed", "10", "--workers", "1", "-H", f"Authorization: Bearer {TOKEN}"]
    try:
        runs = [subprocess.run(common + extra, capture_output=True, text=True, timeout=400,
                               cwd=tmp_path)
                for extra in (["--exclude-name-regex", FREE_FORM, "--max-time", "70"],
                              ["--include-name-regex", FREE_FORM, "--exclude-checks",
                               "positive_data_acceptance", "--max-time", "40"])]
    finally:
        stop_process(api)
    for run in runs:
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "API Operations:" in run.stdout and "Tested:" in run.stdout
