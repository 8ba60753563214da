"""Leave-some-out retraining (SCIENCE.md §4): every (α, subset m, seed r) model retrained with
the study's recipe by the batched trainer, in chunks that fit a memory budget.

Model (α, m, r) trains on subset m of α (``subsets.draw_subset``) from seed ``seed + r``
(initialisation and minibatch order). Each is independent and deterministic, so any slice of
(subsets × seeds) can run alone — on another worker — and the slices assemble into the same
array as one run.

What is retrained on: the subsets index the ATTRIBUTED training points (``SplitData.X_train``,
the columns of the score matrix), so retraining removes exactly the points the scores rank.
Under ``data.split = "per_loader"`` these are loader 2's (``eval_train``'s) training rows with
loader 2's scaler, and the test losses are on loader 3's test rows, while the studied model
was fitted on loader 1's rows. That follows the official code, whose LDS masks index
eval_train's points (``influence_scores @ binary_masks`` with scores over eval_train,
``influence/lds.py``); its release holds no retraining code (it loads precomputed
``binary_masks`` / ``loss_diffs``), so this is the only choice under which its masks and its
scores refer to the same points. Retraining on loader 1's rows at the mask's positions would
remove other points than the ones attributed (only 1,453 of 1,617 are shared at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from curvscope.groundtruth.subsets import draw_subset
from curvscope.specs.groundtruth import GroundTruthSpec  # noqa: F401  (re-exported)
from curvscope.training.batched import mlp_sizes, train_many
from curvscope.training.trainer import TrainingSpec


def models_per_chunk(model: nn.Module, batch_size: int, n_eval: int, itemsize: int,
                     cap: int, memory_budget_bytes: int | None) -> int:
    """How many models train together: at most ``cap``, and few enough that their parameters,
    momentum and gradients (3·d each) plus activations of a minibatch and of the evaluation set
    (≈ 4 tensors per layer width) fit in a quarter of the memory budget."""
    if memory_budget_bytes is None:
        return cap
    params, widths = mlp_sizes(model)
    per_model = itemsize * (3 * params + 4 * widths * (batch_size + n_eval))
    return int(max(1, min(cap, memory_budget_bytes // 4 // per_model)))


@dataclass
class RetrainedLosses:
    """What one slice of the retraining measured.

    ``test_losses``: per-point test losses, n_checkpoints × subsets × seeds × n_test (float32),
    at ``training.checkpoint_epochs()``; the LDS's ground truth.
    ``train_losses``: each retrained model's running training loss (its mean minibatch loss
    over the epoch, ``batched.train_many``), subsets × seeds × len(train_loss_epochs)
    (float32), at ``train_loss_epochs`` (``TrainingSpec.loss_curve_epochs``); the spread of
    the ground truth's training curves."""

    test_losses: np.ndarray
    train_losses: np.ndarray
    train_loss_epochs: list[int]


def retrain_slice(
    model: nn.Sequential,
    X: torch.Tensor,
    y: torch.Tensor,
    X_test: torch.Tensor,
    y_test: torch.Tensor,
    training: TrainingSpec,
    gt: GroundTruthSpec,
    alpha: float,
    subset_ids: list[int],
    seed_ids: list[int],
    progress=None,
    memory_budget_bytes: int | None = None,
) -> RetrainedLosses:
    """The models (α, m, r) for m in subset_ids, r in seed_ids: their per-point test losses
    at ``training.checkpoint_epochs()`` and their training losses at ``loss_curve_epochs``."""
    pairs = [(m, r) for m in subset_ids for r in seed_ids]
    subsets = {m: draw_subset(len(X), alpha, m, gt.seed) for m in subset_ids}
    epochs = training.checkpoint_epochs()
    curve = training.loss_curve_epochs()
    losses = np.empty((len(epochs), len(pairs), len(X_test)), dtype=np.float32)
    train_losses = np.empty((len(pairs), len(curve)), dtype=np.float32)
    chunk = models_per_chunk(model, training.batch_size, len(X_test), X.element_size(),
                             gt.max_models_per_chunk, memory_budget_bytes)
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]

        def report(epoch, total, start=start, part=part):
            if progress is not None:
                progress((start + len(part) * epoch / total) / len(pairs))

        result = train_many(model, X, y, [subsets[m] for m, _ in part],
                            [gt.seed + r for _, r in part], training, X_test, y_test, report)
        for k, epoch in enumerate(epochs):
            losses[k, start : start + len(part)] = result.eval_losses[epoch].cpu().numpy()
        for k, epoch in enumerate(curve):
            train_losses[start : start + len(part), k] = result.train_losses[epoch].cpu().numpy()
    return RetrainedLosses(
        losses.reshape(len(epochs), len(subset_ids), len(seed_ids), len(X_test)),
        train_losses.reshape(len(subset_ids), len(seed_ids), len(curve)), curve)


def loss_spread(train_losses: np.ndarray, epochs: list[int]) -> dict:
    """The spread of the retrained models' training-loss curves (one curve per model at
    ``epochs``, in any leading shape, e.g. subsets × seeds × epochs): per epoch the 10 %,
    50 % and 90 % quantiles over the models (numpy's linear interpolation), as
    ``results.LossSpread`` stores them."""
    curves = np.asarray(train_losses, dtype=np.float64).reshape(-1, len(epochs))
    low, mid, high = np.quantile(curves, [0.1, 0.5, 0.9], axis=0)
    return {"epochs": [int(e) for e in epochs], "n_models": int(curves.shape[0]),
            "p10": low.tolist(), "median": mid.tolist(), "p90": high.tolist()}
