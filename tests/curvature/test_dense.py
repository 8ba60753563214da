"""Dense H and G against torch.func references and curvlinops, float64, rel. error ≤ 1e-10."""

import torch
import torch.nn.functional as F
from curvlinops import GGNLinearOperator, HessianLinearOperator
from torch.func import functional_call, hessian, jacrev

from curvscope.curvature import CurvatureContext


def rel_err(A, B):
    return (torch.linalg.norm(A - B) / torch.linalg.norm(B)).item()


def _materialise(op, d):
    return op @ torch.eye(d, dtype=torch.float64)


def test_hessian_matches_torch_func_and_curvlinops(problem):
    model, X, y = problem
    ctx = CurvatureContext(model, X, y)
    H = ctx.hessian()
    reference = hessian(ctx.loss_of_theta)(ctx.theta)
    assert rel_err(H, reference) <= 1e-10
    params = [p for p in model.parameters()]
    cl = HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), params, [(X, y)])
    assert rel_err(H, _materialise(cl, ctx.n_params)) <= 1e-10


def test_ggn_matches_torch_func_and_curvlinops(problem):
    model, X, y = problem
    ctx = CurvatureContext(model, X, y)
    G = ctx.ggn()

    def logits_of(theta):
        return functional_call(model, ctx.layout.unflatten(theta), (X,))

    J = jacrev(logits_of)(ctx.theta)  # N × C × d
    p = torch.softmax(logits_of(ctx.theta), -1)
    Lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    reference = torch.einsum("nci,ncd,ndj->ij", J, Lam, J) / X.shape[0]
    assert rel_err(G, reference) <= 1e-10
    params = [p for p in model.parameters()]
    cl = GGNLinearOperator(model, torch.nn.CrossEntropyLoss(), params, [(X, y)])
    assert rel_err(G, _materialise(cl, ctx.n_params)) <= 1e-10
    # G is PSD and the chunked path gives the same matrix
    assert torch.linalg.eigvalsh(G).min() > -1e-12
    small = CurvatureContext(model, X, y)
    small.settings = type(small.settings)(chunk_bytes=4096)
    assert rel_err(small.ggn(), G) <= 1e-12


def test_ggn_equals_hessian_for_linear_model():
    """With no hidden layer the network is linear in θ, so R = 0 and H = G."""
    from tests.conftest import make_problem

    model, X, y = make_problem(hidden=())
    ctx = CurvatureContext(model, X, y)
    assert rel_err(ctx.ggn(), ctx.hessian()) <= 1e-10


def test_ggn_block_and_diagonal_without_dense(problem):
    model, X, y = problem
    dense = CurvatureContext(model, X, y)
    G = dense.ggn()
    free = CurvatureContext(model, X, y)
    for block in free.layout.blocks:
        assert rel_err(free.ggn_block(block), G[block.slice, block.slice]) <= 1e-12
    assert rel_err(free.ggn_diagonal(), torch.diagonal(G)) <= 1e-12
    assert not free.has("ggn")
    assert F.cross_entropy(model(X), y).item() == free.loss_of_theta(free.theta).item()
