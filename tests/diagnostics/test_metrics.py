"""Every metric on hand-built matrices with known answers."""

import math

import pytest
import torch

from curvscope.diagnostics import (
    condition_number,
    eigenbasis_overlap,
    eigenvalue_overlap,
    kfac_error_split,
    off_block_ratio,
    relative_residual,
    spectrum_summary,
    swap_tests,
)
from curvscope.models.layout import Block


def _block(name, start, stop):
    return Block(name, start, stop, "m", 1, 1, True, False)


def test_relative_residual():
    T = torch.diag(torch.tensor([3.0, 4.0]))
    assert relative_residual(T, torch.zeros(2, 2)) == pytest.approx(1.0)
    assert relative_residual(T, torch.diag(torch.tensor([3.0, 0.0]))) == pytest.approx(0.8)


def test_off_block_ratio():
    M = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    blocks = [_block("a", 0, 2), _block("b", 2, 3)]
    # ‖M‖² = 1+1+1+4+4 = 11, off-block = 8
    result = off_block_ratio(M, blocks)
    assert result["energy"] == pytest.approx(8 / 11)
    assert result["ratio"] == pytest.approx(math.sqrt(8 / 11))


def test_eigenvalue_overlap():
    ref = torch.tensor([3.0, 4.0])
    assert eigenvalue_overlap(torch.tensor([4.0, 3.0]), ref) == pytest.approx(1.0)
    assert eigenvalue_overlap(torch.tensor([0.0, 0.0]), ref) == pytest.approx(0.0)
    assert eigenvalue_overlap(torch.tensor([3.0, 3.0]), ref) == pytest.approx(0.8)


def test_eigenbasis_overlap():
    eye = torch.eye(3)
    values = torch.tensor([3.0, 2.0, 1.0])
    assert eigenbasis_overlap(values, eye, values, eye, k=2) == pytest.approx(1.0)
    # reference's top-2 are e3, e2; A's are e1, e2 → shared 1 of 2
    assert eigenbasis_overlap(values, eye, values.flip(0), eye, k=2) == pytest.approx(0.5)
    c = math.cos(0.3)
    rot = torch.tensor([[c, -math.sin(0.3), 0], [math.sin(0.3), c, 0], [0, 0, 1.0]])
    assert eigenbasis_overlap(values, rot, values, eye, k=1) == pytest.approx(c**2)


def test_condition_number_uses_absolute_values_on_indefinite_matrix():
    eigs = torch.linalg.eigvalsh(torch.tensor([[1.0, 0.0], [0.0, -4.0]]))
    assert condition_number(eigs) == pytest.approx(4.0)  # not 1 / −4
    assert condition_number(torch.tensor([-0.5, 2.0, 8.0])) == pytest.approx(16.0)
    assert condition_number(torch.tensor([0.0, 1.0])) == math.inf
    # damped: M + λI = diag(1.1, 0.1, 0.2)
    assert condition_number(torch.tensor([1.0, 0.0, 0.1]) + 0.1) == pytest.approx(11.0)


def test_spectrum_summary_negative_mass():
    summary = spectrum_summary(torch.tensor([-1.0, 1.0, 2.0]))
    assert summary["n_negative"] == 1
    assert summary["negative_mass"] == pytest.approx(0.25)
    assert summary["min"] == -1.0 and summary["max"] == 2.0


def test_kfac_error_split_on_shared_basis():
    """G, E = its diagonal in basis Q = I, K = another diagonal: ‖G−K‖² = ‖G−E‖² + ‖E−K‖²."""
    G = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    E = torch.diag(torch.tensor([2.0, 3.0]))
    K = torch.diag(torch.tensor([1.0, 1.0]))
    split = kfac_error_split(G, E, K)
    assert split["eigenbasis_error_sq"] == pytest.approx(2.0)
    assert split["eigenvalue_error_sq"] == pytest.approx(1.0 + 4.0)
    assert split["kfac_error_sq"] == pytest.approx(7.0)
    assert split["eigenbasis_share"] == pytest.approx(2 / 7)
    assert split["pythagoras_gap"] == pytest.approx(0.0, abs=1e-12)


def test_kfac_error_split_of_a_block_equal_up_to_round_off_has_no_shares():
    """K = G up to a few ulps (a bias block, where K-FAC is exact): the squared errors are
    kept as computed, but the shares and the gap are 0, not ratios of round-off."""
    G = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    ulp = torch.finfo(torch.float64).eps
    E = G * (1 + 3 * ulp)
    K = G * (1 - 5 * ulp)
    split = kfac_error_split(G, E, K)
    assert 0 < split["kfac_error_sq"] < 1e-28 and split["eigenbasis_error_sq"] > 0
    assert split["eigenbasis_share"] == split["eigenvalue_share"] == 0.0
    assert split["pythagoras_gap"] == 0.0
    # a relative error of 1e-9, far above round-off, is split as usual
    K = G * (1 - 1e-9)
    split = kfac_error_split(G, G, K)
    assert split["eigenbasis_share"] == 0.0 and split["eigenvalue_share"] == pytest.approx(1.0)


def test_swap_tests_pair_by_rank():
    G = torch.diag(torch.tensor([1.0, 5.0]))
    # K-FAC basis e1, e2 ranked by its values 3 > 2; paired by rank e1 gets G's top value 5
    K_vals, K_vecs = torch.tensor([3.0, 2.0]), torch.eye(2)
    swaps = swap_tests(G, K_vals, K_vecs)
    assert swaps["kfac_basis_ggn_values"] == pytest.approx(
        relative_residual(G, torch.diag(torch.tensor([5.0, 1.0]))))
    # G's basis with K's values paired by rank: 5 ↔ 3, 1 ↔ 2
    assert swaps["ggn_basis_kfac_values"] == pytest.approx(
        relative_residual(G, torch.diag(torch.tensor([2.0, 3.0]))))


def test_eigenbasis_overlap_curve_matches_single_k():
    from curvscope.diagnostics.metrics import eigenbasis_overlap_curve

    gen = torch.Generator().manual_seed(0)
    A = torch.randn(8, 8, generator=gen)
    B = A + 0.3 * torch.randn(8, 8, generator=gen)
    ea, va = torch.linalg.eigh(A + A.T)
    eb, vb = torch.linalg.eigh(B + B.T)
    curve = eigenbasis_overlap_curve(ea, va, eb, vb, [1, 3, 8, 20])
    assert sorted(curve) == [1, 3, 8]
    for k, value in curve.items():
        assert value == pytest.approx(eigenbasis_overlap(ea, va, eb, vb, k))
    assert curve[8] == pytest.approx(1.0)
