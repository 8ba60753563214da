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
@pytest.mark.parametrize("native_kernel", [False, None], ids=["torch-ops", "default"])
def test_model_trained_alone_equals_same_model_in_a_batch(activation, bias, schedule,
                                                          weight_decay, native_kernel):
    template, X, y = make_problem(n=60, activation=activation, bias=bias)
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=3, schedule=schedule,
                        weight_decay=weight_decay, checkpoints=[1, 3])
    subsets = [draw_subset(60, 0.5, m, seed=0) for m in range(4)]
    seeds = [11, 12, 13, 14]
    X_eval, y_eval = X[:7], y[:7]
    batched = train_many(template, X, y, subsets, seeds, spec, X_eval, y_eval,
                         native_kernel=native_kernel)
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
    assert sorted(batched.train_losses) == [1, 2, 3]
    for b, (subset, seed) in enumerate(zip(subsets, seeds, strict=True)):
        expected = replayed_running_losses(activation, bias, X[subset], y[subset], seed, spec)
        torch.testing.assert_close(torch.stack([batched.train_losses[e][b] for e in (1, 2, 3)]),
                                   expected, rtol=1e-10, atol=1e-12)


def replayed_running_losses(activation, bias, X, y, seed, spec) -> torch.Tensor:
    """The oracle: one model trained step by step with autograd and torch.optim.SGD (the
    recipe train_model follows), its running loss per epoch = Σ_steps |batch|·ℓ̄_batch / n,
    each minibatch loss taken at the parameters that step starts from."""
    from curvscope.training.trainer import epoch_batches, learning_rate, shuffle_generator

    model = build_mlp(5, 4, ModelSpec(hidden=[6, 5], activation=activation, bias=bias),
                      seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay)
    generator, step, running = shuffle_generator(seed), 0, []
    total_steps = spec.epochs * -(-len(X) // spec.batch_size)
    for _ in range(spec.epochs):
        summed = torch.zeros((), dtype=X.dtype)
        for batch in epoch_batches(len(X), spec.batch_size, generator):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(spec, step, total_steps)
            loss = torch.nn.functional.cross_entropy(model(X[batch]), y[batch])
            summed += loss.detach() * len(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        running.append(summed / len(X))
    return torch.stack(running)


def test_training_loss_is_recorded_at_25_even_epochs_and_the_checkpoints():
    from curvscope.specs.training import loss_curve_epochs

    assert loss_curve_epochs(3, [1, 3]) == [1, 2, 3]
    every = loss_curve_epochs(200, [151, 200])
    assert every[0] == 1 and every[-1] == 200 and 151 in every and len(every) == 26
    spacing = np.diff([e for e in every if e != 151])
    assert spacing.min() >= 8 and spacing.max() <= 9   # 199 / 24 ≈ 8.3
    assert loss_curve_epochs(100, [40, 500]) == loss_curve_epochs(100, [40])  # beyond: ignored


def hopelessly_wrong_net():
    """(one float32 StackedMLP that predicts class 3 by a margin of ~500, its 8 inputs)."""
    from curvscope.training.batched import StackedMLP

    template, X, _ = make_problem(n=8, activation="tanh")
    template = template.float()
    theta = torch.stack([torch.cat([p.detach().flatten() for p in template.parameters()])])
    net = StackedMLP(template, theta)
    with torch.no_grad():
        net.biases[-1][0] = torch.tensor([0.0, 0.0, 0.0, 500.0])   # class 3 always, by far
    return net, X.float()


def test_a_hopelessly_wrong_prediction_gives_a_large_finite_running_loss():
    """float32 softmax underflows to p = 0 for a margin above ~104; the running loss then
    reads −log(tiny) ≈ 87.3 for that point instead of +∞."""
    net, X = hopelessly_wrong_net()
    x = X.unsqueeze(0)
    labels = torch.zeros(1, 8, dtype=torch.long)                      # all truly class 0
    sums = torch.zeros(1)
    net.gradients(x, labels, sums)
    assert torch.isfinite(sums).all()
    assert float(sums[0]) / 8 == pytest.approx(-np.log(np.finfo(np.float32).tiny), rel=1e-6)


def test_retraining_slices_assemble_into_the_whole():
    template, X, y = make_problem(n=40, activation="gelu")
    X, template = X.float(), template.float()
    gt = GroundTruthSpec(n_subsets=4, n_seeds=3, max_models_per_chunk=5)
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=2, checkpoints=[1])
    args = (template, X, y, X[:6], y[:6], spec, gt, 0.5)
    whole = retrain_slice(*args, [0, 1, 2, 3], [0, 1, 2])
    assert whole.test_losses.shape == (2, 4, 3, 6)
    assert whole.train_losses.shape == (4, 3, 2) and whole.train_loss_epochs == [1, 2]
    left = retrain_slice(*args, [0, 1], [0, 1, 2])
    right = retrain_slice(*args, [2, 3], [0, 1, 2])
    np.testing.assert_allclose(np.concatenate([left.test_losses, right.test_losses], axis=1),
                               whole.test_losses, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([left.train_losses, right.train_losses]),
                               whole.train_losses, rtol=1e-5)
    seeds_split = retrain_slice(*args, [0, 1, 2, 3], [2])
    np.testing.assert_allclose(seeds_split.test_losses[:, :, 0], whole.test_losses[:, :, 2],
                               rtol=1e-5)
    np.testing.assert_allclose(seeds_split.train_losses[:, 0], whole.train_losses[:, 2],
                               rtol=1e-5)


def test_models_per_chunk_follows_the_memory_budget():
    from curvscope.groundtruth.retrain import models_per_chunk

    template, _, _ = make_problem()
    assert models_per_chunk(template, 32, 100, 4, cap=1000, memory_budget_bytes=None) == 1000
    small = models_per_chunk(template, 32, 100, 4, cap=1000, memory_budget_bytes=2**20)
    assert 1 <= small < 1000
    assert models_per_chunk(template, 32, 100, 4, cap=1000, memory_budget_bytes=2**30) == 1000


@pytest.mark.parametrize("native_kernel", [False, None], ids=["torch-ops", "default"])
@pytest.mark.parametrize("threads, models_per_group", [(2, 64), (3, 64), (1, 5), (2, 5),
                                                      (3, 7)])
def test_models_trained_in_groups_and_threads_are_bit_identical_to_one_group(
        threads, models_per_group, native_kernel):
    """train_many's cache-sized groups, shared out among threads (one single-threaded torch
    per Python thread), change nothing: θ, test losses and running losses equal those of one
    group of all models bit for bit, torch's thread count is restored, and the progress
    reported only grows and ends at 1."""
    template, X, y = make_problem(n=48, activation="gelu")
    X, template = X.float(), template.float()
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=3, checkpoints=[2])
    subsets = [draw_subset(48, 0.5, m, seed=0) for m in range(24)]
    seeds = list(range(100, 124))
    before = torch.get_num_threads()
    one = train_many(template, X, y, subsets, seeds, spec, X[:5], y[:5], threads=1,
                     models_per_group=len(seeds), native_kernel=native_kernel)
    reported = []
    many = train_many(template, X, y, subsets, seeds, spec, X[:5], y[:5],
                      progress=lambda done, total: reported.append(done / total),
                      threads=threads, models_per_group=models_per_group,
                      native_kernel=native_kernel)
    assert torch.get_num_threads() == before
    assert torch.equal(one.theta, many.theta)
    for epoch in (2, 3):
        assert torch.equal(one.eval_losses[epoch], many.eval_losses[epoch])
    for epoch in (1, 2, 3):
        assert torch.equal(one.train_losses[epoch], many.train_losses[epoch])
    assert reported == sorted(reported) and reported[-1] == 1.0 and 0 < reported[0] < 1


def test_one_subset_per_seed_of_one_size():
    template, X, y = make_problem(n=48)
    spec = TrainingSpec(batch_size=8, epochs=1)
    with pytest.raises(ValueError, match="one subset per seed"):
        train_many(template, X, y, [np.arange(10)] * 3, [0, 1], spec, X[:2], y[:2])
    with pytest.raises(ValueError, match="same size"):
        train_many(template, X, y, [np.arange(10)] * 15 + [np.arange(9)], list(range(16)),
                   spec, X[:2], y[:2], models_per_group=8)


def test_a_group_that_diverges_fails_the_call_and_names_the_model():
    """A diverging model in the second group: the error names it by its index in the whole
    call, not in its group, and the other group stops too."""
    import re

    from curvscope.training.trainer import TrainingDivergedError

    template, X, y = make_problem(n=32, activation="relu")
    X, template = X.float().clone(), template.float()
    X[31] = 1e30                                   # only models 8–15 ever see row 31
    rng = np.random.default_rng(0)
    subsets = [np.sort(rng.choice(31, 16, replace=False)) for _ in range(8)]
    subsets += [np.sort(np.append(rng.choice(31, 15, replace=False), 31)) for _ in range(8)]
    spec = TrainingSpec(lr=10.0, batch_size=8, epochs=2)
    with pytest.raises(TrainingDivergedError) as error:
        train_many(template, X, y, subsets, list(range(16)), spec, X[:4], y[:4], threads=2,
                   models_per_group=8)
    named = [int(i) for i in re.search(r"retrained models \[([\d, ]+)\]", str(error.value))
             .group(1).split(",")]
    assert named and all(8 <= i < 16 for i in named)


def test_the_two_pass_update_without_torch_s_fused_sgd_gives_the_same_models(monkeypatch):
    """Where torch has no fused SGD kernel, ``sgd_step`` takes two passes; in float64 the two
    trainings agree to round-off, with weight decay and momentum, and without momentum."""
    from curvscope.training import batched

    assert batched._FUSED_SGD is not None  # this torch has it: the default path is fused
    template, X, y = make_problem(n=48, activation="gelu")
    subsets = [draw_subset(48, 0.5, m, seed=0) for m in range(6)]
    for momentum in (0.9, 0.0):
        spec = TrainingSpec(lr=0.05, batch_size=8, epochs=3, momentum=momentum,
                            weight_decay=1e-3, checkpoints=[3])
        fused = train_many(template, X, y, subsets, list(range(6)), spec, X[:5], y[:5],
                           native_kernel=False)
        with monkeypatch.context() as patch:
            patch.setattr(batched, "_FUSED_SGD", None)
            two_pass = train_many(template, X, y, subsets, list(range(6)), spec, X[:5], y[:5],
                                  native_kernel=False)
        torch.testing.assert_close(two_pass.theta, fused.theta, rtol=1e-12, atol=1e-13)
        assert not torch.equal(fused.theta, train_many(
            template, X, y, subsets, list(range(6)), TrainingSpec(
                lr=0.05, batch_size=8, epochs=3, momentum=momentum, checkpoints=[3]),
            X[:5], y[:5], native_kernel=False).theta)  # weight decay did something
