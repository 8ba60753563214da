"""All diagnostics of a study from its curvature operators (SCIENCE.md §5).

Whole-matrix quantities (residuals to H and G, off-block ratio, cross-layer share) need the
dense H or G and are reported only when the study built them; per-block quantities use the GGN
blocks G_bb, which never require the d × d matrix.
"""

from __future__ import annotations

import math

import torch

from curvscope.attribution.inverse import InverseRule
from curvscope.curvature.base import CurvatureOperator, DiagonalEigenBlock
from curvscope.curvature.context import CurvatureContext
from curvscope.diagnostics.metrics import (
    condition_number,
    eigenbasis_overlap,
    eigenbasis_overlap_curve,
    eigenvalue_overlap,
    kfac_error_split,
    off_block_ratio,
    relative_residual,
    spectrum_summary,
    swap_tests,
)
from tests.diagnostics.reference_shares import mismatch_shares, official_eigenvalue_overlap
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
    return torch.linalg.eigh((matrix + matrix.T) / 2)


def diagnose(ctx: CurvatureContext, operators: dict[str, CurvatureOperator], k: int,
             damping: float, rule: InverseRule | None = None,
             scores: dict[str, torch.Tensor] | None = None
             ) -> tuple[dict, dict[str, torch.Tensor]]:
    """(results fragment, arrays) with per-method metrics, off-block ratios, decomposition.

    Each structured method is materialised at most once (and only when H or G is dense), so
    the chain's step errors are taken on the way, in chain order. With EK-FAC and K-FAC the
    decomposition carries the eigenvalue-mismatch share under every definition
    (``diagnostics.shares``; ``rule`` is the study's inverse rule, default exact damping λ)
    and the official code's per-tensor eigenvalue overlap.
    """
    H = ctx.hessian() if "H" in operators else None
    G = ctx.ggn() if "GGN" in operators else None
    whole = {"H": H, "GGN": G}
    arrays: dict[str, torch.Tensor] = {}
    reference = _ggn_block_eigen(ctx, operators)

    methods: dict[str, dict] = {}
    chain_steps = []
    previous: tuple[str, torch.Tensor] | None = None
    in_chain = [n for n in CHAIN if n in operators]
    for name in in_chain + [n for n in operators if n not in in_chain]:
        op = operators[name]
        eigenvalues = op.eigenvalues()
        dense = whole.get(name)
        if dense is None and (H is not None or G is not None):
            dense = op.to_dense()
        entry = {
            "relative_residual_to_H": relative_residual(H, dense) if H is not None else None,
            "relative_residual_to_GGN": relative_residual(G, dense) if G is not None else None,
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
        for block in ctx.layout.blocks:
            ref_values, ref_vectors = reference[block.name]
            if name == "GGN":
                values, vectors = ref_values, ref_vectors
            else:
                values, vectors = block_spectrum(op, block, whole.get(name))
            entry["eigenvalue_overlap"][block.name] = eigenvalue_overlap(values, ref_values)
            entry["eigenbasis_overlap"][block.name] = eigenbasis_overlap(
                values, vectors, ref_values, ref_vectors, k)
            curve = eigenbasis_overlap_curve(values, vectors, ref_values, ref_vectors,
                                             OVERLAP_KS)
            entry["eigenbasis_overlap_by_k"][block.name] = {str(j): v for j, v in curve.items()}
            arrays[block_eigenvalues_name(name, block.name)] = torch.sort(values).values
        arrays[eigenvalues_name(name)] = torch.sort(eigenvalues).values
        methods[name] = entry
        if name in in_chain and dense is not None:
            if previous is not None:
                chain_steps.append(_chain_step(previous, (name, dense), H, G))
            previous = (name, dense)

    off_block = {n: off_block_ratio(M, ctx.layout.blocks) for n, M in whole.items()
                 if M is not None}
    rule = rule if rule is not None else InverseRule(damping=damping)
    decomposition = _decomposition(ctx, operators, reference, G, rule, scores)
    if decomposition is not None:
        decomposition["chain_steps"] = chain_steps
    for n, M in whole.items():
        if M is not None:
            arrays[heatmap_name(n)] = log_abs_heatmap(M)
    if H is not None and G is not None:
        arrays[heatmap_name("H-GGN")] = log_abs_heatmap(H - G)
    return {"methods": methods, "off_block": off_block, "decomposition": decomposition}, arrays


def _ggn_block_eigen(ctx, operators) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Eigenpairs of every GGN block G_bb, the reference of the per-block overlaps (taken
    from the block-diagonal method when it was built)."""
    reference = {}
    blockdiag = operators.get("GGN-blockdiag")
    for block in ctx.layout.blocks:
        aligned = blockdiag.block_eigen(block) if blockdiag is not None else None
        reference[block.name] = aligned or torch.linalg.eigh(ctx.ggn_block(block))
    return reference


def _chain_step(a: tuple[str, torch.Tensor], b: tuple[str, torch.Tensor], H, G) -> dict:
    diff = float(torch.linalg.norm(a[1] - b[1]))
    return {
        "from": a[0], "to": b[0], "frobenius": diff,
        "relative_to_H": diff / float(torch.linalg.norm(H)) if H is not None else None,
        "relative_to_GGN": diff / float(torch.linalg.norm(G)) if G is not None else None,
    }


def _decomposition(ctx, operators, reference, G, rule, scores) -> dict | None:
    """The exact split of ‖G − K‖² into cross-layer, eigenbasis and eigenvalue parts:
    ‖G−K‖² = ‖G−G_bd‖² + Σ_l (‖G_ll−E_l‖² + ‖E_l−K_l‖²), plus the swap tests per block, the
    eigenvalue-mismatch share under every definition and the official eigenvalue overlap."""
    if "EK-FAC" not in operators or "K-FAC" not in operators:
        return None
    per_block = {}
    dense_blocks: dict[str, dict[str, torch.Tensor]] = {"GGN": {}, "EK-FAC": {}, "K-FAC": {}}
    for block, E_b, K_b in zip(ctx.layout.blocks, operators["EK-FAC"].blocks,
                               operators["K-FAC"].blocks, strict=True):
        G_bb = ctx.ggn_block(block)
        E_dense, K_dense = E_b.to_dense(), K_b.to_dense()
        dense_blocks["GGN"][block.name] = G_bb
        dense_blocks["EK-FAC"][block.name] = E_dense
        dense_blocks["K-FAC"][block.name] = K_dense
        split = kfac_error_split(G_bb, E_dense, K_dense)
        split["swap_tests"] = swap_tests(G_bb, K_b.eigenvalues, K_b.eigenvectors(),
                                         ggn_eigen=reference[block.name])
        split["ggn_block_sq"] = float(torch.linalg.norm(G_bb) ** 2)
        per_block[block.name] = split
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
        ctx.layout.blocks, reference, operators["EK-FAC"], operators["K-FAC"], rule, scores)
    result["official_eigenvalue_overlap"] = official_eigenvalue_overlap(ctx.layout,
                                                                        dense_blocks)
    return result


def log_abs_heatmap(matrix: torch.Tensor, max_bins: int = 128) -> torch.Tensor:
    """log10 of the mean |entry| over square tiles, at most max_bins × max_bins (for display)."""
    d = matrix.shape[0]
    tile = max(1, math.ceil(d / max_bins))
    pooled = torch.nn.functional.avg_pool2d(matrix.abs()[None, None], tile, ceil_mode=True)[0, 0]
    return torch.log10(pooled.clamp_min(torch.finfo(matrix.dtype).tiny))
