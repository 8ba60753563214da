"""The exact Hessian of an MLP's mean cross-entropy, assembled from matmul-shaped pieces.

Setting: layers l = 1…L, z_l = W̄_l ā_{l−1} with W̄_l = [W_l | b_l], ā = [a; 1] (bias folded in,
SCIENCE.md §2), a_0 = x, a_l = φ(z_l) elementwise for l < L, logits f = z_L, and
L(θ) = (1/N) Σ_n ℓ_n, ℓ_n = CE(y_n, z_{n,L}). Per sample n (index dropped):

* T_{k←m} = ∂z_k/∂z_m (out_k × out_m): T_{m←m} = I, T_{k←m} = W_k diag(φ'(z_{k−1})) T_{k−1←m};
* δ_l = ∂ℓ/∂z_l: δ_L = p − onehot(y), δ_l = φ'(z_l) ⊙ e_l with e_l = W_{l+1}ᵀ δ_{l+1};
* Λ = diag(p) − p pᵀ, the loss Hessian in the logits.

The second-order chain rule over the network's graph sums one term per node with a non-zero
second derivative, each weighted by that node's adjoint:

1. the loss on z_L (the GGN, Schraudolph 2002):           J_Lᵀ Λ J_L;
2. each activation a_l = φ(z_l), l < L, adjoint e_l:        J_lᵀ diag(φ''(z_l) ⊙ e_l) J_l;
3. each bilinear product z_l = W̄_l ā_{l−1}, adjoint δ_l:
   ∂²ℓ/∂W_{l,oi}∂θ_k ∋ δ_{l,o} ∂a_{l−1,i}/∂θ_k, non-zero only for θ_k in a layer m < l
   (the cross terms through the weights).

with J_l = ∂z_l/∂θ. Because ∂z_k/∂W̄_m = T_{k←m} ⊗ ā_{m−1}ᵀ, terms 1–2 give the (m, m′) block in
the (out × in_aug) layout of each layer as

  H¹²_{mm′}[(o,i),(o′,i′)] = (1/N) Σ_n P_n[o,o′] ā_{n,m−1,i} ā_{n,m′−1,i′},
  P_n = T_{L←m}ᵀ Λ_n T_{L←m′} + Σ_{l=max(m,m′)}^{L−1} T_{l←m}ᵀ diag(φ''(z_l) ⊙ e_l) T_{l←m′},

one (out_m·out_m′ × N)(N × in_m·in_m′) product exactly as for the GGN (``CurvatureContext._gram``),
and term 3 gives, for m < l, with ∂a_{l−1}/∂W̄_m = diag(φ'(z_{l−1})) T_{l−1←m} ⊗ ā_{m−1}ᵀ,

  C_{lm}[(o,i),(o′,i′)] = (1/N) Σ_n δ_{n,l,o} φ'(z_{n,l−1,i}) T_{n,l−1←m}[i,o′] ā_{n,m−1,i′},

one (out_l·in_l·out_m × N)(N × in_m+1) product, placed at H[W_l, θ_m] and transposed at
H[θ_m, W_l] (the bias of layer l has no such term: its input is the constant 1). The whole H costs
about the GGN's flops plus Σ_{m<l} 2N·out_l·in_l·out_m·(in_m+1), instead of d Hessian-vector
products. ``mlp_hessian`` returns None for a model that is not such an MLP (the caller then uses
the Hessian-vector-product path, which stays the test reference).

Hong et al. (2025, arXiv 2509.23437) use this exact H as step 0 of the curvature chain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from curvscope.curvature.signals import loss_hessian_sqrt
from curvscope.memory import empty_large
from curvscope.models.layout import ParameterLayout

#: activations applied elementwise, whose φ' and φ'' are taken by autograd (exact, per entry)
ELEMENTWISE = (nn.Tanh, nn.GELU, nn.ReLU, nn.Sigmoid, nn.SiLU, nn.Softplus, nn.ELU,
               nn.LeakyReLU, nn.Identity)


def mlp_structure(model: nn.Module) -> tuple[list[nn.Linear], list[nn.Module]] | None:
    """(linear layers, activations between them) of a ``Sequential`` Linear, φ, Linear, …,
    Linear with elementwise φ; None for any other model."""
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        return None
    modules = list(model)
    linears, activations = modules[0::2], modules[1::2]
    if len(modules) % 2 == 0 or not all(isinstance(m, nn.Linear) for m in linears):
        return None
    if not all(isinstance(a, ELEMENTWISE) for a in activations):
        return None
    if any(type(a) is nn.GELU and a.approximate not in ("none", "tanh") for a in activations):
        return None
    return linears, activations


def _derivatives(activation: nn.Module, z: torch.Tensor):
    """(φ(z), φ'(z), φ''(z)) elementwise, the derivatives by double backward of Σ φ(z)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        a = activation(z)
        (d1,) = torch.autograd.grad(a.sum(), z, create_graph=True)
        if d1.requires_grad:
            (d2,) = torch.autograd.grad(d1.sum(), z, materialize_grads=True)
        else:  # piecewise linear (ReLU) or identity: φ'' = 0
            d2 = torch.zeros_like(z)
    return a.detach(), d1.detach(), d2.detach()


def mlp_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                chunk_bytes: int = 512 * 2**20) -> torch.Tensor | None:
    """H = ∇²_θ (1/N) Σ_n CE(y_n, f_θ(x_n)) in θ's ``named_parameters`` layout, or None when
    the model is not an MLP of Linear layers and elementwise activations (see module doc)."""
    structure = mlp_structure(model)
    if structure is None:
        return None
    linears, activations = structure
    layout = ParameterLayout.from_model(model, "layer")
    blocks = layout.blocks
    n_layers = len(linears)
    n, dtype, device = X.shape[0], X.dtype, X.device
    Ws = [lin.weight.detach() for lin in linears]

    # ----- forward: inputs ā_{l-1}, φ'(z_l), φ''(z_l) -------------------------------------
    with torch.no_grad():
        inputs, d1s, d2s = [], [], []
        a = X
        for l, lin in enumerate(linears):
            inputs.append(a)
            z = F.linear(a, lin.weight, lin.bias)
            if l < n_layers - 1:
                a, d1, d2 = _derivatives(activations[l], z)
                d1s.append(d1)
                d2s.append(d2)
        logits = z
        p = torch.softmax(logits, dim=-1)
        # ----- backward: δ_l and the activation weights φ''(z_l) ⊙ e_l ---------------------
        deltas = [None] * n_layers
        curv = [None] * (n_layers - 1)
        deltas[-1] = p - F.one_hot(y, p.shape[-1]).to(dtype)
        for l in range(n_layers - 2, -1, -1):
            e = deltas[l + 1] @ Ws[l + 1]
            deltas[l] = d1s[l] * e
            curv[l] = d2s[l] * e
        sqrt_lam = loss_hessian_sqrt(logits)  # N × C × C, M Mᵀ = Λ

    augmented = [torch.cat([a, torch.ones(n, 1, dtype=dtype, device=device)], 1)
                 if blocks[l].has_bias else a for l, a in enumerate(inputs)]
    outs = [lin.out_features for lin in linears]
    ins = [a.shape[1] for a in augmented]  # in_aug
    fans = [lin.in_features for lin in linears]
    itemsize = X.element_size()
    pairs = [(m, mp) for m in range(n_layers) for mp in range(m, n_layers)]
    crosses = [(m, mp) for m, mp in pairs if mp > m]

    # rows of T_{k←m} per sample, for a chunk of samples: T[k][m] is N_s × out_k × out_m
    def jacobians(s, size):
        T = [[None] * n_layers for _ in range(n_layers)]
        for m in range(n_layers):
            T[m][m] = torch.eye(outs[m], dtype=dtype, device=device).expand(size, -1, -1)
            for k in range(m + 1, n_layers):
                T[k][m] = torch.matmul(Ws[k], d1s[k - 1][s].unsqueeze(-1) * T[k - 1][m])
        return T

    def p_matrix(T, s, m, mp, tops):
        """P_n for samples s (N_s × out_m × out_m′)."""
        P = tops[m] @ tops[mp].transpose(1, 2)
        for l in range(max(m, mp), n_layers - 1):
            P += T[l][m].transpose(1, 2) @ (curv[l][s].unsqueeze(-1) * T[l][mp])
        return P

    # accumulators (1/N folded into addmm's alpha): terms 1-2 per pair in the (out_m·out_m′ ×
    # in_m·in_m′) layout, term 3 per pair m < m′ in the (out_m′·in_m′·out_m × in_aug_m) layout
    acc = {pair: torch.zeros(outs[pair[0]] * outs[pair[1]], ins[pair[0]] * ins[pair[1]],
                             dtype=dtype, device=device) for pair in pairs}
    cross = {(m, mp): torch.zeros(outs[mp] * fans[mp] * outs[m], ins[m], dtype=dtype,
                                  device=device) for m, mp in crosses}
    # chunk of samples: T's, one P and one Q per pair in flight; the cross term's left factor
    # (the largest temporary) has its own, smaller chunk inside it
    per_sample = sum(outs[k] * outs[m] for k in range(n_layers) for m in range(k + 1))
    per_sample += max(outs[m] * outs[mp] + ins[m] * ins[mp] for m, mp in pairs)
    step = int(max(1, min(n, chunk_bytes // (2 * per_sample * itemsize))))
    left_size = max([outs[mp] * fans[mp] * outs[m] for m, mp in crosses], default=1)
    cross_step = int(max(1, min(step, chunk_bytes // (2 * left_size * itemsize))))
    workspace = empty_large(cross_step * left_size, dtype=dtype, device=device)
    alpha = 1.0 / n
    for start in range(0, n, step):
        s = slice(start, min(n, start + step))
        size = s.stop - s.start
        T = jacobians(s, size)
        tops = [T[-1][m].transpose(1, 2) @ sqrt_lam[s] for m in range(n_layers)]
        for m, mp in pairs:
            P = p_matrix(T, s, m, mp, tops).reshape(size, -1)
            Q = torch.einsum("ni,nj->nij", augmented[m][s], augmented[mp][s]).reshape(size, -1)
            acc[m, mp].addmm_(P.T, Q, alpha=alpha)
        for m, mp in crosses:
            R = d1s[mp - 1][s].unsqueeze(-1) * T[mp - 1][m]  # N_s × in_m′ × out_m
            for c in range(0, size, cross_step):
                rows = slice(c, min(size, c + cross_step))
                k = rows.stop - rows.start
                left = workspace[: k * outs[mp] * fans[mp] * outs[m]].view(
                    k, outs[mp], fans[mp], outs[m])
                torch.mul(deltas[mp][s][rows][:, :, None, None], R[rows][:, None], out=left)
                cross[m, mp].addmm_(left.view(k, -1).T, augmented[m][s][rows], alpha=alpha)

    # ----- write θ's layout: per layer [vec(W) (o, i) row-major ; b (o)] ----------------
    d = blocks[-1].stop
    H = empty_large(d, d, dtype=dtype, device=device)

    def parts(l):
        """(θ offset, slice of in_aug, shape) of layer l's weight and bias parts."""
        start = blocks[l].start
        out = [(start, slice(0, fans[l]), fans[l])]
        if blocks[l].has_bias:
            out.append((start + outs[l] * fans[l], slice(fans[l], fans[l] + 1), 1))
        return out

    for m, mp in pairs:
        full = acc[m, mp].view(outs[m], outs[mp], ins[m], ins[mp]).permute(0, 2, 1, 3)
        if (m, mp) in cross:
            C = cross[m, mp].view(outs[mp], fans[mp], outs[m], ins[m]).permute(2, 3, 0, 1)
            full[:, :, :, : fans[mp]] += C
        for r0, rs, rn in parts(m):
            for c0, cs, cn in parts(mp):
                target = H[r0 : r0 + outs[m] * rn, c0 : c0 + outs[mp] * cn]
                target.view(outs[m], rn, outs[mp], cn).copy_(full[:, rs, :, cs])
        rows = slice(blocks[m].start, blocks[m].stop)
        cols = slice(blocks[mp].start, blocks[mp].stop)
        if m == mp:  # symmetrise the diagonal block (round-off of the batched products)
            H[rows, cols] = (H[rows, cols] + H[rows, cols].T) / 2
        else:
            H[cols, rows] = H[rows, cols].T
    return H
