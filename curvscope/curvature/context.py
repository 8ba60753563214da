"""Shared, memoised ingredients of the curvature methods for one trained model and data set.

Every method module asks this context for what it needs (the dense Hessian, the dense GGN,
one GGN block, K-FAC factors, layer signals), so nothing is computed twice in a study and a
study that runs only structured methods never forms a d × d matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from curvscope.curvature.hessian_mlp import mlp_hessian
from curvscope.curvature.signals import (
    FisherType,
    LayerSignals,
    augmented_inputs,
    comb_to_theta_index,
    fisher_cotangents,
    layer_signals,
    mc_cotangents,
    sample_labels,
)
from curvscope.models.layout import Block, BlockStructure, ParameterLayout


@dataclass(frozen=True)
class CurvatureSettings:
    """Options shared by the methods. ``chunk_bytes`` bounds every temporary work buffer.

    ``fisher_types`` overrides ``fisher_type`` per method (only "K-FAC" and "EK-FAC" have a
    Fisher), as ``((method, type), ...)``; ``seed`` seeds the Monte-Carlo labels."""

    block_structure: BlockStructure = "layer"
    fisher_type: FisherType = "type2"
    mc_samples: int = 1
    seed: int = 0
    chunk_bytes: int = 512 * 2**20
    fisher_types: tuple[tuple[str, FisherType], ...] = ()

    def fisher_type_of(self, method: str) -> FisherType:
        """The Fisher type behind ``method`` (its override, else ``fisher_type``)."""
        return dict(self.fisher_types).get(method, self.fisher_type)


class CurvatureContext:
    """Model + training data (X, y) + settings → memoised curvature ingredients.

    The loss is the mean cross-entropy L(θ) = (1/N) Σ_n ℓ(y_n, f_θ(x_n)).
    """

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                 settings: CurvatureSettings | None = None):
        self.model = model
        self.X = X
        self.y = y
        self.settings = settings or CurvatureSettings()
        self.layout = ParameterLayout.from_model(model, self.settings.block_structure)
        self.layer_layout = ParameterLayout.from_model(model, "layer")
        self.theta = self.layout.flatten(
            {k: v.detach() for k, v in model.named_parameters()}
        ).clone()
        self._memo: dict = {}

    # ----- basic quantities -------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.layout.n_params

    @property
    def n_data(self) -> int:
        return self.X.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    def loss_of_theta(self, theta: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.model, self.layout.unflatten(theta), (self.X,))
        return F.cross_entropy(logits, self.y)

    def has(self, key: str) -> bool:
        return key in self._memo

    def adopt_dense(self, key: str, matrix: torch.Tensor) -> None:
        """Take a dense H or G computed elsewhere (e.g. recomposed from a cached operator's
        eigendecomposition) as this context's own, so nothing recomputes it."""
        if key not in ("hessian", "ggn"):
            raise ValueError(f"only 'hessian' or 'ggn' can be adopted, not {key!r}")
        self._memo[key] = matrix

    def _memoise(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # ----- dense matrices ---------------------------------------------------------------
    def hessian(self) -> torch.Tensor:
        """H = ∇²L(θ), exact and dense: for an MLP assembled from matmul-shaped pieces
        (``hessian_mlp.mlp_hessian``), otherwise by batched Hessian-vector products.
        """
        return self._memoise("hessian", self._dense_hessian)

    def _dense_hessian(self) -> torch.Tensor:
        H = mlp_hessian(self.model, self.X, self.y, self.settings.chunk_bytes)
        return H if H is not None else self.hessian_by_hvp()

    def hessian_by_hvp(self) -> torch.Tensor:
        """H by forward-over-reverse products jvp(∇L, e_i), vmapped over chunks of the
        identity (any model; the reference of the MLP assembly)."""
        d = self.n_params
        gradient = grad(self.loss_of_theta)

        def hvp(v):
            return jvp(gradient, (self.theta,), (v,))[1]

        width = sum(b.in_features + b.out_features for b in self.layer_layout.blocks)
        per_column = 4 * self.n_data * width * self.theta.element_size()  # tangents in flight
        # measured on 2 cores: 32–64 columns per vmap is fastest; more is memory-bound
        chunk = int(max(1, min(d, 64, self.settings.chunk_bytes // per_column)))
        H = torch.empty(d, d, dtype=self.dtype, device=self.theta.device)
        eye = torch.eye(d, dtype=self.dtype, device=self.theta.device)
        for start in range(0, d, chunk):
            H[start : start + chunk] = vmap(hvp)(eye[start : start + chunk])
        return (H + H.T) / 2

    def ggn(self) -> torch.Tensor:
        """G = (1/N) Σ_n J_nᵀ Λ_n J_n, exact and dense (see ``_gram``)."""
        return self._memoise("ggn", lambda: self._gram(self.layer_layout.blocks))

    def _gram(self, blocks) -> torch.Tensor:
        """(1/N) Σ_{n,k} (J_nᵀ m_{n,k})(J_nᵀ m_{n,k})ᵀ on the θ-columns of the contiguous
        ``blocks``, exploiting the Kronecker structure of a linear layer's Jacobian.

        The (l, m) block of G in the (out × in_aug) layout of each layer is
        G_lm[(o,i),(p,j)] = (1/N) Σ_n P_n[o,p] ā_{n,l,i} ā_{n,m,j},  P_n = Σ_k g_{n,k,l} g_{n,k,m}ᵀ,
        one (out_l·out_m × N)(N × in_l·in_m) product: C times fewer flops than forming the
        N·C × d matrix of rows m_{n,k}ᵀ J_n and multiplying it by itself.
        """
        signals = self.signals("type2")
        offsets = [0]
        for b in blocks:
            offsets.append(offsets[-1] + b.size)
        G = torch.empty(offsets[-1], offsets[-1], dtype=self.dtype, device=self.theta.device)
        inputs = [augmented_inputs(b, signals.inputs[b.module_name]) for b in blocks]
        grads = [signals.output_grads[b.module_name] for b in blocks]
        perms = [comb_to_theta_index(b).to(self.theta.device) for b in blocks]
        for l in range(len(blocks)):
            for m in range(l, len(blocks)):
                out_l, out_m = grads[l].shape[-1], grads[m].shape[-1]
                in_l, in_m = inputs[l].shape[1], inputs[m].shape[1]
                width = (out_l * out_m + in_l * in_m) * self.theta.element_size()
                step = max(1, self.settings.chunk_bytes // width)
                block = torch.zeros(out_l * out_m, in_l * in_m, dtype=self.dtype,
                                    device=self.theta.device)
                for s in range(0, self.n_data, step):
                    P = torch.einsum("kno,knp->nop", grads[l][:, s : s + step],
                                     grads[m][:, s : s + step]).reshape(-1, out_l * out_m)
                    Q = torch.einsum("ni,nj->nij", inputs[l][s : s + step],
                                     inputs[m][s : s + step]).reshape(-1, in_l * in_m)
                    block.addmm_(P.T, Q)
                block = (block.reshape(out_l, out_m, in_l, in_m).permute(0, 2, 1, 3)
                         .reshape(out_l * in_l, out_m * in_m)[perms[l]][:, perms[m]])
                block /= self.n_data
                G[offsets[l] : offsets[l + 1], offsets[m] : offsets[m + 1]] = block
                if m != l:
                    G[offsets[m] : offsets[m + 1], offsets[l] : offsets[l + 1]] = block.T
        return (G + G.T) / 2

    def ggn_block(self, block: Block) -> torch.Tensor:
        """G_bb, the diagonal block of the GGN for ``block`` (never forms d × d unless the
        dense GGN is already there)."""
        if self.has("ggn"):
            return self._memo["ggn"][block.slice, block.slice]
        return self._memoise(("ggn_block", block.name), lambda: self._gram([block]))

    def ggn_diagonal(self) -> torch.Tensor:
        """diag(G): in a layer's (out × in_aug) layout (1/N) Σ_{n,k} g_{n,k,o}² ā_{n,i}²."""
        if self.has("ggn"):
            return torch.diagonal(self._memo["ggn"]).clone()

        def compute():
            signals = self.signals("type2")
            diag = torch.empty(self.n_params, dtype=self.dtype, device=self.theta.device)
            for b in self.layout.blocks:
                a = augmented_inputs(b, signals.inputs[b.module_name])
                g = signals.output_grads[b.module_name]
                values = torch.einsum("kno,ni->oi", g.square(), a.square()).reshape(-1)
                diag[b.slice] = values[comb_to_theta_index(b).to(diag.device)] / self.n_data
            return diag

        return self._memoise("ggn_diagonal", compute)

    # ----- layer signals and Kronecker factors -----------------------------------------
    def signals(self, fisher_type: FisherType | None = None,
                seed: int | None = None) -> LayerSignals:
        """Layer signals for ``fisher_type`` (default the settings'); Monte-Carlo labels come
        from a generator seeded with ``seed`` (default the settings' seed), and their draws
        are kept (``mc_labels``)."""
        fisher_type = fisher_type or self.settings.fisher_type
        seed = self.settings.seed if seed is None else seed
        key = ("signals", fisher_type) + ((seed,) if fisher_type == "mc" else ())

        def compute():
            generator = torch.Generator(device=self.theta.device).manual_seed(seed)

            def cotangents(logits):
                if fisher_type == "mc":
                    draws = sample_labels(logits, self.settings.mc_samples, generator)
                    self._memo[("mc_labels", seed)] = (draws, logits.detach().argmax(-1))
                    return mc_cotangents(logits, draws)
                return fisher_cotangents(logits, self.y, fisher_type,
                                         self.settings.mc_samples, generator)

            return layer_signals(self.model, self.X, cotangents)

        return self._memoise(key, compute)

    def mc_labels(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sampled labels N × S, the model's argmax N) of the Monte-Carlo Fisher of ``seed``."""
        seed = self.settings.seed if seed is None else seed
        self.signals("mc", seed)
        return self._memo[("mc_labels", seed)]

    def fisher_trace(self, fisher_type: FisherType, seed: int | None = None) -> float:
        """tr F exactly, from the layer signals, no d × d matrix: a linear layer's block
        trace is (1/N) Σ_n Σ_k ‖g_{n,k}‖² ‖ā_n‖², and tr F is the sum over layers (for
        type2, F = G and this is tr G)."""
        return float(self.fisher_trace_per_point(fisher_type, seed).sum()) / self.n_data

    def fisher_trace_per_point(self, fisher_type: FisherType,
                               seed: int | None = None) -> torch.Tensor:
        """t_n = Σ_layers Σ_k ‖g_{n,k}‖² ‖ā_n‖², each point's contribution to N · tr F."""
        signals = self.signals(fisher_type, seed)
        total = torch.zeros(self.n_data, dtype=self.dtype, device=self.theta.device)
        for b in self.layer_layout.blocks:
            a = augmented_inputs(b, signals.inputs[b.module_name])
            g = signals.output_grads[b.module_name]
            total += torch.einsum("kn,n->n", g.square().sum(-1), a.square().sum(-1))
        return total

    def kronecker_factors(self, block: Block, fisher_type: FisherType | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, A) of K-FAC for ``block`` under ``fisher_type`` (default the settings'):
        A = (1/N) Σ_n ā_n ā_nᵀ,  S = (1/N) Σ_n Σ_k g_{n,k} g_{n,k}ᵀ."""
        fisher_type = fisher_type or self.settings.fisher_type

        def compute():
            signals = self.signals(fisher_type)
            a = augmented_inputs(block, signals.inputs[block.module_name])
            g = signals.output_grads[block.module_name]
            A = a.T @ a / self.n_data
            S = torch.einsum("kno,knp->op", g, g) / self.n_data
            return S, A

        return self._memoise(("kfac", block.name, fisher_type), compute)

    def kronecker_eigenbasis(self, block: Block, fisher_type: FisherType | None = None):
        """Eigendecompositions (σ, U_S), (α, U_A) of the block's K-FAC factors."""
        fisher_type = fisher_type or self.settings.fisher_type

        def compute():
            S, A = self.kronecker_factors(block, fisher_type)
            sigma, U_S = torch.linalg.eigh(S)
            alpha, U_A = torch.linalg.eigh(A)
            return sigma, U_S, alpha, U_A

        return self._memoise(("kfac_eig", block.name, fisher_type), compute)
