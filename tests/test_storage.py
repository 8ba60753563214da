"""The stage cache: atomic entries, corrupt entries recomputed, one computation across
processes that share the folder."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest

from curvscope.storage import StageCache, _exclusive


def _compute_once(root, log, out_queue):
    cache = StageCache(root)

    def compute():
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return {"theta": [1.0, 2.0]}

    value = cache.get_or_compute("train", {"a": 1}, compute)
    out_queue.put((value, cache.events["train"]))


@pytest.mark.slow
def test_processes_sharing_the_folder_compute_a_stage_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    log = tmp_path / "computed.log"
    workers = [ctx.Process(target=_compute_once, args=(tmp_path / "cache", log, queue))
               for _ in range(3)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert len(log.read_text().splitlines()) == 1
    assert all(value == {"theta": [1.0, 2.0]} for value, _ in results)
    assert sorted(event for _, event in results) == ["computed", "reused", "reused"]


def test_a_corrupt_entry_is_recomputed(tmp_path):
    cache = StageCache(tmp_path)
    cache.get_or_compute("s", {"x": 1}, lambda: 41)
    entry = next(tmp_path.glob("s-*.pt"))
    entry.write_bytes(b"half a file")
    again = StageCache(tmp_path)
    assert again.get_or_compute("s", {"x": 1}, lambda: 42) == 42
    assert again.events["s"] == "computed"
    assert StageCache(tmp_path).get_or_compute("s", {"x": 1}, lambda: 0) == 42


def _hold_lock(path, ready):
    with _exclusive(path):
        ready.set()
        time.sleep(60)


@pytest.mark.slow
def test_a_killed_holder_releases_the_lock(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    lock = tmp_path / "entry.pt.lock"
    holder = ctx.Process(target=_hold_lock, args=(lock, ready))
    holder.start()
    assert ready.wait(30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    started = time.monotonic()
    with _exclusive(lock):
        pass
    assert time.monotonic() - started < 5


def test_no_folder_means_no_cache():
    cache = StageCache(None)
    calls = []
    assert cache.get_or_compute("s", {}, lambda: calls.append(1) or 7) == 7
    assert cache.get_or_compute("s", {}, lambda: calls.append(1) or 7) == 7
    assert len(calls) == 2 and cache.events["s"] == "computed"


@pytest.mark.parametrize("material", [{"a": 1}, {"a": 1, "b": [1, 2]}])
def test_keys_follow_the_material(material, tmp_path):
    cache = StageCache(tmp_path)
    assert cache.key("train", material) == cache.key("train", dict(material))
    assert cache.key("train", material) != cache.key("train", {**material, "z": 0})
