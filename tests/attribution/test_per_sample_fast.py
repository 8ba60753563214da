"""The closed-form per-sample gradients of Linear layers (δ ⊗ a from one batched backward)
against a per-example loop, and the torch.func fallback for models it does not cover."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curvscope.attribution.gradients import (
    empty_large,
    per_sample_gradients,
    per_sample_gradients_linear,
    per_sample_gradients_vmap,
)
from curvscope.models import ParameterLayout
from tests.conftest import make_problem

TOLERANCE = 1e-12  # max |fast − loop|, float64 (issue 14)


def loop_gradients(model, X, y):
    rows = []
    for n in range(X.shape[0]):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(X[n : n + 1]), y[n : n + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hidden", [(), (7,), (6, 5, 4)])
def test_linear_closed_form_equals_loop(activation, bias, hidden):
    model, X, y = make_problem(n=23, n_features=5, n_classes=4, hidden=hidden,
                               activation=activation, bias=bias, seed=len(hidden) + bias)
    layout = ParameterLayout.from_model(model)
    fast = per_sample_gradients_linear(model, X, y, layout)
    assert fast is not None  # the closed form covers every MLP
    loop = loop_gradients(model, X, y)
    assert fast.shape == loop.shape
    assert (fast - loop).abs().max().item() <= TOLERANCE
    assert (per_sample_gradients(model, X, y) - loop).abs().max().item() <= TOLERANCE
    assert (per_sample_gradients_vmap(model, X, y, layout) - loop).abs().max().item() \
        <= TOLERANCE


def test_per_tensor_layout_and_frozen_parameters():
    model, X, y = make_problem(n=11, hidden=(6,), activation="gelu")
    layout = ParameterLayout.from_model(model, "tensor")
    loop = loop_gradients(model, X, y)
    for p in model.parameters():
        p.requires_grad_(False)
    fast = per_sample_gradients(model, X, y, layout)
    assert all(not p.requires_grad for p in model.parameters())  # restored
    assert (fast - loop).abs().max().item() <= TOLERANCE


class _Shared(nn.Module):
    """A Linear applied twice: the closed form (one call per layer) does not cover it."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4, dtype=torch.float64)
        self.head = nn.Linear(4, 3, dtype=torch.float64)

    def forward(self, x):
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def test_models_outside_the_closed_form_take_the_vmap_path():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=gen)
    shared = _Shared()
    layout = ParameterLayout.from_model(shared)
    assert per_sample_gradients_linear(shared, X, y, layout) is None
    assert (per_sample_gradients(shared, X, y) - loop_gradients(shared, X, y)).abs().max() \
        <= TOLERANCE
    # a LayerNorm holds parameters outside Linear layers: no layout, torch.func path
    normed = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).double()
    assert (per_sample_gradients(normed, X, y) - loop_gradients(normed, X, y)).abs().max() \
        <= TOLERANCE


def test_empty_large_is_an_ordinary_writable_tensor():
    out = empty_large(300, 20_000, dtype=torch.float64)
    assert out.shape == (300, 20_000) and out.is_contiguous()
    out.fill_(2.0)
    assert float(out.sum()) == 2.0 * 300 * 20_000
