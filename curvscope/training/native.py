"""The batched trainer's native epoch: ``mlp_kernel.c``, compiled on first use with the host's C
compiler and called through ctypes.

Why. One step of ``batched.StackedMLP`` is about 25 torch operations, each over all B models of
a group at once: every intermediate (B × 32 × 64 activations, their GELU derivatives, the
deltas) streams through the shared cache between operations, and the exact GELU and its
backward pass recompute erf and exp separately. The kernel instead runs each model's whole
epoch, model after model, so that its parameters, momentum and activations stay in the
core's own caches: z_l = a_{l−1} W_lᵀ + b_l by register-tiled products, a_l = φ(z_l) together
with φ'(z_l) in one pass (for GELU, a = z Φ(z) and φ' = Φ(z) + z φ(z) from one exponential,
since exp(−z²/2) serves both erf's Abramowitz–Stegun 7.1.26 form, the one torch's vectorised
float erf uses, and the normal density), δ_L = (softmax(z_L) − onehot(y)) / n, ∂W_l = δ_lᵀ
a_{l−1}, δ_{l−1} = (δ_l W_l) ⊙ φ'(z_{l−1}), then the momentum-SGD update of torch.optim.SGD
(g = ∂θ + λθ, buf ← μ buf + g, θ ← θ − lr buf) on that layer while its gradient is still in
the cache. The arithmetic is ``batched.StackedMLP.gradients`` followed by ``batched.sgd_step``,
in float32 equal up to the rounding of reassociated sums and of the polynomial exp/erf (about
1e-7 relative a step, tested), in float64 (libm's erf and exp) up to reassociation (tested to
1e-12 against the torch path and the single-model trainer). A model's arithmetic depends only
on its own data, so results are bit-identical across groups and threads.

Where no C compiler is found, where compiling fails, on a GPU, or with ``CURVSCOPE_NATIVE=0``,
the trainer uses its torch operations (same results within the tolerances above). The shared
library is built once per source, compiler and CPU (``-O3 -march=native``, ~3 s) into
``$CURVSCOPE_KERNEL_DIR`` (default ``$CURVSCOPE_CACHE_DIR/kernels``, i.e.
``~/.cache/curvscope/kernels``; where that is not writable, a directory of the user's own under
the temporary directory) and reused by every later process.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import torch

from curvscope.storage import default_cache_dir

log = logging.getLogger(__name__)

#: ``0``/``off``/``false`` makes the batched trainer use its torch operations only.
NATIVE_ENV = "CURVSCOPE_NATIVE"
#: Where compiled kernels are kept.
KERNEL_DIR_ENV = "CURVSCOPE_KERNEL_DIR"
SOURCES = ("mlp_kernel.c", "mlp_kernel_impl.h")
FLAGS = ("-O3", "-shared", "-fPIC")
#: The activations the kernel implements, by its code.
ACTIVATIONS = {"GELU": 0, "ReLU": 1, "Tanh": 2}
MAX_LAYERS = 9
_SUFFIX = {torch.float32: "_f32", torch.float64: "_f64"}
_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get(NATIVE_ENV, "1").strip().lower() not in {"0", "off", "false", "no"}


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the machine and its CPU's model and flags."""
    identity = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "cpu model")):
                identity += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return identity


def kernel_dir() -> Path:
    if os.environ.get(KERNEL_DIR_ENV):
        return Path(os.environ[KERNEL_DIR_ENV])
    return default_cache_dir() / "kernels"


def _private_temp_dir() -> Path:
    """A directory of this user's own under the temporary directory (mode 0700, checked), so
    that nobody else can put a library there for this process to load."""
    directory = Path(tempfile.gettempdir()) / f"curvscope-kernels-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    status = directory.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        raise OSError(f"{directory} is not this user's own directory")
    return directory


def _build(compiler: str, march: str = "native") -> Path:
    """The kernel's shared library, compiled unless this source, compiler, flags and CPU
    already have one (the file name is a hash of all four); ``march`` is ``-march``'s value
    (another one than ``native`` builds the kernel for that instruction set, e.g. ``x86-64``
    for SSE2 vectors, ``haswell`` for AVX2: the tests check those paths on any x86 host)."""
    flags = (*FLAGS, f"-march={march}")
    here = Path(__file__).parent
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    digest = hashlib.sha256()
    for source in SOURCES:
        digest.update((here / source).read_bytes())
    digest.update(" ".join([compiler, version, *flags, _cpu_identity()]).encode())
    name = f"mlp_kernel-{digest.hexdigest()[:16]}.so"
    for where in (kernel_dir, _private_temp_dir):
        try:
            directory = where()
            target = directory / name
            if target.exists():
                return target
            directory.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(suffix=".so", dir=directory)
            os.close(fd)
        except OSError:
            continue
        try:
            result = subprocess.run([compiler, *flags, "-o", partial, str(here / SOURCES[0]),
                                     "-lm"], capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-2000:]}")
            os.replace(partial, target)  # atomic: concurrent builders race harmlessly
            return target
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise RuntimeError(f"no writable directory for the kernel ({kernel_dir()})")


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found: the batched trainer uses torch operations")
        return None
    try:
        return load(_build(compiler))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        log.warning("the native MLP kernel is unavailable (%s): the batched trainer uses "
                    "torch operations", error)
        return None


def load(path: Path) -> ctypes.CDLL:
    """The kernel's shared library at ``path``, its functions' signatures declared."""
    library = ctypes.CDLL(str(path))
    for suffix in _SUFFIX.values():
        size = getattr(library, "mlp_scratch_size" + suffix)
        size.restype = ctypes.c_int64
        size.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int64]
        epoch = getattr(library, "mlp_epoch" + suffix)
        epoch.restype = None
        epoch.argtypes = [ctypes.POINTER(ctypes.c_int64)] + [ctypes.c_void_p] * 3 + [
            ctypes.c_int64] * 3 + [ctypes.POINTER(ctypes.c_double), ctypes.c_double,
                                   ctypes.c_double] + [ctypes.c_void_p] * 4
    return library


def library() -> ctypes.CDLL | None:
    """The compiled kernel, built on the first call (None where it cannot be)."""
    if not enabled():
        return None
    with _lock:
        return _library()


class MLPEpoch:
    """The native epoch for one architecture and dtype.

    ``desc`` is the kernel's description of the stacked MLPs: [L, activation, has_bias, B,
    widths (L + 1), offsets of each layer's W in the flat parameter buffer (L), of its b
    (L)], in entries."""

    def __init__(self, lib: ctypes.CDLL, dtype: torch.dtype, desc: list[int]):
        self.dtype = dtype
        self._desc = (ctypes.c_int64 * len(desc))(*desc)
        self._epoch = getattr(lib, "mlp_epoch" + _SUFFIX[dtype])
        self._size = getattr(lib, "mlp_scratch_size" + _SUFFIX[dtype])

    def scratch(self, batch: int) -> torch.Tensor:
        return torch.empty(int(self._size(self._desc, batch)), dtype=self.dtype)

    def run(self, X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, batch: int,
            lrs: list[float], momentum: float, weight_decay: float, theta: torch.Tensor,
            buffer: torch.Tensor, loss_sums: torch.Tensor | None,
            scratch: torch.Tensor) -> None:
        """One epoch of every model: model m's steps take the rows rows[m, t·batch : …] of
        (X, y) with learning rates lrs[t]; θ and the momentum buffer change in place."""
        for tensor, dtype in ((X, self.dtype), (theta, self.dtype), (buffer, self.dtype),
                              (scratch, self.dtype), (y, torch.int64), (rows, torch.int64)):
            if tensor.dtype != dtype or not tensor.is_contiguous() or tensor.device.type != "cpu":
                raise ValueError(f"the native epoch needs contiguous CPU {dtype} tensors")
        if loss_sums is not None and (loss_sums.dtype != self.dtype
                                      or not loss_sums.is_contiguous()):
            raise ValueError(f"loss_sums must be a contiguous {self.dtype} tensor")
        steps = -(-rows.shape[1] // batch)
        if len(lrs) != steps:
            raise ValueError(f"need {steps} learning rates, got {len(lrs)}")
        rates = (ctypes.c_double * steps)(*lrs)
        self._epoch(self._desc, X.data_ptr(), y.data_ptr(), rows.data_ptr(), rows.shape[1],
                    rows.shape[1], batch, rates, momentum, weight_decay, theta.data_ptr(),
                    buffer.data_ptr(), None if loss_sums is None else loss_sums.data_ptr(),
                    scratch.data_ptr())
