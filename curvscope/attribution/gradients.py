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
    chunk_bytes: int = 512 * 2**20,
) -> torch.Tensor:
    """Rows ∇_θ ℓ(z_n) (n × d) in θ's layout, for the model's current parameters."""
    layout = layout or ParameterLayout.from_model(model)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(params, x, target):
        logits = functional_call(model, params, (x.unsqueeze(0),))
        return F.cross_entropy(logits, target.unsqueeze(0))

    # the gradient is taken per parameter tensor and concatenated once: differentiating with
    # respect to a flat θ sliced inside the vmap costs an n × d zero-filled buffer per slice
    row_bytes = layout.n_params * X.element_size() * 4  # output + backward temporaries
    chunk_size = None if len(X) * row_bytes <= chunk_bytes else max(1, chunk_bytes // row_bytes)
    grads = vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, X, y)
    return layout.flatten(grads)
