"""K-FAC and EK-FAC against curvlinops (type-2, float64) and the identities of SCIENCE.md §2."""

import pytest
import torch
from curvlinops import EKFACLinearOperator, FisherType, KFACLinearOperator

from curvscope.curvature import CurvatureContext, CurvatureSettings, blockdiag, ekfac, kfac
from curvscope.curvature.ekfac import corrected_eigenvalues_by_projection


def rel_err(A, B):
    return (torch.linalg.norm(A - B) / torch.linalg.norm(B)).item()


def _curvlinops(cls, model, X, y, separate):
    op = cls(model, torch.nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
             fisher_type=FisherType.TYPE2, separate_weight_and_bias=separate)
    d = sum(p.numel() for p in model.parameters())
    return op @ torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("structure", ["layer", "tensor"])
def test_kfac_and_ekfac_match_curvlinops(problem, structure):
    model, X, y = problem
    ctx = CurvatureContext(model, X, y, CurvatureSettings(block_structure=structure))
    separate = structure == "tensor"
    K = kfac.build(ctx).to_dense()
    E = ekfac.build(ctx).to_dense()
    assert rel_err(K, _curvlinops(KFACLinearOperator, model, X, y, separate)) <= 1e-8
    assert rel_err(E, _curvlinops(EKFACLinearOperator, model, X, y, separate)) <= 1e-8


def test_ekfac_eigenvalues_are_diag_of_rotated_ggn_and_pythagoras(problem):
    model, X, y = problem
    ctx = CurvatureContext(model, X, y)
    ctx.ggn()  # dense path for λ*
    E_op, K_op = ekfac.build(ctx), kfac.build(ctx)
    assert E_op.info["eigenvalues_from"] == "dense GGN"
    for block, E_b, K_b in zip(ctx.layout.blocks, E_op.blocks, K_op.blocks, strict=True):
        G_ll = ctx.ggn_block(block)
        Q = E_b.eigenvectors()
        assert rel_err(E_b.eigenvalues, torch.diagonal(Q.T @ G_ll @ Q)) <= 1e-10
        projected = corrected_eigenvalues_by_projection(ctx, block, E_b.U_S, E_b.U_A)
        assert rel_err(projected, E_b.eigenvalues) <= 1e-10
        E, K = E_b.to_dense(), K_b.to_dense()
        lhs = torch.linalg.norm(G_ll - K) ** 2
        rhs = torch.linalg.norm(G_ll - E) ** 2 + torch.linalg.norm(E - K) ** 2
        assert abs(lhs - rhs) / lhs <= 1e-10
        assert abs(torch.linalg.norm(E - K) - torch.linalg.norm(E_b.eigenvalues - K_b.eigenvalues)
                   ) <= 1e-10 * torch.linalg.norm(E)


def test_structured_methods_never_form_dense_ggn(problem):
    model, X, y = problem
    ctx = CurvatureContext(model, X, y)
    for builder in (kfac.build, ekfac.build, blockdiag.build):
        builder(ctx)
    assert not ctx.has("ggn") and not ctx.has("hessian")
    # matrix-free application equals the dense materialisation
    op = ekfac.build(ctx)
    V = torch.randn(ctx.n_params, 3, dtype=torch.float64)
    assert rel_err(op.matmat(V), op.to_dense() @ V) <= 1e-12


def test_monte_carlo_and_empirical_kfac_options(problem):
    model, X, y = problem
    mc = CurvatureContext(model, X, y, CurvatureSettings(fisher_type="mc", mc_samples=2000))
    exact = CurvatureContext(model, X, y)
    # the MC Fisher is unbiased for the type-2 GGN: many samples land close
    assert rel_err(kfac.build(mc).to_dense(), kfac.build(exact).to_dense()) < 0.1
    emp = CurvatureContext(model, X, y, CurvatureSettings(fisher_type="empirical"))
    op = _curvlinops_emp(model, X, y)
    assert rel_err(kfac.build(emp).to_dense(), op) <= 1e-8


def _curvlinops_emp(model, X, y):
    op = KFACLinearOperator(model, torch.nn.CrossEntropyLoss(), list(model.parameters()),
                            [(X, y)], fisher_type=FisherType.EMPIRICAL,
                            separate_weight_and_bias=False)
    d = sum(p.numel() for p in model.parameters())
    return op @ torch.eye(d, dtype=torch.float64)
