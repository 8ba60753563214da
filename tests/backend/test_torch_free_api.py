"""The API never imports torch to create, validate or list studies (nor ladders and sweeps):
the spec, the registry's capability table and the closed-form sizes are pure Python."""

import json
import subprocess
import sys

CODE = r"""
import sys, json
from fastapi.testclient import TestClient
from backend.app import create_app
from backend.core.config import Settings
settings = Settings(data_dir=sys.argv[1], database_url="sqlite:///" + sys.argv[1] + "/db.sqlite",
                    redis_url="redis://127.0.0.1:9/0", api_token="t0ken-for-test")
out = {}
with TestClient(create_app(settings), headers={"Authorization": "Bearer t0ken-for-test"}) as c:
    out["validate"] = c.post("/api/v1/studies/validate", json={"preset": "paper"}).status_code
    out["create"] = c.post("/api/v1/studies", json={"preset": "quick"}).status_code
    out["list"] = c.get("/api/v1/studies").status_code
    out["ladder"] = c.post("/api/v1/ladders", json={"base": {"preset": "quick"},
                                                    "rungs": ["blocks"]}).status_code
    out["sweep"] = c.post("/api/v1/sweeps", json={"base": {"preset": "quick"},
                                                  "grid": {"inverse.damping": [1e-3]}}).status_code
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""


def test_creating_validating_and_listing_import_no_torch(tmp_path):
    done = subprocess.run([sys.executable, "-c", CODE, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["validate"] == 200 and out["list"] == 200
    assert out["create"] == 202 and out["ladder"] == 202 and out["sweep"] == 202  # broker down
    assert out["torch"] is False
