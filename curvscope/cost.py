"""What a study will cost in seconds and bytes, from its spec alone and measured rates.

Torch-free (the API imports it): counts come from the spec in closed form
(``curvscope.sizes``), rates from a calibration probe of this machine
(``curvscope.calibrate``) and, on a service, from the per-stage timings of finished studies.

Model. Every stage of ``curvscope.study.stage_plan`` is a :class:`Work`: how many units of
each *kernel* it runs. A kernel is one kind of computation whose speed the probe measures:

==========  ===============================================  ==================================
kernel      unit                                             probe (``curvscope.calibrate``)
==========  ===============================================  ==================================
gemm        flop of a dense product in the study's dtype     float64 matmul 1024 × 1024
gemm32      flop of a float32 product (the LDS's ranks)      float32 matmul 1024 × 1024
eigh        n³ of ``linalg.symmetric_eigh`` of n × n         eigh of 1024 × 1024
eigvalsh    n³ of ``torch.linalg.eigvalsh``                   eigvalsh of 1024 × 1024
mem         byte moved by an elementwise pass (d² matrices)   norm(A − B) on 2048² float64
step        one step of the single-model trainer              ``train_model`` on a 64→32→10 MLP
bflop       flop of the batched retraining trainer (fp32)    ``train_many``, 64 and 16 models
bstep       one step of one group of the batched trainer     (the same two runs)
            (fixed part; ``sizes.cpu_models_per_group`` models at most)
perm        element of a minibatch permutation               ``torch.randperm``
lds         resample × subset × test point, per ranked set   ``lds_many`` on random losses
npz         byte of arrays.npz (stored, uncompressed)        ``np.savez``, 8 MB
fixed       second                                           —
==========  ===============================================  ==================================

and a stage takes Σ_k units_k / rate_k seconds (``fixed`` is already seconds; an ``eigh`` of
size n takes t(n₀) · (n/n₀)^p with n₀ = 1024 and p = ``EIGH_EXPONENT`` (``EIGVALSH_EXPONENT``),
measured once between 1024 and 6,570 on the reference machine: eigvalsh's tridiagonal
reduction gets faster per n³ as n grows (p ≈ 2.6), so n³ at the 1024² rate would overprice a
6,570² matrix; eigh's back-transformation keeps it near n³).

The flop counts follow the code stage by stage (N training points, T test points, C classes,
layer l with fan-in i_l, fan-out o_l, ī_l = i_l + bias, d parameters, blocks of size n_b):

* train: E·⌈N/batch⌉ steps, plus a full-batch loss per epoch (2·N·Σ o_l i_l flops);
* gradients: (N + T)·d·itemsize bytes written twice, 6·(N+T)·Σ o_l i_l flops;
* H (``hessian_mlp``): Σ_{m≤m'} 2N·o_m o_m' ī_m ī_m' + Σ_{m<l} 2N·o_l i_l o_m ī_m flops,
  then eigh(d); GGN (``_gram``): Σ_{l≤m} 2N·o_l o_m ī_l ī_m flops, then eigvalsh(d);
  GGN-blockdiag: eigh(n_b) per block (its gram per block when G is not dense);
  K-FAC: 2N·ī² + 2K·N·o² flops and eigh of the two factors per block (K = C cotangents for
  type-2, mc_samples for mc, 1 for empirical); EK-FAC: the same factors, then 2·n_b³ (+ the
  Kronecker basis 2·n_b²(o + ī)) when G is dense, else the projection 2N(ī² + K·o² + K·o·ī);
* scores: per method 2(N + T)·n_b² per dense block (Kronecker: 2(N + T)(o²ī + oī²)) and
  2·T·d·N for the product; the GGN by Cholesky: d³/3 + 2·d²·N + 2·T·d·N;
* diagnostics (``diagnostics.report``, block by block): eigh of H's diagonal blocks, each
  Kronecker basis once (2·n_b²(o + ī)), top-1000 overlaps (2·n_b·k², or 2·k·n_b(o + ī) through
  a Kronecker basis), GGN-blockdiag's dense blocks 2·n_b³ when H or G is dense, eigvalsh of
  every parameter tensor's block of G and EK-FAC, ~3·n_b² bytes per residual and distance;
* groundtruth/α: per chunk of B models E·⌈|S|/batch⌉ steps of 6·B·|S|·Σ o_l i_l flops per
  epoch (|S| = ⌊α N⌋), B·|S| permuted indices per epoch, 2·B·T·Σ o_l i_l flops per checkpoint;
* lds: per α (methods + 1)·n_bootstrap·M·T ranked elements (+ 2·n_bootstrap·M·T for the seed
  ceiling, + 4M·M·T per method for the official BCa interval) and 2·M float32 flops per
  element for their prefix counts, 2·M·N·T flops per method for the predictions.

A rate read from finished studies corrects each stage kind: factor = median over recent
studies of (measured stage seconds / seconds predicted at the probe's rates); see
:func:`stage_corrections`. Peak memory is the process's base plus the largest of the dense
matrices (``sizes.estimate_dense_memory_bytes``), the gradient rows and a retraining chunk.

Hong et al. (2025, arXiv 2509.23437) is the study whose stages these are.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curvscope.registry import get_method
from curvscope.sizes import (
    cpu_models_per_group,
    data_shape,
    estimate_dense_memory_bytes,
    n_test_rows,
)

KERNELS = ("gemm", "gemm32", "eigh", "eigvalsh", "mem", "step", "bflop", "bstep", "perm",
           "lds", "npz", "fixed")

#: The size the probe's eigendecompositions are measured at (the reference of n^p).
EIGH_REFERENCE_N = 1024
#: t(n) ∝ n^p above it: log(t(n)/t(1024))/log(n/1024) on the reference machine (1 thread,
#: n = 4096, 4160, 6570): eigh 2.84–3.17, eigvalsh 2.46–2.70.
EIGH_EXPONENT = 3.0
EIGVALSH_EXPONENT = 2.6
#: The same for ``linalg.symmetric_eigh`` on its scipy backend (2-core AMD EPYC, 2 threads,
#: issue 14): 2.57 from 1024 to 4,160 (0.20 s → 7.41 s), 2.66 to the paper's H (28.2 s).
SCIPY_EIGH_EXPONENT = 2.65
#: The probe's single-model trainer: its layers and flops per step (64→32→10, batch 32).
PROBE_STEP_LAYERS = 2
PROBE_STEP_FLOPS = 6 * 32 * (64 * 32 + 32 * 10)
#: top-k of the eigenbasis overlap curve (``diagnostics.report.OVERLAP_KS``'s largest).
OVERLAP_K = 1000
#: What every stage costs at least (Python, torch dispatch), seconds.
STAGE_FLOOR_S = 0.002
#: Loading and splitting a built-in data set, building the model.
DATA_STAGE_S = 0.15

#: Rates of the reference machine (2-core Xeon, AVX-512, torch 2.13 CPU), measured by
#: ``curvscope.calibrate.probe`` with 1 torch thread at a 1-minute load of 2.4 (2026-12-01):
#: used when no probe of this machine is at hand.
DEFAULT_RATES: dict[str, float] = {
    "gemm": 1.9e10,
    "gemm32": 2.6e10,
    "eigh": 1.6e9,
    "eigh_exponent": EIGH_EXPONENT,
    "eigvalsh": 3.1e9,
    "eigvalsh_exponent": EIGVALSH_EXPONENT,
    "mem": 3.0e9,
    "step": 330.0,
    "bflop": 5.0e9,
    "bstep": 1.6e3,
    "perm": 2.8e7,
    "lds": 3.7e7,
    "npz": 1.0e9,  # np.savez (uncompressed since 2026-12-02; 1.36e9 at load 0.5)
    "fixed": 1.0,
    "base_rss_bytes": 4.3e8,
}

#: Which stages each reported group holds (for people: training, retraining, ...).
STAGE_GROUPS = {
    "data": "training", "train": "training", "gradients": "per-sample gradients",
    "curvature": "curvature", "scores": "scores", "diagnostics": "diagnostics",
    "groundtruth": "retraining", "lds": "LDS", "write": "writing results",
}


@dataclass
class Work:
    """Units of each kernel one stage runs; eigendecompositions by size (``eigs``), since
    their rate depends on n."""

    units: dict[str, float] = field(default_factory=dict)
    eigs: list[tuple[str, int]] = field(default_factory=list)

    def add(self, kernel: str, amount: float) -> Work:
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}")
        if amount:
            self.units[kernel] = self.units.get(kernel, 0.0) + float(amount)
        return self

    def eig(self, kernel: str, n: int) -> Work:
        """One ``eigh`` or ``eigvalsh`` of an n × n matrix."""
        if kernel not in ("eigh", "eigvalsh"):
            raise ValueError(f"unknown eigendecomposition {kernel!r}")
        self.eigs.append((kernel, int(n)))
        return self

    def seconds(self, rates: dict[str, float]) -> float:
        total = sum(eig_seconds(kernel, n, rates) for kernel, n in self.eigs)
        for kernel, amount in self.units.items():
            total += amount if kernel == "fixed" else amount / rates[kernel]
        return max(total, STAGE_FLOOR_S)


def eig_seconds(kernel: str, n: int, rates: dict[str, float]) -> float:
    """t(n) = (n₀³ / rate) · (n / n₀)^p: the probe's time at n₀ scaled by the fitted power."""
    if n <= 1:
        return 1e-5
    p = rates.get(f"{kernel}_exponent", EIGH_EXPONENT)
    n0 = EIGH_REFERENCE_N
    return (n0**3 / rates[kernel]) * (n / n0) ** p + 1e-5


# ----- shapes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """What the cost depends on: rows, classes, the MLP's layers and the curvature blocks."""

    n_train: int
    n_test: int
    n_features: int
    n_classes: int
    layers: tuple[tuple[int, int], ...]  # (fan_in, fan_out) per Linear
    bias: bool
    block_structure: str
    itemsize: int

    @property
    def d(self) -> int:
        return sum((i + self.bias) * o for i, o in self.layers)

    @property
    def layer_flops(self) -> int:
        """Σ_l o_l · i_l: multiply-adds of one forward pass of one point."""
        return sum(i * o for i, o in self.layers)

    def blocks(self) -> list[tuple[str, int, int]]:
        """Curvature blocks as (name, out, in_b) with n_b = out · in_b: per layer
        (out, in + bias), or per tensor (out, in) and a bias block (out, 1)."""
        out = []
        for index, (i, o) in enumerate(self.layers):
            if self.block_structure == "layer":
                out.append((f"layer{index}", o, i + self.bias))
            else:
                out.append((f"layer{index}.weight", o, i))
                if self.bias:
                    out.append((f"layer{index}.bias", o, 1))
        return out

    def layer_blocks(self) -> list[tuple[str, int, int]]:
        return [(f"layer{k}", o, i + self.bias) for k, (i, o) in enumerate(self.layers)]

    def tensors(self) -> list[int]:
        """Sizes of the parameter tensors (the official overlap's blocks)."""
        out = []
        for i, o in self.layers:
            out.append(i * o)
            if self.bias:
                out.append(o)
        return out


def shape_of(spec: Any, file_shape: tuple[int, int, int] | None = None) -> Shape:
    rows, features, classes = data_shape(spec.data, file_shape)
    n_test = n_test_rows(rows, spec.data.test_fraction)
    widths = [features, *spec.model.hidden, classes]
    return Shape(n_train=rows - n_test, n_test=n_test, n_features=features, n_classes=classes,
                 layers=tuple(zip(widths[:-1], widths[1:], strict=True)),
                 bias=bool(spec.model.bias), block_structure=spec.curvature.block_structure,
                 itemsize=8 if spec.compute.dtype == "float64" else 4)


def _cotangents(spec: Any, fisher_type: str, n_classes: int) -> int:
    if fisher_type == "type2":
        return n_classes
    if fisher_type == "mc":
        return int(spec.curvature.mc_samples)
    return 1


def curvature_order(spec: Any) -> list[str]:
    """As ``curvscope.study.curvature_order``: dense methods first, else the spec's order."""
    return sorted(spec.curvature.methods, key=lambda n: get_method(n).dense_matrix is None)


def stage_plan(spec: Any) -> list[str]:
    """As ``curvscope.study.stage_plan`` (a test checks they agree), plus the final write."""
    stages = ["data", "train", "gradients",
              *[f"curvature/{m}" for m in curvature_order(spec)], "scores", "diagnostics"]
    if spec.groundtruth.enabled:
        stages += [f"groundtruth/{a}" for a in spec.groundtruth.alphas] + ["lds"]
    return stages + ["write"]


# ----- the cost of each stage -------------------------------------------------------------

def _gram(work: Work, s: Shape, pairs: list[tuple[int, int, int, int]], K: int) -> None:
    """``CurvatureContext._gram`` over blocks: per pair (o_l, ī_l, o_m, ī_m) one
    (o_l o_m × N)(N × ī_l ī_m) product, the P einsum and the re-layout of the block."""
    N, b = s.n_train, s.itemsize
    for o_l, i_l, o_m, i_m in pairs:
        work.add("gemm", 2 * N * o_l * o_m * i_l * i_m + 2 * K * N * o_l * o_m)
        work.add("mem", b * (N * (i_l * i_m + o_l * o_m) + 5 * o_l * i_l * o_m * i_m))


def _signals(work: Work, s: Shape, K: int) -> None:
    """``layer_signals``: one forward, K backward passes of the N training points."""
    work.add("gemm", (2 + 4 * K) * s.n_train * s.layer_flops)
    work.add("mem", s.itemsize * K * s.n_train * sum(o for _, o in s.layers) * 3)
    work.add("fixed", 0.0005 * K * len(s.layers))


def _kron_basis(work: Work, s: Shape, o: int, i: int) -> None:
    """Dense V = U_S ⊗ U_A of a Kronecker block (``EigenBlock.eigenvectors``)."""
    n = o * i
    work.add("gemm", 2 * n * (o * o * i + o * i * i))
    work.add("mem", 4 * s.itemsize * n * n)


class _Context:
    """What the curvature context has memoised so far (as ``CurvatureContext._memo``)."""

    def __init__(self):
        self.have: set = set()

    def once(self, key) -> bool:
        if key in self.have:
            return False
        self.have.add(key)
        return True


def curvature_work(spec: Any, s: Shape, method: str, ctx: _Context) -> Work:
    """One method's curvature stage (the builders in ``curvscope.curvature``)."""
    work = Work()
    N, d, b, C = s.n_train, s.d, s.itemsize, s.n_classes
    layers = s.layers
    if method == "H":
        ctx.have.add("hessian")
        outs = [o for _, o in layers]
        ins = [i + s.bias for i, _ in layers]
        L = len(layers)
        for m in range(L):
            for mp in range(m, L):
                work.add("gemm", 2 * N * outs[m] * outs[mp] * ins[m] * ins[mp]
                         + 2 * N * outs[m] * outs[mp] * C
                         + sum(2 * N * outs[l] * outs[m] * outs[mp] for l in range(mp, L - 1)))
                work.add("mem", b * N * (ins[m] * ins[mp] + outs[m] * outs[mp]))
                if mp > m:  # the cross terms through the weights
                    left = N * outs[mp] * layers[mp][0] * outs[m]
                    work.add("gemm", 2 * left * ins[m])
                    work.add("mem", b * 2 * left)
        for k in range(L):
            for m in range(k):
                work.add("gemm", 2 * N * outs[k] * layers[k][0] * outs[m])
        work.add("mem", 8 * b * d * d)  # write H, symmetrise, symmetrise again for eigh
        work.eig("eigh", d)
        work.add("fixed", 0.01 * L * L)
    elif method == "GGN":
        ctx.have.add("ggn")
        if ctx.once(("signals", "type2")):
            _signals(work, s, C)
        blocks = [(o, i + s.bias) for i, o in layers]
        _gram(work, s, [(*blocks[l], *blocks[m]) for l in range(len(blocks))
                        for m in range(l, len(blocks))], C)
        work.add("mem", 8 * b * d * d)  # (G + Gᵀ)/2 twice
        work.eig("eigvalsh", d)
    elif method == "GGN-blockdiag":
        for name, o, i in s.blocks():
            if "ggn" not in ctx.have and ctx.once(("ggn_block", name)):
                if ctx.once(("signals", "type2")):
                    _signals(work, s, C)
                _gram(work, s, [(o, i, o, i)], C)
            ctx.have.add(("ggn_block", name))
            work.add("mem", 3 * b * (o * i) ** 2)
            work.eig("eigh", o * i)
        ctx.have.add("blockdiag")
    elif method in ("K-FAC", "EK-FAC"):
        fisher = spec.curvature.fisher_type_of(method)
        K = _cotangents(spec, fisher, C)
        if ctx.once(("signals", fisher)):
            _signals(work, s, K)
        dense = method == "EK-FAC" and "ggn" in ctx.have and fisher == "type2"
        for name, o, i in s.blocks():
            if ctx.once(("kfac", name, fisher)):
                work.add("gemm", 2 * N * i * i + 2 * K * N * o * o)
                work.eig("eigh", o).eig("eigh", i)
            if method == "EK-FAC":
                n = o * i
                if dense:
                    _kron_basis(work, s, o, i)
                    work.add("gemm", 2 * n**3)
                    work.add("mem", 3 * b * n * n)
                else:
                    work.add("gemm", 2 * N * (i * i + K * o * o + K * o * i))
    elif method == "GGN-diag":
        if "ggn" not in ctx.have:
            if ctx.once(("signals", "type2")):
                _signals(work, s, C)
            work.add("gemm", 2 * C * N * sum(o * i for _, o, i in s.blocks()))
    work.add("fixed", 0.002)
    return work


def _cholesky_applies(spec: Any) -> bool:
    """The GGN's scores go by Cholesky when the rule inverts every damped eigenvalue."""
    rule = spec.inverse
    if rule.damping <= 0:
        return False
    return rule.rule != "drop_absolute" or rule.damping > rule.threshold


def scores_work(spec: Any, s: Shape) -> Work:
    """``attribution.influence_scores`` for every method."""
    work = Work()
    N, T, d, b = s.n_train, s.n_test, s.d, s.itemsize
    for method in spec.curvature.methods:
        work.add("gemm", 2 * T * d * N)
        if method == "GGN" and _cholesky_applies(spec):
            work.add("gemm", d**3 / 3 + 2 * d * d * N)
            work.add("mem", 3 * b * d * d)
            continue
        if method == "GGN":  # eigenvectors on demand
            work.eig("eigh", d)
        if method in ("H", "GGN"):
            work.add("gemm", 2 * (N + T) * d * d)
        elif method == "GGN-blockdiag":
            work.add("gemm", sum(2 * (N + T) * (o * i) ** 2 for _, o, i in s.blocks()))
        elif method in ("K-FAC", "EK-FAC"):
            work.add("gemm", sum(2 * (N + T) * (o * o * i + o * i * i)
                                 for _, o, i in s.blocks()))
            work.add("mem", 4 * b * (N + T) * d)
        else:
            work.add("mem", 4 * b * (N + T) * d)
        work.add("fixed", 0.002)
    return work


def diagnostics_work(spec: Any, s: Shape, ctx: _Context) -> Work:
    """``diagnostics.report.diagnose``, layout block by layout block: each method's block
    spectrum (eigh of H's diagonal blocks, a Kronecker basis Q = U_S ⊗ U_A once per basis,
    2·n_b²(o + ī)), the top-1000 overlap curve (2·n_b·k² for dense eigenvectors, 2·k·n_b(o + ī)
    through a Kronecker basis), each block-diagonal method's dense block when H or G is dense
    (2·n_b³ for GGN-blockdiag, 2·n_b²(o + ī) through a Kronecker basis), ~3·n_b² bytes per
    residual and chain step, and with EK-FAC and K-FAC the decomposition: (VᵀQ)∘(VᵀQ)
    (2·n_b²(o + ī)), the spectral distances (~4·n_b² each, four of them) and the eigvalsh of
    every parameter tensor's block of G and EK-FAC (K-FAC's in closed form). Whole-matrix
    passes: H − G, the off-block norms, ‖T‖ per residual and the heat maps (~d² each)."""
    work = Work()
    methods = list(spec.curvature.methods)
    d, b = s.d, s.itemsize
    whole = [m for m in ("H", "GGN") if m in methods]
    compared = bool(whole)
    decompose = "EK-FAC" in methods and "K-FAC" in methods
    blocks = s.blocks()
    fisher = {m: spec.curvature.fisher_type_of(m) for m in ("K-FAC", "EK-FAC")}
    shared_basis = fisher["K-FAC"] == fisher["EK-FAC"]
    blocky = [m for m in methods if m not in whole]
    chain = [m for m in ("H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC") if m in methods]
    block_sizes = {}
    for name, o, i in blocks:
        n = o * i
        block_sizes[name] = n
        k = min(OVERLAP_K, n)
        if "GGN-blockdiag" not in methods:  # the reference: G_bb's eigenpairs
            if "ggn" not in ctx.have and ctx.once(("ggn_block", name)):
                _gram(work, s, [(o, i, o, i)], s.n_classes)
            work.eig("eigh", n)
        bases = 0
        for method in methods:
            if method == "H":
                if len(blocks) > 1:
                    work.eig("eigh", n)
                    work.add("mem", 3 * b * n * n)
                work.add("gemm", 2 * n * k * k).add("mem", 4 * b * n * k)
            elif method in ("GGN", "GGN-blockdiag"):
                work.add("gemm", 2 * n * k * k).add("mem", 4 * b * n * k)
                if method == "GGN-blockdiag" and compared:
                    work.add("gemm", 2 * n**3).add("mem", 2 * b * n * n)
            elif method in ("K-FAC", "EK-FAC"):
                if bases == 0 or not shared_basis:
                    _kron_basis(work, s, o, i)
                    bases += 1
                work.add("gemm", 2 * k * n * (o + i))
                if compared or decompose:
                    work.add("gemm", 2 * n * n * (o + i)).add("mem", 3 * b * n * n)
            else:  # identity, GGN-diag: the identity basis, a diagonal block
                work.add("mem", b * n * (n + k) * (2 if compared else 1))
        work.add("mem", 3 * b * n * n * (len(whole) * len(blocky) + max(len(chain) - 1, 0)))
        if decompose:
            work.add("mem", 9 * b * n * n)  # the K-FAC error split
            work.add("gemm", 2 * n * n * (o + i)).add("mem", 2 * b * n * n)  # (VᵀQ)∘(VᵀQ)
            work.add("mem", 4 * 4 * b * n * n)  # swap test and three mismatch distances
    if decompose:
        for t in s.tensors():
            for _ in range(2):  # G's and EK-FAC's blocks of the tensor
                work.eig("eigvalsh", t)
            work.add("mem", 6 * b * t * t)
    work.add("mem", b * d * d * (len(whole) * (2 + 3 + len(methods)) + 3 * (len(whole) == 2)))
    work.add("fixed", 0.003 * len(methods) * len(blocks))
    return work


def retrained_sizes(spec: Any, s: Shape) -> tuple[int, int]:
    """(bytes per number in the retraining dtype, Σ_l (in_l + out_l)) of a retrained model."""
    return 8 if spec.groundtruth.dtype == "float64" else 4, sum(i + o for i, o in s.layers)


def retraining_chunks(spec: Any, s: Shape, memory_budget_bytes: int | None) -> list[int]:
    """Models trained together in each chunk of one α (``retrain_slice``, per task)."""
    gt = spec.groundtruth
    per_task = gt.subsets_per_task or gt.n_subsets
    itemsize, widths = retrained_sizes(spec, s)
    per_model = itemsize * (3 * s.d + 4 * widths * (spec.training.batch_size + s.n_test))
    cap = gt.max_models_per_chunk
    if memory_budget_bytes is not None:
        cap = int(max(1, min(cap, memory_budget_bytes // 4 // per_model)))
    chunks = []
    for start in range(0, gt.n_subsets, per_task):
        models = (min(start + per_task, gt.n_subsets) - start) * gt.n_seeds
        chunks += [min(cap, models - k) for k in range(0, models, cap)]
    return chunks


def retraining_work(spec: Any, s: Shape, alpha: float, memory_budget_bytes: int | None
                    ) -> Work:
    """One α of ``groundtruth.retrain_slice``: chunks of B models by ``train_many``."""
    work = Work()
    tr = spec.training
    size = math.floor(alpha * s.n_train)
    steps = tr.epochs * math.ceil(size / tr.batch_size)
    checkpoints = len(tr.checkpoint_epochs())
    itemsize, widths = retrained_sizes(spec, s)
    per_group = cpu_models_per_group(s.d, widths, tr.batch_size, itemsize)
    for B in retraining_chunks(spec, s, memory_budget_bytes):
        work.add("bflop", 6 * B * size * s.layer_flops * tr.epochs)
        # one step of every CPU group of models (``train_many``)
        work.add("bstep", steps * math.ceil(B / per_group))
        work.add("perm", B * size * tr.epochs)
        work.add("bflop", 2 * B * s.n_test * s.layer_flops * checkpoints)
        work.add("fixed", 0.0002 * B + 0.01)  # generators and initial parameters
    return work


#: ``groundtruth.lds``: resampled ranks by a float32 matmul up to this many subsets.
LDS_MATMUL_MAX_SUBSETS = 256


def lds_work(spec: Any, s: Shape) -> Work:
    """``study.stage_lds`` per α: the predicted losses (2·M·N·T flops per method), then the
    bootstrap of ``lds_many``: the targets and every method are a ranked set of
    n_bootstrap · M · T elements each (+ 2 for the seed ceiling when R ≥ 2, + 2 sets of
    2M resamples per method for the official BCa interval), whose prefix counts cost one
    float32 matmul of 2·M flops per element up to 256 subsets (``groundtruth.lds``)."""
    work = Work()
    gt = spec.groundtruth
    M, T, N = gt.n_subsets, s.n_test, s.n_train
    n_methods = len(spec.curvature.methods)
    for _ in gt.alphas:
        work.add("mem", 8 * 2 * M * N * n_methods)
        work.add("gemm", 2 * M * N * T * n_methods)
        elements = (n_methods + 1) * gt.n_bootstrap * M * T
        if gt.n_seeds >= 2:
            elements += 2 * gt.n_bootstrap * M * T
        if gt.lds_summary == "interval_midpoint":
            elements += n_methods * 2 * 2 * M * M * T
        work.add("lds", elements)
        if M <= LDS_MATMUL_MAX_SUBSETS and 4 * T * M * M <= 64 * 2**20:
            work.add("gemm32", 2 * M * elements)
        work.add("fixed", 0.002 * n_methods)
    return work


def write_work(spec: Any, s: Shape) -> Work:
    """arrays.npz (``np.savez``) and results.json: the bytes of the scores, the
    spectra, the parameters and checkpoints, the images, and per α the masks, the retrained
    losses (per checkpoint when there are several), the per-test LDS and the bootstrap."""
    gt, tr = spec.groundtruth, spec.training
    n_methods = len(spec.curvature.methods)
    checkpoints = len(tr.checkpoint_epochs())
    rows = s.n_train + s.n_test
    array_bytes = 8 * n_methods * s.n_test * s.n_train + 8 * 2 * n_methods * s.d
    array_bytes += 8 * (1 + checkpoints) * s.d + 8 * (2 * rows + s.n_test)
    if spec.data.name == "digits":
        array_bytes += 8 * rows * s.n_features
    if gt.enabled:
        losses = 4 * gt.n_subsets * gt.n_seeds * s.n_test * (1 + (checkpoints if checkpoints
                                                                   > 1 else 0))
        array_bytes += len(gt.alphas) * (gt.n_subsets * s.n_train + losses + 8 * (
            n_methods + 1) * s.n_test + 8 * n_methods * gt.n_bootstrap)
    return Work().add("npz", array_bytes).add("fixed", 0.05)


def stage_work(spec: Any, file_shape: tuple[int, int, int] | None = None,
               memory_budget_bytes: int | None = None) -> dict[str, Work]:
    """The :class:`Work` of every stage of ``stage_plan(spec)``, in order."""
    s = shape_of(spec, file_shape)
    ctx = _Context()
    out: dict[str, Work] = {}
    tr = spec.training
    for stage in stage_plan(spec):
        kind = stage.split("/", 1)[0]
        if kind == "data":
            out[stage] = Work().add("fixed", DATA_STAGE_S).add(
                "mem", 4 * 8 * (s.n_train + s.n_test) * s.n_features)
        elif kind == "train":
            L = len(s.layers)
            steps = tr.epochs * math.ceil(s.n_train / tr.batch_size)
            flops = 6 * tr.batch_size * s.layer_flops
            w = Work().add("step", steps * (1 + 2 * L) / (1 + 2 * PROBE_STEP_LAYERS))
            w.add("gemm", steps * max(0, flops - PROBE_STEP_FLOPS)
                  + tr.epochs * 2 * s.n_train * s.layer_flops)
            out[stage] = w
        elif kind == "gradients":
            out[stage] = Work().add("mem", 2 * s.itemsize * (s.n_train + s.n_test) * s.d).add(
                "gemm", 6 * (s.n_train + s.n_test) * s.layer_flops).add("fixed", 0.005)
        elif kind == "curvature":
            out[stage] = curvature_work(spec, s, stage.split("/", 1)[1], ctx)
        elif kind == "scores":
            out[stage] = scores_work(spec, s)
        elif kind == "diagnostics":
            out[stage] = diagnostics_work(spec, s, ctx)
        elif kind == "groundtruth":
            alpha = next(a for a in spec.groundtruth.alphas if stage == f"groundtruth/{a}")
            out[stage] = retraining_work(spec, s, alpha, memory_budget_bytes)
        elif kind == "lds":
            out[stage] = lds_work(spec, s)
        elif kind == "write":
            out[stage] = write_work(spec, s)
    return out


def stage_kind(stage: str) -> str:
    """The key a correction is kept under: ``curvature/<method>`` stays whole (methods
    differ), ``groundtruth/<α>`` is ``groundtruth``."""
    return stage if stage.startswith("curvature/") else stage.split("/", 1)[0]


# ----- peak memory ------------------------------------------------------------------------

def peak_memory_bytes(spec: Any, file_shape: tuple[int, int, int] | None = None,
                      base_rss_bytes: float = DEFAULT_RATES["base_rss_bytes"],
                      memory_budget_bytes: int | None = None) -> int:
    """The process's base plus the largest working set of one stage: the dense matrices
    (``sizes.estimate_dense_memory_bytes``) beside the gradient rows, or a retraining chunk."""
    s = shape_of(spec, file_shape)
    dense = estimate_dense_memory_bytes(s.d, list(spec.curvature.methods), s.itemsize)
    grads = s.itemsize * (s.n_train + s.n_test) * s.d
    n_methods = len(spec.curvature.methods)
    scores = 8 * n_methods * s.n_test * s.n_train
    blocks = max((o * i) ** 2 for _, o, i in s.blocks()) * s.itemsize * 6
    curvature = dense + grads + scores + blocks
    retrain = 0
    gt = spec.groundtruth
    if gt.enabled:
        chunk = max(retraining_chunks(spec, s, memory_budget_bytes), default=0)
        itemsize = 8 if gt.dtype == "float64" else 4
        widths = sum(i + o for i, o in s.layers)
        retrain = chunk * itemsize * (4 * s.d + 4 * widths * (spec.training.batch_size
                                                             + s.n_test))
        retrain += len(gt.alphas) * 4 * len(spec.training.checkpoint_epochs()) * \
            gt.n_subsets * gt.n_seeds * s.n_test
        # the LDS: ~6 float64 arrays of one resample chunk (at most 2²² elements each)
        retrain += 6 * 8 * min(2**22, gt.n_bootstrap * gt.n_subsets * s.n_test)
    return int(base_rss_bytes + max(curvature, retrain + grads + scores))


# ----- rates: the probe's file, the service's finished studies ----------------------------

def rates_with_defaults(rates: dict[str, float] | None) -> dict[str, float]:
    out = dict(DEFAULT_RATES)
    for key, value in (rates or {}).items():
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            out[key] = float(value)
    return out


def calibration_dir(data_dir: Path) -> Path:
    """Where workers and ``curvscope calibrate`` write their probes: <data>/calibration."""
    return Path(data_dir) / "calibration"


def read_calibrations(folder: Path, max_age_s: float = 30 * 86400) -> list[dict]:
    """Every readable probe file (``<host>.json``) under ``folder`` no older than
    ``max_age_s``, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    now = time.time()
    for path in folder.glob("*.json"):
        try:
            if now - path.stat().st_mtime > max_age_s:
                continue
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and isinstance(content.get("rates"), dict):
            content["_mtime"] = path.stat().st_mtime
            found.append(content)
    return sorted(found, key=lambda c: -c["_mtime"])


def combine_calibrations(probes: list[dict]) -> dict[str, float] | None:
    """The median of each rate over the probes (one per worker host)."""
    if not probes:
        return None
    keys = {k for p in probes for k in p["rates"]}
    out = {}
    for key in keys:
        values = [p["rates"][key] for p in probes
                  if isinstance(p["rates"].get(key), (int, float))]
        if values:
            out[key] = float(statistics.median(values))
    return out


def predict_stages(spec: Any, rates: dict[str, float],
                   file_shape: tuple[int, int, int] | None = None,
                   memory_budget_bytes: int | None = None) -> dict[str, float]:
    """Seconds of every stage at ``rates`` (no corrections)."""
    rates = rates_with_defaults(rates)
    if spec.compute.dtype == "float32":  # the study's products run in float32
        rates["gemm"] = rates["gemm32"]
    return {stage: work.seconds(rates)
            for stage, work in stage_work(spec, file_shape, memory_budget_bytes).items()}


#: A stage measured below this share of its prediction was (most likely) a cache hit.
CACHE_HIT_SHARE = 0.05
#: Stages predicted shorter than this are not used to correct anything (timer noise).
MIN_CORRECTING_S = 0.05


def stage_corrections(history: Iterable[tuple[dict[str, float], dict[str, float]]]
                      ) -> dict[str, tuple[float, int]]:
    """Per stage kind (``stage_kind``): (median of measured / predicted, how many studies),
    from (predicted stage seconds, measured stage seconds) of finished studies. Stages that
    look like cache hits (measured < 5 % of predicted) or are too short are left out."""
    ratios: dict[str, list[float]] = {}
    for predicted, measured in history:
        per_kind: dict[str, list[float]] = {}
        for stage, p in predicted.items():
            m = measured.get(stage)
            if not isinstance(m, (int, float)) or p < MIN_CORRECTING_S or m <= 0:
                continue
            if m < CACHE_HIT_SHARE * p:
                continue
            per_kind.setdefault(stage_kind(stage), []).append(m / p)
        for kind, values in per_kind.items():  # one value per study and kind
            ratios.setdefault(kind, []).append(statistics.median(values))
    return {k: (float(statistics.median(v)), len(v)) for k, v in ratios.items()}


def estimate_time(spec: Any, rates: dict[str, float] | None = None,
                  file_shape: tuple[int, int, int] | None = None,
                  corrections: dict[str, tuple[float, int]] | None = None,
                  memory_budget_bytes: int | None = None,
                  basis: str | None = None, skip: set[str] | None = None) -> dict:
    """Seconds per stage and in total, peak memory, and the basis of the numbers.

    ``rates`` is a probe's (default: the reference machine's), ``corrections`` what
    :func:`stage_corrections` learnt from finished studies; stages in ``skip`` (already
    cached) cost nothing."""
    merged = rates_with_defaults(rates)
    predicted = predict_stages(spec, merged, file_shape, memory_budget_bytes)
    corrections = corrections or {}
    stages = {}
    for stage, seconds in predicted.items():
        if skip and stage in skip:
            stages[stage] = 0.0
            continue
        factor = corrections.get(stage_kind(stage), (1.0, 0))[0]
        stages[stage] = seconds * factor
    groups: dict[str, float] = {}
    for stage, seconds in stages.items():
        group = STAGE_GROUPS[stage.split("/", 1)[0]]
        groups[group] = groups.get(group, 0.0) + seconds
    return {
        "seconds": round(sum(stages.values()), 3),
        "stage_seconds": {k: round(v, 4) for k, v in stages.items()},
        "group_seconds": {k: round(v, 3) for k, v in groups.items()},
        "peak_memory_bytes": peak_memory_bytes(spec, file_shape, merged["base_rss_bytes"],
                                               memory_budget_bytes),
        "basis": basis or ("the worker's calibration probe" if rates
                           else "the reference machine's rates (no probe of this machine)"),
        "corrected_stages": sorted(k for k in corrections),
    }


# ----- cache reuse between the points of a sweep -----------------------------------------

def _dump(model: Any, **kwargs) -> Any:
    return model.model_dump(mode="json", **kwargs)


def stage_keys(spec: Any) -> dict[str, str]:
    """What each cached stage's output depends on, as ``curvscope.study``'s
    ``train_material``/``curvature_material``/``retrain_material`` (without the code
    version, the same for every point): two studies with the same key share the stage."""
    train = {"data": _dump(spec.data), "model": _dump(spec.model),
             "training": _dump(spec.training, exclude={"evaluate_at_epoch"}),
             "dtype": spec.compute.dtype, "device": spec.compute.device}
    keys = {"train": json.dumps(train, sort_keys=True)}
    c = spec.curvature
    for method in spec.curvature.methods:
        settings: dict = {}
        if method in ("GGN-blockdiag", "K-FAC", "EK-FAC"):
            settings["block_structure"] = c.block_structure
        if method in ("K-FAC", "EK-FAC"):
            settings["fisher_type"] = c.fisher_type_of(method)
            if settings["fisher_type"] == "mc":
                settings["mc_samples"] = c.mc_samples
        keys[f"curvature/{method}"] = json.dumps(
            {"train": train, "epoch": spec.training.evaluated_epoch(), "method": method,
             "settings": settings}, sort_keys=True)
    gt = spec.groundtruth
    if gt.enabled:
        base = {"data": _dump(spec.data), "model": _dump(spec.model),
                "training": _dump(spec.training, exclude={"seed", "evaluate_at_epoch"}),
                "groundtruth": _dump(gt, include={"n_seeds", "seed", "dtype", "n_subsets"}),
                "device": spec.compute.device}
        for alpha in gt.alphas:
            keys[f"groundtruth/{alpha}"] = json.dumps({**base, "alpha": alpha},
                                                      sort_keys=True)
    return keys


def sweep_estimate(specs: list[Any], rates: dict[str, float] | None = None,
                   file_shapes: list[tuple[int, int, int] | None] | None = None,
                   corrections: dict[str, tuple[float, int]] | None = None,
                   memory_budget_bytes: int | None = None, basis: str | None = None,
                   reused: list[bool] | None = None) -> dict:
    """The points' estimates summed, each point's cached stages (a stage key an earlier point
    computes) counted once: a sweep over ``training.evaluate_at_epoch`` trains and retrains
    once. A point marked ``reused`` (an identical study exists) costs nothing."""
    seen: set[str] = set()
    points = []
    total = 0.0
    peak = 0
    for index, spec in enumerate(specs):
        shape = file_shapes[index] if file_shapes else None
        if reused and reused[index]:
            points.append({"seconds": 0.0, "reused": True})
            continue
        keys = stage_keys(spec)
        skip = {stage for stage, key in keys.items() if key in seen}
        seen.update(keys.values())
        point = estimate_time(spec, rates, shape, corrections, memory_budget_bytes, basis,
                              skip)
        total += point["seconds"]
        peak = max(peak, point["peak_memory_bytes"])
        points.append({"seconds": point["seconds"], "cached_stages": sorted(skip),
                       "reused": False})
    return {"seconds": round(total, 3), "points": points, "peak_memory_bytes": peak,
            "basis": basis or (points and "the worker's calibration probe" or ""),
            "n_points": len(specs)}
