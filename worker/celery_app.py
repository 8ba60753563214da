"""The Celery app, configured from Settings for long GPU jobs (DESIGN.md, Runtime):

* acks late + reject on worker lost: a task whose worker dies is delivered again;
* prefetch 1: a worker holds only the task it runs, so idle workers take the rest;
* a Redis visibility timeout above the longest task (Settings.visibility_timeout_s), so an
  unacknowledged long task is not handed to a second worker while the first still runs;
* retries with exponential backoff and jitter for expected transient errors (database or
  broker unreachable), never for bad specs;
* cooperative cancellation through the study's row (never revoke-terminate);
* task results are not stored (the database is the source of truth; a result backend that
  is down must not fail a task);
* two queues, read in this order: ``<queue_name>-short`` (start, finalize) before
  ``<queue_name>`` (the long retraining chunks), so a quick study's finalize never waits
  behind another study's chunks (Redis ``queue_order_strategy = priority``). A worker started
  without ``-Q`` reads both.

Each worker picks its device: Settings.worker_device = auto (cuda if available, else cpu),
cpu, cuda or cuda:N, applied through CUDA_VISIBLE_DEVICES before torch is imported, so the
study's own ``compute.device = auto`` resolves to the worker's choice. The device is recorded
on the worker's row, on every chunk and study it runs, and in results.json (``device``).
Start with ``--pool=solo`` (CUDA cannot fork).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from backend.core.config import get_settings

settings = get_settings()


def apply_device_choice(choice: str) -> None:
    """Restrict which GPUs torch sees, before torch is imported."""
    if choice == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif choice.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = choice[5:]


apply_device_choice(settings.worker_device)

app = Celery("curvscope", broker=settings.celery_broker_url,
             backend=settings.celery_result_backend, include=["worker.tasks"])
app.conf.update(
    task_default_queue=settings.queue_name,
    task_queues=[Queue(settings.short_queue_name), Queue(settings.queue_name)],
    task_create_missing_queues=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_transport_options={"visibility_timeout": settings.visibility_timeout_s,
                              "queue_order_strategy": "priority"},
    result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    broker_connection_retry_on_startup=True,
    result_expires=settings.result_expires_s,
    task_ignore_result=True,
    task_store_errors_even_if_ignored=False,
    task_track_started=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    worker_send_task_events=True,
    task_send_sent_event=True,
)
celery_app = app
