"""The queue's overhead: the quick study through REST + one worker vs `curvscope run`.

Service: a fresh redis-server, uvicorn (``backend.app:app``) and one celery worker
(``--pool=solo``) on a fresh data folder and stage cache; the wall time runs from the POST to
the moment GET /studies/{id} first reports ``succeeded`` (polled every 0.1 s). Direct:
``curvscope run --preset quick --no-cache`` as a subprocess, wall time of the whole command
(interpreter start and imports included, as a user sees it). Both compute the same spec from
scratch (the training seed differs per repeat, so no cache or finished study is reused).
The service starts before the clock, as it would already be running.

    python benchmarks/queue_overhead.py [--repeats 1] [--quick]

Target: ratio = service / direct ≤ 1.2. Because other load on the machine moves both wall
times, it also reports each side's own compute (the stage timings, plus the chunks' run
times for the service) and ``service_overhead_s`` = service wall − its compute: the cost of
the queue, the extra task hops and the progress writes. Last line: one JSON object with
``ratio``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import emit, header, parse_args  # noqa: I001  (sets sys.path for curvscope)

from backend.launch import find_redis_server, free_port, redis_ping

BIN = Path(sys.executable).parent


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"{what} not ready after {timeout} s")


def main() -> None:
    import httpx

    args = parse_args("quick study via REST + worker vs curvscope run")
    repeats = args.repeats or 1
    config = {"preset": "quick"}
    if args.quick:  # a smaller study: the ratio is then dominated by fixed costs
        config |= {"training": {"epochs": 5}, "groundtruth": {"n_subsets": 20, "n_seeds": 2}}
    info = header(f"queue_overhead: {json.dumps(config)} × {repeats}")
    service_times, direct_times, stage_sums, service_stage_sums = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rport, port = free_port(), free_port()
        redis = start([find_redis_server(), "--bind", "127.0.0.1", "--port", str(rport),
                       "--save", "", "--appendonly", "no"], dict(os.environ), tmp / "redis.log")
        wait(lambda: redis_ping("127.0.0.1", rport), 20, "redis")
        env = dict(os.environ, CURVSCOPE_DATA_DIR=str(tmp / "data"),
                   REDIS_URL=f"redis://127.0.0.1:{rport}/0", PYTHONUNBUFFERED="1")
        for key in ("CURVSCOPE_DATABASE_URL", "DATABASE_URL", "CURVSCOPE_API_TOKEN"):
            env.pop(key, None)
        api = start([sys.executable, "-m", "uvicorn", "backend.app:app", "--host", "127.0.0.1",
                     "--port", str(port), "--no-access-log", "--log-level", "warning"], env,
                    tmp / "api.log")
        worker = start([str(BIN / "celery"), "-A", "worker.celery_app", "worker", "--pool=solo",
                        "-n", "bench@%h", "--loglevel=WARNING"], env, tmp / "worker.log")
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=30)
        try:
            def api_up():
                try:
                    return client.get("/api/v1/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait(api_up, 60, "API")
            wait(lambda: any(w["online"] for w in client.get("/api/v1/workers").json()["data"]),
                 120, "worker")
            for rep in range(repeats):
                spec = json.loads(json.dumps(config))
                spec.setdefault("training", {})["seed"] = 1000 + rep
                start_time = time.perf_counter()
                response = client.post("/api/v1/studies", json=spec)
                assert response.status_code == 202, response.text
                sid = response.json()["id"]
                while True:
                    study = client.get(f"/api/v1/studies/{sid}").json()
                    if study["state"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.1)
                service_times.append(time.perf_counter() - start_time)
                assert study["state"] == "succeeded", study
                detail = client.get(f"/api/v1/studies/{sid}").json()
                chunk_seconds = sum(
                    (datetime.fromisoformat(c["finished_at"])
                     - datetime.fromisoformat(c["started_at"])).total_seconds()
                    for c in detail["chunks"])
                service_stage_sums.append(sum(detail["timings"]["stages"].values())
                                          + chunk_seconds)
                spec_file = tmp / f"spec{rep}.json"
                spec_file.write_text(json.dumps(spec))
                out_dir = tmp / f"direct{rep}"
                start_time = time.perf_counter()
                subprocess.run([str(BIN / "curvscope"), "run", "--config", str(spec_file),
                                "--no-cache", "--out", str(out_dir)], check=True,
                               capture_output=True, env=env)
                direct_times.append(time.perf_counter() - start_time)
                timings = json.loads((out_dir / "results.json").read_text())["timings"]
                stage_sums.append(sum(timings.values()))
                print(f"   repeat {rep}: service {service_times[-1]:.2f} s (its stages and "
                      f"chunks {service_stage_sums[-1]:.2f} s), direct {direct_times[-1]:.2f} s "
                      f"(its stages {stage_sums[-1]:.2f} s)")
        finally:
            client.close()
            for process in (worker, api, redis):
                stop(process)
    service, direct = statistics.median(service_times), statistics.median(direct_times)
    ratio = service / direct
    print(f"   service {service:.2f} s / direct {direct:.2f} s = {ratio:.3f} (target ≤ 1.2)")
    emit({"benchmark": "queue_overhead", "config": config, "repeats": repeats,
          "service_s": round(service, 3), "direct_s": round(direct, 3),
          "direct_stage_sum_s": round(statistics.median(stage_sums), 3),
          "service_stage_sum_s": round(statistics.median(service_stage_sums), 3),
          "service_overhead_s": round(statistics.median(
              [t - w for t, w in zip(service_times, service_stage_sums, strict=True)]), 3),
          "ratio": round(ratio, 4), "target": 1.2, "meets_target": ratio <= 1.2,
          "service_times": [round(t, 3) for t in service_times],
          "direct_times": [round(t, 3) for t in direct_times], "machine": info})


if __name__ == "__main__":
    main()
