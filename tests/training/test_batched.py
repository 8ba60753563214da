"""The batched trainer replays the single-model recipe, and retraining slices assemble."""

import numpy as np
import pytest
import torch

from curvscope.groundtruth import GroundTruthSpec, draw_subset, retrain_slice
from curvscope.models import ModelSpec, build_mlp
from curvscope.training import TrainingSpec, train_model
from curvscope.training.batched import train_many
from tests.conftest import make_problem


@pytest.mark.parametrize("activation,bias,schedule,weight_decay", [
    ("gelu", True, "constant", 0.0),
    ("relu", False, "cosine", 1e-3),
    ("tanh", True, "cosine", 0.0),
])
def test_model_trained_alone_equals_same_model_in_a_batch(activation, bias, schedule,
                                                          weight_decay):
    template, X, y = make_problem(n=60, activation=activation, bias=bias)
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=3, schedule=schedule,
                        weight_decay=weight_decay, checkpoints=[1, 3])
    subsets = [draw_subset(60, 0.5, m, seed=0) for m in range(4)]
    seeds = [11, 12, 13, 14]
    X_eval, y_eval = X[:7], y[:7]
    batched = train_many(template, X, y, subsets, seeds, spec, X_eval, y_eval)
    for b, (subset, seed) in enumerate(zip(subsets, seeds, strict=True)):
        model = build_mlp(5, 4, ModelSpec(hidden=[6, 5], activation=activation, bias=bias),
                          seed=seed)
        index = torch.as_tensor(subset)
        single = train_model(model, X[index], y[index], spec.model_copy(update={"seed": seed}))
        torch.testing.assert_close(batched.theta[b], single.theta, rtol=1e-10, atol=1e-12)
        losses = torch.nn.functional.cross_entropy(model(X_eval), y_eval, reduction="none")
        torch.testing.assert_close(batched.eval_losses[3][b], losses.detach(), rtol=1e-10,
                                   atol=1e-12)
    assert sorted(batched.eval_losses) == [1, 3]


def test_retraining_slices_assemble_into_the_whole():
    template, X, y = make_problem(n=40, activation="gelu")
    X, template = X.float(), template.float()
    gt = GroundTruthSpec(n_subsets=4, n_seeds=3, max_models_per_chunk=5)
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=2, checkpoints=[1])
    args = (template, X, y, X[:6], y[:6], spec, gt, 0.5)
    whole = retrain_slice(*args, [0, 1, 2, 3], [0, 1, 2])
    assert whole.shape == (2, 4, 3, 6)
    left = retrain_slice(*args, [0, 1], [0, 1, 2])
    right = retrain_slice(*args, [2, 3], [0, 1, 2])
    np.testing.assert_allclose(np.concatenate([left, right], axis=1), whole, rtol=1e-5)
    seeds_split = retrain_slice(*args, [0, 1, 2, 3], [2])
    np.testing.assert_allclose(seeds_split[:, :, 0], whole[:, :, 2], rtol=1e-5)


def test_models_per_chunk_follows_the_memory_budget():
    from curvscope.groundtruth.retrain import models_per_chunk

    template, _, _ = make_problem()
    assert models_per_chunk(template, 32, 100, 4, cap=1000, memory_budget_bytes=None) == 1000
    small = models_per_chunk(template, 32, 100, 4, cap=1000, memory_budget_bytes=2**20)
    assert 1 <= small < 1000
    assert models_per_chunk(template, 32, 100, 4, cap=1000, memory_budget_bytes=2**30) == 1000
