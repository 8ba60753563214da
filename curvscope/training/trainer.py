"""The training recipe of the controlled setting (SCIENCE.md §1; Hong et al., 2025).

Mean cross-entropy, SGD with heavy-ball momentum in PyTorch's convention
  b_t = μ b_{t−1} + (∇L_B(θ_t) + wd·θ_t),  b_0 = 0,   θ_{t+1} = θ_t − η_t b_t,
minibatches of ``batch_size`` drawn by a seeded permutation per epoch (the last batch may be
smaller), learning rate η_t constant or cosine-annealed per step,
η_t = η · ½(1 + cos(π t / T)). Initialisation and minibatch order come from two generators
derived from ``seed``, so a run is deterministic on CPU and the batched trainer can replay it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn
from torch.func import functional_call, grad

from curvscope.models.layout import ParameterLayout

SHUFFLE_SEED_OFFSET = 0x5EED


class TrainingSpec(BaseModel):
    """How the model is trained (and every retrained copy of it)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=0.01, gt=0.0, le=10.0, description="SGD learning rate η.")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="Heavy-ball momentum μ.")
    batch_size: int = Field(default=32, ge=1, le=100_000, description="Minibatch size.")
    epochs: int = Field(default=100, ge=1, le=10_000, description="Passes over the data.")
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0,
                                description="L2 coefficient added to the gradient.")
    schedule: Literal["constant", "cosine"] = Field(
        default="constant", description="Learning-rate schedule over steps."
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1,
                      description="Seed of the initialisation and the minibatch order.")
    checkpoints: list[int] = Field(
        default_factory=list, max_length=1000,
        description="Epochs after which θ is saved (the last epoch always is).",
    )
    evaluate_at_epoch: int | None = Field(
        default=None, ge=1, le=10_000,
        description="Attribute at this checkpoint of the training run instead of its end: "
        "curvature, scores and ground truth use θ after this many epochs of the full run of "
        "`epochs` epochs (under a cosine schedule the learning rate follows the full run's "
        "schedule, it is not re-annealed to zero at this epoch), and the retrained models' "
        "test losses at the same checkpoint of the same recipe. Must be a checkpoint epoch; "
        "the base model and the retraining are shared by every value (one training run).",
    )

    @model_validator(mode="after")
    def _evaluate_at_a_checkpoint(self):
        epoch = self.evaluate_at_epoch
        if epoch is not None and epoch not in self.checkpoint_epochs():
            allowed = ", ".join(str(e) for e in self.checkpoint_epochs())
            where = (f"beyond the trained epochs ({self.epochs})" if epoch > self.epochs
                     else "not a checkpoint epoch")
            raise ValueError(f"training.evaluate_at_epoch = {epoch} is {where}; allowed: the "
                             f"checkpoint epochs {allowed} (add it to training.checkpoints)")
        return self

    def evaluated_epoch(self) -> int:
        """The epoch whose θ the study attributes with: evaluate_at_epoch, else the last."""
        return self.evaluate_at_epoch or self.epochs

    @field_validator("checkpoints")
    @classmethod
    def _sorted_unique(cls, value: list[int]) -> list[int]:
        if any(e < 1 for e in value):
            raise ValueError("checkpoint epochs start at 1")
        return sorted(set(value))

    def checkpoint_epochs(self) -> list[int]:
        """Sorted checkpoint epochs within 1..epochs, always ending with ``epochs``."""
        return sorted({e for e in self.checkpoints if e <= self.epochs} | {self.epochs})


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainingResult:
    theta: torch.Tensor
    checkpoints: dict[int, torch.Tensor]
    epoch_losses: list[float] = field(default_factory=list)


def shuffle_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + SHUFFLE_SEED_OFFSET)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's minibatches: a fresh permutation of range(n) cut into batch_size pieces."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def learning_rate(spec: TrainingSpec, step: int, total_steps: int) -> float:
    if spec.schedule == "cosine":
        return spec.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    return spec.lr


def diverged_message(epoch: int, spec: TrainingSpec) -> str:
    return (
        f"training diverged: the loss became NaN or infinite in epoch {epoch} "
        f"with learning rate {spec.lr}; try a smaller learning rate (e.g. {spec.lr / 10:g})"
    )


def train_model(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    spec: TrainingSpec,
    progress=None,
) -> TrainingResult:
    """Train ``model`` in place on (X, y) with the recipe above; returns θ and checkpoints."""
    layout = ParameterLayout.from_model(model)
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()

    def batch_loss(theta, xb, yb):
        return F.cross_entropy(functional_call(model, layout.unflatten(theta), (xb,)), yb)

    loss_and_grad = grad(batch_loss)
    generator = shuffle_generator(spec.seed)
    n = X.shape[0]
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total_steps = steps_per_epoch * spec.epochs
    buffer = torch.zeros_like(theta)
    keep = set(spec.checkpoint_epochs())
    checkpoints: dict[int, torch.Tensor] = {}
    epoch_losses: list[float] = []
    step = 0
    for epoch in range(1, spec.epochs + 1):
        for batch in epoch_batches(n, spec.batch_size, generator):
            xb, yb = X[batch], y[batch]
            g = loss_and_grad(theta, xb, yb)
            if spec.weight_decay:
                g = g + spec.weight_decay * theta
            buffer = spec.momentum * buffer + g
            theta = theta - learning_rate(spec, step, total_steps) * buffer
            step += 1
        with torch.no_grad():
            epoch_loss = float(batch_loss(theta, X, y))
        if not math.isfinite(epoch_loss) or not torch.isfinite(theta).all():
            raise TrainingDivergedError(diverged_message(epoch, spec))
        epoch_losses.append(epoch_loss)
        if epoch in keep:
            checkpoints[epoch] = theta.clone()
        if progress is not None:
            progress(epoch, spec.epochs)
    with torch.no_grad():
        for name, value in layout.unflatten(theta).items():
            model.get_parameter(name).copy_(value)
    return TrainingResult(theta, checkpoints, epoch_losses)
