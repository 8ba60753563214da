"""Diagnostics of SCIENCE.md §5 as pure functions of matrices and eigen-decompositions.

All norms are Frobenius. Hong et al. (2025) use these to attribute the loss of attribution
quality to each approximation step.
"""

from __future__ import annotations

import math

import torch

from curvscope.linalg import symmetric_eigh
from curvscope.models.layout import Block


def relative_residual(target: torch.Tensor, approx: torch.Tensor) -> float:
    """‖T − A‖_F / ‖T‖_F."""
    return float(torch.linalg.norm(target - approx) / torch.linalg.norm(target))


def off_block_ratio(matrix: torch.Tensor, blocks: tuple[Block, ...] | list[Block]) -> dict:
    """‖M − blockdiag(M)‖_F / ‖M‖_F (cross-layer coupling) and its square (energy share)."""
    total = torch.linalg.norm(matrix) ** 2
    on_block = sum(torch.linalg.norm(matrix[b.slice, b.slice]) ** 2 for b in blocks)
    energy = float((total - on_block).clamp_min(0) / total)
    return {"ratio": math.sqrt(energy), "energy": energy}


def eigenvalue_overlap(eigenvalues: torch.Tensor, reference: torch.Tensor) -> float:
    """1 − ‖sort(λ_A) − sort(λ_ref)‖₂ / ‖λ_ref‖₂ (1 = identical spectra)."""
    a = torch.sort(eigenvalues).values
    r = torch.sort(reference).values
    return float(1.0 - torch.linalg.norm(a - r) / torch.linalg.norm(r))


def top_eigenvectors(eigenvalues: torch.Tensor, vectors: torch.Tensor, k: int) -> torch.Tensor:
    """The k columns with the largest (algebraic) eigenvalues."""
    order = torch.argsort(eigenvalues, descending=True)[:k]
    return vectors[:, order]


def eigenbasis_overlap(eig_a, vec_a, eig_ref, vec_ref, k: int) -> float:
    """‖V_kᵀ U_k‖_F² / k over the top-k eigenvectors of A (V) and of the reference (U):
    1 when the top-k subspaces coincide, k/d in expectation for random subspaces."""
    k = min(k, vec_a.shape[1])
    V = top_eigenvectors(eig_a, vec_a, k)
    U = top_eigenvectors(eig_ref, vec_ref, k)
    return float(torch.linalg.norm(V.T @ U) ** 2 / k)


def eigenbasis_overlap_curve(eig_a, vec_a, eig_ref, vec_ref, ks: list[int]) -> dict[int, float]:
    """``eigenbasis_overlap`` for several k at once from one product of the top-max(k)
    eigenvectors: overlap(k) = ‖(V_Kᵀ U_K)[:k, :k]‖_F² / k."""
    ks = sorted({min(k, vec_a.shape[1]) for k in ks})
    K = ks[-1]
    cross = top_eigenvectors(eig_a, vec_a, K).T @ top_eigenvectors(eig_ref, vec_ref, K)
    return {k: float(torch.linalg.norm(cross[:k, :k]) ** 2 / k) for k in ks}


def condition_number(eigenvalues: torch.Tensor) -> float:
    """max|λ| / min|λ| — with absolute values, so an indefinite matrix is not divided by its
    most negative eigenvalue (a pitfall of earlier code). ``inf`` when singular."""
    magnitude = eigenvalues.abs()
    smallest = float(magnitude.min())
    return math.inf if smallest == 0.0 else float(magnitude.max()) / smallest


def spectrum_summary(eigenvalues: torch.Tensor) -> dict:
    """Extremes and negative curvature: negative mass = Σ|λ<0| / Σ|λ|."""
    negative = eigenvalues[eigenvalues < 0]
    total = float(eigenvalues.abs().sum())
    return {
        "min": float(eigenvalues.min()),
        "max": float(eigenvalues.max()),
        "trace": float(eigenvalues.sum()),
        "n_negative": int(negative.numel()),
        "negative_mass": float(negative.abs().sum()) / total if total > 0 else 0.0,
    }


#: A block's K-FAC error counts as round-off (exactly zero in exact arithmetic) when
#: ‖G_ll − K_l‖_F ≤ ROUNDOFF_FACTOR · ε · ‖G_ll‖_F, ε the dtype's machine epsilon.
ROUNDOFF_FACTOR = 1000.0


def kfac_error_split(G_block: torch.Tensor, E_block: torch.Tensor, K_block: torch.Tensor) -> dict:
    """Split ‖G_ll − K_l‖² into the eigenbasis part ‖G_ll − E_l‖² and the eigenvalue part
    ‖E_l − K_l‖² (orthogonal because E and K share the basis Q_l, SCIENCE.md §2).

    A block whose K-FAC error is round-off (``ROUNDOFF_FACTOR``), e.g. a bias block, where
    K-FAC's factor A = 1 makes K_l = G_ll exactly, has no error to split: its shares and
    Pythagoras gap are 0, not ratios of round-off (which differ from one BLAS to another:
    one host gave 146 %, another 156 % for the same block), while the squared errors
    themselves are still reported as computed."""
    total = float(torch.linalg.norm(G_block - K_block) ** 2)
    eigenbasis = float(torch.linalg.norm(G_block - E_block) ** 2)
    eigenvalue = float(torch.linalg.norm(E_block - K_block) ** 2)
    floor = (ROUNDOFF_FACTOR * torch.finfo(G_block.dtype).eps
             * float(torch.linalg.norm(G_block))) ** 2
    resolved = total > floor
    return {
        "kfac_error_sq": total,
        "eigenbasis_error_sq": eigenbasis,
        "eigenvalue_error_sq": eigenvalue,
        "eigenbasis_share": eigenbasis / total if resolved else 0.0,
        "eigenvalue_share": eigenvalue / total if resolved else 0.0,
        "pythagoras_gap": abs(total - eigenbasis - eigenvalue) / total if resolved else 0.0,
    }


def spectral_distance_sq(a: torch.Tensor, b: torch.Tensor, cross_sq: torch.Tensor) -> float:
    """‖V diag(a) Vᵀ − Q diag(b) Qᵀ‖²_F for orthonormal V, Q, from ``cross_sq`` = (VᵀQ)∘(VᵀQ):
    the Frobenius norm is invariant under M ↦ Vᵀ M Q, which turns the difference into
    diag(a) C − C diag(b) with C = VᵀQ, so the squared norm is Σ_ij C_ij² (a_i − b_j)².
    No d_b × d_b matrix is recomposed, and nothing cancels: each (a_i − b_j)² is formed
    directly, so a zero difference (a bias block where K-FAC and EK-FAC coincide) stays at
    round-off squared."""
    return float((cross_sq * (a[:, None] - b[None, :]).square()).sum())


def swap_tests_from_eigen(g_values: torch.Tensor, kfac_values: torch.Tensor,
                          cross_sq: torch.Tensor, G_norm: float) -> dict:
    """``swap_tests`` without forming the swapped matrices: with G_bb = U diag(g) Uᵀ (its
    eigenpairs) and C = UᵀQ (Q K-FAC's eigenbasis), pairing eigenpairs by rank,
    ‖G − U diag(k↓) Uᵀ‖ = ‖g↓ − k↓‖ and ‖G − Q diag(g↓) Qᵀ‖² = Σ_ij C_ij² (g_i − g↓_{rank(j)})²
    (``spectral_distance_sq``), each divided by ‖G_bb‖_F. Equal to ``swap_tests`` up to the
    round-off of G_bb's eigendecomposition (‖G_bb − U diag(g) Uᵀ‖ ≈ 1e-15 ‖G_bb‖)."""
    g_order = torch.argsort(g_values, descending=True)
    k_order = torch.argsort(kfac_values, descending=True)
    g_sorted, k_sorted = g_values[g_order], kfac_values[k_order]
    swapped = torch.empty_like(g_sorted)
    swapped[k_order] = g_sorted  # Q's column k_order[r] carries G's r-th largest eigenvalue
    return {
        "ggn_basis_kfac_values": float(torch.linalg.norm(g_sorted - k_sorted)) / G_norm,
        "kfac_basis_ggn_values": math.sqrt(spectral_distance_sq(g_values, swapped, cross_sq))
        / G_norm,
    }


def swap_tests(G_block: torch.Tensor, kfac_eigenvalues: torch.Tensor,
               kfac_vectors: torch.Tensor, ggn_eigen=None) -> dict:
    """Basis-vs-spectrum swaps, eigenpairs paired by rank (largest with largest):
    G's eigenvectors with K-FAC's eigenvalues, and K-FAC's eigenvectors with G's eigenvalues;
    each reported as ‖G − swap‖_F / ‖G‖_F. ``ggn_eigen`` reuses G's eigenpairs if known."""
    g_vals, g_vecs = ggn_eigen if ggn_eigen is not None else symmetric_eigh(G_block)
    g_order = torch.argsort(g_vals, descending=True)
    k_order = torch.argsort(kfac_eigenvalues, descending=True)
    U, g_sorted = g_vecs[:, g_order], g_vals[g_order]
    Q, k_sorted = kfac_vectors[:, k_order], kfac_eigenvalues[k_order]
    ggn_basis = (U * k_sorted) @ U.T
    kfac_basis = (Q * g_sorted) @ Q.T
    return {
        "ggn_basis_kfac_values": relative_residual(G_block, ggn_basis),
        "kfac_basis_ggn_values": relative_residual(G_block, kfac_basis),
    }
