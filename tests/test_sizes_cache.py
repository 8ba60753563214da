"""The CPU group size of the batched trainer follows the machine's last-level cache
(``curvscope.sizes.cpu_group_bytes``), read from a sysfs-shaped folder."""

from __future__ import annotations

from pathlib import Path

from curvscope import sizes


def fake_caches(root: Path, caches: list[tuple[int, str, str, str]]) -> Path:
    for i, (level, kind, size, shared) in enumerate(caches):
        folder = root / f"index{i}"
        folder.mkdir(parents=True)
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
        (folder / "shared_cpu_list").write_text(f"{shared}\n")
    return root


def test_the_highest_data_or_unified_level_is_the_last_level_cache(tmp_path):
    root = fake_caches(tmp_path, [(1, "Data", "48K", "0"), (1, "Instruction", "64K", "0"),
                                  (2, "Unified", "2048K", "0"), (3, "Unified", "491520K", "0-1")])
    assert sizes.last_level_cache(root) == (491520 * 1024, 2)
    amd = fake_caches(tmp_path / "amd", [(2, "Unified", "1M", "0"),
                                         (3, "Unified", "32M", "0,2,4-7")])
    assert sizes.last_level_cache(amd) == (32 * 2**20, 6)


def test_no_cache_description_means_none(tmp_path):
    assert sizes.last_level_cache(tmp_path / "absent") is None
    broken = fake_caches(tmp_path / "broken", [(3, "Unified", "lots", "0")])
    assert sizes.last_level_cache(broken) is None


def test_group_bytes_are_a_quarter_of_the_cache_share_within_bounds(tmp_path, monkeypatch):
    def budget(cache):
        monkeypatch.setattr(sizes, "last_level_cache", lambda: cache)
        sizes.cpu_group_bytes.cache_clear()
        try:
            return sizes.cpu_group_bytes()
        finally:
            sizes.cpu_group_bytes.cache_clear()

    assert budget(None) == sizes.CPU_GROUP_BYTES == 12 * 2**20
    assert budget((32 * 2**20, 2)) == 12 * 2**20             # 4 MiB: the floor
    assert budget((160 * 2**20, 2)) == 20 * 2**20            # a quarter of 80 MiB
    assert budget((480 * 2**20, 2)) == sizes.CPU_GROUP_BYTES_MAX == 48 * 2**20
    # the paper's MLP (d = 6,570, Σ(in + out) = 266, batch 32, float32) per group
    assert sizes.cpu_models_per_group(6570, 266, 32, 4, group_bytes=12 * 2**20) == 69
    assert sizes.cpu_models_per_group(6570, 266, 32, 4, group_bytes=48 * 2**20) == 278
