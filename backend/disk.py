"""Disk space of the data folder: what /health reports, the 507 before a write that would not
fit, and the sentence a study fails with when the disk filled up under it.

A full disk shows up in many disguises: ``OSError(ENOSPC)``, SQLite's "database or disk is
full", torch's "unexpected pos …" from a truncated save. Each becomes one sentence that says
what happened and what to do; nothing half-written is left behind (every file is written to a
temporary name and renamed, the database rolls back)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from backend.core.config import Settings
from backend.core.problems import Problem

SIGNS = ("no space left on device", "database or disk is full", "unexpected pos",
         "disk quota exceeded", "file too large")


def usage(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the file system holding ``path``."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    du = shutil.disk_usage(path)
    return du.free, du.total


def disk_report(settings: Settings) -> dict:
    free, total = usage(settings.data_dir)
    return {"ok": free >= settings.min_free_bytes, "path": str(settings.data_dir.resolve()),
            "free_bytes": free, "total_bytes": total, "min_free_bytes": settings.min_free_bytes}


def is_disk_full(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        if any(sign in str(exc).lower() for sign in SIGNS):
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None)
        seen += 1
    return False


def full_sentence(settings: Settings) -> str:
    free, _ = usage(settings.data_dir)
    return (f"The disk of the data folder ({settings.data_dir.resolve()}) is full "
            f"({free / 2**20:.0f} MiB free, at least {settings.min_free_bytes / 2**20:.0f} MiB "
            "needed): free some space (delete finished studies, or shrink the stage cache), "
            "then try again; nothing was stored.")


def require_space(settings: Settings) -> None:
    """507 before a write that needs room (a new study, an upload)."""
    free, _ = usage(settings.data_dir)
    if free < settings.min_free_bytes:
        raise Problem(507, full_sentence(settings), kind="insufficient-storage")


def disk_full_problem(settings: Settings) -> Problem:
    return Problem(507, full_sentence(settings), kind="insufficient-storage")
