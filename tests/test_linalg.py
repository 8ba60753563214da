"""curvscope.linalg: both eigensolver backends meet torch.linalg.eigh's contract, in float64
and float32, and the machine rule and its override choose as documented."""

import pytest
import torch

from curvscope import linalg
from curvscope.linalg import SCIPY_MIN_ORDER, default_backend, symmetric_eigh


def _symmetric(n: int, dtype=torch.float64, seed: int = 0, indefinite: bool = True):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    M = A @ A.T / n
    if indefinite:  # H-like: negative, zero-ish and repeated eigenvalues
        Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
        values = torch.cat([-torch.rand(n // 3, generator=g), torch.zeros(n // 6),
                            torch.full((n // 6,), 0.5), torch.rand(n - n // 3 - 2 * (n // 6),
                                                                   generator=g) * 3])
        M = (Q * values) @ Q.T
    return M.to(dtype)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-4)])
@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_eigenpairs_reconstruct_the_matrix_and_agree_with_torch(backend, dtype, tol):
    n = SCIPY_MIN_ORDER + 44
    M = _symmetric(n, dtype)
    before = M.clone()
    values, vectors = symmetric_eigh(M, backend=backend)
    assert torch.equal(M, before)  # the caller's matrix is never overwritten
    assert values.dtype == dtype and vectors.dtype == dtype and vectors.shape == (n, n)
    assert bool((values[1:] >= values[:-1]).all())  # ascending, as torch.linalg.eigh
    reference = torch.linalg.eigvalsh(M.double())
    scale = float(reference.abs().max())
    assert float((values.double() - reference).abs().max()) <= tol * scale
    V = vectors.double()
    assert float(torch.linalg.norm(V.T @ V - torch.eye(n))) <= tol * n
    residual = torch.linalg.norm(M.double() @ V - V * values.double()) / torch.linalg.norm(M)
    assert float(residual) <= tol


def test_only_the_lower_triangle_is_read_like_torch():
    M = _symmetric(SCIPY_MIN_ORDER, seed=3)
    garbage = torch.tril(M) + torch.triu(torch.full_like(M, 7.0), 1)  # upper one scrambled
    values, _ = symmetric_eigh(garbage, backend="scipy")
    assert torch.allclose(values, torch.linalg.eigh(garbage).eigenvalues, rtol=0, atol=1e-12)
    assert torch.allclose(values, torch.linalg.eigvalsh(M), rtol=0, atol=1e-12)  # M's own


def test_small_gpu_or_batched_matrices_go_to_torch():
    small = _symmetric(16)
    values, vectors = symmetric_eigh(small, backend="scipy")
    ref = torch.linalg.eigh(small)
    assert torch.equal(values, ref.eigenvalues) and torch.equal(vectors, ref.eigenvectors)
    batch = torch.stack([_symmetric(SCIPY_MIN_ORDER, seed=s) for s in range(2)])
    values, _ = symmetric_eigh(batch, backend="scipy")
    assert torch.equal(values, torch.linalg.eigh(batch).eigenvalues)


def test_scipy_blas_runs_on_torchs_thread_count(monkeypatch):
    """The thread limit follows torch.get_num_threads() (a worker on one torch thread keeps
    scipy's BLAS on one too): one thread gives the same numbers on repeat."""
    M = _symmetric(SCIPY_MIN_ORDER + 1, seed=5)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = symmetric_eigh(M, backend="scipy")
        second = symmetric_eigh(M, backend="scipy")
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_the_machine_rule_and_its_override(monkeypatch):
    monkeypatch.delenv(linalg.BACKEND_ENV, raising=False)
    linalg._machine_backend.cache_clear()
    try:
        for vendor, mkl, expected in [("AuthenticAMD", True, "scipy"),
                                      ("GenuineIntel", True, "torch"),
                                      ("AuthenticAMD", False, "torch"), ("", True, "torch")]:
            monkeypatch.setattr(linalg, "cpu_vendor", lambda v=vendor: v)
            monkeypatch.setattr(torch.backends.mkl, "is_available", lambda m=mkl: m)
            linalg._machine_backend.cache_clear()
            assert default_backend() == expected, (vendor, mkl)
        monkeypatch.setenv(linalg.BACKEND_ENV, "Torch")
        assert default_backend() == "torch"
        monkeypatch.setenv(linalg.BACKEND_ENV, "lapack")
        with pytest.raises(ValueError, match="allowed: torch, scipy"):
            default_backend()
    finally:
        linalg._machine_backend.cache_clear()
    with pytest.raises(ValueError, match="allowed: torch, scipy"):
        symmetric_eigh(torch.eye(3), backend="numpy")


def test_cpu_vendor_reads_proc_cpuinfo():
    vendor = linalg.cpu_vendor()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert vendor == ""
    else:
        assert vendor and vendor in text


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_symmetrize_decomposes_the_symmetric_part(backend):
    M = _symmetric(SCIPY_MIN_ORDER + 3, seed=7)
    g = torch.Generator().manual_seed(8)
    skewed = M + 1e-9 * torch.randn(M.shape, generator=g, dtype=M.dtype)  # round-off-like
    before = skewed.clone()
    values, vectors = symmetric_eigh(skewed, backend=backend, symmetrize=True)
    assert torch.equal(skewed, before)
    reference = torch.linalg.eigh((skewed + skewed.T) / 2)
    assert torch.allclose(values, reference.eigenvalues, rtol=0, atol=1e-12)
    sym = (skewed + skewed.T) / 2
    assert float(torch.linalg.norm(sym @ vectors - vectors * values)
                 / torch.linalg.norm(sym)) <= 1e-12
