"""Symmetric eigendecompositions, each on the LAPACK that does it fastest on this machine.

Every dense eigen-block of a study (H, the GGN blocks, H's blocks in the diagnostics) needs
M = V diag(λ) Vᵀ with orthonormal V: the influence of H under the ``abs`` rule is
−g_testᵀ V diag(1/(|λ| + δ)) Vᵀ g_train (Hong et al. 2025, §3; SCIENCE.md §3), and the
per-block overlaps compare eigenvectors. Both backends run LAPACK's divide-and-conquer driver
``?syevd`` (tridiagonalise, ``?stedc``, back-transform):

* ``"torch"``: ``torch.linalg.eigh``, the MKL that the torch wheel links;
* ``"scipy"``: ``scipy.linalg.eigh(driver="evd")``, the OpenBLAS that scipy ships, with its
  BLAS limited to ``torch.get_num_threads()`` threads for the call (a worker pinned to one
  torch thread stays on one core, and its numbers equal an in-process run on one thread).

On an AMD EPYC host MKL's ``?syevd`` was 1.5–1.8× slower than OpenBLAS's on the paper's
matrices (issue 14, side by side in one process: the paper preset's H, d = 6,570, 45.3 s vs
28.2 s on 2 threads; a 4,160² GGN block 10.6 s vs 7.0 s on 2 threads and 20.9 s vs 11.4 s on
1; residual ‖MV − VΛ‖/‖M‖ 5.0e-15 vs 3.1e-15, ‖VᵀV − I‖ 8.3e-13 vs 4.2e-13, eigenvalues equal
to 8.9e-16 of λ_max), while on the Intel Xeon hosts of earlier sessions scipy's was not
faster. ``default_backend`` therefore picks scipy exactly when torch's LAPACK is MKL and the
CPU is not Intel's; ``CURVSCOPE_EIGH_BACKEND`` (torch | scipy) overrides it, and
``benchmarks/eigensolvers.py`` times both. The choice is a fixed property of the machine,
never a timing taken at run time, so two processes on one machine running the same study get
the same numbers. Eigenvalues alone stay on ``torch.linalg.eigvalsh`` (MKL's was the faster
there too: 9.0 s vs 17.0 s for the paper's G).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

BACKENDS = ("torch", "scipy")
#: Environment variable that overrides ``default_backend`` (one of ``BACKENDS``).
BACKEND_ENV = "CURVSCOPE_EIGH_BACKEND"
#: Smallest order that goes through scipy; below it the call's overhead (thread limit, copies:
#: ~1 ms) outweighs any difference, so K-FAC's small factors always stay on torch.
SCIPY_MIN_ORDER = 256


def cpu_vendor() -> str:
    """The CPU's vendor string from /proc/cpuinfo (``GenuineIntel``, ``AuthenticAMD``…), or
    "" where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def _machine_backend() -> str:
    mkl = torch.backends.mkl.is_available()
    return "scipy" if mkl and cpu_vendor() not in ("", "GenuineIntel") else "torch"


def default_backend() -> str:
    """The backend of CPU eigendecompositions on this machine: ``CURVSCOPE_EIGH_BACKEND`` if
    set, else scipy when torch's LAPACK is MKL on a CPU that is not Intel's, else torch."""
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower()
    if chosen:
        if chosen not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV}={chosen!r} is not a backend; allowed: "
                             f"{', '.join(BACKENDS)}")
        return chosen
    return _machine_backend()


def symmetric_eigh(matrix: torch.Tensor, backend: str | None = None, symmetrize: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues ascending, eigenvectors as columns) of the symmetric ``matrix``: the
    contract of ``torch.linalg.eigh``, which reads the lower triangle only; with
    ``symmetrize`` of (M + Mᵀ)/2 (round-off asymmetry removed, formed straight into LAPACK's
    work array on the scipy path, so no extra d × d copy). Same device and dtype as
    ``matrix``, never sharing its memory. ``backend`` (default ``default_backend()``) applies
    to a 2-D float32 or float64 CPU matrix of order ≥ ``SCIPY_MIN_ORDER``; anything else
    uses torch."""
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown eigensolver backend {backend!r}; allowed: "
                         f"{', '.join(BACKENDS)}")
    if backend == "torch" or matrix.device.type != "cpu" or matrix.ndim != 2 or \
            matrix.shape[0] < SCIPY_MIN_ORDER or matrix.dtype not in (torch.float64,
                                                                      torch.float32):
        if symmetrize:
            matrix = (matrix + matrix.mT) / 2
        values, vectors = torch.linalg.eigh(matrix)
        return values, vectors
    matrix = matrix.detach()
    # LAPACK's work array, Fortran-ordered, overwritten in place: never the caller's matrix
    work = np.empty(matrix.shape, dtype=matrix.numpy().dtype, order="F")
    view = torch.from_numpy(work)
    if symmetrize:
        torch.add(matrix, matrix.T, out=view).mul_(0.5)
    else:
        view.copy_(matrix)
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        values, vectors = scipy.linalg.eigh(work, lower=True, driver="evd", overwrite_a=True,
                                            check_finite=False)
    del work, view
    return torch.from_numpy(values), torch.from_numpy(np.ascontiguousarray(vectors))
