"""``curvscope.cost`` mirrors the pipeline it prices: the same stage plan, the same cache keys
(two specs share a cached stage in the cost model exactly when ``curvscope.study``'s key
material is equal), and a calibration probe that measures every rate the model uses."""

from __future__ import annotations

import json
import math

import pytest

from curvscope import cost
from curvscope.spec import deep_merge, resolve_spec

BASE = {"data": {"name": "gaussian_mixture", "n_samples": 60, "n_features": 3,
                 "n_classes": 2},
        "model": {"hidden": [4]}, "training": {"epochs": 4, "checkpoints": [2]},
        "groundtruth": {"n_subsets": 4, "n_seeds": 2}}

VARIANTS = [
    {}, {"training": {"evaluate_at_epoch": 2}}, {"training": {"seed": 7}},
    {"training": {"lr": 0.02}}, {"inverse": {"damping": 0.1}},
    {"curvature": {"block_structure": "tensor"}},
    {"curvature": {"fisher_types": {"K-FAC": "mc"}}},
    {"curvature": {"fisher_type": "mc", "mc_samples": 3}},
    {"groundtruth": {"seed": 5}}, {"groundtruth": {"n_bootstrap": 50}},
    {"model": {"hidden": [5]}}, {"compute": {"dtype": "float32"}},
]


def specs():
    return [resolve_spec(deep_merge(BASE, v)) for v in VARIANTS]


@pytest.mark.parametrize("preset", ["quick", "paper", "paper-code"])
def test_stage_plan_is_the_pipelines(preset):
    from curvscope.study import stage_plan

    spec = resolve_spec(None, preset)
    assert cost.stage_plan(spec) == [*stage_plan(spec), "write"]


def test_cache_keys_agree_with_the_pipelines_material():
    from curvscope.study import (
        curvature_material,
        plan_retraining,
        retrain_material,
        train_material,
    )

    def material(spec):
        out = {"train": train_material(spec, "cpu")}
        for method in spec.curvature.methods:
            out[f"curvature/{method}"] = curvature_material(spec, method, "cpu")
        for alpha in spec.groundtruth.alphas:
            out[f"groundtruth/{alpha}"] = [retrain_material(spec, "cpu", t)
                                           for t in plan_retraining(spec) if t.alpha == alpha]
        return out

    all_specs = specs()
    keys = [cost.stage_keys(s) for s in all_specs]
    materials = [material(s) for s in all_specs]
    compared = 0
    for ka, ma in zip(keys, materials, strict=True):
        for kb, mb in zip(keys, materials, strict=True):
            for stage in ma:
                assert (ka[stage] == kb[stage]) == (ma[stage] == mb[stage]), stage
                compared += 1
    assert compared == len(all_specs) ** 2 * len(materials[0])


def test_the_probe_measures_every_rate(tmp_path):
    import torch

    from curvscope.calibrate import probe, worker_calibration_path, write_calibration

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = write_calibration(worker_calibration_path(tmp_path, "worker1@host"), probe())
    finally:
        torch.set_num_threads(threads)
    path = tmp_path / "calibration" / "worker1@host.json"
    assert json.loads(path.read_text())["rates"] == result["rates"]
    rates = result["rates"]
    for kernel in cost.KERNELS:
        assert kernel in rates and math.isfinite(rates[kernel]) and rates[kernel] > 0
    assert rates["gemm"] > 1e8 and rates["base_rss_bytes"] > 2**20
    assert result["threads"] == 1
    assert cost.read_calibrations(tmp_path / "calibration")[0]["host"] == result["host"]
