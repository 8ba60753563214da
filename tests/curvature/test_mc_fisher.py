"""Monte-Carlo Fisher diagnostics and per-method Fisher types (SCIENCE.md §7)."""

import pytest
import torch

from curvscope.attribution import per_sample_gradients
from curvscope.curvature import CurvatureContext, CurvatureSettings, ekfac, kfac
from curvscope.curvature.mc_fisher import mc_fisher_diagnostics
from tests.conftest import make_problem


def test_traces_are_exact_and_labels_counted():
    model, X, y = make_problem(n=30, hidden=(6, 5), activation="gelu")
    ctx = CurvatureContext(model, X, y, CurvatureSettings(fisher_type="mc", seed=3))
    # tr G from the signals equals the dense GGN's trace
    assert abs(ctx.fisher_trace("type2") - torch.trace(ctx.ggn()).item()) <= \
        1e-12 * torch.trace(ctx.ggn()).item()
    diag = mc_fisher_diagnostics(ctx, replicates=3)
    draws, argmax = ctx.mc_labels(3)
    # tr F_mc = mean over points of ‖∇θ CE(ŷ, f)‖² (J_nᵀ(p − e_ŷ) is the gradient at label ŷ)
    g = per_sample_gradients(model, X, draws[:, 0])
    trace_mc = g.square().sum(1).mean().item()
    assert abs(diag["trace_mc"] - trace_mc) <= 1e-12 * trace_mc
    assert diag["trace_ratio_to_ggn"] == diag["trace_mc"] / diag["trace_ggn"]
    # the trace's share from the differing draws and its effective number of points
    per_point = g.square().sum(1)
    differs = draws[:, 0] != argmax
    assert diag["trace_share_of_differing_labels"] == \
        pytest.approx((per_point[differs].sum() / per_point.sum()).item(), rel=1e-12)
    assert diag["effective_points"] == \
        pytest.approx((per_point.sum() ** 2 / per_point.square().sum()).item(), rel=1e-12)
    assert 1 <= diag["effective_points"] <= 30 and 1 <= diag["effective_points_ggn"] <= 30
    assert diag["n_labels"] == 30 and diag["mc_samples"] == 1
    assert diag["n_labels_differ_from_argmax"] == int((draws[:, 0] != argmax).sum())
    assert 0 < diag["n_labels_differ_from_argmax"] < 30 and not diag["degenerate"]
    # replicates: seeds 3, 4, 5; the first is the operator's draw
    assert [r["seed"] for r in diag["replicates"]] == [3, 4, 5]
    assert diag["replicates"][0]["trace_mc"] == diag["trace_mc"]
    assert diag["spread"]["trace_ratio_to_ggn"]["min"] <= diag["trace_ratio_to_ggn"] <= \
        diag["spread"]["trace_ratio_to_ggn"]["max"]
    assert diag["spread"]["trace_ratio_to_ggn"]["std"] > 0
    # the operator is the first replicate's: K-FAC's S is built from the seed-3 draw
    S, _ = ctx.kronecker_factors(ctx.layout.blocks[-1])
    assert torch.equal(S, ctx.kronecker_factors(ctx.layout.blocks[-1], "mc")[0])


def test_confident_model_is_degenerate():
    model, X, y = make_problem(n=40, hidden=(6,), activation="tanh")
    with torch.no_grad():  # a very confident model: p ≈ one-hot, draws = argmax
        model[-1].weight.mul_(300.0)
        model[-1].bias.mul_(300.0)
    ctx = CurvatureContext(model, X, y, CurvatureSettings(fisher_type="mc"))
    diag = mc_fisher_diagnostics(ctx)
    assert diag["n_labels_differ_from_argmax"] == 0
    assert diag["degenerate"] and not diag["trace_ratio_to_ggn"] >= 1e-3
    assert "spread" not in diag and len(diag["replicates"]) == 1


def test_per_method_fisher_types():
    model, X, y = make_problem(n=30, hidden=(6, 5), activation="gelu")
    mixed = CurvatureContext(model, X, y, CurvatureSettings(
        fisher_types=(("K-FAC", "mc"),), seed=7))
    exact = CurvatureContext(model, X, y)
    mc = CurvatureContext(model, X, y, CurvatureSettings(fisher_type="mc", seed=7))
    # K-FAC on the MC Fisher, EK-FAC still on the type-2 GGN
    assert torch.equal(kfac.build(mixed).to_dense(), kfac.build(mc).to_dense())
    assert torch.equal(ekfac.build(mixed).to_dense(), ekfac.build(exact).to_dense())
    assert kfac.build(mixed).info["fisher_type"] == "mc"
    assert ekfac.build(mixed).info["fisher_type"] == "type2"
    # and the other way round
    other = CurvatureContext(model, X, y, CurvatureSettings(
        fisher_type="mc", fisher_types=(("EK-FAC", "type2"),), seed=7))
    assert torch.equal(ekfac.build(other).to_dense(), ekfac.build(exact).to_dense())
    assert torch.equal(kfac.build(other).to_dense(), kfac.build(mc).to_dense())
