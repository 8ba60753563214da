"""What the pages read, fetched through :mod:`frontend.api_client` and cached in this process.

A succeeded study's results.json and arrays never change, so they are cached under the API's
address, the study id, its spec hash and its finish time (a deleted study's id reused by a new
study misses the cache). The cache is bounded by bytes (least recently used out). Fetches of
the same item by concurrent callbacks happen once. Nothing here touches Dash.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from frontend.api_client import ApiClient, ApiError

CACHE_BYTES = 512 * 2**20
FETCH_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="curvscope-fetch")


class ByteLRU:
    """A thread-safe LRU cache bounded by the approximate size of its values."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[Any, threading.Event] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        return None

    def put(self, key, value, size: int) -> None:
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, old) = self._items.popitem(last=False)
                self._bytes -= old

    def get_or_fetch(self, key, fetch: Callable[[], Any], size: Callable[[Any], int]):
        """The cached value, else ``fetch()`` once even when several threads ask at once."""
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key][0]
                event = self._inflight.get(key)
                if event is None:
                    event = self._inflight[key] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                event.wait(120)
                continue  # cached now, or the owner failed and this thread tries itself
            try:
                value = fetch()
                self.put(key, value, size(value))
                return value
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                event.set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


CACHE = ByteLRU()


def _json_size(value: Any) -> int:
    # results.json is a few hundred kB at most; a rough size is enough for the bound
    return 64 * 1024


def _array_size(value: np.ndarray) -> int:
    return int(getattr(value, "nbytes", 0)) + 256


def study_key(client: ApiClient, study: dict) -> tuple:
    return (client.base, study["id"], study.get("spec_hash"), study.get("finished_at"))


class StudyNotReady(Exception):
    """The study has no results (yet): its state says why."""

    def __init__(self, study: dict):
        self.study = study
        state = study.get("state")
        why = f": {study['error']}" if state == "failed" and study.get("error") else ""
        super().__init__(f"Study {study.get('id')} is {state}{why}; its figures appear once "
                         "it has succeeded.")


def load_study(client: ApiClient, study_id: int) -> dict:
    """GET /studies/{id} (never cached: state and progress change)."""
    return client.study(study_id)


def load_results(client: ApiClient, study: dict) -> dict:
    """results.json of a succeeded study (cached)."""
    if study.get("state") != "succeeded":
        raise StudyNotReady(study)
    return CACHE.get_or_fetch(("results", *study_key(client, study)),
                              lambda: client.results(study["id"]), _json_size)


def _fetch_each(names: Iterable[str], fetch: Callable[[str], Any],
                missing_ok: bool) -> dict[str, Any]:
    """``fetch(name)`` for each name (in parallel when several); a name the study lacks (the
    API's 404) is left out when ``missing_ok``, else raises."""
    def one(name: str):
        try:
            return name, fetch(name)
        except ApiError as exc:
            if missing_ok and exc.status == 404:
                return name, None
            raise

    names = list(dict.fromkeys(names))
    pairs = [one(n) for n in names] if len(names) <= 1 else list(FETCH_POOL.map(one, names))
    return {name: value for name, value in pairs if value is not None}


def load_arrays(client: ApiClient, study: dict, names: Iterable[str],
                missing_ok: bool = True) -> dict[str, np.ndarray]:
    """Several arrays of a succeeded study, fetched in parallel (cached). Names the study
    lacks are left out when ``missing_ok`` (a 404 from the API), else raise."""
    if study.get("state") != "succeeded":
        raise StudyNotReady(study)
    base = study_key(client, study)
    return _fetch_each(names, lambda name: CACHE.get_or_fetch(
        ("array", *base, name), lambda: client.array(study["id"], name), _array_size),
        missing_ok)


def load_rows(client: ApiClient, study: dict, names: Iterable[str], index: int,
              missing_ok: bool = True) -> dict[str, np.ndarray]:
    """Row ``index`` (first axis) of several arrays of a succeeded study, in parallel and
    cached: taken from the whole array when that is cached, else fetched alone (the API's
    ``?index=``; one test point's scores are 1/n_test of the matrix)."""
    if study.get("state") != "succeeded":
        raise StudyNotReady(study)
    base = study_key(client, study)

    def row(name: str):
        whole = CACHE.get(("array", *base, name))
        if whole is not None:
            return whole[index]
        return CACHE.get_or_fetch(("row", *base, name, index),
                                  lambda: client.array(study["id"], name, index), _array_size)

    return _fetch_each(names, row, missing_ok)


def _figure_size(figure: Any) -> int:
    """Roughly the bytes of a figure dict: its numpy arrays plus a little for the rest."""
    def walk(value: Any) -> int:
        if isinstance(value, np.ndarray):
            return int(value.nbytes) + (60 * value.size if value.dtype == object else 0)
        if isinstance(value, dict):
            return sum(walk(v) for v in value.values()) + 64
        if isinstance(value, list | tuple):
            return sum(walk(v) for v in value) + 16
        return 16
    return walk(figure) + 4096


def cached_figure(client: ApiClient, study: dict, key: tuple, build: Callable[[], Any]):
    """A figure of a succeeded study, built once per ``key`` (what it shows: figure, choices,
    theme) and kept as plotly's JSON-ready dict: the study's results never change, and building
    a figure (plotly validates every property) costs more than the page's other work. An
    exception from ``build`` is raised and nothing is kept."""
    def plain():
        figure = build()
        return figure.to_plotly_json() if hasattr(figure, "to_plotly_json") else figure

    return CACHE.get_or_fetch(("figure", *study_key(client, study), *key), plain, _figure_size)


def load_details(client: ApiClient, studies: list[dict]) -> dict[int, dict]:
    """GET /studies/{id} for each listed study, in parallel; a detail is cached under the
    study's hash and finish time (its spec never changes)."""

    def one(study: dict):
        key = ("detail", client.base, study["id"], study.get("spec_hash"))
        if study.get("finished_at"):
            key = (*key, study["finished_at"])
            return study["id"], CACHE.get_or_fetch(key, lambda: client.study(study["id"]),
                                                   _json_size)
        cached = CACHE.get(key)  # an active study: its spec is enough, refresh rarely
        if cached is not None and time.monotonic() - cached[0] < 30:
            return study["id"], cached[1]
        detail = client.study(study["id"])
        CACHE.put(key, (time.monotonic(), detail), 8 * 1024)
        return study["id"], detail

    if not studies:
        return {}
    return dict(FETCH_POOL.map(one, studies))


_meta_cache: dict[str, tuple[float, Any]] = {}
_meta_lock = threading.Lock()


def cached_call(key: str, fetch: Callable[[], Any], ttl: float = 60.0) -> Any:
    """Small reads that change only on a deploy (schema, presets, methods): kept ``ttl`` s."""
    now = time.monotonic()
    with _meta_lock:
        hit = _meta_cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
    value = fetch()
    with _meta_lock:
        _meta_cache[key] = (now, value)
    return value
