"""The last lines a worker logged while it ran one task: what a failed study keeps of its
worker's log (``Study.log_tail``, ``log_tail`` in GET /studies/{id}).

:func:`capture` attaches a handler to the root logger for the duration of a task. It keeps
the records that reach the worker's log (the loggers' levels decide, as for the log file) and
that were emitted by the task's own thread (not the heartbeat's), formatted by the log's own
formatter (the first root handler's: Celery's under ``celery worker``; :data:`FORMAT`
otherwise), tracebacks included, in a ring of the last :data:`MAX_LINES` lines, so each line is
a line of the worker's log.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

#: lines kept per task (the tail shown for a failed study)
MAX_LINES = 50
#: longer lines are cut (a log line with a whole array in it)
MAX_LINE_CHARS = 1000
FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"


class TailHandler(logging.Handler):
    """Keeps the last ``max_lines`` lines of the records of one thread."""

    def __init__(self, thread: int, max_lines: int = MAX_LINES):
        super().__init__(level=logging.NOTSET)
        self.thread = thread
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.records = 0  # records taken so far
        own = next((h.formatter for h in logging.getLogger().handlers
                    if h.formatter is not None and not isinstance(h, TailHandler)), None)
        self.setFormatter(own or logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        self.records += 1
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted must not break the task
            text = f"{record.levelname}/{record.name}: {record.msg!r}"
        for line in text.splitlines():
            self.lines.append(line[:MAX_LINE_CHARS])

    def add(self, text: str) -> None:
        """Lines that did not come through logging (a traceback the task formats itself)."""
        for line in text.splitlines():
            self.lines.append(line[:MAX_LINE_CHARS])

    def text(self) -> str | None:
        return "\n".join(self.lines) or None


@contextmanager
def capture(max_lines: int = MAX_LINES) -> Iterator[TailHandler]:
    """``with capture() as tail:`` … ``tail.text()``: the last lines this thread logged."""
    handler = TailHandler(threading.get_ident(), max_lines)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
