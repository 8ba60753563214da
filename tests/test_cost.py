"""The closed-form cost model (``curvscope.cost``): flop counts of small explicit examples,
the time from rates, corrections from finished studies, cache reuse in a sweep, the
calibration files; torch-free."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from curvscope import cost
from curvscope.sizes import cpu_group_bytes, cpu_models_per_group
from curvscope.spec import resolve_spec

#: MLP 2 → 3 → 2 with bias on a 50-point mixture: 10 test points, 40 training points.
TINY = {"data": {"name": "gaussian_mixture", "n_samples": 50, "n_features": 2,
                 "n_classes": 2, "test_fraction": 0.2},
        "model": {"hidden": [3]},
        "training": {"epochs": 4, "batch_size": 8},
        "groundtruth": {"alphas": [0.5], "n_subsets": 10, "n_seeds": 2, "n_bootstrap": 20}}
UNIT = {k: 1.0 for k in cost.KERNELS} | {"eigh_exponent": 3.0, "eigvalsh_exponent": 3.0,
                                         "gemm32": 1.0, "base_rss_bytes": 0.0}


def tiny(**override):
    from curvscope.spec import deep_merge

    return resolve_spec(deep_merge(TINY, override))


def test_shape_of_the_tiny_mlp():
    s = cost.shape_of(tiny())
    assert (s.n_train, s.n_test, s.n_classes) == (40, 10, 2)
    assert s.layers == ((2, 3), (3, 2)) and s.d == (2 + 1) * 3 + (3 + 1) * 2 == 17
    assert s.layer_flops == 2 * 3 + 3 * 2
    assert s.blocks() == [("layer0", 3, 3), ("layer1", 2, 4)]
    assert cost.shape_of(tiny(curvature={"block_structure": "tensor"})).blocks() == [
        ("layer0.weight", 3, 2), ("layer0.bias", 3, 1),
        ("layer1.weight", 2, 3), ("layer1.bias", 2, 1)]
    assert cost.shape_of(tiny()).tensors() == [6, 3, 6, 2]


def test_ggn_flops_by_hand():
    """G's gram: for blocks (o, ī) = (3, 3), (2, 4) and N = 40, C = 2, the pairs (0,0),
    (0,1), (1,1) each cost 2N·o_l o_m ī_l ī_m + 2CN·o_l o_m; the type-2 signals
    (2 + 4C)·N·Σ o·i; then one eigvalsh of 17 × 17."""
    spec = tiny(curvature={"methods": ["GGN"]})
    work = cost.curvature_work(spec, cost.shape_of(spec), "GGN", cost._Context())
    N, C = 40, 2
    gram = (2 * N * 3 * 3 * 3 * 3 + 2 * C * N * 3 * 3
            + 2 * N * 3 * 2 * 3 * 4 + 2 * C * N * 3 * 2
            + 2 * N * 2 * 2 * 4 * 4 + 2 * C * N * 2 * 2)
    signals = (2 + 4 * C) * N * 12
    assert work.units["gemm"] == gram + signals == 20_400 + 4_800
    assert work.eigs == [("eigvalsh", 17)]


def test_hessian_flops_by_hand():
    """H: the GGN-shaped terms per pair, the second-derivative term of the hidden layer on
    the pair (0, 0) (2N·o_0·o_0·o_0), the cross term of (0, 1) through W_1
    (2N·o_1·i_1·o_0·ī_0), the Jacobian T_{1←0} (2N·o_1·i_1·o_0); then eigh of 17 × 17."""
    spec = tiny(curvature={"methods": ["H"]})
    work = cost.curvature_work(spec, cost.shape_of(spec), "H", cost._Context())
    N, C = 40, 2
    pairs = (2 * N * 3 * 3 * 3 * 3 + 2 * N * 3 * 3 * C + 2 * N * 3 * 3 * 3
             + 2 * N * 3 * 2 * 3 * 4 + 2 * N * 3 * 2 * C
             + 2 * N * 2 * 2 * 4 * 4 + 2 * N * 2 * 2 * C)
    cross = 2 * (N * 2 * 3 * 3) * 3
    jacobian = 2 * N * 2 * 3 * 3
    assert work.units["gemm"] == pairs + cross + jacobian
    assert work.eigs == [("eigh", 17)]


def test_structured_methods_reuse_the_context():
    """EK-FAC and K-FAC of one Fisher type share their factors (and their eigh), and EK-FAC
    projects onto the dense G (2·n_b³ per block) only once G was built."""
    spec = tiny(curvature={"methods": ["GGN", "EK-FAC", "K-FAC"]})
    s, ctx = cost.shape_of(spec), cost._Context()
    cost.curvature_work(spec, s, "GGN", ctx)
    ekfac = cost.curvature_work(spec, s, "EK-FAC", ctx)
    kfac = cost.curvature_work(spec, s, "K-FAC", ctx)
    assert sorted(ekfac.eigs) == sorted([("eigh", 3), ("eigh", 3), ("eigh", 2), ("eigh", 4)])
    assert kfac.eigs == [] and "gemm" not in kfac.units
    N, C = 40, 2
    factors = (2 * N * 3 * 3 + 2 * C * N * 3 * 3) + (2 * N * 4 * 4 + 2 * C * N * 2 * 2)
    basis = 2 * 9 * (3 * 3 * 3 + 3 * 3 * 3) + 2 * 8 * (2 * 2 * 4 + 2 * 4 * 4)
    assert ekfac.units["gemm"] == factors + basis + 2 * 9**3 + 2 * 8**3
    alone = cost.curvature_work(tiny(curvature={"methods": ["EK-FAC"]}), s, "EK-FAC",
                                cost._Context())
    projection = 2 * N * (3 * 3 + C * 3 * 3 + C * 3 * 3) + 2 * N * (4 * 4 + C * 2 * 2
                                                                    + C * 2 * 4)
    assert alone.units["gemm"] == (2 + 4 * C) * N * 12 + factors + projection


def test_scores_by_cholesky_or_eigenbasis():
    """The GGN's scores: d³/3 + 2d²N + 2TdN by Cholesky; without damping its eigenvectors
    (one eigh) and 2(N+T)d² + 2TdN."""
    d, N, T = 17, 40, 10
    work = cost.scores_work(tiny(curvature={"methods": ["GGN"]}), cost.shape_of(tiny()))
    assert work.units["gemm"] == pytest.approx(d**3 / 3 + 2 * d * d * N + 2 * T * d * N)
    undamped = cost.scores_work(tiny(curvature={"methods": ["GGN"]},
                                     inverse={"damping": 0.0}), cost.shape_of(tiny()))
    assert undamped.units["gemm"] == 2 * (N + T) * d * d + 2 * T * d * N
    assert undamped.eigs == [("eigh", d)]


def test_retraining_counts():
    """α = 0.5 of 40 points: |S| = 20, ⌈20/8⌉ = 3 steps per epoch over 4 epochs; 10 subsets ×
    2 seeds = 20 models in one chunk; flops 6·B·|S|·Σ o·i per epoch plus the test losses at
    the two checkpoints (4 and the last)."""
    spec = tiny(training={"checkpoints": [2]})
    work = cost.retraining_work(spec, cost.shape_of(spec), 0.5, None)
    assert work.units["bstep"] == 4 * 3
    assert work.units["perm"] == 20 * 20 * 4
    assert work.units["bflop"] == 6 * 20 * 20 * 12 * 4 + 2 * 20 * 10 * 12 * 2
    split = tiny(groundtruth={"max_models_per_chunk": 8})
    assert cost.retraining_chunks(split, cost.shape_of(split), None) == [8, 8, 4]
    assert cost.retraining_work(split, cost.shape_of(split), 0.5, None).units["bstep"] == 36
    # a chunk of more models than one CPU group: one step per group (train_many's groups);
    # the tiny MLP 2 → 3 → 2 is 17 parameters, widths 5 + 5, ~1.2 kB a model in float32
    per_group = cpu_models_per_group(17, 10, 8, 4)
    assert per_group == cpu_group_bytes() // (4 * (3 * 17 + 3 * 8 * 10))
    assert cpu_models_per_group(17, 10, 8, 4, group_bytes=12 * 2**20) == 10810
    big = tiny(groundtruth={"n_subsets": 6000})
    assert cost.retraining_chunks(big, cost.shape_of(big), None) == [1000] * 12
    assert cost.retraining_work(big, cost.shape_of(big), 0.5, None).units["bstep"] == \
        4 * 3 * 12
    huge = tiny(groundtruth={"n_subsets": 6000, "max_models_per_chunk": 12000})
    assert cost.retraining_work(huge, cost.shape_of(huge), 0.5, None).units["bstep"] == \
        4 * 3 * math.ceil(12000 / per_group)


def test_lds_counts():
    """(methods + 1) ranked sets per resample, + 2 for the seed ceiling (R ≥ 2)."""
    spec = tiny(curvature={"methods": ["GGN", "K-FAC"]})
    work = cost.lds_work(spec, cost.shape_of(spec))
    assert work.units["lds"] == (2 + 1 + 2) * 20 * 10 * 10


def test_seconds_from_rates():
    """Each kernel's units over its rate; twice the gemm rate halves a gemm-only stage."""
    work = cost.Work().add("gemm", 4e9).add("mem", 1e9).add("fixed", 0.5)
    rates = cost.rates_with_defaults({"gemm": 2e9, "mem": 1e9})
    assert work.seconds(rates) == pytest.approx(2 + 1 + 0.5)
    assert cost.Work().add("gemm", 4e9).seconds(rates | {"gemm": 4e9}) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cost.Work().add("flops", 1)


def test_eigendecomposition_scales_with_the_exponent():
    rates = {"eigh": 1024**3 / 2.0, "eigh_exponent": 2.5}  # 2 s at 1024
    assert cost.eig_seconds("eigh", 1024, rates) == pytest.approx(2.0, rel=1e-4)
    assert cost.eig_seconds("eigh", 4096, rates) == pytest.approx(2.0 * 4**2.5, rel=1e-4)


def test_estimate_has_every_stage_and_its_basis():
    spec = resolve_spec(None, "paper")
    out = cost.estimate_time(spec)
    assert list(out["stage_seconds"]) == cost.stage_plan(spec)
    assert out["seconds"] == pytest.approx(sum(out["stage_seconds"].values()), rel=1e-3)
    assert set(out["group_seconds"]) >= {"training", "curvature", "retraining", "LDS"}
    assert "reference machine" in out["basis"]
    halved = {k: v / 2 for k, v in cost.DEFAULT_RATES.items() if k in cost.KERNELS
              and k != "fixed"}
    probed = cost.estimate_time(spec, halved)
    assert probed["basis"] == "the worker's calibration probe"
    assert probed["seconds"] > 1.9 * out["seconds"] - 0.1 * len(out["stage_seconds"])
    # the dense matrices dominate the paper study's memory: 9 matrices of 6,570² float64
    assert out["peak_memory_bytes"] > 9 * 6570**2 * 8


def test_corrections_from_finished_studies():
    """measured / predicted per stage kind, median over studies; a stage measured below 5 %
    of its prediction (a cache hit) and a stage predicted under 50 ms are left out."""
    history = [({"train": 2.0, "curvature/H": 10.0, "groundtruth/0.5": 4.0, "data": 0.01},
                {"train": 6.0, "curvature/H": 5.0, "groundtruth/0.5": 0.01, "data": 9.0}),
               ({"train": 1.0, "curvature/H": 10.0, "groundtruth/0.5": 4.0},
                {"train": 2.0, "curvature/H": 10.0, "groundtruth/0.5": 8.0})]
    corrections = cost.stage_corrections(history)
    assert corrections["train"] == (2.5, 2)
    assert corrections["curvature/H"] == (0.75, 2)
    assert corrections["groundtruth"] == (2.0, 1)
    assert "data" not in corrections
    spec = tiny()
    plain = cost.estimate_time(spec, UNIT)
    corrected = cost.estimate_time(spec, UNIT, corrections={"train": (3.0, 2)})
    assert corrected["stage_seconds"]["train"] == pytest.approx(
        3 * plain["stage_seconds"]["train"], rel=1e-3)
    assert corrected["stage_seconds"]["lds"] == plain["stage_seconds"]["lds"]
    assert corrected["corrected_stages"] == ["train"]


def test_float32_studies_use_the_float32_matmul_rate():
    """Only the matmul is slow here: a float32 study's GGN runs at the float32 rate."""
    rates = {k: 1e15 for k in cost.KERNELS} | {"fixed": 1.0, "gemm": 1.0, "gemm32": 1e3}
    f64 = cost.predict_stages(tiny(curvature={"methods": ["GGN"]}), rates)
    f32 = cost.predict_stages(tiny(curvature={"methods": ["GGN"]},
                                   compute={"dtype": "float32"}), rates)
    assert f32["curvature/GGN"] == pytest.approx(f64["curvature/GGN"] / 1e3, rel=0.01)


def test_a_training_time_sweep_trains_and_retrains_once():
    """Points that differ only in training.evaluate_at_epoch share the trained model and the
    retraining (their cache keys), not the curvature; a reused point costs nothing."""
    specs = [tiny(training={"epochs": 4, "batch_size": 8, "checkpoints": [2, 4],
                            "evaluate_at_epoch": e}) for e in (2, 4)]
    one = cost.estimate_time(specs[0], UNIT)
    sweep = cost.sweep_estimate(specs, UNIT)
    assert sweep["points"][0]["cached_stages"] == []
    assert sorted(sweep["points"][1]["cached_stages"]) == ["groundtruth/0.5", "train"]
    shared = one["stage_seconds"]["train"] + one["stage_seconds"]["groundtruth/0.5"]
    assert sweep["seconds"] == pytest.approx(2 * one["seconds"] - shared, rel=1e-3)
    damping = [tiny(inverse={"damping": x}) for x in (1e-4, 1e-3)]
    keys = [cost.stage_keys(s) for s in damping]
    assert keys[0] == keys[1]  # the inverse rule is no part of any cached stage
    reused = cost.sweep_estimate(specs, UNIT, reused=[True, False])
    assert reused["points"][0] == {"seconds": 0.0, "reused": True}
    assert reused["seconds"] == pytest.approx(one["seconds"] * 0 + cost.estimate_time(
        specs[1], UNIT)["seconds"], rel=1e-3)


def test_calibration_files(tmp_path):
    folder = cost.calibration_dir(tmp_path)
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({"host": "a", "rates": {"gemm": 1e9}}))
    (folder / "b.json").write_text(json.dumps({"host": "b", "rates": {"gemm": 3e9,
                                                                     "mem": 2e9}}))
    (folder / "broken.json").write_text("{not json")
    probes = cost.read_calibrations(folder)
    assert sorted(p["host"] for p in probes) == ["a", "b"]
    assert cost.combine_calibrations(probes) == {"gemm": 2e9, "mem": 2e9}
    assert cost.read_calibrations(tmp_path / "none") == []
    merged = cost.rates_with_defaults({"gemm": -1, "mem": math.inf, "lds": 5.0})
    assert merged["gemm"] == cost.DEFAULT_RATES["gemm"] and merged["lds"] == 5.0


def test_cost_model_imports_no_torch():
    code = ("import sys, curvscope.cost, backend.estimate; "
            "from curvscope.spec import resolve_spec; "
            "curvscope.cost.estimate_time(resolve_spec(None, 'paper')); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
