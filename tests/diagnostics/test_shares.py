"""Every eigenvalue-mismatch share definition against a dense computation on small random MLPs
in float64 (whole d × d matrices, dense inverses, curvlinops' heuristic K-FAC inverse), and the
official eigenvalue overlap against a numpy transcription of the official code."""

import math

import numpy as np
import pytest
import torch
from curvlinops import FisherType, KFACInverseLinearOperator, KFACLinearOperator

from curvscope.attribution import InverseRule, influence_scores, per_sample_gradients
from curvscope.curvature import CurvatureContext, CurvatureSettings, blockdiag, ekfac, kfac
from curvscope.diagnostics.shares import (
    lds_share,
    mismatch_shares,
    official_eigenvalue_overlap,
    tensor_slices,
)
from curvscope.models import ParameterLayout
from tests.conftest import make_problem


def blockdiag_of(M, blocks):
    out = torch.zeros_like(M)
    for b in blocks:
        out[b.slice, b.slice] = M[b.slice, b.slice]
    return out


def sq(A):
    return float(torch.linalg.norm(A) ** 2)


def share(E, K, G):
    """‖E − K‖² / (‖G − E‖² + ‖E − K‖²) on dense matrices."""
    return sq(E - K) / (sq(G - E) + sq(E - K))


def setup(structure="layer", seed=0, activation="gelu"):
    model, X, y = make_problem(n=30, hidden=(6, 5), activation=activation, seed=seed)
    ctx = CurvatureContext(model, X, y, CurvatureSettings(block_structure=structure))
    ops = {"GGN-blockdiag": blockdiag.build(ctx), "EK-FAC": ekfac.build(ctx),
           "K-FAC": kfac.build(ctx)}
    ggn_blocks = {b.name: torch.linalg.eigh(ctx.ggn_block(b)) for b in ctx.layout.blocks}
    return model, X, y, ctx, ops, ggn_blocks


def heuristic_damped_kfac(model, X, y, structure, damping):
    """curvlinops' K-FAC with heuristic damping, densely: (inverse operator)⁻¹."""
    op = KFACLinearOperator(model, torch.nn.CrossEntropyLoss(), list(model.parameters()),
                            [(X, y)], fisher_type=FisherType.TYPE2,
                            separate_weight_and_bias=structure == "tensor")
    inv = KFACInverseLinearOperator(op, damping=damping, use_heuristic_damping=True)
    d = sum(p.numel() for p in model.parameters())
    W = inv @ torch.eye(d, dtype=torch.float64)
    return torch.linalg.inv((W + W.T) / 2), W


@pytest.mark.parametrize("structure", ["layer", "tensor"])
@pytest.mark.parametrize("kfac_damping", ["exact", "heuristic"])
def test_every_share_against_dense_matrices(structure, kfac_damping):
    model, X, y, ctx, ops, ggn_blocks = setup(structure, seed=1)
    damping = 1e-2
    rule = InverseRule(damping=damping, kfac_damping=kfac_damping)
    blocks = ctx.layout.blocks
    d = ctx.n_params
    I = torch.eye(d, dtype=torch.float64)
    G_bd = blockdiag_of(ctx.ggn(), blocks)
    E, K = ops["EK-FAC"].to_dense(), ops["K-FAC"].to_dense()

    layout = ParameterLayout.from_model(model, structure)
    train_g = per_sample_gradients(model, X, y, layout)
    test_g = per_sample_gradients(model, X[:7], y[:7], layout)
    scores = {n: influence_scores(op, train_g, test_g, rule)[0] for n, op in ops.items()}
    out = mismatch_shares(blocks, ggn_blocks, ops["EK-FAC"], ops["K-FAC"], rule, scores)

    # on M
    assert out["frobenius_squared"]["value"] == pytest.approx(share(E, K, G_bd), rel=1e-10)
    assert out["frobenius_ratio"]["value"] == pytest.approx(
        math.sqrt(sq(E - K)) / math.sqrt(sq(G_bd - K)), rel=1e-10)
    for b in blocks:
        s = b.slice
        got = out["frobenius_squared"]["per_block"][b.name]
        if b.has_weight:
            assert got == pytest.approx(share(E[s, s], K[s, s], G_bd[s, s]), rel=1e-9)
        else:  # a bias block alone: K-FAC = EK-FAC = G_bb, nothing to split
            assert sq(E[s, s] - K[s, s]) + sq(G_bd[s, s] - E[s, s]) < 1e-25
            assert got is None
    # the damped operators each method receives
    D_G, D_E = G_bd + damping * I, E + damping * I
    if kfac_damping == "heuristic":
        D_K, W_K = heuristic_damped_kfac(model, X, y, structure, damping)
    else:
        D_K = K + damping * I
        W_K = torch.linalg.inv(D_K)
    assert out["damped_operators"]["value"] == pytest.approx(share(D_E, D_K, D_G), rel=1e-7)
    assert out["damped_operators"]["damping"] == {"EK-FAC": "exact", "K-FAC": kfac_damping}
    # the inverses each method applies (nothing dropped at λ = 1e-2)
    W_G, W_E = torch.linalg.inv(D_G), torch.linalg.inv(D_E)
    assert out["inverses"]["value"] == pytest.approx(share(W_E, W_K, W_G), rel=1e-7)
    for b in blocks:
        s = b.slice
        got = out["inverses"]["per_block"][b.name]
        if got is None:
            assert not b.has_weight and kfac_damping == "exact"
        else:
            assert got == pytest.approx(share(W_E[s, s], W_K[s, s], W_G[s, s]), rel=1e-6)
    # the influence scores, from the dense inverses: S = −∇ℓ(x)ᵀ W ∇ℓ(z)
    S = {n: -test_g @ W @ train_g.T for n, W in (("G", W_G), ("E", W_E), ("K", W_K))}
    assert out["influence_scores"]["value"] == pytest.approx(
        share(S["E"], S["K"], S["G"]), rel=1e-6)
    for entry in out.values():
        assert entry["formula"] and 0.0 <= entry["value"] <= 1.0
    if kfac_damping == "heuristic":  # the heuristic really changes the damped share
        exact = mismatch_shares(blocks, ggn_blocks, ops["EK-FAC"], ops["K-FAC"],
                                InverseRule(damping=damping))
        assert exact["damped_operators"]["value"] != pytest.approx(
            out["damped_operators"]["value"], rel=1e-3)
        assert exact["frobenius_squared"] == out["frobenius_squared"]


def test_squared_frobenius_share_equals_the_existing_decomposition():
    """‖G_bd − K‖² = ‖G_bd − E‖² + ‖E − K‖² (shared basis), so the squared share is the
    decomposition's eigenvalue share and the ratio its square root."""
    _, _, _, ctx, ops, ggn_blocks = setup("layer", seed=2, activation="tanh")
    out = mismatch_shares(ctx.layout.blocks, ggn_blocks, ops["EK-FAC"], ops["K-FAC"],
                          InverseRule())
    G_bd = blockdiag_of(ctx.ggn(), ctx.layout.blocks)
    E, K = ops["EK-FAC"].to_dense(), ops["K-FAC"].to_dense()
    assert sq(G_bd - K) == pytest.approx(sq(G_bd - E) + sq(E - K), rel=1e-10)
    assert out["frobenius_ratio"]["value"] == pytest.approx(
        math.sqrt(out["frobenius_squared"]["value"]), rel=1e-10)
    assert out["influence_scores"]["value"] is None  # no scores given


def test_dropped_eigenvalues_enter_the_inverse_share():
    """With rule drop_absolute and a threshold above the smallest damped eigenvalues, the
    inverses share uses the pseudo-inverses the rule applies (zero on dropped directions)."""
    _, _, _, ctx, ops, ggn_blocks = setup("layer", seed=3)
    rule = InverseRule(damping=1e-4, rule="drop_absolute", threshold=1e-3)
    out = mismatch_shares(ctx.layout.blocks, ggn_blocks, ops["EK-FAC"], ops["K-FAC"], rule)

    def pinv(M):
        e, V = torch.linalg.eigh((M + M.T) / 2)
        s = e + rule.damping
        w = torch.where(s > rule.threshold, 1.0 / s, torch.zeros_like(s))
        return (V * w) @ V.T

    G_bd = blockdiag_of(ctx.ggn(), ctx.layout.blocks)
    W = {n: pinv(M) for n, M in (("G", G_bd), ("E", ops["EK-FAC"].to_dense()),
                                 ("K", ops["K-FAC"].to_dense()))}
    assert out["inverses"]["value"] == pytest.approx(share(W["E"], W["K"], W["G"]), rel=1e-6)


def test_lds_share_per_alpha_and_null_denominators():
    lds = {"GGN-blockdiag": {"0.3": {"value": 0.40}, "0.5": {"value": 0.30},
                             "0.7": {"value": 0.5}},
           "EK-FAC": {"0.3": {"value": 0.35}, "0.5": {"value": 0.31}, "0.7": {"value": None}},
           "K-FAC": {"0.3": {"value": 0.30}, "0.5": {"value": 0.30}, "0.7": {"value": 0.4}}}
    out = lds_share(lds, ["0.3", "0.5", "0.7", "0.9"])
    assert out["value"]["0.3"] == pytest.approx((0.35 - 0.30) / (0.40 - 0.30))
    assert out["value"]["0.5"] is None  # LDS_Gbd == LDS_K: undefined
    assert out["numerator"]["0.5"] == pytest.approx(0.01)
    assert out["value"]["0.7"] is None and out["value"]["0.9"] is None
    assert "LDS_Gbd − LDS_K" in out["formula"]


def _official_numpy(approx: np.ndarray, ref: np.ndarray, block_sizes: list[int]) -> list:
    """HessianMetrics.eigenvalue_overlap of SteveHong1901/Hessian (k = None), transcribed."""
    overlaps, start = [], 0
    for size in block_sizes:
        end = start + size
        a = np.sort(np.linalg.eigh(approx[start:end, start:end])[0])
        r = np.sort(np.linalg.eigh(ref[start:end, start:end])[0])
        n = min(len(a), len(r))
        denom = np.linalg.norm(r[:n], ord=2)
        overlaps.append(float("nan") if denom == 0 else
                        float(1.0 - np.linalg.norm(a[:n] - r[:n], ord=2) / denom))
        start = end
    return overlaps


@pytest.mark.parametrize("structure", ["layer", "tensor"])
def test_official_eigenvalue_overlap_matches_the_official_code(structure):
    model, _, _, ctx, ops, _ = setup(structure, seed=4)
    dense = {"GGN": {b.name: ctx.ggn_block(b) for b in ctx.layout.blocks}}
    for name in ("EK-FAC", "K-FAC"):
        dense[name] = {b.name: ops[name].to_dense()[b.slice, b.slice] for b in ctx.layout.blocks}
    out = official_eigenvalue_overlap(ctx.layout, dense)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    assert out["blocks"] == names == [t[0] for t in tensor_slices(ctx.layout)]
    G_bd = blockdiag_of(ctx.ggn(), ctx.layout.blocks).numpy()
    full = {"GGN": G_bd, "EK-FAC": ops["EK-FAC"].to_dense().numpy(),
            "K-FAC": ops["K-FAC"].to_dense().numpy()}
    for pair, (a, r) in {"EK-FAC vs GGN": ("EK-FAC", "GGN"), "K-FAC vs GGN": ("K-FAC", "GGN"),
                         "K-FAC vs EK-FAC": ("K-FAC", "EK-FAC")}.items():
        expected = _official_numpy(full[a], full[r], sizes)
        got = [out["pairs"][pair][n] for n in names]
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert all(v < 1 for v in out["pairs"]["K-FAC vs GGN"].values())
