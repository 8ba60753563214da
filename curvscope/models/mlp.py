"""Multi-layer perceptrons: the model family of the controlled setting.

The default study (Hong et al., 2025, arXiv 2509.23437) uses an MLP 64→64→32→10 with GELU and
biases (6,570 parameters). ``build_mlp`` returns a plain ``torch.nn.Sequential`` of ``Linear``
and activation modules so that parameter names (``"0.weight"``, ``"0.bias"``, ``"2.weight"``…)
are stable and curvlinops can walk the modules.

Initialisation follows PyTorch's default for ``nn.Linear`` (Kaiming-uniform with a = √5), i.e.
W, b ~ U(−1/√fan_in, 1/√fan_in), but is drawn from an explicit ``torch.Generator`` in a fixed
order so that the batched trainer can reproduce any single model's initialisation exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from curvscope.specs.model import ModelSpec  # noqa: F401  (re-exported)

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def build_mlp(
    n_features: int,
    n_classes: int,
    spec: ModelSpec,
    seed: int,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """Build the MLP ``n_features → hidden… → n_classes`` and initialise it from ``seed``."""
    widths = [n_features, *spec.hidden, n_classes]
    modules: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        modules.append(nn.Linear(fan_in, fan_out, bias=spec.bias, dtype=dtype))
        if index < len(widths) - 2:
            modules.append(ACTIVATIONS[spec.activation]())
    model = nn.Sequential(*modules)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in init_mlp_parameters(model, generator).items():
            model.get_parameter(name).copy_(value)
    return model


def init_mlp_parameters(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw fresh parameters for every ``Linear`` of ``model`` from ``generator``.

    W, b ~ U(−1/√fan_in, 1/√fan_in), drawn weight then bias, layer by layer, in
    ``named_parameters`` order. Returns a name → tensor dict (the model is not modified).
    """
    values: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        module = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        fan_in = module.in_features
        bound = 1.0 / math.sqrt(fan_in)
        draw = torch.rand(param.shape, generator=generator, dtype=torch.float64)
        values[name] = ((2.0 * draw - 1.0) * bound).to(param.dtype)
    return values
