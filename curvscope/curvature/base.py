"""The one shared representation of every curvature method: a block-diagonal eigendecomposition.

Contract: a ``CurvatureOperator`` is M = blockdiag(V_b diag(λ_b) V_bᵀ) over blocks b covering θ,
where each block may be dense (V_b stored), Kronecker-factored (V_b = U_S ⊗ U_A, never formed)
or diagonal (V_b = I). Whole-matrix methods (H, GGN) are one dense block. Every method is
inverted through the same rule applied to its eigenvalues (SCIENCE.md §3), which is what makes
the comparison between methods clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from curvscope.linalg import symmetric_eigh
from curvscope.models.layout import Block


class EigenBlock:
    """V diag(λ) Vᵀ on θ[start:stop]; subclasses implement the change of basis."""

    start: int
    stop: int
    eigenvalues: torch.Tensor  # in the order of ``rotate``'s coordinates

    @property
    def size(self) -> int:
        return self.stop - self.start

    def rotate(self, X: torch.Tensor) -> torch.Tensor:
        """Coordinates X V (m × d_b) of the rows of X in the eigenbasis."""
        raise NotImplementedError

    def unrotate(self, C: torch.Tensor) -> torch.Tensor:
        """Back to θ coordinates: C Vᵀ."""
        raise NotImplementedError

    def eigenvectors(self) -> torch.Tensor:
        """Dense V (d_b × d_b), columns in ``eigenvalues`` order."""
        eye = torch.eye(self.size, dtype=self.eigenvalues.dtype, device=self.eigenvalues.device)
        return self.unrotate(eye).T

    def to_dense(self) -> torch.Tensor:
        V = self.eigenvectors()
        return (V * self.eigenvalues) @ V.T


@dataclass
class DenseEigenBlock(EigenBlock):
    """V diag(λ) Vᵀ with V stored; optionally also the matrix M it was decomposed from.

    Keeping M (``keep_matrix``) makes ``to_dense`` return M itself instead of recomposing
    V diag(λ) Vᵀ (2·d³ flops: 28–68 s for the paper's 6,570² H on one thread), so a stage that
    reuses a cached H adopts exactly the matrix a fresh run computes. It costs the cache entry
    d²·8 more bytes and no memory in the run (M is the context's own tensor). Blocks pickled
    before the field existed read it as None and recompose."""

    start: int
    stop: int
    eigenvalues: torch.Tensor
    vectors: torch.Tensor
    matrix: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor, start: int = 0,
                    keep_matrix: bool = False) -> DenseEigenBlock:
        """Eigendecompose a symmetric matrix (symmetrised first to remove round-off)."""
        eigenvalues, vectors = symmetric_eigh(matrix, symmetrize=True)
        return cls(start, start + matrix.shape[0], eigenvalues, vectors,
                   matrix if keep_matrix else None)

    def to_dense(self) -> torch.Tensor:
        if self.matrix is not None:
            return self.matrix
        return super().to_dense()

    def rotate(self, X):
        return X @ self.vectors

    def unrotate(self, C):
        return C @ self.vectors.T

    def eigenvectors(self):
        return self.vectors


@dataclass
class SpectrumEigenBlock(EigenBlock):
    """A dense symmetric block kept as its matrix M and its eigenvalues alone (eigvalsh).

    For a matrix whose spectrum is shown but whose inverse needs no eigenvectors — the PSD GGN,
    where (M + λI)⁻¹ is a Cholesky solve whenever the inverse rule inverts every e + λ — this
    skips the eigenvector half of an eigendecomposition (issue 14). The eigenvectors are still
    computed, once and on demand, by anything that asks for them (``rotate``, ``unrotate``,
    ``eigenvectors``), so every consumer of an ``EigenBlock`` keeps working; ``to_dense`` is M.
    """

    start: int
    stop: int
    eigenvalues: torch.Tensor
    matrix: torch.Tensor
    vectors: torch.Tensor | None = None

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor, start: int = 0) -> SpectrumEigenBlock:
        """Symmetrise, then eigenvalues only (ascending, as ``torch.linalg.eigh``)."""
        matrix = (matrix + matrix.T) / 2
        return cls(start, start + matrix.shape[0], torch.linalg.eigvalsh(matrix), matrix)

    def eigenvectors(self) -> torch.Tensor:
        if self.vectors is None:  # eigenvalues stay eigvalsh's (equal to eigh's to round-off)
            self.vectors = symmetric_eigh(self.matrix)[1]
        return self.vectors

    def rotate(self, X):
        return X @ self.eigenvectors()

    def unrotate(self, C):
        return C @ self.eigenvectors().T

    def to_dense(self):
        return self.matrix

    def cholesky_solve(self, B: torch.Tensor, shift: float) -> torch.Tensor | None:
        """(M + shift·I)⁻¹ B by a Cholesky factorisation, or None if M + shift·I is not
        numerically positive definite (the factorisation fails)."""
        shifted = self.matrix.clone()
        shifted.diagonal().add_(shift)
        factor, info = torch.linalg.cholesky_ex(shifted)
        if int(info) != 0:
            return None
        return torch.cholesky_solve(B, factor)


@dataclass
class DiagonalEigenBlock(EigenBlock):
    start: int
    stop: int
    eigenvalues: torch.Tensor

    def rotate(self, X):
        return X

    def unrotate(self, C):
        return C

    def to_dense(self):
        return torch.diag(self.eigenvalues)


@dataclass
class KroneckerEigenBlock(EigenBlock):
    """Q diag(λ) Qᵀ with Q = U_S ⊗ U_A acting on the layer's (out × in_aug) gradient matrix.

    The block's θ layout is (vec(W), b) when the bias is folded in; ``rotate`` maps it to the
    augmented matrix [W | b] (out × in+1), applies U_Sᵀ · U_A, and flattens row-major, so
    ``eigenvalues`` is the flattened (out × in_aug) matrix of λ_{o,i} (σ_o α_i for K-FAC,
    λ*_{o,i} for EK-FAC). Nothing d_b × d_b is ever formed.

    K-FAC also keeps the factor spectra ``sigma`` (of S, length out) and ``alpha`` (of A,
    length in_aug; [1] for a bias-only block), with ``eigenvalues = vec(σ αᵀ)``: the factored
    (heuristic π) damping of ``attribution.inverse.damped_spectrum`` needs them. They are
    None for EK-FAC, whose eigenvalues are not a Kronecker product.
    """

    block: Block
    U_S: torch.Tensor
    U_A: torch.Tensor
    eigenvalues: torch.Tensor
    sigma: torch.Tensor | None = None
    alpha: torch.Tensor | None = None

    @property
    def start(self):
        return self.block.start

    @property
    def stop(self):
        return self.block.stop

    def _to_matrix(self, X):
        out = self.block.out_features
        if self.block.has_weight and self.block.has_bias:
            W = X[:, : out * self.block.in_features].reshape(-1, out, self.block.in_features)
            return torch.cat([W, X[:, out * self.block.in_features :].unsqueeze(-1)], dim=-1)
        return X.reshape(X.shape[0], out, -1)

    def _from_matrix(self, Y):
        if self.block.has_weight and self.block.has_bias:
            return torch.cat([Y[..., :-1].reshape(Y.shape[0], -1), Y[..., -1]], dim=-1)
        return Y.reshape(Y.shape[0], -1)

    def rotate(self, X):
        Y = self.U_S.T @ self._to_matrix(X) @ self.U_A
        return Y.reshape(X.shape[0], -1)

    def unrotate(self, C):
        Y = C.reshape(C.shape[0], self.U_S.shape[0], self.U_A.shape[0])
        return self._from_matrix(self.U_S @ Y @ self.U_A.T)


@dataclass
class CurvatureOperator:
    """M = blockdiag of eigen-blocks over θ (d parameters), plus what produced it."""

    name: str
    n_params: int
    blocks: list[EigenBlock]
    info: dict = field(default_factory=dict)

    def eigenvalues(self) -> torch.Tensor:
        return torch.cat([b.eigenvalues for b in self.blocks])

    def apply_spectral(self, X: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """X ↦ X V diag(w) Vᵀ for rows of X (m × d), w aligned with ``eigenvalues()``."""
        out = torch.empty_like(X)
        offset = 0
        for b in self.blocks:
            w = weights[offset : offset + b.size]
            out[:, b.start : b.stop] = b.unrotate(b.rotate(X[:, b.start : b.stop]) * w)
            offset += b.size
        return out

    def matmat(self, X: torch.Tensor) -> torch.Tensor:
        """M X for X (d × m)."""
        return self.apply_spectral(X.T, self.eigenvalues()).T

    def rotate(self, X: torch.Tensor) -> torch.Tensor:
        """Coordinates of the rows of X in the operator's eigenbasis (block by block)."""
        return torch.cat([b.rotate(X[:, b.start : b.stop]) for b in self.blocks], dim=1)

    def to_dense(self) -> torch.Tensor:
        d = self.n_params
        ref = self.blocks[0].eigenvalues
        M = torch.zeros(d, d, dtype=ref.dtype, device=ref.device)
        for b in self.blocks:
            M[b.start : b.stop, b.start : b.stop] = b.to_dense()
        return M

    def block_eigen(self, block: Block) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(eigenvalues, eigenvectors) of this operator restricted to a layout block, if the
        operator's own blocks align with it (None for a whole-matrix operator)."""
        for b in self.blocks:
            if b.start == block.start and b.stop == block.stop:
                return b.eigenvalues, b.eigenvectors()
        return None
