"""The eigenvalue-mismatch share of K-FAC's error under every reasonable definition, and the
official code's sorted-spectrum eigenvalue overlap (issue 9 item 5; SCIENCE.md §2, §7).

Hong et al. (2025, arXiv 2509.23437) report that eigenvalue mismatch (EK-FAC → K-FAC) causes
"the majority of the error and influence loss", but release no definition of that share. With
G_bd the block-diagonal GGN, E EK-FAC and K K-FAC (E and K share the Kronecker eigenbasis
Q = U_S ⊗ U_A per block, so E − K = Q diag(λ* − σ⊗α) Qᵀ), curvscope reports all of these,
each with its formula in results (``decomposition.eigenvalue_mismatch_share``):

- ``frobenius_squared``  ‖E − K‖²_F / (‖G_bd − E‖²_F + ‖E − K‖²_F) on the curvature M itself
  (= ‖E − K‖² / ‖G_bd − K‖² by Pythagoras: G_bd − E is zero on Q's diagonal, E − K lives on it);
- ``frobenius_ratio``    ‖E − K‖_F / ‖G_bd − K‖_F (the non-squared norm ratio);
- ``damped_operators``   the squared share on the damped operators each method really inverts:
  D_G = V diag(s_G) Vᵀ (G_bd's eigenpairs), D_E = Q diag(s_E) Qᵀ, D_K = Q diag(s_K) Qᵀ, where s
  is ``attribution.inverse.damped_spectrum``: e + λ (|e| + λ under rule abs), or for heuristic
  K-FAC damping s_K = (σ + δ_S) ⊗ (α + δ_A). Under exact damping λI cancels in both
  differences, so this equals ``frobenius_squared``; it differs where the methods receive
  different damping (heuristic K-FAC, the official code's choice);
- ``inverses``           the squared share on the inverses each method applies,
  W_M = V diag(w) Vᵀ with w the inverse rule's weights (1/s where kept, 0 where dropped):
  ‖W_E − W_K‖² / (‖W_Gbd − W_E‖² + ‖W_E − W_K‖²);
- ``influence_scores``   on the n_test × n_train score matrices:
  ‖S_E − S_K‖² / (‖S_Gbd − S_E‖² + ‖S_E − S_K‖²);
- ``lds``                per α: (LDS_E − LDS_K) / (LDS_Gbd − LDS_K), the share of the LDS lost
  from G_bd to K that the last step loses; null when |LDS_Gbd − LDS_K| ≤ 1e-9.

Per-block values (definitions on M, its damped form and its inverse) use the same formula on
each block's matrices. The squared shares lie in [0, 1]; the LDS share can lie outside (a step
can gain LDS).
"""

from __future__ import annotations

import math

import torch

from curvscope.attribution.inverse import InverseRule, damped_spectrum, inverse_weights
from curvscope.curvature.base import CurvatureOperator, DenseEigenBlock

#: Below this |LDS_Gbd − LDS_K| the LDS share is undefined (null).
LDS_DENOMINATOR_EPS = 1e-9

FORMULAS = {
    "frobenius_squared": "‖E − K‖²_F / (‖G_bd − E‖²_F + ‖E − K‖²_F)",
    "frobenius_ratio": "‖E − K‖_F / ‖G_bd − K‖_F",
    "damped_operators": "‖D_E − D_K‖²_F / (‖D_Gbd − D_E‖²_F + ‖D_E − D_K‖²_F), D_M = V_M "
                        "diag(s_M) V_Mᵀ with s_M the damped eigenvalues M is inverted with "
                        "(e + λ; heuristic K-FAC: (σ + δ_S) ⊗ (α + δ_A))",
    "inverses": "‖W_E − W_K‖²_F / (‖W_Gbd − W_E‖²_F + ‖W_E − W_K‖²_F), W_M = (M + λI)⁺ as the "
                "inverse rule applies it",
    "influence_scores": "‖S_E − S_K‖²_F / (‖S_Gbd − S_E‖²_F + ‖S_E − S_K‖²_F) on the "
                        "n_test × n_train influence scores",
    "lds": "(LDS_E − LDS_K) / (LDS_Gbd − LDS_K) per α; null when |LDS_Gbd − LDS_K| ≤ 1e-9",
}

OFFICIAL_OVERLAP_FORMULA = (
    "1 − ‖sort(λ(A_tt)) − sort(λ(R_tt))‖₂ / ‖sort(λ(R_tt))‖₂ on the diagonal block of each "
    "parameter tensor t (all eigenvalues, ascending; official HessianMetrics."
    "eigenvalue_overlap with k = None; null when ‖λ(R_tt)‖₂ = 0)")


#: A block whose two errors are both below this share of its own squared norm has no error
#: to split (e.g. a bias block, where K-FAC and EK-FAC coincide): its share is null.
NEGLIGIBLE = 1e-20


def squared_share(part: float, other: float, scale: float = 0.0) -> float | None:
    """part / (other + part); None when both are 0, or negligible against ``scale`` (the
    block's own squared norm: round-off, not error)."""
    total = part + other
    return part / total if total > NEGLIGIBLE * scale and total > 0 else None


def _block_weights(op: CurvatureOperator, rule: InverseRule):
    """(s, w) of the whole operator: damped eigenvalues and inverse weights, aligned with
    ``op.eigenvalues()``; the rule's cutoff is taken over the whole operator, as
    ``attribution.influence_scores`` does."""
    shifted, received = damped_spectrum(op, rule)
    weights, _ = inverse_weights(op.eigenvalues(), rule,
                                 shifted=shifted if received["rule"] == "heuristic" else None)
    return shifted, weights


def _per_block(values: torch.Tensor, op: CurvatureOperator) -> list[torch.Tensor]:
    out, offset = [], 0
    for b in op.blocks:
        out.append(values[offset: offset + b.size])
        offset += b.size
    return out


def blockdiag_operator(ggn_blocks: dict[str, tuple[torch.Tensor, torch.Tensor]], layout_blocks,
                       n_params: int) -> CurvatureOperator:
    """G_bd as an operator from each block's GGN eigenpairs (no new eigendecomposition)."""
    blocks = [DenseEigenBlock(b.start, b.stop, *ggn_blocks[b.name]) for b in layout_blocks]
    return CurvatureOperator("GGN-blockdiag", n_params, blocks)


def mismatch_shares(layout_blocks, ggn_blocks: dict[str, tuple[torch.Tensor, torch.Tensor]],
                    ekfac: CurvatureOperator, kfac: CurvatureOperator, rule: InverseRule,
                    scores: dict[str, torch.Tensor] | None = None) -> dict:
    """Every definition but ``lds`` (see ``lds_share``): {definition: {"value", "formula",
    "per_block"?}}.

    ``ggn_blocks`` maps each layout block's name to the eigenpairs (values, vectors) of its GGN
    block G_bb (the GGN-blockdiag method's own eigenpairs when the study built it), from which
    G_bd's damped spectrum and inverse weights follow as that method's do (one cutoff over the
    whole operator). ``scores`` (method → n_test × n_train) gives the score-level share when it holds
    GGN-blockdiag, EK-FAC and K-FAC."""
    n_params = kfac.n_params
    g_op = blockdiag_operator(ggn_blocks, layout_blocks, n_params)
    sE, wE = (_per_block(x, ekfac) for x in _block_weights(ekfac, rule))
    sK, wK = (_per_block(x, kfac) for x in _block_weights(kfac, rule))
    sG, wG = (_per_block(x, g_op) for x in _block_weights(g_op, rule))
    sums = {key: [0.0, 0.0] for key in ("m", "d", "w")}
    per_block = {key: {} for key in ("m", "ratio", "d", "w")}
    for j, block in enumerate(layout_blocks):
        E_b, K_b = ekfac.blocks[j], kfac.blocks[j]
        Q = E_b.eigenvectors()
        g_vals, g_vecs = ggn_blocks[block.name]
        G = (g_vecs * g_vals) @ g_vecs.T
        E = (Q * E_b.eigenvalues) @ Q.T
        # on M: ‖E − K‖ = ‖λ* − σ⊗α‖ (shared basis)
        mismatch = float(torch.linalg.norm(E_b.eigenvalues - K_b.eigenvalues) ** 2)
        basis = float(torch.linalg.norm(G - E) ** 2)
        # damped: D_G − D_E and ‖s_E − s_K‖ (shared basis)
        D_G = (g_vecs * sG[j]) @ g_vecs.T
        D_E = (Q * sE[j]) @ Q.T
        d_mismatch = float(torch.linalg.norm(sE[j] - sK[j]) ** 2)
        d_basis = float(torch.linalg.norm(D_G - D_E) ** 2)
        # inverses
        W_G = (g_vecs * wG[j]) @ g_vecs.T
        W_E = (Q * wE[j]) @ Q.T
        w_mismatch = float(torch.linalg.norm(wE[j] - wK[j]) ** 2)
        w_basis = float(torch.linalg.norm(W_G - W_E) ** 2)
        scales = {"m": float(torch.linalg.norm(g_vals) ** 2),
                  "d": float(torch.linalg.norm(sG[j]) ** 2),
                  "w": float(torch.linalg.norm(wG[j]) ** 2)}
        for key, part, other in (("m", mismatch, basis), ("d", d_mismatch, d_basis),
                                 ("w", w_mismatch, w_basis)):
            sums[key][0] += part
            sums[key][1] += other
            per_block[key][block.name] = squared_share(part, other, scales[key])
        m_share = per_block["m"][block.name]
        per_block["ratio"][block.name] = math.sqrt(m_share) if m_share is not None else None
    m_part, m_other = sums["m"]
    out = {
        "frobenius_squared": {"value": squared_share(m_part, m_other),
                              "formula": FORMULAS["frobenius_squared"],
                              "per_block": per_block["m"]},
        "frobenius_ratio": {"value": math.sqrt(m_part / (m_part + m_other))
                            if m_part + m_other > 0 else None,
                            "formula": FORMULAS["frobenius_ratio"],
                            "per_block": per_block["ratio"]},
        "damped_operators": {"value": squared_share(*sums["d"]),
                             "formula": FORMULAS["damped_operators"],
                             "per_block": per_block["d"],
                             "damping": {"EK-FAC": damped_spectrum(ekfac, rule)[1]["rule"],
                                         "K-FAC": damped_spectrum(kfac, rule)[1]["rule"]}},
        "inverses": {"value": squared_share(*sums["w"]), "formula": FORMULAS["inverses"],
                     "per_block": per_block["w"]},
    }
    scores = scores or {}
    if all(m in scores for m in ("GGN-blockdiag", "EK-FAC", "K-FAC")):
        out["influence_scores"] = {"value": score_share(scores["GGN-blockdiag"],
                                                        scores["EK-FAC"], scores["K-FAC"]),
                                   "formula": FORMULAS["influence_scores"]}
    else:
        out["influence_scores"] = {"value": None, "formula": FORMULAS["influence_scores"],
                                   "note": "needs the GGN-blockdiag, EK-FAC and K-FAC scores"}
    return out


def score_share(S_G: torch.Tensor, S_E: torch.Tensor, S_K: torch.Tensor) -> float | None:
    """‖S_E − S_K‖² / (‖S_Gbd − S_E‖² + ‖S_E − S_K‖²) on the score matrices."""
    return squared_share(float(torch.linalg.norm(S_E - S_K) ** 2),
                         float(torch.linalg.norm(S_G - S_E) ** 2))


def lds_share(lds: dict[str, dict[str, dict]], alphas: list[str]) -> dict:
    """(LDS_E − LDS_K) / (LDS_Gbd − LDS_K) per α from ``lds[method][α]["value"]``; the value is
    a dict per α (null where the denominator is ~0 or a method is missing)."""
    value, numerator, denominator = {}, {}, {}
    for alpha in alphas:
        try:
            e, k, g = (lds[m][alpha]["value"] for m in ("EK-FAC", "K-FAC", "GGN-blockdiag"))
        except KeyError:
            value[alpha] = numerator[alpha] = denominator[alpha] = None
            continue
        if any(v is None or not math.isfinite(v) for v in (e, k, g)):
            value[alpha] = numerator[alpha] = denominator[alpha] = None
            continue
        numerator[alpha], denominator[alpha] = e - k, g - k
        value[alpha] = (e - k) / (g - k) if abs(g - k) > LDS_DENOMINATOR_EPS else None
    return {"value": value, "formula": FORMULAS["lds"], "numerator": numerator,
            "denominator": denominator}


# ----- the official code's sorted-spectrum eigenvalue overlap ------------------------------

def sorted_spectrum(block: torch.Tensor) -> torch.Tensor:
    """All eigenvalues of a symmetric block, ascending (symmetrised against round-off)."""
    return torch.linalg.eigvalsh((block + block.T) / 2)


def official_overlap(approx: torch.Tensor, reference: torch.Tensor) -> float | None:
    """The official ``HessianMetrics.eigenvalue_overlap`` on one block (k = None), from the two
    ascending spectra: 1 − ‖λ_A[:n] − λ_R[:n]‖₂ / ‖λ_R[:n]‖₂, n = the shorter length; None
    (the official NaN) when the reference spectrum is 0."""
    n = min(len(approx), len(reference))
    denominator = float(torch.linalg.norm(reference[:n]))
    if denominator == 0:
        return None
    return 1.0 - float(torch.linalg.norm(approx[:n] - reference[:n])) / denominator


def tensor_slices(layout) -> list[tuple[str, int, int]]:
    """(name, start, stop) of every parameter tensor: the official code's blocks
    (``block_sizes = [p.numel() for p in params]``)."""
    return [(name, offset, offset + math.prod(shape))
            for name, shape, offset in zip(layout.names, layout.shapes, layout.offsets,
                                           strict=True)]


def official_eigenvalue_overlap(layout, dense_blocks: dict[str, dict[str, torch.Tensor]]
                                ) -> dict:
    """The official sorted-spectrum eigenvalue overlap per parameter tensor of EK-FAC and
    K-FAC against the GGN, and of K-FAC against EK-FAC (the eigenvalue-mismatch step alone).

    ``dense_blocks[method][block.name]`` is the method's dense diagonal block for each layout
    block (``"GGN"``: G_bb); a tensor's block is the tensor's rows and columns of it."""
    tensors = tensor_slices(layout)
    pairs = [(a, r) for a, r in [("EK-FAC", "GGN"), ("K-FAC", "GGN"), ("K-FAC", "EK-FAC")]
             if a in dense_blocks and r in dense_blocks]
    result: dict = {"formula": OFFICIAL_OVERLAP_FORMULA, "blocks": [t[0] for t in tensors],
                    "pairs": {f"{a} vs {r}": {} for a, r in pairs}}
    names = sorted({n for pair in pairs for n in pair})
    for block in layout.blocks:
        for tensor, start, stop in tensors:
            if not (block.start <= start and stop <= block.stop):
                continue
            lo, hi = start - block.start, stop - block.start
            spectra = {n: sorted_spectrum(dense_blocks[n][block.name][lo:hi, lo:hi])
                       for n in names}
            for a, r in pairs:
                result["pairs"][f"{a} vs {r}"][tensor] = official_overlap(spectra[a],
                                                                          spectra[r])
    return result
