"""Atomic writes and the stage cache.

Every file is written to a temporary name in the same folder and then renamed, so a killed
process never leaves a half-written result that a later run would read. Stage outputs are
cached under a hash of exactly the inputs that determine them, so a rerun of an identical spec
(or of one that changes only later stages, e.g. the damping) reuses finished stages.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
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


def write_json_atomic(path: Path, content: Any) -> None:
    text = json.dumps(content, indent=2, allow_nan=False, default=_json_default)
    _atomic(Path(path), lambda h: h.write(text + "\n"), mode="w")


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _atomic(Path(path), lambda h: np.savez_compressed(h, **arrays))


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
        key = self.key(stage, material)
        if self.root is not None:
            path = self.root / f"{key.replace('/', '_')}.pt"
            if path.exists():
                try:
                    value = torch.load(path, weights_only=False)
                    self.events[stage] = "reused"
                    return value
                except Exception:  # a corrupt cache entry is recomputed, never trusted
                    path.unlink(missing_ok=True)
        value = compute()
        self.events[stage] = "computed"
        if self.root is not None:
            _atomic(path, lambda h: torch.save(value, h))
        return value
