"""The compiled epoch of the batched trainer (``curvscope.training.native``) against its torch
operations: the same models up to float32 round-off, float64 up to reassociation, on the
paper's architecture and on widths that leave partial vectors, and the fallbacks."""

import logging
import shutil

import numpy as np
import pytest
import torch

from curvscope.groundtruth import draw_subset
from curvscope.models import ModelSpec, ParameterLayout, build_mlp
from curvscope.training import TrainingSpec, native
from curvscope.training.batched import initial_parameters, train_many
from tests.conftest import make_problem
from tests.training.test_batched import hopelessly_wrong_net

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None
    and shutil.which("clang") is None, reason="no C compiler on this machine")


def _both(template, X, y, subsets, seeds, spec, X_eval, y_eval):
    compiled = train_many(template, X, y, subsets, seeds, spec, X_eval, y_eval,
                          native_kernel=True)
    torch_ops = train_many(template, X, y, subsets, seeds, spec, X_eval, y_eval,
                           native_kernel=False)
    return compiled, torch_ops


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@needs_compiler
@pytest.mark.parametrize("activation,bias,momentum,weight_decay,schedule", [
    ("gelu", True, 0.9, 0.0, "constant"),
    ("relu", False, 0.9, 1e-3, "cosine"),
    ("tanh", True, 0.0, 1e-3, "cosine"),
])
def test_float64_epochs_equal_the_torch_operations_to_round_off(activation, bias, momentum,
                                                                 weight_decay, schedule):
    """Widths 5 → 6 → 5 → 4 (every row a partial vector), a last minibatch of 6 of 30."""
    template, X, y = make_problem(n=60, activation=activation, bias=bias)
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=3, momentum=momentum,
                        weight_decay=weight_decay, schedule=schedule, checkpoints=[1, 3])
    subsets = [draw_subset(60, 0.5, m, seed=0) for m in range(5)]
    compiled, torch_ops = _both(template, X, y, subsets, list(range(5)), spec, X[:7], y[:7])
    assert _relative(compiled.theta, torch_ops.theta) < 1e-12
    for epoch in (1, 3):
        torch.testing.assert_close(compiled.eval_losses[epoch], torch_ops.eval_losses[epoch],
                                   rtol=1e-11, atol=1e-13)
    for epoch in torch_ops.train_losses:
        torch.testing.assert_close(compiled.train_losses[epoch], torch_ops.train_losses[epoch],
                                   rtol=1e-11, atol=1e-13)
    assert _relative(compiled.theta, torch.stack([initial_parameters(
        template, ParameterLayout.from_model(template), s) for s in range(5)])) > 1e-3


@needs_compiler
@pytest.mark.parametrize("hidden,activation", [
    ([64, 32], "gelu"), ([17, 40], "gelu"), ([64, 32], "tanh"), ([64, 32], "relu"), ([], "gelu")])
def test_float32_epochs_agree_with_the_torch_operations(hidden, activation):
    """The paper's MLP (64 → 64 → 32 → 10, minibatches of 32: 20 of them and one of 26 per
    epoch) and odd widths, five epochs in float32: parameters within 2e-5 relative, per-point
    losses within 1e-4 (the polynomial exp/erf and reassociated sums, about 1e-7 a step)."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(900, 64, generator=gen)
    y = torch.randint(0, 10, (900,), generator=gen)
    template = build_mlp(64, 10, ModelSpec(hidden=hidden, activation=activation), seed=0,
                         dtype=torch.float32)
    spec = TrainingSpec(lr=0.05, batch_size=32, epochs=5, weight_decay=1e-4, checkpoints=[5])
    subsets = [draw_subset(900, 0.74, m, seed=1) for m in range(6)]
    assert len(subsets[0]) == 666
    compiled, torch_ops = _both(template, X, y, subsets, list(range(6)), spec, X[:50], y[:50])
    assert _relative(compiled.theta, torch_ops.theta) < 2e-5
    torch.testing.assert_close(compiled.eval_losses[5], torch_ops.eval_losses[5], rtol=1e-4,
                               atol=1e-5)
    for epoch in torch_ops.train_losses:
        torch.testing.assert_close(compiled.train_losses[epoch], torch_ops.train_losses[epoch],
                                   rtol=1e-4, atol=1e-5)


@needs_compiler
def test_a_hopelessly_wrong_prediction_reads_minus_log_tiny_in_the_compiled_epoch():
    """As in the torch path: p_y underflows to 0 and the running loss floors at −log(tiny)."""
    net, X = hopelessly_wrong_net()
    epoch = net.native_epoch()
    assert epoch is not None
    sums = torch.zeros(1, dtype=torch.float32)
    rows = torch.arange(8).unsqueeze(0)
    epoch.run(X, torch.zeros(8, dtype=torch.long), rows, 8, [0.0], 0.9, 0.0,
              net.flat, torch.zeros_like(net.flat), sums, epoch.scratch(8))
    assert float(sums[0]) / 8 == pytest.approx(-np.log(np.finfo(np.float32).tiny), rel=1e-6)


@needs_compiler
def test_the_kernel_is_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(native.KERNEL_DIR_ENV, str(tmp_path))
    compiler = native._compiler()
    first = native._build(compiler)
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path and first.suffix == ".so"
    assert native._build(compiler) == first and first.stat().st_mtime_ns == stamp
    assert list(tmp_path.iterdir()) == [first]  # no partial files left behind


def test_without_the_kernel_the_torch_operations_train(monkeypatch, tmp_path, caplog):
    """CURVSCOPE_NATIVE=0, or a compiler that fails: the trainer falls back (with a warning
    for the failure), and native_kernel=True says why it cannot run."""
    template, X, y = make_problem(n=24, activation="gelu")
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=1)
    subsets = [draw_subset(24, 0.5, m, seed=0) for m in range(2)]
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.library() is None
    with pytest.raises(RuntimeError, match="native MLP kernel does not apply"):
        train_many(template, X, y, subsets, [0, 1], spec, X[:3], y[:3], native_kernel=True)
    reference = train_many(template, X, y, subsets, [0, 1], spec, X[:3], y[:3])
    monkeypatch.delenv(native.NATIVE_ENV)
    monkeypatch.setenv("CC", shutil.which("false") or "/bin/false")
    monkeypatch.setenv(native.KERNEL_DIR_ENV, str(tmp_path))
    native._library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="curvscope.training.native"):
            assert native.library() is None
        assert "native MLP kernel is unavailable" in caplog.text
        fallback = train_many(template, X, y, subsets, [0, 1], spec, X[:3], y[:3])
        assert torch.equal(fallback.theta, reference.theta)
    finally:
        native._library.cache_clear()


@needs_compiler
def test_an_unwritable_kernel_dir_falls_back_to_a_private_temporary_one(tmp_path, monkeypatch):
    """Where the cache is not writable the kernel goes to <tmp>/curvscope-kernels-<uid>, mode
    0700; a directory of that name that others may write to is refused, not loaded from."""
    import os
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(native.KERNEL_DIR_ENV, str(blocker / "kernels"))  # under a file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    built = native._build(native._compiler())
    private = tmp_path / f"curvscope-kernels-{os.getuid()}"
    assert built.parent == private and (private.stat().st_mode & 0o777) == 0o700
    built.unlink()
    private.chmod(0o777)
    with pytest.raises(RuntimeError, match="no writable directory"):
        native._build(native._compiler())


@needs_compiler
def test_a_subset_index_beyond_the_data_is_refused_before_the_kernel_reads_it():
    template, X, y = make_problem(n=20, activation="gelu")
    spec = TrainingSpec(lr=0.05, batch_size=4, epochs=1)
    with pytest.raises(IndexError, match=r"\[0, 20\)"):
        train_many(template, X, y, [np.arange(8), np.arange(12, 20) + 1], [0, 1], spec,
                   X[:3], y[:3], native_kernel=True)


def _cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@needs_compiler
@pytest.mark.parametrize("march,needs", [("x86-64", "sse2"), ("haswell", "avx2")])
def test_the_kernel_built_for_narrower_vectors_trains_the_same_models(march, needs, tmp_path,
                                                                       monkeypatch):
    """The kernel's SSE2 (4 floats a vector) and AVX2 (8) builds, which machines without
    AVX-512 compile with -march=native, against the torch operations: float64 to 1e-12,
    float32 to float32 round-off, on odd widths and the paper's."""
    import platform

    if platform.machine() != "x86_64" or needs not in _cpu_flags():
        pytest.skip(f"needs an x86-64 CPU with {needs}")
    monkeypatch.setenv(native.KERNEL_DIR_ENV, str(tmp_path))
    library = native.load(native._build(native._compiler(), march=march))
    monkeypatch.setattr(native, "_library", lambda: library)
    template, X, y = make_problem(n=60, activation="gelu", hidden=(6, 17))
    spec = TrainingSpec(lr=0.05, batch_size=8, epochs=2, weight_decay=1e-3)
    subsets = [draw_subset(60, 0.5, m, seed=0) for m in range(3)]
    compiled, torch_ops = _both(template, X, y, subsets, [0, 1, 2], spec, X[:7], y[:7])
    assert _relative(compiled.theta, torch_ops.theta) < 1e-12
    gen = torch.Generator().manual_seed(4)
    X32 = torch.randn(300, 64, generator=gen)
    y32 = torch.randint(0, 10, (300,), generator=gen)
    template32 = build_mlp(64, 10, ModelSpec(hidden=[64, 32], activation="tanh"), seed=0,
                           dtype=torch.float32)
    subsets32 = [draw_subset(300, 0.5, m, seed=2) for m in range(3)]
    compiled, torch_ops = _both(template32, X32, y32, subsets32, [0, 1, 2],
                                TrainingSpec(lr=0.05, batch_size=32, epochs=3), X32[:20],
                                y32[:20])
    assert _relative(compiled.theta, torch_ops.theta) < 2e-5
