"""GGN influence by Cholesky (eigenvalues alone) against the eigenbasis path it replaces.

Tolerance: scores agree to ≤ 1e-8 relative Frobenius (float64); eigenvalues (eigvalsh vs
eigh) to ≤ 1e-12 relative to the largest."""

import pytest
import torch

from curvscope.attribution import InverseRule, influence_scores, per_sample_gradients
from curvscope.attribution.cholesky import rule_is_plain_inverse
from curvscope.curvature import CurvatureContext, CurvatureOperator, DenseEigenBlock, ggn, hessian
from curvscope.curvature.base import SpectrumEigenBlock
from tests.conftest import make_problem

SCORE_TOLERANCE = 1e-8


def rel_err(A, B):
    return (torch.linalg.norm(A - B) / torch.linalg.norm(B)).item()


def _setup(activation="gelu", bias=True):
    model, X, y = make_problem(n=40, hidden=(6, 5), activation=activation, bias=bias)
    X_test, y_test = X[:7] + 0.05, y[:7]
    ctx = CurvatureContext(model, X, y)
    g_train = per_sample_gradients(model, X, y)
    g_test = per_sample_gradients(model, X_test, y_test)
    return ctx, g_train, g_test


@pytest.mark.parametrize("activation,bias", [("tanh", True), ("gelu", True), ("relu", False)])
@pytest.mark.parametrize("rule", ["abs", "drop", "drop_absolute"])
def test_ggn_scores_by_cholesky_equal_the_eigenbasis(activation, bias, rule):
    ctx, g_train, g_test = _setup(activation, bias)
    op = ggn.build(ctx)
    assert isinstance(op.blocks[0], SpectrumEigenBlock) and op.blocks[0].vectors is None
    reference = CurvatureOperator("GGN", ctx.n_params, [DenseEigenBlock.from_matrix(ctx.ggn())])
    scale = float(reference.eigenvalues().abs().max())
    assert (op.eigenvalues() - reference.eigenvalues()).abs().max() <= 1e-12 * scale
    inverse = InverseRule(damping=1e-3, rule=rule)
    scores, info = influence_scores(op, g_train, g_test, inverse)
    expected, expected_info = influence_scores(reference, g_train, g_test, inverse)
    assert info["solver"] == "cholesky" and expected_info["solver"] == "eigenbasis"
    assert op.blocks[0].vectors is None  # no eigenvectors were computed
    assert rel_err(scores, expected) <= SCORE_TOLERANCE
    assert info["n_inverted"] == expected_info["n_inverted"] == ctx.n_params
    # and against the plain linear solve
    G = ctx.ggn()
    direct = -g_test @ torch.linalg.solve(G + 1e-3 * torch.eye(ctx.n_params), g_train.T)
    assert rel_err(scores, direct) <= SCORE_TOLERANCE


def test_a_rule_that_drops_eigenvalues_keeps_the_eigenbasis():
    ctx, g_train, g_test = _setup()
    op = ggn.build(ctx)
    reference = CurvatureOperator("GGN", ctx.n_params, [DenseEigenBlock.from_matrix(ctx.ggn())])
    dropping = InverseRule(damping=1e-3, threshold=0.01)  # drops the small end of the spectrum
    scores, info = influence_scores(op, g_train, g_test, dropping)
    expected, _ = influence_scores(reference, g_train, g_test, dropping)
    assert info["n_dropped"] > 0 and info["solver"] == "eigenbasis"
    assert op.blocks[0].vectors is not None  # computed on demand
    assert rel_err(scores, expected) <= SCORE_TOLERANCE
    # undamped: no Cholesky either
    _, info = influence_scores(op, g_train, g_test, InverseRule(damping=0.0, threshold=0.0))
    assert info["solver"] == "eigenbasis"
    # the operator still recomposes to G exactly (it is G)
    assert torch.equal(op.to_dense(), (ctx.ggn() + ctx.ggn().T) / 2)


def test_indefinite_hessian_under_abs_keeps_its_eigenvectors():
    ctx, g_train, g_test = _setup()
    op = hessian.build(ctx)
    assert float(op.eigenvalues().min()) < -1e-6  # H is indefinite here
    _, info = influence_scores(op, g_train, g_test, InverseRule(damping=1e-3))
    assert info["solver"] == "eigenbasis"


def test_rule_is_plain_inverse():
    e = torch.tensor([-1e-15, 0.0, 1.0, 5.0])
    lam = 1e-4
    assert rule_is_plain_inverse(e, 1 / (e.abs() + lam), lam)  # round-off negative: fine
    e_neg = torch.tensor([-1e-3, 1.0])
    assert not rule_is_plain_inverse(e_neg, 1 / (e_neg.abs() + lam), lam)  # reflected
    assert not rule_is_plain_inverse(e, torch.tensor([0.0, 1 / lam, 1 / (1 + lam), 0.2]), lam)
