"""Secure by default: the token (from the environment or a file; an empty one refused at
start-up), the Host check on loopback (DNS rebinding), writes from pages of other origins
refused, CORS closed. Real app, real SQLite file, real Redis (tests/backend/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import TOKEN
from tests.backend.servers import tiny

ROOT = Path(__file__).resolve().parents[2]


def test_an_empty_token_is_refused_at_start_up(tmp_path):
    env = dict(os.environ, CURVSCOPE_API_TOKEN="", CURVSCOPE_DATA_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", "import backend.app as a; a.app"], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2
    assert "refusing to start" in run.stderr and "CURVSCOPE_API_TOKEN is set but empty" in (
        run.stderr)
    assert "Traceback" not in run.stderr


def test_the_token_can_come_from_a_file(tmp_path):
    from pydantic import ValidationError

    from backend.core.config import Settings

    path = tmp_path / "token"
    path.write_text("s3cret-from-file\n")
    assert Settings(api_token_file=path).api_token.get_secret_value() == "s3cret-from-file"
    path.write_text("  \n")
    with pytest.raises(ValidationError, match="is empty"):
        Settings(api_token_file=path)
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(api_token_file=tmp_path / "missing")


def test_a_bare_bearer_is_not_a_token(api):
    for header in ("Bearer", "Bearer ", "Bearer  ", "bearer"):
        response = api.post("/api/v1/studies", json=tiny(), headers={"Authorization": header})
        assert response.status_code == 401, header


@pytest.fixture
def loopback(service):
    """The app as reached on 127.0.0.1 (scope['server'] is a loopback address)."""
    settings, client = service
    return TestClient(client.app, base_url="http://127.0.0.1:8000",
                      headers={"Authorization": f"Bearer {TOKEN}"})


def test_the_host_header_is_checked_on_loopback(loopback, api):
    assert loopback.get("/api/v1/studies").status_code == 200
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert loopback.get("/api/v1/studies", headers={"host": host}).status_code == 200
    rebound = loopback.get("/api/v1/studies", headers={"host": "evil.example:8000"})
    assert rebound.status_code == 400
    assert rebound.headers["content-type"].startswith("application/problem+json")
    assert "does not name this server" in rebound.json()["detail"]


def test_writes_from_another_origin_are_refused(loopback, api):
    spec = tiny(training={"seed": 777})
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        refused = loopback.post("/api/v1/studies", json=spec, headers=headers)
        assert refused.status_code == 403, headers
        assert "refused" in refused.json()["detail"]
        assert "access-control-allow-origin" not in refused.headers
    assert api.get("/api/v1/studies").json()["count"] == 0            # nothing was stored
    same = loopback.post("/api/v1/studies", json=spec, headers={
        "Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 202
    # reads from anywhere, but never with CORS headers: another origin cannot read them
    read = loopback.get("/api/v1/studies", headers={"Origin": "http://evil.example"})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
    preflight = loopback.options("/api/v1/studies", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405 and "access-control-allow-origin" not in (
        preflight.headers)


def test_the_mounted_dashboard_writes_with_its_own_key(service):
    settings, client = service
    if not client.app.state.dashboard:
        pytest.skip("the dashboard is not mounted (frontend or dash missing)")
    from frontend.api_client import CONFIG

    assert CONFIG.token == client.app.state.dashboard_key != TOKEN
    keyed = client.post("/api/v1/studies/validate", json=tiny(),
                        headers={"Authorization": f"Bearer {CONFIG.token}"})
    assert keyed.status_code == 200
