"""The service's command-line side (backend/launch.py) without starting the service: the
token file, where a client finds the token, the broker a lone worker joins (never a default
port's stranger), the data-folder lock, the busy-port check, the restart backoff."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend import launch

CLI = str(Path(sys.executable).parent / "curvscope")


def test_the_token_file_is_made_once_and_private(tmp_path):
    path, created = launch.ensure_token(tmp_path)
    assert created and path.stat().st_mode & 0o777 == 0o600
    token = path.read_text().strip()
    assert len(token) >= 40
    assert launch.ensure_token(tmp_path) == (path, False) and path.read_text().strip() == token


def test_a_client_finds_the_token(tmp_path, monkeypatch):
    for name in ("CURVSCOPE_API_TOKEN", "CURVSCOPE_API_TOKEN_FILE", "CURVSCOPE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert launch.find_token(tmp_path) is None
    (tmp_path / "token").write_text("from-the-folder\n")
    assert launch.find_token(tmp_path) == "from-the-folder"
    other = tmp_path / "elsewhere"
    other.write_text("from-the-file")
    monkeypatch.setenv("CURVSCOPE_API_TOKEN_FILE", str(other))
    assert launch.find_token(tmp_path) == "from-the-file"
    monkeypatch.setenv("CURVSCOPE_API_TOKEN", "from-the-environment")
    assert launch.find_token(tmp_path) == "from-the-environment"


def test_a_lone_worker_joins_the_folders_broker_or_refuses(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "CURVSCOPE_REDIS_URL", "CURVSCOPE_BROKER_URL")}
    refused = subprocess.run([CLI, "worker", "--data", str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert f"no broker for {tmp_path}" in refused.stderr and "REDIS_URL" in refused.stderr
    (tmp_path / "broker_url").write_text("redis://127.0.0.1:45678/0\n")
    for name in ("REDIS_URL", "CURVSCOPE_REDIS_URL", "CURVSCOPE_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    assert launch.broker_of(tmp_path) == "redis://127.0.0.1:45678/0"


def test_one_up_per_data_folder(tmp_path):
    held = launch.DataLock(tmp_path)
    try:
        with pytest.raises(launch.UserError, match=r"in use by another `curvscope up` \(pid"):
            launch.DataLock(tmp_path)
    finally:
        held.release()
    launch.DataLock(tmp_path).release()          # free again once released


def test_a_busy_port_is_seen():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert launch.port_in_use("127.0.0.1", port)
    assert not launch.port_in_use("127.0.0.1", launch.free_port())


def test_restarts_back_off(tmp_path):
    part = launch.Part("sleeper", [sys.executable, "-c", "pass"], dict(os.environ), tmp_path)
    part.process.wait(30)
    delays = [part.schedule_restart() for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    part.stop(1)
