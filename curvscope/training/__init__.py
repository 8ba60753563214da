"""One trainer for one model; the batched trainer for many (ground truth) builds on the same
step semantics."""

from curvscope.training.trainer import (
    TrainingDivergedError,
    TrainingResult,
    TrainingSpec,
    epoch_batches,
    learning_rate,
    train_model,
)

__all__ = [
    "TrainingDivergedError",
    "TrainingResult",
    "TrainingSpec",
    "epoch_batches",
    "learning_rate",
    "train_model",
]
