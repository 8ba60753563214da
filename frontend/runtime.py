"""Callbacks that call the API run off the event loop.

Dash's FastAPI backend runs a callback inside the ASGI event loop; a synchronous callback that
calls the API over HTTP would block that loop, and when the API is this very process (the
dashboard mounted on the API) the request could never be answered: a deadlock. So every
callback that does I/O is written as a plain function and wrapped with :func:`threaded`: an
``async def`` that runs it in a thread pool (with the request's context: the API address and
Dash's callback context), leaving the loop free to serve the API's own requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="curvscope-dash")
log = logging.getLogger("curvscope.dashboard")
TIMING = os.environ.get("CURVSCOPE_DASH_TIMING", "").lower() in ("1", "true", "yes")


def threaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a coroutine function that runs it in :data:`EXECUTOR`."""

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            log.warning("callback %s ran %.0f ms (waited %.0f ms for a thread)", fn.__name__,
                        1000 * (time.perf_counter() - started), 1000 * (started - submitted))

    run = timed if TIMING else fn

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        nonlocal submitted
        submitted = time.perf_counter()
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            EXECUTOR, functools.partial(context.run, run, *args, **kwargs))

    submitted = 0.0
    return wrapper
