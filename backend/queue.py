"""The API's side of the queue: enqueue by task name, look at workers and the broker.

The API never imports ``worker`` (nor torch): it holds a bare Celery client configured from
the same Settings and sends ``curvscope.start_study`` by name.
"""

from __future__ import annotations

import threading
from typing import Any

from backend.core.config import Settings

TASK_START = "curvscope.start_study"
TASK_CHUNK = "curvscope.retrain_chunk"
TASK_FINALIZE = "curvscope.finalize_study"

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def celery_client(settings: Settings):
    from celery import Celery

    key = (settings.celery_broker_url, settings.queue_name)
    with _lock:
        if key not in _clients:
            app = Celery("curvscope-api", broker=settings.celery_broker_url,
                         backend=settings.celery_result_backend)
            app.conf.update(
                task_default_queue=settings.queue_name,
                broker_connection_retry_on_startup=False,
                broker_transport_options={"visibility_timeout": settings.visibility_timeout_s,
                                          "socket_connect_timeout": 2, "socket_timeout": 5},
                result_backend_transport_options={"socket_connect_timeout": 2},
                task_serializer="json", accept_content=["json"],
            )
            _clients[key] = app
        return _clients[key]


#: Short tasks (start plans chunks in a second, finalize reuses every cached stage) have
#: their own queue, which workers read first, so they never wait behind long chunks.
SHORT_TASKS = (TASK_START, TASK_FINALIZE)


def queue_for(settings: Settings, task: str) -> str:
    return settings.short_queue_name if task in SHORT_TASKS else settings.queue_name


def send(settings: Settings, task: str, args: list, retries: int = 2) -> str:
    """Send a task by name to its queue; raises on an unreachable broker (after ``retries``
    quick retries). Callers go through ``backend.outbox``, which owes the message in the
    database first, so a failure here loses nothing."""
    result = celery_client(settings).send_task(
        task, args=args, queue=queue_for(settings, task), ignore_result=True,
        retry=retries > 0, retry_policy={"max_retries": retries, "interval_start": 0,
                                         "interval_step": 0.3, "interval_max": 1})
    return result.id


def redis_client(settings: Settings):
    import redis

    return redis.Redis.from_url(settings.celery_broker_url, socket_connect_timeout=1,
                                socket_timeout=2)


def broker_status(settings: Settings) -> dict[str, Any]:
    """Is the broker up, and how many messages wait in the study queue."""
    if not settings.celery_broker_url.startswith(("redis://", "rediss://", "unix://")):
        return {"ok": None, "detail": "queue length is only read from a Redis broker"}
    try:
        client = redis_client(settings)
        client.ping()
        long = int(client.llen(settings.queue_name))
        short = int(client.llen(settings.short_queue_name))
        return {"ok": True, "pending_messages": long + short,
                "queues": {settings.short_queue_name: short, settings.queue_name: long}}
    except Exception as exc:  # any connection problem is reported, not raised
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}


def live_workers(settings: Settings, timeout: float = 1.0) -> dict[str, Any] | None:
    """hostname → active tasks of every worker that answers a ping; None if the broker is
    down."""
    try:
        inspect = celery_client(settings).control.inspect(timeout=timeout)
        active = inspect.active() or {}
        return {host: [{"id": t.get("id"), "name": t.get("name"), "args": t.get("args")}
                       for t in tasks] for host, tasks in active.items()}
    except Exception:
        return None
