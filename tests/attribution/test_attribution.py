"""Per-sample gradients, the inverse rule and influence scores against closed forms."""

import torch
import torch.nn.functional as F

from curvscope.attribution import (
    InverseRule,
    influence_scores,
    inverse_weights,
    per_sample_gradients,
)
from curvscope.curvature import (
    CurvatureContext,
    CurvatureOperator,
    DiagonalEigenBlock,
    ggn,
    hessian,
)
from curvscope.curvature.baselines import build_identity
from tests.conftest import make_problem


def test_per_sample_gradients_equal_a_loop(problem):
    model, X, y = problem
    grads = per_sample_gradients(model, X, y)
    for n in range(X.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(X[n : n + 1]), y[n : n + 1]).backward()
        loop = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(grads[n], loop, rtol=1e-12, atol=1e-14)


def test_influence_of_logistic_regression_matches_closed_form():
    """Softmax regression: g_n = vec((p_n − e_{y_n}) x̄_nᵀ) (bias folded), H = G =
    (1/N) Σ_n Λ_n ⊗ x̄_n x̄_nᵀ; then τ = −g_trainᵀ (H + λI)⁻¹ g_test by a linear solve."""
    model, X, y = make_problem(n=30, n_features=3, n_classes=3, hidden=())
    X_test, y_test = X[:5] + 0.1, y[:5]
    W, b = model[0].weight.detach(), model[0].bias.detach()

    def closed_form_grads(Xs, ys):
        p = torch.softmax(Xs @ W.T + b, -1)
        r = p - F.one_hot(ys, 3)
        return torch.cat([torch.einsum("no,ni->noi", r, Xs).reshape(len(Xs), -1), r], 1)

    p = torch.softmax(X @ W.T + b, -1)
    Lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    Xbar = torch.cat([X, torch.ones(len(X), 1)], 1)
    H_cf = torch.einsum("nop,ni,nj->oipj", Lam, Xbar, Xbar).reshape(12, 12) / len(X)
    # reorder (o, i) with the bias column last in i into θ = (vec(W), b)
    perm = [o * 4 + i for o in range(3) for i in range(3)] + [o * 4 + 3 for o in range(3)]
    H_cf = H_cf[perm][:, perm]
    damping = 1e-3
    g_train, g_test = closed_form_grads(X, y), closed_form_grads(X_test, y_test)
    expected = -g_test @ torch.linalg.solve(H_cf + damping * torch.eye(12), g_train.T)

    ctx = CurvatureContext(model, X, y)
    torch.testing.assert_close(ctx.hessian(), H_cf, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(per_sample_gradients(model, X, y), g_train, rtol=1e-12,
                               atol=1e-14)
    rule = InverseRule(damping=damping, threshold=0.0)
    for build in (hessian.build, ggn.build):
        scores, info = influence_scores(build(ctx), g_train, g_test, rule)
        torch.testing.assert_close(scores, expected, rtol=1e-9, atol=1e-12)
        assert info["n_dropped"] == 0
    identity_scores, _ = influence_scores(build_identity(ctx), g_train, g_test,
                                          InverseRule(damping=0.0))
    torch.testing.assert_close(identity_scores, -g_test @ g_train.T)


def test_inverse_rule_drop_and_abs_on_indefinite_spectrum():
    eig = torch.tensor([-2.0, -1e-9, 1e-9, 0.5, 4.0])
    w_drop, info = inverse_weights(eig, InverseRule(damping=0.0, threshold=1e-6, rule="drop"))
    torch.testing.assert_close(w_drop, torch.tensor([0.0, 0.0, 0.0, 2.0, 0.25]))
    assert info["n_dropped"] == 3 and info["n_inverted"] == 2
    w_abs, info = inverse_weights(eig, InverseRule(damping=0.0, threshold=1e-6, rule="abs"))
    torch.testing.assert_close(w_abs, torch.tensor([0.5, 0.0, 0.0, 2.0, 0.25]))
    assert info["n_negative_inverted_as_abs"] == 1
    w_damped, _ = inverse_weights(torch.tensor([0.0, 1.0]), InverseRule(damping=1.0))
    torch.testing.assert_close(w_damped, torch.tensor([1.0, 0.5]))
    # damping: drop inverts e + λ (nearly singular just above −λ), abs inverts |e| + λ
    eig = torch.tensor([-0.99, -0.5, 2.0])
    w_drop, _ = inverse_weights(eig, InverseRule(damping=1.0, rule="drop"))
    torch.testing.assert_close(w_drop, torch.tensor([100.0, 2.0, 1 / 3]))
    w_abs, _ = inverse_weights(eig, InverseRule(damping=1.0, rule="abs"))
    torch.testing.assert_close(w_abs, torch.tensor([1 / 1.99, 1 / 1.5, 1 / 3]))


def test_scores_use_the_same_rule_for_structured_blocks():
    """A diagonal operator with a negative entry: drop zeroes it, abs inverts |λ| + δ."""
    eig = torch.tensor([-1.0, 2.0, 4.0])
    op = CurvatureOperator("diag", 3, [DiagonalEigenBlock(0, 3, eig)])
    g_train = torch.eye(3)
    g_test = torch.ones(1, 3)
    s_drop, _ = influence_scores(op, g_train, g_test, InverseRule(damping=0.0, rule="drop"))
    s_abs, _ = influence_scores(op, g_train, g_test, InverseRule(damping=0.0, rule="abs"))
    torch.testing.assert_close(s_drop, torch.tensor([[0.0, -0.5, -0.25]]))
    torch.testing.assert_close(s_abs, torch.tensor([[-1.0, -0.5, -0.25]]))


def test_scores_do_not_depend_on_which_gradient_set_goes_through_the_eigenbasis():
    """τ = −G_test V diag(w) Vᵀ G_trainᵀ is associated to rotate the smaller of the two sets
    (and the Cholesky solve takes the smaller right-hand side): with more train than test
    points, more test than train, or as many, every method's scores equal the dense
    −G_test (M_rule)⁻¹ G_trainᵀ within 1e-10 relative (float64), for H under `abs` (eigenbasis),
    the GGN (Cholesky), K-FAC (Kronecker blocks) and a diagonal."""
    from curvscope.curvature import CurvatureSettings
    from curvscope.registry import get_method

    model, X, y = make_problem(n=30, hidden=(5,), activation="gelu", seed=4)
    ctx = CurvatureContext(model, X, y, CurvatureSettings())
    rule = InverseRule(damping=1e-2)
    grads = per_sample_gradients(model, X, y, ctx.layout)
    for name in ("H", "GGN", "K-FAC", "GGN-diag"):
        op = get_method(name).build(ctx)
        weights, _ = inverse_weights(op.eigenvalues(), rule)
        dense_inverse = op.apply_spectral(torch.eye(op.n_params, dtype=X.dtype), weights)
        for n_train, n_test in ((30, 4), (3, 30), (10, 10)):
            train, test = grads[:n_train], grads[-n_test:]
            scores, info = influence_scores(op, train, test, rule)
            reference = -(test @ dense_inverse @ train.T)
            error = torch.linalg.norm(scores - reference) / torch.linalg.norm(reference)
            assert error <= 1e-10, (name, n_train, n_test, info["solver"], float(error))
            if name == "GGN":
                assert info["solver"] == "cholesky"
