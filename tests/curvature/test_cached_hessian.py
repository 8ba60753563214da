"""A cached H is reused as the very matrix a fresh run computes (issue 14): the H operator
keeps H beside its eigendecomposition, so reuse adopts it without recomposing V diag(λ) Vᵀ."""

from __future__ import annotations

import io
import pickle

import numpy as np
import torch

from curvscope.curvature import CurvatureContext, CurvatureSettings
from curvscope.curvature.base import DenseEigenBlock
from curvscope.curvature.hessian import build
from tests.conftest import make_problem


def test_the_h_operator_keeps_h_itself_and_survives_the_cache_format():
    model, X, y = make_problem(n=30, activation="gelu")
    ctx = CurvatureContext(model, X, y, CurvatureSettings())
    op = build(ctx)
    block = op.blocks[0]
    assert block.matrix is ctx.hessian()                       # no copy in the run
    buffer = io.BytesIO()
    torch.save(op, buffer)
    buffer.seek(0)
    reused = torch.load(buffer, weights_only=False)
    assert torch.equal(reused.to_dense(), ctx.hessian())      # bit for bit, not recomposed
    V, e = reused.blocks[0].vectors, reused.blocks[0].eigenvalues
    torch.testing.assert_close((V * e) @ V.T, ctx.hessian(), rtol=1e-12, atol=1e-13)


def test_a_block_pickled_without_the_matrix_recomposes():
    """Entries written before the field existed unpickle with matrix = None."""
    model, X, y = make_problem(n=30)
    H = CurvatureContext(model, X, y, CurvatureSettings()).hessian()
    old = DenseEigenBlock.from_matrix(H)
    state = dict(old.__dict__)
    state.pop("matrix")
    restored = DenseEigenBlock.__new__(DenseEigenBlock)
    restored.__dict__.update(pickle.loads(pickle.dumps(state)))
    assert restored.matrix is None
    torch.testing.assert_close(restored.to_dense(), (H + H.T) / 2, rtol=1e-12, atol=1e-13)


def test_a_study_reusing_its_cached_h_reports_the_same_numbers(tmp_path):
    from curvscope.results import scores_name
    from curvscope.spec import resolve_spec
    from curvscope.study import run_study

    spec = resolve_spec({"data": {"name": "iris"}, "model": {"hidden": [6]},
                         "training": {"epochs": 3, "lr": 0.05},
                         "curvature": {"methods": ["H", "GGN", "K-FAC"]},
                         "groundtruth": {"enabled": False}})
    fresh = run_study(spec, cache_dir=tmp_path)
    again = run_study(spec, cache_dir=tmp_path)
    assert again.results["cache"]["curvature/H"] == "reused"
    for method in ("H", "GGN", "K-FAC"):
        np.testing.assert_array_equal(again.arrays[scores_name(method)],
                                      fresh.arrays[scores_name(method)])
        assert (again.results["methods"][method]["relative_residual_to_H"]
                == fresh.results["methods"][method]["relative_residual_to_H"])
