"""Per-sample gradients ∇_θ ℓ(y_n, f_θ(x_n)), one row per example, in θ's layout.

Two paths, the same numbers (to ≤ 1e-12 in float64, tests/attribution/test_per_sample_fast.py):

* **Linear layers (closed form).** For z_l = W_l a_{l−1} + b_l the gradient of the example's
  own loss ℓ_n is the outer product ∂ℓ_n/∂W_l = δ_{n,l} a_{n,l−1}ᵀ, ∂ℓ_n/∂b_l = δ_{n,l}, with
  δ_{n,l} = ∂ℓ_n/∂z_{n,l} the backpropagated output gradient. One batched forward and ONE
  backward of Σ_n ℓ_n give every δ_{n,l} at once (each example's logits depend only on its own
  input, so ∂(Σ_m ℓ_m)/∂z_{n,l} = ∂ℓ_n/∂z_{n,l}); these are the same layer signals the K-FAC
  code uses (``curvature/signals.py``: inputs ā and output gradients g, here with the cotangent
  p_n − onehot(y_n) of the cross-entropy). The N × d matrix is then written block by block as
  products δ ⊗ a, with no per-example graph at all.
* **Anything else (torch.func).** A model with parameters outside ``nn.Linear`` modules, or whose
  Linear layers are not each applied once to an (N × in) input, takes vmap of grad of
  functional_call (SCIENCE.md §3).

Hong et al. (2025, arXiv 2509.23437) use these gradients for every influence score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from curvscope.memory import empty_large
from curvscope.models.layout import ParameterLayout


def per_sample_gradients(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    layout: ParameterLayout | None = None,
    chunk_bytes: int = 512 * 2**20,
) -> torch.Tensor:
    """Rows ∇_θ ℓ(z_n) (n × d) in θ's layout, for the model's current parameters."""
    try:
        layout = layout or ParameterLayout.from_model(model)
    except ValueError:  # parameters outside Linear layers: the generic path
        return per_sample_gradients_vmap(model, X, y, None, chunk_bytes)
    fast = per_sample_gradients_linear(model, X, y, layout)
    if fast is not None:
        return fast
    return per_sample_gradients_vmap(model, X, y, layout, chunk_bytes)


def per_sample_gradients_linear(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, layout: ParameterLayout
) -> torch.Tensor | None:
    """The closed form δ_{n,l} ⊗ a_{n,l−1} from one batched forward + backward, or None when
    the model is not covered (a Linear layer called more than once or on a non-(N × in) input).
    """
    modules = dict(model.named_modules())
    linear = {b.module_name for b in layout.blocks}
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    covered = [True]

    def make_hook(name):
        def hook(module, args, output):
            if name in outputs or args[0].dim() != 2 or output.dim() != 2:
                covered[0] = False
            inputs[name] = args[0].detach()
            outputs[name] = output
            return None

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in linear]
    try:
        with torch.enable_grad():
            params = [p for p in model.parameters()]
            # the graph must reach the layer outputs even if no parameter requires grad
            needs = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(True)
            try:
                logits = model(X)
                if not covered[0] or set(outputs) != linear or logits.dim() != 2:
                    return None
                names = list(outputs)
                loss = F.cross_entropy(logits, y, reduction="sum")
                deltas = torch.autograd.grad(loss, [outputs[n] for n in names])
            finally:
                for p, need in zip(params, needs, strict=True):
                    p.requires_grad_(need)
    finally:
        for handle in handles:
            handle.remove()
    delta = dict(zip(names, deltas, strict=True))
    n = X.shape[0]
    rows = empty_large(n, layout.n_params, dtype=X.dtype, device=X.device)
    position = dict(zip(layout.names, layout.offsets, strict=True))
    seen = set()
    for block in layout.blocks:  # per-tensor layouts list a layer twice
        if block.module_name in seen:
            continue
        seen.add(block.module_name)
        d, a = delta[block.module_name], inputs[block.module_name]
        if d.shape[0] != n or a.shape[0] != n:
            return None
        out, fan_in = block.out_features, block.in_features
        w_name, b_name = f"{block.module_name}.weight", f"{block.module_name}.bias"
        if w_name in position:
            start = position[w_name]
            view = rows[:, start : start + out * fan_in].view(n, out, fan_in)
            torch.mul(d.unsqueeze(2), a.unsqueeze(1), out=view)
        if b_name in position and modules[block.module_name].bias is not None:
            start = position[b_name]
            rows[:, start : start + out] = d
    return rows


def per_sample_gradients_vmap(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    layout: ParameterLayout | None = None,
    chunk_bytes: int = 512 * 2**20,
) -> torch.Tensor:
    """vmap of grad of functional_call: the path for any model (and the fast path's check)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(params, x, target):
        logits = functional_call(model, params, (x.unsqueeze(0),))
        return F.cross_entropy(logits, target.unsqueeze(0))

    # the gradient is taken per parameter tensor and concatenated once: differentiating with
    # respect to a flat θ sliced inside the vmap costs an n × d zero-filled buffer per slice
    d = sum(v.numel() for v in params.values())
    row_bytes = d * X.element_size() * 4  # output + backward temporaries
    chunk_size = None if len(X) * row_bytes <= chunk_bytes else max(1, chunk_bytes // row_bytes)
    grads = vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, X, y)
    if layout is not None:
        return layout.flatten(grads)
    return torch.cat([g.reshape(len(X), -1) for g in grads.values()], dim=1)
