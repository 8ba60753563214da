"""K-FAC's heuristic (π) damping against curvlinops' KFACInverseLinearOperator
(use_heuristic_damping=True), the official code's K-FAC inverse (SCIENCE.md §7), in float64."""

import math

import pytest
import torch
from curvlinops import FisherType, KFACInverseLinearOperator, KFACLinearOperator

from curvscope.attribution import InverseRule, damped_spectrum, influence_scores
from curvscope.curvature import CurvatureContext, CurvatureSettings, ekfac, kfac
from tests.conftest import make_problem


def rel_err(A, B):
    return (torch.linalg.norm(A - B) / torch.linalg.norm(B)).item()


def _curvlinops_inverse(model, X, y, separate, damping, fisher_type=FisherType.TYPE2, **kw):
    op = KFACLinearOperator(model, torch.nn.CrossEntropyLoss(), list(model.parameters()),
                            [(X, y)], fisher_type=fisher_type,
                            separate_weight_and_bias=separate, **kw)
    inv = KFACInverseLinearOperator(op, damping=damping, use_heuristic_damping=True)
    d = sum(p.numel() for p in model.parameters())
    return inv @ torch.eye(d, dtype=torch.float64)


def _our_inverse(op, rule):
    d = op.n_params
    s, received = damped_spectrum(op, rule)
    return op.apply_spectral(torch.eye(d, dtype=torch.float64), 1.0 / s), received


@pytest.mark.parametrize("structure", ["layer", "tensor"])
@pytest.mark.parametrize("damping", [1e-4, 1e-2])
@pytest.mark.parametrize("seed", [0, 1])
def test_heuristic_damping_matches_curvlinops(structure, damping, seed):
    model, X, y = make_problem(n=30, hidden=(6, 5), activation="gelu", seed=seed)
    ctx = CurvatureContext(model, X, y, CurvatureSettings(block_structure=structure))
    op = kfac.build(ctx)
    ours, received = _our_inverse(op, InverseRule(damping=damping, kfac_damping="heuristic"))
    ref = _curvlinops_inverse(model, X, y, structure == "tensor", damping)
    assert rel_err(ours, ref) <= 1e-10
    assert received["rule"] == "heuristic" and received["damping"] == damping
    assert len(received["per_block"]) == len(ctx.layout.blocks)
    weights = {b.module_name: b for b in ctx.layout.blocks if b.has_weight}
    for entry, block in zip(received["per_block"], ctx.layout.blocks, strict=True):
        S, A = ctx.kronecker_factors(weights[block.module_name])
        pi = math.sqrt((A.trace() / len(A)) / (S.trace() / len(S)))
        assert entry["pi"] == pytest.approx(pi, rel=1e-12)
        assert entry["damping_S"] == pytest.approx(math.sqrt(damping) / pi, rel=1e-12)
        if block.has_weight:
            assert entry["damping_A"] == pytest.approx(pi * math.sqrt(damping), rel=1e-12)
        else:  # a separate bias: gradient factor only, damped by its layer's δ_S
            assert entry["damping_A"] is None


def test_heuristic_differs_from_exact_and_leaves_other_methods_alone():
    model, X, y = make_problem(n=30, hidden=(6, 5), activation="tanh")
    ctx = CurvatureContext(model, X, y)
    K, E = kfac.build(ctx), ekfac.build(ctx)
    exact = InverseRule(damping=1e-2)
    heur = InverseRule(damping=1e-2, kfac_damping="heuristic")
    # exact damping is (K + λI)⁻¹ exactly
    ours_exact = K.apply_spectral(torch.eye(K.n_params), 1.0 / damped_spectrum(K, exact)[0])
    dense = torch.linalg.inv(K.to_dense() + 1e-2 * torch.eye(K.n_params))
    assert rel_err(ours_exact, dense) <= 1e-10
    ours_heur, _ = _our_inverse(K, heur)
    assert rel_err(ours_heur, dense) > 1e-3
    # EK-FAC keeps exact damping under kfac_damping = heuristic (as the official code does)
    s_exact, _ = damped_spectrum(E, exact)
    s_heur, received = damped_spectrum(E, heur)
    assert torch.equal(s_exact, s_heur) and received == {"rule": "exact", "damping": 1e-2}
    # the scores follow the damping the method received
    g = torch.randn(7, K.n_params)
    scores, info = influence_scores(K, g, g[:3], heur)
    assert info["damping_received"]["rule"] == "heuristic"
    torch.testing.assert_close(scores, -(g[:3] @ ours_heur @ g.T), rtol=1e-10, atol=1e-12)


def test_degenerate_factor_falls_back_to_plain_damping_like_curvlinops():
    """A zero gradient factor (tr S = 0, e.g. a Monte-Carlo Fisher whose sampled labels carry
    no signal) makes π undefined; curvlinops then damps both factors by λ."""
    model, X, y = make_problem(n=20, hidden=(4,), activation="tanh")
    ctx = CurvatureContext(model, X, y)
    op = kfac.build(ctx)
    last = op.blocks[-1]
    last.sigma = torch.zeros_like(last.sigma)
    last.eigenvalues = torch.zeros_like(last.eigenvalues)
    s, received = damped_spectrum(op, InverseRule(damping=1e-3, kfac_damping="heuristic"))
    entry = received["per_block"][-1]
    assert entry["pi"] is None and entry["damping_A"] == entry["damping_S"] == 1e-3
    n = last.size
    expected = torch.outer(torch.full_like(last.sigma, 1e-3), last.alpha + 1e-3).reshape(-1)
    torch.testing.assert_close(s[-n:], expected)
