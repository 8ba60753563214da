"""Is this worker alive? ``python -m worker.healthcheck [--name worker@HOST] [--max-age S]``.

A solo-pool Celery worker busy with a task cannot answer ``celery inspect ping``, so a ping
calls a healthy worker dead for the whole length of every study. Every worker instead writes
``last_seen`` on its ``workers`` row from a heartbeat thread beside its tasks, every
``CURVSCOPE_HEARTBEAT_S`` seconds (worker/heartbeat.py), also while a task runs.
This check reads that row from the database: healthy when the row exists, its state is
``online`` and ``now - last_seen`` is at most ``--max-age`` (default three heartbeats plus
10 s). Exit 0 healthy, 1 not (one line saying why); it imports neither Celery nor torch.

The name defaults to ``worker@<hostname>``, the ``-n worker@%h`` of docker-compose.yml.
"""

from __future__ import annotations

import argparse
import socket
import sys
from datetime import UTC, datetime


def check(name: str, max_age_s: float | None = None, settings=None) -> tuple[bool, str]:
    """(healthy, why) for the worker row ``name`` (``settings``: default the environment's)."""
    from backend.core.config import get_settings
    from backend.db import read_session
    from backend.models import Worker

    settings = settings or get_settings()
    limit = max_age_s if max_age_s is not None else 3 * settings.heartbeat_s + 10
    try:
        with read_session(settings) as session:
            row = session.get(Worker, name)
    except Exception as exc:  # the database is away: the worker cannot work either
        return False, f"cannot read the workers table: {type(exc).__name__}: {exc}"
    if row is None:
        return False, f"no worker row named {name!r} yet (has the worker started?)"
    seen = row.last_seen if row.last_seen.tzinfo else row.last_seen.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - seen).total_seconds()
    if row.state != "online":
        return False, f"{name} is {row.state} (last seen {age:.0f} s ago)"
    if age > limit:
        return False, f"{name}: last heartbeat {age:.0f} s ago, more than {limit:g} s"
    return True, f"{name} online, last heartbeat {age:.0f} s ago (limit {limit:g} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.healthcheck",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=f"worker@{socket.gethostname()}",
                        help="the worker's Celery hostname (default worker@<hostname>)")
    parser.add_argument("--max-age", type=float, default=None,
                        help="seconds since the last heartbeat still healthy "
                        "(default 3 × CURVSCOPE_HEARTBEAT_S + 10)")
    args = parser.parse_args(argv)
    healthy, why = check(args.name, args.max_age)
    print(why)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
