"""The batched trainer: many copies of the MLP trained at once, each on its own subset and
seed, with exactly the single-model recipe of ``trainer.py``.

The B models' weights are stacked per layer (W_l: B × out × in, b_l: B × out) and one step is a
hand-written batched forward and backward pass of batched matrix products (``torch.bmm``):

  z_l = a_{l−1} W_lᵀ + b_l,  a_l = φ(z_l);   δ_L = (softmax(z_L) − onehot(y)) / |batch|,
  ∂W_l = δ_lᵀ a_{l−1},  ∂b_l = Σ_i δ_{l,i},  δ_{l−1} = (δ_l W_l) ⊙ φ'(z_{l−1}),

the gradient of the mean cross-entropy that autograd computes for the single model, followed by
the same momentum-SGD update. Model b's initialisation and minibatch order come from the same
generators the single trainer uses for its seed, so a model trained alone and the same (subset,
seed) trained inside a batch end with the same parameters up to floating-point reassociation.
Every model's per-point test losses are recorded at every checkpoint epoch, so one retraining
run gives ground truth for every training time, and its running training loss (the mean over
an epoch's minibatches of the minibatch loss, each at the parameters that step starts from:
the "train loss" experiment trackers log) at ``TrainingSpec.loss_curve_epochs``, so the
dashboard can draw the retrained models' loss spread. It comes from the softmax the backward
pass computes anyway: ℓ_i = −log p_{i,y_i}, summed per model in the recorded epochs only.
(The full-subset loss after each epoch, the single trainer's ``epoch_losses``, costs a forward
pass over the subset that measured ~1.7 training epochs for 500 quick-preset models.)
(A torch.func vmap over functional_call gives the same numbers but ran ~5× slower here: its
per-step overhead dominates for small MLPs.)
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curvscope.models import ParameterLayout, init_mlp_parameters
from curvscope.sizes import cpu_models_per_group
from curvscope.training import native
from curvscope.training.trainer import (
    TrainingDivergedError,
    TrainingSpec,
    diverged_message,
    learning_rate,
    shuffle_generator,
)


@dataclass
class BatchedTrainingResult:
    theta: torch.Tensor  # B × d, final parameters in θ's layout
    eval_losses: dict[int, torch.Tensor]  # epoch → B × n_eval per-point losses
    # epoch → B: each model's running training loss in that epoch (mean minibatch loss)
    train_losses: dict[int, torch.Tensor] = field(default_factory=dict)


def _activation(name: str):
    """φ and the fused backward (upstream gradient, z, a) ↦ upstream ⊙ φ'(z) that autograd
    itself uses for the supported activations (GELU is the exact, erf-based one)."""
    if name == "GELU":
        return F.gelu, lambda grad, z, a: torch.ops.aten.gelu_backward(grad, z)
    if name == "ReLU":
        return F.relu, lambda grad, z, a: torch.ops.aten.threshold_backward(grad, a, 0)
    if name == "Tanh":
        return torch.tanh, lambda grad, z, a: torch.ops.aten.tanh_backward(grad, a)
    raise ValueError(f"the batched trainer supports GELU, ReLU and Tanh, not {name}")


#: The flat buffers' length is a multiple of this many entries (a 64-byte cache line holds
#: 16 float32 values; 64 covers AVX-512 vectors unrolled four times and float64 lines).
FLAT_ALIGNMENT = 64


class StackedMLP:
    """B MLPs of one architecture, parameters stacked per layer in ONE flat buffer.

    The buffer holds, layer by layer, W_l of every model (B × out × in, contiguous) then b_l
    (B × out), then zeros up to a multiple of ``FLAT_ALIGNMENT`` entries, so each layer's
    weights are one contiguous batch for ``torch.bmm`` and the whole optimizer update is one
    fused operation on one long vector (``flat``). Gradients live in a second buffer of the
    same layout (``grad_flat``) that the backward pass writes in place.
    """

    def __init__(self, model: nn.Sequential, theta: torch.Tensor):
        self.layout = ParameterLayout.from_model(model, "layer")
        modules = list(model)
        self.activations, self.activation_names = [], []
        for index, module in enumerate(modules):
            if isinstance(module, nn.Linear) and index + 1 < len(modules):
                self.activation_names.append(type(modules[index + 1]).__name__)
                self.activations.append(_activation(self.activation_names[-1]))
        self.n_models = theta.shape[0]
        # zero padding to a multiple of FLAT_ALIGNMENT entries: the fused SGD kernel
        # (``sgd_step``) then runs every entry through its vector path, so a model's update
        # does not depend on where its entries fall in the buffer (its group's size)
        padded = -(-theta.numel() // FLAT_ALIGNMENT) * FLAT_ALIGNMENT
        self.flat = torch.zeros(padded, dtype=theta.dtype, device=theta.device)
        self.grad_flat = torch.zeros_like(self.flat)
        self.weights, self.biases = self._views(self.flat)
        self.grad_weights, self.grad_biases = self._views(self.grad_flat)
        params = self.layout.unflatten(theta)
        for block, W, b in zip(self.layout.blocks, self.weights, self.biases, strict=True):
            W.copy_(params[f"{block.module_name}.weight"])
            if b is not None:
                b.copy_(params[f"{block.module_name}.bias"])

    def _views(self, flat: torch.Tensor):
        weights, biases, offset, B = [], [], 0, self.n_models
        for block in self.layout.blocks:
            size = block.out_features * block.in_features
            weights.append(flat[offset : offset + B * size].view(
                B, block.out_features, block.in_features))
            offset += B * size
            if block.has_bias:
                biases.append(flat[offset : offset + B * block.out_features].view(
                    B, block.out_features))
                offset += B * block.out_features
            else:
                biases.append(None)
        return weights, biases

    def theta(self) -> torch.Tensor:
        values = {}
        for block, W, b in zip(self.layout.blocks, self.weights, self.biases, strict=True):
            values[f"{block.module_name}.weight"] = W
            if b is not None:
                values[f"{block.module_name}.bias"] = b
        return self.layout.flatten(values)

    def native_epoch(self) -> native.MLPEpoch | None:
        """The compiled epoch (``training.native``) for these models, or None where it does
        not apply: no compiler, ``CURVSCOPE_NATIVE=0``, a GPU, a dtype other than float32 and
        float64, mixed activations or biases, more than ``native.MAX_LAYERS`` layers."""
        blocks = self.layout.blocks
        names = set(self.activation_names)
        if (self.flat.device.type != "cpu" or self.flat.dtype not in (torch.float32, torch.float64)
                or len(names) > 1 or not names <= set(native.ACTIVATIONS)
                or len(blocks) > native.MAX_LAYERS
                or len({block.has_bias for block in blocks}) > 1):
            return None
        library = native.library()
        if library is None:
            return None
        item, base = self.flat.element_size(), self.flat.data_ptr()
        offsets = [(W.data_ptr() - base) // item for W in self.weights]
        offsets += [0 if b is None else (b.data_ptr() - base) // item for b in self.biases]
        desc = [len(blocks), native.ACTIVATIONS[names.pop()] if names else 0,
                int(blocks[0].has_bias), self.n_models, blocks[0].in_features,
                *(block.out_features for block in blocks), *offsets]
        return native.MLPEpoch(library, self.flat.dtype, desc)

    def forward(self, x: torch.Tensor, keep: bool = False, class_major: bool = False):
        """Logits (B × n × C) for inputs x (B × n × F); with ``keep`` also the tape of
        (a_{l−1}, z_l) per layer (the last layer's z_L left out). With ``class_major`` the
        logits come as B × C × n, z_Lᵀ = W_L a_{L−1}ᵀ + b_L, from the GEMM itself: the
        row-major z_L = a_{L−1} W_Lᵀ has rows of C = 10 floats and its batched GEMM ran
        2.6× slower (443 vs 173 µs per step for 250 paper models, with the transpose the
        softmax needs)."""
        tape = []
        a = x
        last = len(self.weights) - 1
        for index, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if index == last and class_major:
                a_t = a.transpose(1, 2)
                if keep:
                    tape.append((a, None))
                return (torch.baddbmm(b.unsqueeze(2), W, a_t) if b is not None
                        else torch.bmm(W, a_t)), tape
            if b is not None:  # z = b + a Wᵀ in one batched GEMM
                z = torch.baddbmm(b.unsqueeze(1), a, W.transpose(1, 2))
            else:
                z = torch.bmm(a, W.transpose(1, 2))
            if keep:
                tape.append((a, z))
            a = self.activations[index][0](z) if index < len(self.activations) else z
        return a, tape

    def gradients(self, x: torch.Tensor, y: torch.Tensor,
                  loss_sums: torch.Tensor | None = None):
        """(∂W_l, ∂b_l) of the per-model mean cross-entropy on (x, y) (B × n × F, B × n),
        written into ``grad_flat`` (the returned tensors are its views). With ``loss_sums``
        (B), each model's summed loss Σ_i −log p_{i,y_i} on its rows is added to it (p read
        off the softmax the backward pass needs, floored at the dtype's smallest normal
        number, so a loss is at most ~87 in float32 instead of infinite)."""
        logits, tape = self.forward(x, keep=True, class_major=True)
        # δ_L in the class-major layout (B × C × n): softmax over a short last dimension
        # (C = 10) runs ~20× slower than over the middle one with n contiguous entries inside
        delta = torch.softmax(logits, dim=1)
        if loss_sums is not None:
            p_true = delta.gather(1, y.unsqueeze(1)).squeeze(1)
            loss_sums -= p_true.clamp_min(torch.finfo(delta.dtype).tiny).log().sum(1)
        delta.scatter_add_(1, y.unsqueeze(1), -torch.ones_like(y, dtype=delta.dtype)
                           .unsqueeze(1))
        delta /= x.shape[1]
        last = len(self.weights) - 1
        torch.bmm(delta, tape[last][0], out=self.grad_weights[last])
        if self.biases[last] is not None:
            torch.sum(delta, 2, out=self.grad_biases[last])
        delta = delta.transpose(1, 2)  # back to B × n × C for the layers below
        for index in range(last, -1, -1):
            a_prev, _ = tape[index]
            if index < last:
                torch.bmm(delta.transpose(1, 2), a_prev, out=self.grad_weights[index])
                if self.biases[index] is not None:
                    torch.sum(delta, 1, out=self.grad_biases[index])
            if index > 0:
                z_prev, a_prev_out = tape[index - 1][1], tape[index][0]
                delta = self.activations[index - 1][1](torch.bmm(delta, self.weights[index]),
                                                       z_prev, a_prev_out)
        return self.grad_weights, self.grad_biases

    def point_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-point cross-entropy (B × n) of every model on shared inputs x (n × F)."""
        logits, _ = self.forward(x.expand(len(self.weights[0]), *x.shape))
        return F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1),
                               reduction="none")


def initial_parameters(model: nn.Module, layout: ParameterLayout, seed: int) -> torch.Tensor:
    """θ₀ of a model built with ``build_mlp(..., seed=seed)``."""
    return layout.flatten(init_mlp_parameters(model, torch.Generator().manual_seed(seed)))


#: Fewest models worth a thread of their own in ``train_many``.
MIN_MODELS_PER_THREAD = 8


def mlp_sizes(model: nn.Module) -> tuple[int, int]:
    """(d, Σ_l (in_l + out_l)) of an MLP: what a retrained model's memory per step scales
    with (``group_size`` here, ``groundtruth.retrain.models_per_chunk``)."""
    widths = sum(m.in_features + m.out_features for m in model.modules()
                 if isinstance(m, nn.Linear))
    return sum(p.numel() for p in model.parameters()), widths


def group_size(model: nn.Sequential, batch_size: int, itemsize: int) -> int:
    """``sizes.cpu_models_per_group`` of this architecture."""
    return cpu_models_per_group(*mlp_sizes(model), batch_size, itemsize)


def train_many(
    model: nn.Sequential,
    X: torch.Tensor,
    y: torch.Tensor,
    subsets: list[np.ndarray] | np.ndarray,
    seeds: list[int],
    spec: TrainingSpec,
    X_eval: torch.Tensor,
    y_eval: torch.Tensor,
    progress=None,
    threads: int | None = None,
    models_per_group: int | None = None,
    native_kernel: bool | None = None,
) -> BatchedTrainingResult:
    """Train len(seeds) models; model b sees (X[subsets[b]], y[subsets[b]]) and uses seeds[b]
    for its initialisation and minibatch order (as ``train_model`` with ``spec.seed=seeds[b]``).

    All subsets must have the same size (true for one α). ``model`` only supplies the
    architecture. Returns final θ, per-point losses on (X_eval, y_eval) at every checkpoint,
    and each model's running training loss at ``spec.loss_curve_epochs()``: the mean over the
    epoch's minibatches of the mean minibatch loss weighted by the batch's size, i.e.
    (1/|S|) Σ_steps Σ_{i ∈ batch} ℓ(θ_step; x_i, y_i).

    On CPU the models are cut into groups of at most ``models_per_group`` (default
    ``sizes.cpu_models_per_group``: as many as fit the cache), and with T = ``threads``
    (default ``torch.get_num_threads()``) > 1 into a multiple of T groups shared out among T
    Python threads, each running its groups one after another with torch single-threaded (its
    kernels release the GIL). One step's batched GEMMs are small (B × 32 × 64 · 64 × 64) and
    split badly inside one op: 2 intra-op threads ran 500 paper models 3.4× slower than 1
    thread at load 3, while 2 threads of groups ran 1.9× faster. A model's arithmetic does not
    depend on its group or thread, so θ and every loss are bit-identical to one group of all
    models (tested). On a GPU all models train as one group. ``progress(done, total)`` gets
    the epochs done and to do of the first thread's groups.

    Each group's epoch runs in the compiled kernel of ``training.native`` where it applies
    (``native_kernel=None``, the default: where a C compiler is found), otherwise (or with
    ``native_kernel=False``) by the torch operations of ``StackedMLP.gradients`` and
    ``sgd_step``; ``native_kernel=True`` raises where the kernel is unavailable.
    """
    n_models = len(seeds)
    if len(subsets) != n_models:
        raise ValueError("need one subset per seed")
    if len({len(s) for s in subsets}) > 1:
        raise ValueError("all subsets of one batch must have the same size")
    if X.device.type != "cpu":
        return _train_group(model, X, y, subsets, seeds, spec, X_eval, y_eval, progress,
                            native_kernel=native_kernel)
    workers = max(1, min(threads or torch.get_num_threads(),
                         n_models // MIN_MODELS_PER_THREAD))
    size = max(1, models_per_group or group_size(model, spec.batch_size, X.element_size()))
    n_parts = math.ceil(n_models / size)
    n_parts = min(n_models, math.ceil(n_parts / workers) * workers)  # a share for each thread
    parts = np.array_split(np.arange(n_models), n_parts)
    workers = min(workers, n_parts)
    # thread k runs parts k, k + T, k + 2T, …; thread 0 reports the progress of its own parts
    mine = [list(range(k, len(parts), workers)) for k in range(workers)]
    stop = threading.Event()  # a group that fails stops the others at their next epoch

    def run(k: int) -> list[BatchedTrainingResult]:
        done = []
        for i, p in enumerate(mine[k]):
            report = None
            if progress is not None and k == 0:
                def report(epoch, total, i=i, n=len(mine[0])):
                    progress(i * total + epoch, n * total)
            part = parts[p]
            done.append(_train_group(model, X, y, [subsets[j] for j in part],
                                     [seeds[j] for j in part], spec, X_eval, y_eval, report,
                                     int(part[0]), stop if workers > 1 else None,
                                     native_kernel))
        return done

    if workers == 1:  # in this thread, on torch's own threads
        results = run(0)
    else:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            def guarded(k: int) -> list[BatchedTrainingResult]:
                try:
                    return run(k)
                except BaseException:
                    stop.set()
                    raise

            pool = ThreadPoolExecutor(workers, thread_name_prefix="train_many")
            try:
                futures = [pool.submit(guarded, k) for k in range(workers)]
                wait(futures)
            except BaseException:  # e.g. Ctrl-C in the waiting thread: the groups end too
                stop.set()
                raise
            finally:
                pool.shutdown(wait=True)
            failures = [f.exception() for f in futures if f.exception() is not None]
            real = [e for e in failures if not isinstance(e, _Stopped)]
            if failures:
                raise (real or failures)[0]
            by_part = {p: r for k, f in enumerate(futures)
                       for p, r in zip(mine[k], f.result(), strict=True)}
            results = [by_part[p] for p in range(len(parts))]
        finally:
            torch.set_num_threads(previous)
    if len(results) == 1:
        return results[0]
    return BatchedTrainingResult(
        torch.cat([r.theta for r in results]),
        {e: torch.cat([r.eval_losses[e] for r in results]) for e in results[0].eval_losses},
        {e: torch.cat([r.train_losses[e] for r in results]) for e in results[0].train_losses})


#: torch's fused SGD kernel (``torch.optim.SGD(fused=True)``'s), where this torch has one.
_FUSED_SGD = getattr(torch, "_fused_sgd_", None)


def sgd_step(params: torch.Tensor, grads: torch.Tensor, buffer: torch.Tensor,
             spec: TrainingSpec, lr: float) -> None:
    """The single trainer's step (torch.optim.SGD, dampening 0, no Nesterov) on the flat
    buffers of all models at once: g ← g + λθ, buffer ← momentum·buffer + g, θ ← θ − lr·buffer.

    By torch's fused SGD kernel where there is one: one pass over θ, g and the buffer instead
    of two or three (250 paper models, one thread: 734 vs 980 µs a step, a step's GEMMs take
    ~3 ms), equal up to the rounding of fused multiply-adds (the gradients are left as they
    were). Otherwise the two passes ``torch.add(g, buffer, alpha=momentum, out=buffer)`` and
    ``θ.add_(buffer, alpha=−lr)``."""
    if _FUSED_SGD is not None:
        _FUSED_SGD([params], [grads], [buffer] if spec.momentum else [],
                   weight_decay=spec.weight_decay, momentum=spec.momentum, lr=lr,
                   dampening=0.0, nesterov=False, maximize=False, is_first_step=False)
        return
    if spec.weight_decay:
        grads.add_(params, alpha=spec.weight_decay)
    torch.add(grads, buffer, alpha=spec.momentum, out=buffer)
    params.add_(buffer, alpha=-lr)


class _Stopped(Exception):
    """Another group of ``train_many`` failed: this one ends without a result."""


def _train_group(model, X, y, subsets, seeds, spec, X_eval, y_eval, progress=None,
                 offset: int = 0, stop: threading.Event | None = None,
                 native_kernel: bool | None = None) -> BatchedTrainingResult:
    """``train_many`` for one group of models, in the calling thread (models numbered from
    ``offset`` in error messages; ``train_many`` has checked the subsets)."""
    n_models = len(seeds)
    subsets = [np.asarray(s) for s in subsets]
    size = len(subsets[0])
    device, dtype = X.device, X.dtype
    layout = ParameterLayout.from_model(model)
    theta = torch.stack([initial_parameters(model, layout, s) for s in seeds]).to(device, dtype)
    net = StackedMLP(model, theta)
    compiled = None if native_kernel is False else net.native_epoch()
    if native_kernel and compiled is None:
        raise RuntimeError("the native MLP kernel does not apply here (see "
                           "curvscope.training.native: a C compiler, a CPU, float32/float64)")
    if compiled is not None:
        X, y = X.contiguous(), y.to(torch.long).contiguous()
        scratch = compiled.scratch(min(spec.batch_size, size))
    index = torch.as_tensor(np.stack(subsets), device=device, dtype=torch.long)
    if compiled is not None and index.numel() and not (0 <= int(index.min())
                                                       and int(index.max()) < len(X)):
        # the kernel reads rows unchecked: an index torch would refuse must not reach it
        raise IndexError(f"subset indices must lie in [0, {len(X)}) for {len(X)} points")
    generators = [shuffle_generator(s) for s in seeds]
    params, grads = net.flat, net.grad_flat
    buffer = torch.zeros_like(params)
    steps_per_epoch = math.ceil(size / spec.batch_size)
    total_steps = steps_per_epoch * spec.epochs
    keep = set(spec.checkpoint_epochs())
    curve = set(spec.loss_curve_epochs())
    eval_losses: dict[int, torch.Tensor] = {}
    train_losses: dict[int, torch.Tensor] = {}
    step = 0
    for epoch in range(1, spec.epochs + 1):
        order = torch.stack([torch.randperm(size, generator=g) for g in generators]).to(device)
        loss_sums = torch.zeros(n_models, dtype=dtype, device=device) if epoch in curve else None
        if compiled is not None:
            compiled.run(X, y, index.gather(1, order), spec.batch_size,
                         [learning_rate(spec, step + t, total_steps)
                          for t in range(steps_per_epoch)],
                         spec.momentum, spec.weight_decay, params, buffer, loss_sums, scratch)
            step += steps_per_epoch
        else:
            for start in range(0, size, spec.batch_size):
                rows = index.gather(1, order[:, start : start + spec.batch_size])
                # index_select on the flattened rows: the same gather, ~4× faster than X[rows]
                xb = X.index_select(0, rows.reshape(-1)).view(*rows.shape, X.shape[1])
                net.gradients(xb, y[rows], loss_sums)
                sgd_step(params, grads, buffer, spec, learning_rate(spec, step, total_steps))
                step += 1
        # a model's parameters are all finite iff their sum is (NaN and ±inf propagate; a sum
        # that overflows from finite entries is followed by the exact per-entry check)
        finite = torch.isfinite(torch.stack([p.reshape(n_models, -1).sum(1)
                                             for p in net.weights + net.biases
                                             if p is not None]).sum(0))
        if not finite.all():
            finite = torch.stack([torch.isfinite(p.reshape(n_models, -1)).all(1)
                                  for p in net.weights + net.biases if p is not None]).all(0)
        if not finite.all():
            bad = [offset + b for b in (~finite).nonzero().flatten().tolist()]
            raise TrainingDivergedError(diverged_message(epoch, spec) +
                                        f" (retrained models {bad[:5]} of this batch)")
        with torch.no_grad():
            if epoch in keep:
                eval_losses[epoch] = net.point_losses(X_eval, y_eval)
            if loss_sums is not None:
                train_losses[epoch] = loss_sums / size
        if progress is not None:
            progress(epoch, spec.epochs)
        if stop is not None and stop.is_set():
            raise _Stopped()
    return BatchedTrainingResult(net.theta(), eval_losses, train_losses)
