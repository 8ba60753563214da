"""API under load: requests per second and p50/p99 latency of GET /studies and
GET /studies/{id} with 32 concurrent clients on loopback, then a mixed phase: reads,
submissions of new studies and idempotency races (many clients sending the same
Idempotency-Key and body at once), checked afterwards: 0 errors, every accepted study stored
once (none lost, none duplicated), every key naming one study.

A uvicorn process (``backend.app:app``, one process, as ``curvscope up`` runs it) serves a
SQLite database (WAL; or --database URL) seeded with --studies succeeded studies. Each
endpoint is hit by --clients concurrent keep-alive clients (asyncio + httpx) until
--requests requests or --duration seconds, whichever comes first; every non-200 answer or
transport error counts as an error (zero expected). The client shares the machine's cores with
the server, so the rates are a lower bound for the server alone.

    python benchmarks/api_load.py [--clients 32] [--requests 3000] [--duration 30]

Last line: one JSON object.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, header, parse_args  # noqa: I001  (sets sys.path for curvscope)


def wait_http(url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url}: the server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def seed_database(settings, n: int) -> list[int]:
    from datetime import UTC, datetime, timedelta

    from backend.db import upgrade_database, write_session
    from backend.models import Study

    upgrade_database(settings)
    now = datetime.now(UTC)
    summary = {"methods": {m: {"relative_residual_to_H": 0.1 * k, "lds": {"0.5": 0.3 - 0.02 * k}}
                           for k, m in enumerate(["H", "GGN", "GGN-blockdiag", "EK-FAC",
                                                  "K-FAC", "identity", "GGN-diag"])},
               "n_params": 1482, "test_accuracy": 0.95, "device": "cpu"}
    spec = {"name": "quick", "training": {"epochs": 20}, "model": {"hidden": [16, 16]}}
    with write_session(settings) as session:
        rows = [Study(name=f"study {i}", state="succeeded", spec=spec, request={"preset": "quick"},
                      spec_hash=f"{i:016x}", preset="quick", progress=1.0, stage="done",
                      summary=summary, timings={"train": 1.0},
                      created_at=now - timedelta(seconds=n - i),
                      started_at=now - timedelta(seconds=n - i - 0.5),
                      finished_at=now - timedelta(seconds=n - i - 0.1))
                for i in range(n)]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


async def hammer(base: str, paths: list[str], clients: int, max_requests: int,
                 max_seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        async def one_client(seed: int):
            nonlocal errors, issued
            rng = random.Random(seed)
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                path = rng.choice(paths)
                start = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1), "p50_ms": round(q[49] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2), "max_ms": round(latencies[-1] * 1000, 2)}


async def mixed(base: str, ids: list[int], clients: int, max_seconds: float,
                token: str) -> dict:
    """Reads (60 %), new studies (25 %), idempotency races (15 %: a key and body from a pool
    of 16, sent by whichever clients draw it, so several send one at once)."""
    import httpx

    latencies: dict[str, list[float]] = {"read": [], "submit": [], "race": []}
    errors: list[str] = []
    accepted: dict[int, int] = {}          # seed → study id
    race_ids: dict[str, set[int]] = {}
    counter = iter(range(10**9))
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}

    def spec(seed: int) -> dict:
        return {"preset": "quick", "model": {"hidden": [8]}, "training": {"seed": seed},
                "curvature": {"methods": ["K-FAC", "identity"]}}

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers=headers) as client:
        async def post(body: dict, key: str | None) -> httpx.Response:
            extra = {"Idempotency-Key": key} if key else {}
            for _ in range(20):  # 409: the same key in flight elsewhere; repeat, as told
                response = await client.post("/api/v1/studies", json=body, headers=extra)
                if response.status_code != 409:
                    return response
                await asyncio.sleep(0.05)
            return response

        async def one_client(seed: int):
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                draw = rng.random()
                start = time.perf_counter()
                try:
                    if draw < 0.6:
                        kind = "read"
                        path = rng.choice([f"/api/v1/studies/{rng.choice(ids)}",
                                           "/api/v1/studies?limit=50"])
                        response = await client.get(path)
                        ok = response.status_code == 200
                    elif draw < 0.85:
                        kind, n = "submit", 1_000_000 + next(counter)
                        response = await post(spec(n), f"new-{n}")
                        ok = response.status_code == 202
                        if ok:
                            accepted[n] = response.json()["id"]
                    else:
                        kind, k = "race", rng.randrange(16)
                        response = await post(spec(2_000_000 + k), f"race-{k}")
                        ok = response.status_code in (200, 202)
                        if ok:
                            race_ids.setdefault(f"race-{k}", set()).add(response.json()["id"])
                except httpx.HTTPError as exc:
                    ok, response = False, exc
                latencies[kind].append(time.perf_counter() - start)
                if not ok:
                    errors.append(f"{kind}: {getattr(response, 'status_code', response)}")

        start = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
        rows = []
        offset = 0
        while True:
            page = (await client.get("/api/v1/studies", params={
                "limit": 500, "offset": offset, "sort": "id"})).json()
            rows += page["data"]
            offset += 500
            if offset >= page["count"]:
                break
    by_hash: dict[str, list[int]] = {}
    for row in rows:
        by_hash.setdefault(row["spec_hash"], []).append(row["id"])
    stored = {row["id"] for row in rows}
    lost = [n for n, sid in accepted.items() if sid not in stored]
    duplicated = {h: v for h, v in by_hash.items() if len(v) > 1}
    split_keys = {k: sorted(v) for k, v in race_ids.items() if len(v) > 1}
    out = {"seconds": round(elapsed, 3), "errors": len(errors), "error_samples": errors[:5],
           "accepted": len(accepted), "lost": len(lost), "duplicated": len(duplicated),
           "race_keys": len(race_ids), "race_keys_split": len(split_keys)}
    for kind, values in latencies.items():
        if len(values) >= 2:
            values.sort()
            q = statistics.quantiles(values, n=100, method="inclusive")
            out[kind] = {"requests": len(values), "p50_ms": round(q[49] * 1000, 2),
                         "p99_ms": round(q[98] * 1000, 2)}
    return out


def main() -> None:
    def extra(parser):
        parser.add_argument("--clients", type=int, default=32)
        parser.add_argument("--requests", type=int, default=3000,
                            help="requests per endpoint at most")
        parser.add_argument("--duration", type=float, default=30.0,
                            help="seconds per endpoint at most")
        parser.add_argument("--studies", type=int, default=500, help="rows seeded")
        parser.add_argument("--database", default=None,
                            help="SQLAlchemy URL [default: a SQLite file]")

    args = parse_args("GET /studies and GET /studies/{id} under concurrent clients", extra)
    if args.quick:
        args.requests, args.duration, args.studies = 300, 10.0, 100
    info = header(f"api_load: {args.clients} clients, ≤{args.requests} requests or "
                  f"≤{args.duration:g} s per endpoint")
    from backend.core.config import Settings
    from backend.launch import find_redis_server, free_port, redis_ping

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        settings = Settings(data_dir=data, database_url=args.database)
        ids = seed_database(settings, args.studies)
        port, rport = free_port(), free_port()
        redis = subprocess.Popen([find_redis_server(), "--port", str(rport), "--save", "",
                                  "--appendonly", "no", "--bind", "127.0.0.1"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not redis_ping("127.0.0.1", rport):
            time.sleep(0.05)
        token = "load-benchmark-token-0123456789"
        env = dict(os.environ, CURVSCOPE_DATA_DIR=str(data),
                   REDIS_URL=f"redis://127.0.0.1:{rport}/0", CURVSCOPE_API_TOKEN=token)
        if args.database:
            env["CURVSCOPE_DATABASE_URL"] = args.database
        log = Path(tmp) / "api.log"
        with open(log, "wb") as handle:
            server = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.app:app",
                                       "--host", "127.0.0.1", "--port", str(port),
                                       "--no-access-log", "--log-level", "warning"],
                                      env=env, stdout=handle, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/api/v1/studies?limit=1", 60, server, log)
            list_paths = [f"/api/v1/studies?limit=50&offset={o}" for o in range(0, 200, 50)]
            get_paths = [f"/api/v1/studies/{i}" for i in ids]
            results = {}
            for name, paths in (("GET /studies", list_paths), ("GET /studies/{id}", get_paths)):
                asyncio.run(hammer(base, paths, args.clients, 100, 10))  # warm-up
                results[name] = asyncio.run(hammer(base, paths, args.clients, args.requests,
                                                   args.duration))
                r = results[name]
                print(f"   {name:<20} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                      f"p99 {r['p99_ms']:7.2f} ms  ({r['requests']} requests, "
                      f"{r['errors']} errors)")
            asyncio.run(mixed(base, ids, 4, 5, token))  # warm-up: the spec validators load
            m = asyncio.run(mixed(base, ids, args.clients, args.duration, token))
            results["mixed"] = m
            for kind in ("read", "submit", "race"):
                if kind in m:
                    print(f"   mixed {kind:<14} p50 {m[kind]['p50_ms']:7.2f} ms  p99 "
                          f"{m[kind]['p99_ms']:8.2f} ms  ({m[kind]['requests']} requests)")
            print(f"   mixed: {m['errors']} errors, {m['accepted']} studies accepted, "
                  f"{m['lost']} lost, {m['duplicated']} duplicated, "
                  f"{m['race_keys_split']} of {m['race_keys']} raced keys split")
        finally:
            stop_process(server)
            stop_process(redis)
    emit({"benchmark": "api_load", "clients": args.clients, "studies": args.studies,
          "database": "sqlite" if not args.database else args.database.split(":")[0],
          "endpoints": results, "errors": sum(r["errors"] for r in results.values()),
          "lost": results.get("mixed", {}).get("lost"),
          "duplicated": results.get("mixed", {}).get("duplicated"),
          "machine": info})


if __name__ == "__main__":
    main()
