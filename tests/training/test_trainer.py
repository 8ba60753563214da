"""The training recipe: PyTorch-SGD semantics, determinism, checkpoints, divergence."""

import math

import pytest
import torch
import torch.nn.functional as F

from curvscope.models import ModelSpec, build_mlp
from curvscope.training import (
    TrainingDivergedError,
    TrainingSpec,
    epoch_batches,
    learning_rate,
    train_model,
)
from curvscope.training.trainer import shuffle_generator
from tests.conftest import make_problem


def _reference_with_torch_optim(model, X, y, spec):
    """The same recipe through torch.optim.SGD (+ LambdaLR for the cosine schedule)."""
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                          weight_decay=spec.weight_decay)
    steps = math.ceil(len(X) / spec.batch_size) * spec.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: learning_rate(spec, t, steps) / spec.lr)
    gen = shuffle_generator(spec.seed)
    for _ in range(spec.epochs):
        for batch in epoch_batches(len(X), spec.batch_size, gen):
            opt.zero_grad()
            F.cross_entropy(model(X[batch]), y[batch]).backward()
            opt.step()
            sched.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("schedule,weight_decay", [("constant", 0.0), ("cosine", 1e-3)])
def test_trainer_equals_torch_optim_sgd(schedule, weight_decay):
    model, X, y = make_problem(n=50)
    reference_model, _, _ = make_problem(n=50)
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=3, schedule=schedule,
                        weight_decay=weight_decay, seed=3)
    result = train_model(model, X, y, spec)
    expected = _reference_with_torch_optim(reference_model, X, y, spec)
    torch.testing.assert_close(result.theta, expected, rtol=1e-10, atol=1e-12)


def test_training_is_deterministic_and_checkpoints():
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=4, checkpoints=[2, 9], seed=1)
    runs = []
    for _ in range(2):
        model, X, y = make_problem(n=50)
        runs.append(train_model(model, X, y, spec))
    assert torch.equal(runs[0].theta, runs[1].theta)
    assert sorted(runs[0].checkpoints) == [2, 4]
    assert torch.equal(runs[0].checkpoints[4], runs[0].theta)
    assert not torch.equal(runs[0].checkpoints[2], runs[0].theta)
    assert runs[0].epoch_losses[-1] < runs[0].epoch_losses[0]


def test_model_updated_in_place_and_init_seeded():
    a = build_mlp(4, 3, ModelSpec(hidden=[5]), seed=7)
    b = build_mlp(4, 3, ModelSpec(hidden=[5]), seed=7)
    c = build_mlp(4, 3, ModelSpec(hidden=[5]), seed=8)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
        bound = 1 / math.sqrt(4 if pa.shape[-1] == 4 or pa.numel() == 5 else 5)
        assert pa.abs().max() <= bound


def test_divergence_names_the_epoch_and_suggests_a_smaller_rate():
    """Inputs near the float64 limit overflow the logits: the loss turns NaN in epoch 1."""
    model, X, y = make_problem(n=50, activation="relu")
    with pytest.raises(TrainingDivergedError, match=r"epoch 1 .*smaller learning rate"):
        train_model(model, X * 1e300, y, TrainingSpec(lr=1.0, batch_size=50, epochs=3))


def _reference_with_torch_func_grad(model, X, y, spec):
    """The trainer as it was before issue 14's second pass: the gradient by
    ``torch.func.grad`` of the loss of ``functional_call`` on flat θ, the same update."""
    from torch.func import functional_call, grad

    from curvscope.models import ParameterLayout

    layout = ParameterLayout.from_model(model)
    theta = layout.flatten({k: v.detach() for k, v in model.named_parameters()}).clone()
    loss_and_grad = grad(lambda t, xb, yb: F.cross_entropy(
        functional_call(model, layout.unflatten(t), (xb,)), yb))
    gen = shuffle_generator(spec.seed)
    total = math.ceil(len(X) / spec.batch_size) * spec.epochs
    buffer, step = torch.zeros_like(theta), 0
    for _ in range(spec.epochs):
        for batch in epoch_batches(len(X), spec.batch_size, gen):
            g = loss_and_grad(theta, X[batch], y[batch])
            if spec.weight_decay:
                g = g + spec.weight_decay * theta
            buffer = spec.momentum * buffer + g
            theta = theta - learning_rate(spec, step, total) * buffer
            step += 1
    return theta


@pytest.mark.parametrize("activation, bias, dtype, schedule, weight_decay", [
    ("gelu", True, torch.float64, "constant", 0.0),
    ("tanh", True, torch.float64, "cosine", 1e-3),
    ("relu", False, torch.float64, "constant", 1e-4),
    ("gelu", True, torch.float32, "cosine", 0.0),
])
def test_autograd_gradient_is_bit_identical_to_torch_func_grad(activation, bias, dtype,
                                                                 schedule, weight_decay):
    """The trainer's reverse-mode gradient on θ's views equals torch.func.grad's bit for bit,
    so every trained model (and every number computed from it) is unchanged."""
    model, X, y = make_problem(n=70, activation=activation, bias=bias)
    model, X = model.to(dtype), X.to(dtype)
    spec = TrainingSpec(lr=0.05, batch_size=16, epochs=4, schedule=schedule,
                        weight_decay=weight_decay)
    reference = _reference_with_torch_func_grad(model, X, y, spec)
    result = train_model(model, X, y, spec)
    assert torch.equal(result.theta, reference)
