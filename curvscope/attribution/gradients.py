"""Per-sample gradients ∇_θ ℓ(y_n, f_θ(x_n)) with torch.func: vmap of grad of functional_call."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from curvscope.models.layout import ParameterLayout


def per_sample_gradients(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    layout: ParameterLayout | None = None,
    chunk_size: int | None = 1024,
) -> torch.Tensor:
    """Rows ∇_θ ℓ(z_n) (n × d) in θ's layout, for the model's current parameters."""
    layout = layout or ParameterLayout.from_model(model)
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()})

    def loss_one(theta, x, target):
        logits = functional_call(model, layout.unflatten(theta), (x.unsqueeze(0),))
        return F.cross_entropy(logits, target.unsqueeze(0))

    return vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(theta, X, y)
