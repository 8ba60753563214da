"""The REST half of .ci/compose-check: a quick study through the compose stack and back.

``run``: a write without the token must be refused (401), then POST ``--spec`` (default the
quick preset) with the token, follow it to ``succeeded`` (sampling the worker container's health while it runs: it
must read ``healthy`` and never ``unhealthy``), and write the sha256 of results.json and of
every array (as .npy) to ``--out``. ``digest --against FILE``: the same digests again (after
``docker compose down`` + ``up``) and exit 1 unless every one is identical.
Standard library only (urllib), so it runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request


class Api:
    def __init__(self, url: str, token: str):
        self.url, self.token = url.rstrip("/") + "/api/v1", token

    def request(self, method: str, path: str, body: dict | None = None, token: bool = True,
                accept: str = "application/json") -> tuple[int, bytes]:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def json(self, path: str) -> dict:
        status, body = self.request("GET", path)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)


def digests(api: Api, study: int) -> dict[str, str]:
    status, body = api.request("GET", f"/studies/{study}/results")
    if status != 200:
        raise SystemExit(f"results of study {study}: {status} {body[:300]!r}")
    out = {"results.json": hashlib.sha256(body).hexdigest()}
    for item in api.json(f"/studies/{study}/arrays")["data"]:
        status, raw = api.request("GET", f"/studies/{study}/arrays/{item['name']}?format=npy",
                                  accept="application/x-npy")
        if status != 200:
            raise SystemExit(f"array {item['name']}: {status}")
        out[f"arrays/{item['name']}"] = hashlib.sha256(raw).hexdigest()
    return out


def run(api: Api, args) -> int:
    status, body = api.request("POST", "/studies", {"preset": "quick"}, token=False)
    if status != 401:
        print(f"  a POST without the token answered {status}, not 401: {body[:200]!r}")
        return 1
    print("  POST /studies without the token: 401 (writes need it)")
    start = time.monotonic()
    status, body = api.request("POST", "/studies", {**json.loads(args.spec),
                                                    "name": "compose-check"})
    if status not in (200, 201, 202):
        print(f"  POST /studies: {status} {body[:500]!r}")
        return 1
    study = json.loads(body)["id"]
    print(f"  study {study} queued ({status})")
    health: dict[str, int] = {}
    last = ""
    while True:
        row = api.json(f"/studies/{study}")
        if row["state"] in ("succeeded", "failed", "cancelled"):
            break
        if row["state"] == "running" and args.worker_health:
            got = subprocess.run(shlex.split(args.worker_health), capture_output=True,
                                 text=True).stdout.strip() or "?"
            health[got] = health.get(got, 0) + 1
        line = f"{row['state']} {row.get('stage') or ''} {row.get('progress') or 0:.2f}"
        if line != last:
            print(f"  {time.monotonic() - start:6.1f} s  {line}", flush=True)
            last = line
        if time.monotonic() - start > args.timeout:
            print(f"  study {study} not finished after {args.timeout:g} s: {row}")
            return 1
        time.sleep(1)
    took = time.monotonic() - start
    if row["state"] != "succeeded":
        print(f"  study {study} {row['state']}: {row.get('error')}")
        return 1
    print(f"  study {study} succeeded in {took:.1f} s on {row.get('device')} "
          f"(worker {row.get('worker')})")
    if args.worker_health:
        print(f"  worker health while the study ran: {health}")
        if health.get("unhealthy") or (health and not health.get("healthy")):
            print("  the worker's healthcheck did not say healthy while it worked")
            return 1
    found = digests(api, study)
    print(f"  {len(found)} digests (results.json + {len(found) - 1} arrays as .npy); "
          f"results.json {found['results.json'][:16]}")
    with open(args.out, "w") as fh:
        json.dump({"study": study, "seconds": took, "digests": found}, fh)
    return 0


def digest(api: Api, args) -> int:
    before = json.load(open(args.against))
    row = api.json(f"/studies/{args.study}")
    if row["state"] != "succeeded":
        print(f"  study {args.study} is {row['state']} after down/up")
        return 1
    now = digests(api, args.study)
    differ = [k for k in before["digests"] if now.get(k) != before["digests"][k]]
    missing = sorted(set(before["digests"]) ^ set(now))
    if differ or missing:
        print(f"  differ: {differ}; only on one side: {missing}")
        return 1
    print(f"  all {len(now)} digests identical over REST after down/up")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--worker-health", default="",
                        help="a command printing the worker container's health status")
    parser.add_argument("--timeout", type=float, default=900)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--out", required=True)
    p_run.add_argument("--spec", default='{"preset": "quick"}', help="the study (JSON)")
    p_dig = sub.add_parser("digest")
    p_dig.add_argument("--study", type=int, required=True)
    p_dig.add_argument("--against", required=True)
    args = parser.parse_args()
    api = Api(args.url, args.token)
    return run(api, args) if args.cmd == "run" else digest(api, args)


if __name__ == "__main__":
    sys.exit(main())
