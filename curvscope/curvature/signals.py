"""Layer-wise signals of a ``Linear`` network: inputs ā and backpropagated output gradients g.

For a linear layer z = W a + b, the Jacobian of the logits with respect to (W, b) at sample n is
the outer product of the output-gradient and the (augmented) input, so every per-layer
curvature quantity in curvscope is built from two per-sample tensors:

* ā_n — the layer's input, with a constant 1 appended when the bias is folded in;
* g_{n,k} = J_{z,n}ᵀ m_{n,k} — the gradient at the layer's output of the logits contracted with
  a cotangent m_{n,k} ∈ ℝ^C.

For the exact (type-2) GGN the cotangents are the columns of a square root of the loss
Hessian Λ_n = ∇²_f ℓ = diag(p_n) − p_n p_nᵀ (softmax cross-entropy). We use the factor
M_n = diag(√p_n) − p_n √p_nᵀ, which satisfies M_n M_nᵀ = Λ_n exactly because Σ_c p_c = 1,
so  G = (1/N) Σ_n J_nᵀ Λ_n J_n = (1/N) Σ_n Σ_k J_nᵀ m_{n,k} m_{n,k}ᵀ J_n  (C backward passes).
The Monte-Carlo Fisher replaces m by p − onehot(ŷ), ŷ ~ Cat(p), scaled by 1/√S for S samples;
the empirical Fisher by p − onehot(y) (Martens & Grosse, 2015; Kunstner et al., 2019).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from curvscope.models.layout import Block

FisherType = Literal["type2", "mc", "empirical"]


@dataclass
class LayerSignals:
    """Per-layer inputs (N × in) and output gradients (K × N × out) for K cotangents."""

    inputs: dict[str, torch.Tensor]
    output_grads: dict[str, torch.Tensor]


def loss_hessian_sqrt(logits: torch.Tensor) -> torch.Tensor:
    """M_n with M_n M_nᵀ = diag(p_n) − p_n p_nᵀ, for logits (N × C); returns (N × C × C)."""
    p = torch.softmax(logits, dim=-1)
    sqrt_p = p.sqrt()
    return torch.diag_embed(sqrt_p) - p.unsqueeze(-1) * sqrt_p.unsqueeze(-2)


def sample_labels(logits: torch.Tensor, mc_samples: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ŷ_{n,s} ~ Cat(softmax(f_n)), N × S int64: the Monte-Carlo Fisher's sampled labels."""
    p = torch.softmax(logits.detach(), dim=-1)
    return torch.multinomial(p, mc_samples, replacement=True, generator=generator)


def mc_cotangents(logits: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """(p − onehot(ŷ_s)) / √S for the sampled labels ``draws`` (N × S); returns S × N × C."""
    p = torch.softmax(logits.detach(), dim=-1)
    onehot = torch.nn.functional.one_hot(draws.T, logits.shape[-1]).to(p.dtype)
    return (p.unsqueeze(0) - onehot) / draws.shape[1] ** 0.5


def fisher_cotangents(
    logits: torch.Tensor,
    targets: torch.Tensor,
    fisher_type: FisherType = "type2",
    mc_samples: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cotangents m_{k,n} (K × N × C) whose outer products sum to the chosen curvature.

    type2: the C columns of M_n (exact GGN); mc: p − onehot(ŷ) for ``mc_samples`` labels drawn
    from the model (scaled by 1/√S); empirical: p − onehot(y).
    """
    logits = logits.detach()
    if fisher_type == "type2":
        return loss_hessian_sqrt(logits).permute(2, 0, 1).contiguous()
    p = torch.softmax(logits, dim=-1)
    n_classes = logits.shape[-1]
    if fisher_type == "empirical":
        onehot = torch.nn.functional.one_hot(targets, n_classes).to(p.dtype)
        return (p - onehot).unsqueeze(0)
    if fisher_type == "mc":
        return mc_cotangents(logits, sample_labels(logits, mc_samples, generator))
    raise ValueError(f"unknown fisher_type {fisher_type!r}; allowed: type2, mc, empirical")


def layer_signals(model: nn.Module, X: torch.Tensor, cotangents_fn) -> LayerSignals:
    """Run ``model`` on X, then backpropagate K cotangent sets to every ``Linear`` output.

    ``cotangents_fn(logits) -> K × N × C``. Backpropagation uses zero-valued "taps" added to each
    layer's output, so the gradients are per-sample (no sum over n).
    """
    inputs: dict[str, torch.Tensor] = {}
    taps: dict[str, torch.Tensor] = {}

    def make_hook(name):
        def hook(module, args, output):
            inputs[name] = args[0].detach()
            tap = torch.zeros_like(output, requires_grad=True)
            taps[name] = tap
            return output + tap

        return hook

    handles = [
        module.register_forward_hook(make_hook(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        with torch.enable_grad():
            logits = model(X)
            cotangents = cotangents_fn(logits)
            names = list(taps)
            # the vector-Jacobian product J^T cot as the gradient of the scalar <logits, cot>
            # (the same numbers: the sum's backward hands cot through times 1): autograd.grad
            # with a tensor grad_outputs imports sympy on its first call, ~0.9 s here
            grads = [
                torch.stack(g)
                for g in zip(
                    *(
                        torch.autograd.grad(
                            (logits * cot).sum(), [taps[n] for n in names], retain_graph=True
                        )
                        for cot in cotangents
                    ),
                    strict=True,
                )
            ]
    finally:
        for handle in handles:
            handle.remove()
    return LayerSignals(inputs, dict(zip(names, grads, strict=True)))


def augmented_inputs(block: Block, inputs: torch.Tensor) -> torch.Tensor:
    """ā for ``block``: [a, 1] for weight+bias, a for weight only, 1 for bias only."""
    ones = torch.ones(inputs.shape[0], 1, dtype=inputs.dtype, device=inputs.device)
    if block.has_weight and block.has_bias:
        return torch.cat([inputs, ones], dim=1)
    return inputs if block.has_weight else ones


def comb_to_theta_index(block: Block) -> torch.Tensor:
    """Index mapping the layer's (out × in_aug) row-major layout onto θ's block layout:
    θ_block = comb[index]. With the bias folded in, θ holds (vec(W), b) while the augmented
    matrix [W | b] interleaves a bias entry after each row of W."""
    out, fan_in = block.out_features, block.in_features
    if not (block.has_weight and block.has_bias):
        size = out * (fan_in if block.has_weight else 1)
        return torch.arange(size)
    rows = torch.arange(out).unsqueeze(1) * (fan_in + 1)
    weight = (rows + torch.arange(fan_in)).reshape(-1)
    return torch.cat([weight, rows.reshape(-1) + fan_in])
