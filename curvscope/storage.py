"""Atomic writes and the stage cache.

Every file is written to a temporary name in the same folder and then renamed, so a killed
process never leaves a half-written result that a later run would read. Stage outputs are
cached under a hash of exactly the inputs that determine them, so a rerun of an identical spec
(or of one that changes only later stages, e.g. the damping) reuses finished stages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curvscope.spec import content_hash


def _atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_cache_dir() -> Path:
    """Where curvscope caches what it computed: ``$CURVSCOPE_CACHE_DIR``, else
    ``~/.cache/curvscope`` (stages here, compiled kernels under ``kernels/``)."""
    return Path(os.environ.get("CURVSCOPE_CACHE_DIR", Path.home() / ".cache" / "curvscope"))


def write_json_atomic(path: Path, content: Any) -> None:
    text = json.dumps(content, indent=2, allow_nan=False, default=_json_default)
    _atomic(Path(path), lambda h: h.write(text + "\n"), mode="w")


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Uncompressed (``np.savez``): a study's arrays are float noise that zlib shrinks by
    9–17 % at 26 MB/s, against 1.4 GB/s stored (the paper preset's 35 MB: 1.7 vs 0.06 s)."""
    _atomic(Path(path), lambda h: np.savez(h, **arrays))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class StageCache:
    """``root/<stage>-<hash>.pt`` files; ``hits``/``computed`` record what a run did."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root is not None else None
        self.events: dict[str, str] = {}

    def key(self, stage: str, material: Any) -> str:
        return f"{stage}-{content_hash(material)}"

    def get_or_compute(self, stage: str, material: Any, compute: Callable[[], Any]) -> Any:
        """The cached value of ``stage`` for ``material``, else ``compute()`` stored.

        Processes sharing the cache folder (workers of one service, the rungs of a ladder or
        the points of a sweep running at once) compute a stage once: the first takes an
        exclusive lock on ``<entry>.lock`` while it computes, the others wait for it and then
        read its result. The OS drops the lock of a killed process, so nobody waits forever."""
        if self.root is None:
            self.events[stage] = "computed"
            return compute()
        key = self.key(stage, material)
        path = self.root / f"{key.replace('/', '_')}.pt"
        value = self._load(stage, path)
        if value is not _MISSING:
            return value
        with _exclusive(path.with_name(path.name + ".lock")):
            value = self._load(stage, path)  # computed by another process while we waited
            if value is not _MISSING:
                return value
            value = compute()
            self.events[stage] = "computed"
            _atomic(path, lambda h: torch.save(value, h))
        return value

    def _load(self, stage: str, path: Path) -> Any:
        if not path.exists():
            return _MISSING
        try:
            value = torch.load(path, weights_only=False)
        except Exception:  # a corrupt cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
            return _MISSING
        self.events[stage] = "reused"
        with contextlib.suppress(OSError):  # recently used: kept by evict()
            os.utime(path)
        return value


_MISSING = object()


def evict(root: Path, max_bytes: int) -> list[Path]:
    """Bound the stage cache: delete the least recently used entries (reads touch an entry's
    mtime) until the ``*.pt`` files under ``root`` total at most ``max_bytes``. An entry being
    computed (its ``.lock`` held) is never deleted; a reader that loses a race with the
    deletion finds a miss and recomputes. Returns the deleted paths."""
    entries = []
    for path in Path(root).glob("*.pt"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    deleted = []
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        lock = path.with_name(path.name + ".lock")
        try:
            with open(lock, "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
        except OSError:
            continue  # being computed or read right now: keep it
        total -= size
        deleted.append(path)
    return deleted


@contextmanager
def _exclusive(lock_path: Path):
    """An exclusive advisory lock (flock) on ``lock_path``; no lock where the file system
    has none (the stage is then possibly computed twice, which is only wasted work)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115  (held across the yield)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        handle.close()  # releases the lock
