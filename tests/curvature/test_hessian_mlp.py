"""The MLP Hessian assembled from matmul-shaped pieces against torch.func.hessian, curvlinops'
HessianLinearOperator and the Hessian-vector-product path, float64, rel. error ≤ 1e-10."""

import pytest
import torch
from curvlinops import HessianLinearOperator
from torch import nn
from torch.func import hessian

from curvscope.curvature import CurvatureContext, CurvatureSettings
from curvscope.curvature.hessian_mlp import mlp_hessian, mlp_structure
from tests.conftest import make_problem

TOLERANCE = 1e-10  # relative Frobenius error, float64 (issue 14)


def rel_err(A, B):
    return (torch.linalg.norm(A - B) / torch.linalg.norm(B)).item()


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hidden", [(), (6,), (6, 5), (6, 5, 4)], ids=["d0", "d1", "d2", "d3"])
def test_mlp_hessian_matches_torch_func_and_curvlinops(activation, bias, hidden):
    model, X, y = make_problem(n=19, hidden=hidden, activation=activation, bias=bias,
                               seed=len(hidden))
    ctx = CurvatureContext(model, X, y)
    H = mlp_hessian(model, X, y)
    assert H is not None
    reference = hessian(ctx.loss_of_theta)(ctx.theta)
    assert rel_err(H, reference) <= TOLERANCE
    params = [p for p in model.parameters()]
    cl = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(X, y)])
    assert rel_err(H, cl @ torch.eye(ctx.n_params, dtype=torch.float64)) <= TOLERANCE
    assert rel_err(H, ctx.hessian_by_hvp()) <= TOLERANCE
    # chunking over samples (a few samples per chunk) gives the same matrix
    assert rel_err(mlp_hessian(model, X, y, chunk_bytes=3000), H) <= 1e-12
    # the context's dense H is this assembly, and its residual to G is not zero once there
    # is a hidden layer (the activations' second derivatives and the cross terms)
    torch.testing.assert_close(ctx.hessian(), H, rtol=0, atol=0)
    if hidden:
        assert rel_err(ctx.ggn(), H) > 1e-6


def test_block_structure_tensor_and_float32():
    model, X, y = make_problem(n=13, hidden=(5, 4), activation="gelu")
    ctx = CurvatureContext(model, X, y, CurvatureSettings(block_structure="tensor"))
    reference = hessian(ctx.loss_of_theta)(ctx.theta)
    assert rel_err(ctx.hessian(), reference) <= TOLERANCE
    model32 = model.float()
    H32 = mlp_hessian(model32, X.float(), y)
    assert H32.dtype == torch.float32
    assert rel_err(H32.double(), reference) <= 1e-5


def test_models_it_does_not_cover_use_the_hvp_path():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=gen)
    # Softmax is not elementwise; two Linears in a row do not alternate with activations
    for model in (nn.Sequential(nn.Linear(4, 5), nn.Softmax(-1), nn.Linear(5, 3)),
                  nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))):
        model = model.double()
        assert mlp_structure(model) is None and mlp_hessian(model, X, y) is None
        ctx = CurvatureContext(model, X, y)
        assert rel_err(ctx.hessian(), hessian(ctx.loss_of_theta)(ctx.theta)) <= TOLERANCE
    # other elementwise activations are covered, their φ'' by autograd
    for act in (nn.Sigmoid(), nn.SiLU(), nn.Softplus(), nn.GELU(approximate="tanh")):
        model = nn.Sequential(nn.Linear(4, 5), act, nn.Linear(5, 3)).double()
        ctx = CurvatureContext(model, X, y)
        H = mlp_hessian(model, X, y)
        assert H is not None
        assert rel_err(H, hessian(ctx.loss_of_theta)(ctx.theta)) <= TOLERANCE
