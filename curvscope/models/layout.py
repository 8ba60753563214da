"""Parameter bookkeeping: one flat vector θ in ``named_parameters`` order, split into blocks.

Every curvature matrix in curvscope is indexed by this flat θ = (vec(W₁), b₁, vec(W₂), b₂, …),
with ``vec`` the row-major flatten PyTorch uses (entry (o, i) of an out×in weight sits at
o·in + i). Blocks are either one per layer (weight and bias together, the default of
SCIENCE.md §2) or one per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

BlockStructure = Literal["layer", "tensor"]


@dataclass(frozen=True)
class Block:
    """A contiguous slice ``[start, stop)`` of θ owned by one linear layer.

    ``has_weight``/``has_bias`` say which of the layer's tensors the block holds, so a per-layer
    block has both and a per-tensor block one of them.
    """

    name: str
    start: int
    stop: int
    module_name: str
    in_features: int
    out_features: int
    has_weight: bool
    has_bias: bool

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class ParameterLayout:
    """Names, shapes and offsets of the parameters of a model of ``Linear`` layers."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    blocks: tuple[Block, ...]
    block_structure: BlockStructure

    @classmethod
    def from_model(cls, model: nn.Module, block_structure: BlockStructure = "layer"):
        names, shapes, offsets = [], [], []
        offset = 0
        for name, param in model.named_parameters():
            names.append(name)
            shapes.append(tuple(param.shape))
            offsets.append(offset)
            offset += param.numel()
        position = dict(zip(names, offsets, strict=True))
        blocks = []
        for module_name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            w_name = f"{module_name}.weight"
            b_name = f"{module_name}.bias"
            has_bias = module.bias is not None
            w_size = module.weight.numel()
            b_size = module.out_features if has_bias else 0
            common = dict(
                module_name=module_name,
                in_features=module.in_features,
                out_features=module.out_features,
            )
            if block_structure == "layer":
                start = position[w_name]
                blocks.append(
                    Block(f"layer{module_name}", start, start + w_size + b_size,
                          has_weight=True, has_bias=has_bias, **common)
                )
            else:
                start = position[w_name]
                blocks.append(Block(w_name, start, start + w_size, has_weight=True,
                                    has_bias=False, **common))
                if has_bias:
                    start = position[b_name]
                    blocks.append(Block(b_name, start, start + b_size, has_weight=False,
                                        has_bias=True, **common))
        layout = cls(tuple(names), tuple(shapes), tuple(offsets), tuple(blocks), block_structure)
        covered = sum(b.size for b in blocks)
        if covered != layout.n_params:
            raise ValueError(
                f"only Linear layers are supported: blocks cover {covered} of "
                f"{layout.n_params} parameters"
            )
        return layout

    @property
    def n_params(self) -> int:
        return sum(_numel(s) for s in self.shapes)

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """θ from a name → tensor dict (any leading batch dimensions are kept)."""
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            value = params[name]
            batch = value.shape[: value.dim() - len(shape)]
            parts.append(value.reshape(*batch, -1))
        return torch.cat(parts, dim=-1)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Name → tensor views of θ (leading batch dimensions of θ are kept)."""
        batch = theta.shape[:-1]
        out = {}
        for name, shape, offset in zip(self.names, self.shapes, self.offsets, strict=True):
            out[name] = theta[..., offset : offset + _numel(shape)].reshape(*batch, *shape)
        return out

    def describe_blocks(self) -> list[dict]:
        return [{"name": b.name, "size": b.size, "start": b.start, "stop": b.stop}
                for b in self.blocks]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
