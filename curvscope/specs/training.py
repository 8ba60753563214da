"""The training recipe of a study (``training``).

Torch-free: the API imports it. Re-exported from ``curvscope.training.trainer``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: At most this many evenly spaced epochs of the retrained models' training loss are kept.
LOSS_CURVE_POINTS = 25


def loss_curve_epochs(epochs: int, checkpoints=(), points: int = LOSS_CURVE_POINTS) -> list[int]:
    """The epochs at which ``train_many`` records each retrained model's running training
    loss: ``points`` evenly spaced epochs from 1 to ``epochs`` (all of them when there are
    fewer), plus the checkpoint epochs. Enough for a curve's shape; the loss comes off the
    softmax of the backward pass, a few elementwise kernels per step of those epochs."""
    if epochs <= points:
        chosen = set(range(1, epochs + 1))
    else:
        chosen = {1 + round(k * (epochs - 1) / (points - 1)) for k in range(points)}
    return sorted(chosen | {int(e) for e in checkpoints if 1 <= int(e) <= epochs})


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

    def loss_curve_epochs(self) -> list[int]:
        """The epochs at which the retrained models' training loss is recorded
        (:func:`loss_curve_epochs` of ``epochs`` and the checkpoints)."""
        return loss_curve_epochs(self.epochs, self.checkpoint_epochs())
