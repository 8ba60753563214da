"""All diagnostics of a study from its curvature operators (SCIENCE.md §5).

Whole-matrix quantities (residuals to H and G, off-block ratio, cross-layer share) need the
dense H or G and are reported only when the study built them; per-block quantities use the GGN
blocks G_bb, which never require the d × d matrix.
"""

from __future__ import annotations

import math

import torch

from curvscope.attribution.inverse import InverseRule
from curvscope.curvature.base import CurvatureOperator, DiagonalEigenBlock, KroneckerEigenBlock
from curvscope.curvature.context import CurvatureContext
from curvscope.diagnostics.metrics import (
    condition_number,
    eigenbasis_overlap,
    eigenvalue_overlap,
    kfac_error_split,
    off_block_ratio,
    relative_residual,
    spectrum_summary,
    swap_tests_from_eigen,
    top_eigenvectors,
)
from curvscope.diagnostics.shares import (
    basis_cross_sq,
    kfac_tensor_spectrum,
    mismatch_shares,
    official_overlap_from_spectra,
    sorted_spectrum,
    tensors_in_block,
)
from curvscope.linalg import symmetric_eigh
from curvscope.models.layout import Block
from curvscope.registry import CHAIN
from curvscope.results import block_eigenvalues_name, eigenvalues_name, heatmap_name

OVERLAP_KS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]  # k values kept for the dashboard


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def block_spectrum(op: CurvatureOperator, block: Block, dense: torch.Tensor | None):
    """(eigenvalues, eigenvectors) of the operator's diagonal block for ``block``."""
    aligned = op.block_eigen(block)
    if aligned is not None:
        return aligned
    whole = op.blocks[0]
    if isinstance(whole, DiagonalEigenBlock):
        values = whole.eigenvalues[block.slice]
        return values, torch.eye(block.size, dtype=values.dtype, device=values.device)
    matrix = dense[block.slice, block.slice] if dense is not None else op.to_dense()[
        block.slice, block.slice]
    return symmetric_eigh(matrix, symmetrize=True)


def diagnose(ctx: CurvatureContext, operators: dict[str, CurvatureOperator], k: int,
             damping: float, rule: InverseRule | None = None,
             scores: dict[str, torch.Tensor] | None = None
             ) -> tuple[dict, dict[str, torch.Tensor]]:
    """(results fragment, arrays) with per-method metrics, off-block ratios, decomposition.

    With EK-FAC and K-FAC the decomposition carries the eigenvalue-mismatch share under every
    definition (``diagnostics.shares``; ``rule`` is the study's inverse rule, default exact
    damping λ) and the official code's per-tensor eigenvalue overlap.

    Layout block by layout block (issue 14), every method's diagonal block is formed at most
    once and every product with a Kronecker basis goes through its change of basis: no
    structured method is materialised as a d × d matrix. For a method M that is block-diagonal
    on the layout (every structured method and baseline), the residual to a dense T (H or G)
    and the chain step between two methods split exactly into off-block and on-block parts,
    ‖T − M‖² = ‖T − blockdiag(T)‖² + Σ_b ‖T_bb − M_b‖², and the squared norms of the
    swap tests and of the mismatch shares are taken in the two eigenbases
    (``metrics.spectral_distance_sq``). A method that is not block-diagonal on the layout falls
    back to its dense matrix.
    """
    H = ctx.hessian() if "H" in operators else None
    G = ctx.ggn() if "GGN" in operators else None
    whole = {n: M for n, M in (("H", H), ("GGN", G)) if M is not None}
    blocks = ctx.layout.blocks
    reference = _ggn_block_eigen(ctx, operators)
    in_chain = [n for n in CHAIN if n in operators]
    order = in_chain + [n for n in operators if n not in in_chain]
    compared = bool(whole)  # residuals and chain steps need a dense H or G
    tiles = _tiles(blocks, ctx.n_params)
    blocky = {n: tiles and n not in whole and _block_diagonal(operators[n], blocks)
              for n in order}
    fallback = {n: operators[n].to_dense() for n in order
                if compared and n not in whole and not blocky[n]}
    decompose = "EK-FAC" in operators and "K-FAC" in operators
    H_minus_G = H - G if H is not None and G is not None else None
    off_sq = {n: _off_block_sq(M, blocks) for n, M in whole.items()} if tiles else {}

    # squared distances, accumulated block by block: (method, H/GGN) and chain steps
    residual_sq = {(n, t): off_sq[t] for n in order if blocky[n] for t in whole}
    chain = [(a, b) for a, b in zip(in_chain[:-1], in_chain[1:], strict=True)] if compared \
        else []
    step_sq = {pair: _initial_step_sq(pair, whole, blocky, off_sq, H_minus_G) for pair in chain}

    per_method_block: dict[str, dict[str, dict]] = {n: {} for n in order}
    sorted_block_values: dict[tuple[str, str], torch.Tensor] = {}
    per_block_split, cross_cache, spectra = {}, {}, {"GGN": {}, "EK-FAC": {}, "K-FAC": {}}
    for block in blocks:
        vectors_cache: list = []
        ref_values, ref_vectors = reference[block.name]
        ref_top = _TopVectors(ref_values, ref_vectors)
        dense_b: dict[str, torch.Tensor] = {}
        for name in order:
            op = operators[name]
            if name == "GGN":
                values, vectors = ref_values, ref_vectors
            else:
                values, vectors = _block_spectrum(op, block, whole.get(name), vectors_cache)
            curve = eigenbasis_overlap_curve_top(values, vectors, ref_top, OVERLAP_KS,
                                                 basis=_basis_of(op, block))
            per_method_block[name][block.name] = {
                "eigenvalue_overlap": eigenvalue_overlap(values, ref_values),
                "eigenbasis_overlap": eigenbasis_overlap(values, vectors, ref_values,
                                                         ref_vectors, k),
                "curve": {str(j): v for j, v in curve.items()}}
            sorted_block_values[name, block.name] = torch.sort(values).values
            if blocky[name] and (compared or (decompose and name in ("EK-FAC", "K-FAC"))):
                # GGN-blockdiag's block IS G_bb (blockdiag.build decomposes it): take the
                # matrix rather than recompose V diag(g) Vᵀ (2·d_b³ flops, and round-off)
                dense_b[name] = ctx.ggn_block(block) if name == "GGN-blockdiag" else \
                    _dense_block(op, block, vectors_cache)
        for name in order:
            if not blocky[name]:
                continue
            for t, T in whole.items():
                residual_sq[name, t] += _sq(T[block.slice, block.slice] - dense_b[name])
        for pair in chain:
            if step_sq[pair] is not None and any(blocky[n] for n in pair):
                x, y = (whole[n][block.slice, block.slice] if n in whole else dense_b[n]
                        for n in pair)
                step_sq[pair] += _sq(x - y)
        if decompose:
            per_block_split[block.name], cross_cache[block.name] = _block_decomposition(
                ctx, block, operators, reference[block.name], dense_b, vectors_cache, spectra)
        del dense_b, vectors_cache

    methods: dict[str, dict] = {}
    arrays: dict[str, torch.Tensor] = {}
    for name in order:
        op = operators[name]
        eigenvalues = op.eigenvalues()
        entry = {
            "relative_residual_to_H": _residual(name, "H", whole, blocky, residual_sq,
                                                fallback, H_minus_G),
            "relative_residual_to_GGN": _residual(name, "GGN", whole, blocky, residual_sq,
                                                  fallback, H_minus_G),
            "condition_number": {
                "matrix": finite_or_none(condition_number(eigenvalues)),
                "damped": finite_or_none(condition_number(eigenvalues + damping)),
                "singular": bool((eigenvalues == 0).any()),
            },
            "spectrum": spectrum_summary(eigenvalues),
            "eigenvalue_overlap": {},
            "eigenbasis_overlap": {},
            "eigenbasis_overlap_by_k": {},
        }
        for block in blocks:
            got = per_method_block[name][block.name]
            entry["eigenvalue_overlap"][block.name] = got["eigenvalue_overlap"]
            entry["eigenbasis_overlap"][block.name] = got["eigenbasis_overlap"]
            entry["eigenbasis_overlap_by_k"][block.name] = got["curve"]
            arrays[block_eigenvalues_name(name, block.name)] = sorted_block_values[name,
                                                                                   block.name]
        arrays[eigenvalues_name(name)] = torch.sort(eigenvalues).values
        methods[name] = entry
    chain_steps = [_chain_step(pair, step_sq[pair], fallback, whole, H, G, H_minus_G)
                   for pair in chain]

    off_block = {n: off_block_ratio(M, blocks) for n, M in whole.items()}
    rule = rule if rule is not None else InverseRule(damping=damping)
    decomposition = None
    if decompose:
        decomposition = _decomposition(ctx, operators, reference, G, rule, scores,
                                       per_block_split, cross_cache, spectra)
        decomposition["chain_steps"] = chain_steps
    for n, M in whole.items():
        arrays[heatmap_name(n)] = log_abs_heatmap(M)
    if H_minus_G is not None:
        arrays[heatmap_name("H-GGN")] = log_abs_heatmap(H_minus_G)
    return {"methods": methods, "off_block": off_block, "decomposition": decomposition}, arrays


def _sq(matrix: torch.Tensor) -> float:
    return float(torch.linalg.norm(matrix) ** 2)


def _tiles(blocks, n_params: int) -> bool:
    """Whether the layout blocks are contiguous and cover θ in order (the split of a norm
    into off-block and on-block parts needs it)."""
    position = 0
    for b in blocks:
        if b.start != position:
            return False
        position = b.stop
    return position == n_params


def _block_diagonal(op: CurvatureOperator, blocks) -> bool:
    """Whether ``op`` is zero outside the layout's diagonal blocks and known on each: its own
    blocks are the layout's, or it is one diagonal block."""
    if len(op.blocks) == 1 and isinstance(op.blocks[0], DiagonalEigenBlock):
        return True
    spans = [(b.start, b.stop) for b in op.blocks]
    return spans == [(b.start, b.stop) for b in blocks]


def _off_block_sq(matrix: torch.Tensor, blocks) -> float:
    """‖M − blockdiag(M)‖²_F, summed over the off-block entries themselves (no cancellation
    against the on-block energy)."""
    total = 0.0
    for b in blocks:
        total += _sq(matrix[b.slice, : b.start]) + _sq(matrix[b.slice, b.stop:])
    return total


def _initial_step_sq(pair, whole, blocky, off_sq, H_minus_G) -> float | None:
    """The part of a chain step's squared norm known before the block loop: ‖H − G‖² for two
    dense matrices, the dense one's off-block part for a dense and a block-diagonal one, 0 for
    two block-diagonal ones; None when a side needs its dense matrix (done afterwards)."""
    a, b = pair
    if a in whole and b in whole:
        return None  # ‖H − G‖ itself (``_chain_step``)
    if (a in whole or blocky[a]) and (b in whole or blocky[b]):
        return off_sq[a] if a in whole else off_sq[b] if b in whole else 0.0
    return None


def _residual(name, target, whole, blocky, residual_sq, fallback, H_minus_G) -> float | None:
    """‖T − M‖_F / ‖T‖_F for T = whole[target] (None without T)."""
    T = whole.get(target)
    if T is None:
        return None
    if name == target:
        return 0.0
    if name in whole:  # the other dense matrix: H − G
        return float(torch.linalg.norm(H_minus_G) / torch.linalg.norm(T))
    if blocky[name]:
        return math.sqrt(residual_sq[name, target]) / float(torch.linalg.norm(T))
    return relative_residual(T, fallback[name])


def _chain_step(pair, squared, fallback, whole, H, G, H_minus_G) -> dict:
    a, b = pair
    if a in whole and b in whole:
        diff = float(torch.linalg.norm(H_minus_G))
    elif squared is None:
        x, y = (whole[n] if n in whole else fallback[n] for n in pair)
        diff = float(torch.linalg.norm(x - y))
    else:
        diff = math.sqrt(squared)
    return {
        "from": a, "to": b, "frobenius": diff,
        "relative_to_H": diff / float(torch.linalg.norm(H)) if H is not None else None,
        "relative_to_GGN": diff / float(torch.linalg.norm(G)) if G is not None else None,
    }


def _kronecker_vectors(b: KroneckerEigenBlock, cache: list) -> torch.Tensor:
    """Q = U_S ⊗ U_A (as ``b.eigenvectors()``), computed once per basis: EK-FAC and K-FAC
    share theirs when their factors are equal (the same Fisher type)."""
    for U_S, U_A, Q in cache:
        if U_S.shape == b.U_S.shape and U_A.shape == b.U_A.shape and \
                torch.equal(U_S, b.U_S) and torch.equal(U_A, b.U_A):
            return Q
    Q = b.eigenvectors()
    cache.append((b.U_S, b.U_A, Q))
    return Q


def _own_block(op: CurvatureOperator, block: Block):
    for b in op.blocks:
        if b.start == block.start and b.stop == block.stop:
            return b
    return None


def _block_spectrum(op: CurvatureOperator, block: Block, dense: torch.Tensor | None,
                    vectors_cache: list):
    """``block_spectrum`` with a Kronecker basis formed once per block (``_kronecker_vectors``)."""
    own = _own_block(op, block)
    if isinstance(own, KroneckerEigenBlock):
        return own.eigenvalues, _kronecker_vectors(own, vectors_cache)
    return block_spectrum(op, block, dense)


def _dense_block(op: CurvatureOperator, block: Block, vectors_cache: list) -> torch.Tensor:
    """The diagonal block M_bb of a block-diagonal ``op``: a Kronecker block as
    unrotate(Q diag(λ)) = Q diag(λ) Qᵀ through its change of basis (2·d_b²·(out + in + 1)
    flops, not 2·d_b³), a diagonal one as diag(λ_b), any other as its own ``to_dense``."""
    own = _own_block(op, block)
    if isinstance(own, KroneckerEigenBlock):
        return own.unrotate(_kronecker_vectors(own, vectors_cache) * own.eigenvalues)
    if own is not None:
        return own.to_dense()
    whole = op.blocks[0]  # one diagonal block (``_block_diagonal``)
    return torch.diag(whole.eigenvalues[block.slice])


class _TopVectors:
    """The reference's eigenvectors ordered by descending eigenvalue, taken once per block."""

    def __init__(self, values: torch.Tensor, vectors: torch.Tensor):
        self.values, self.vectors = values, vectors
        self._top: dict[int, torch.Tensor] = {}

    def top(self, k: int) -> torch.Tensor:
        if k not in self._top:
            self._top[k] = top_eigenvectors(self.values, self.vectors, k)
        return self._top[k]


def _basis_of(op: CurvatureOperator, block: Block):
    """What the overlap curve can use instead of the dense eigenvectors: the Kronecker block
    itself (its change of basis), "identity" for a diagonal operator, else None."""
    own = _own_block(op, block)
    if isinstance(own, KroneckerEigenBlock):
        return own
    if own is None and isinstance(op.blocks[0], DiagonalEigenBlock):
        return "identity"
    return None


def eigenbasis_overlap_curve_top(eig_a, vec_a, reference: _TopVectors, ks: list[int],
                                 basis=None) -> dict[int, float]:
    """``eigenbasis_overlap_curve`` with the reference's top eigenvectors gathered once, and
    the cross products C = V_Kᵀ U_K taken the cheap way where V has structure: for a
    Kronecker basis as the K columns of (U_Kᵀ V) = rotate(U_Kᵀ) that belong to V's top K
    (2·K·d_b·(out + in + 1) flops instead of 2·d_b·K²), for V = I as K rows of U_K (exact);
    1 for every k when V is the reference's own eigenvectors (the GGN against its blocks)."""
    ks = sorted({min(k, vec_a.shape[1]) for k in ks})
    if vec_a is reference.vectors:  # the reference itself: ‖U_kᵀU_k‖² = k (orthonormal U)
        return {k: 1.0 for k in ks}
    K = ks[-1]
    U = reference.top(K)
    if basis is None:
        cross = top_eigenvectors(eig_a, vec_a, K).T @ U
    else:
        order = torch.argsort(eig_a, descending=True)[:K]
        cross = U[order] if basis == "identity" else basis.rotate(U.T)[:, order].T
    return {k: float(torch.linalg.norm(cross[:k, :k]) ** 2 / k) for k in ks}


def _ggn_block_eigen(ctx, operators) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Eigenpairs of every GGN block G_bb, the reference of the per-block overlaps (taken
    from the block-diagonal method when it was built)."""
    reference = {}
    blockdiag = operators.get("GGN-blockdiag")
    for block in ctx.layout.blocks:
        aligned = blockdiag.block_eigen(block) if blockdiag is not None else None
        reference[block.name] = aligned or symmetric_eigh(ctx.ggn_block(block))
    return reference


def _block_decomposition(ctx, block, operators, ggn_eigen, dense_b, vectors_cache, spectra):
    """One block's part of the decomposition: the K-FAC error split on the dense blocks, the
    swap tests and ‖G_bb‖² (with (UᵀQ)∘(UᵀQ) for G_bb's eigenvectors U and K-FAC's basis Q,
    returned for the mismatch shares when EK-FAC has the same basis), and each tensor's
    ascending spectrum for the official eigenvalue overlap (K-FAC's in closed form)."""
    E_op, K_op = operators["EK-FAC"], operators["K-FAC"]
    E_b, K_b = _own_block(E_op, block), _own_block(K_op, block)
    G_bb = ctx.ggn_block(block)
    E_dense = dense_b.get("EK-FAC")
    if E_dense is None:
        E_dense = _dense_block(E_op, block, vectors_cache)
    K_dense = dense_b.get("K-FAC")
    if K_dense is None:
        K_dense = _dense_block(K_op, block, vectors_cache)
    split = kfac_error_split(G_bb, E_dense, K_dense)
    g_vals, g_vecs = ggn_eigen
    P_K = basis_cross_sq(g_vecs, K_b)
    G_norm = float(torch.linalg.norm(G_bb))
    split["swap_tests"] = swap_tests_from_eigen(g_vals, K_b.eigenvalues, P_K, G_norm)
    split["ggn_block_sq"] = G_norm**2
    same_basis = isinstance(E_b, KroneckerEigenBlock) and isinstance(K_b, KroneckerEigenBlock) \
        and _kronecker_vectors(E_b, vectors_cache) is _kronecker_vectors(K_b, vectors_cache)
    dense = {"GGN": G_bb, "EK-FAC": E_dense, "K-FAC": K_dense}
    for tensor, lo, hi in tensors_in_block(ctx.layout, block):
        for name, M in dense.items():
            known = None
            if name == "K-FAC" and isinstance(K_b, KroneckerEigenBlock):
                known = kfac_tensor_spectrum(K_b, lo, hi)
            spectra[name][tensor] = known if known is not None else sorted_spectrum(
                M[lo:hi, lo:hi])
    return split, (P_K if same_basis else None)


def _decomposition(ctx, operators, reference, G, rule, scores, per_block, cross_sq,
                   spectra) -> dict:
    """The exact split of ‖G − K‖² into cross-layer, eigenbasis and eigenvalue parts:
    ‖G−K‖² = ‖G−G_bd‖² + Σ_l (‖G_ll−E_l‖² + ‖E_l−K_l‖²), plus the swap tests per block, the
    eigenvalue-mismatch share under every definition and the official eigenvalue overlap,
    from the per-block parts of ``_block_decomposition``."""
    eigenbasis = sum(b["eigenbasis_error_sq"] for b in per_block.values())
    eigenvalue = sum(b["eigenvalue_error_sq"] for b in per_block.values())
    within = eigenbasis + eigenvalue
    result = {
        "fisher_type": ctx.settings.fisher_type,
        "per_block": per_block,
        "kfac_error": {
            "eigenbasis_error_sq": eigenbasis,
            "eigenvalue_error_sq": eigenvalue,
            "eigenbasis_share": eigenbasis / within if within else 0.0,
            "eigenvalue_share": eigenvalue / within if within else 0.0,
        },
    }
    if G is not None:
        on_block = sum(b["ggn_block_sq"] for b in per_block.values())
        cross = max(float(torch.linalg.norm(G) ** 2) - on_block, 0.0)
        total = cross + within
        result["ggn_to_kfac"] = {
            "total_sq": total,
            "cross_layer_share": cross / total if total else 0.0,
            "eigenbasis_share": eigenbasis / total if total else 0.0,
            "eigenvalue_share": eigenvalue / total if total else 0.0,
        }
    result["eigenvalue_mismatch_share"] = mismatch_shares(
        ctx.layout.blocks, reference, operators["EK-FAC"], operators["K-FAC"], rule, scores,
        cross_sq={n: P for n, P in cross_sq.items() if P is not None})
    result["official_eigenvalue_overlap"] = official_overlap_from_spectra(ctx.layout, spectra)
    return result


def log_abs_heatmap(matrix: torch.Tensor, max_bins: int = 128) -> torch.Tensor:
    """log10 of the mean |entry| over square tiles, at most max_bins × max_bins (for display)."""
    d = matrix.shape[0]
    tile = max(1, math.ceil(d / max_bins))
    pooled = torch.nn.functional.avg_pool2d(matrix.abs()[None, None], tile, ceil_mode=True)[0, 0]
    return torch.log10(pooled.clamp_min(torch.finfo(matrix.dtype).tiny))
