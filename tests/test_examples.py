"""The example files a user submits (examples/*.toml, named in the README and docs/sweeps.md):
each study resolves to a valid spec, and each sweep's every grid point does, within the default
dense-curvature memory budget of a 24 GB machine (what `curvscope up` on it allows), so a typo
or an oversized grid point is caught here rather than by a 422 at submission."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest

from curvscope.sizes import closed_form_estimate
from curvscope.spec import deep_merge, resolve_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
#: the default memory budget (half the RAM) of the 24 GB machines this project runs on
BUDGET_BYTES = 12 * 2**30


def _nested(path: str, value) -> dict:
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _points(document: dict) -> list[dict]:
    if "grid" not in document:
        return [document]
    base, grid = document["base"], document["grid"]
    configs = []
    for combination in itertools.product(*grid.values()):
        config = dict(base)
        for path, value in zip(grid, combination, strict=True):
            config = deep_merge(config, _nested(path, value))
        configs.append(config)
    return configs


def test_there_are_the_four_sweeps_of_the_hierarchy_analysis():
    names = {p.name for p in EXAMPLES}
    assert {"sweep-training-time.toml", "sweep-width.toml", "sweep-depth.toml",
            "sweep-damping.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_and_every_sweep_point_resolves_within_the_budget(path):
    document = tomllib.loads(path.read_text())
    points = _points(document)
    assert points, f"{path.name} has an empty grid"
    for config in points:
        if (config.get("data") or {}).get("path"):   # a file study: its file is beside it
            data_file = str(path.parent / config["data"]["path"])
            config = deep_merge(config, {"data": {"path": data_file}})
        spec = resolve_spec(config)
        if spec.data.name != "file":
            estimate = closed_form_estimate(spec)
            assert estimate["dense_memory_bytes"] <= BUDGET_BYTES, (path.name, config)
