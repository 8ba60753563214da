"""Symmetric eigendecompositions: ``curvscope.linalg.symmetric_eigh``'s two CPU backends.

What: the eigendecomposition (eigenvalues and eigenvectors) that every dense eigen-block of a
study needs: the exact Hessian H of the paper's model (MLP 64→64→32→10, GELU, d = 6,570,
trained 100 epochs with the default recipe, float64, digits training set) and its first layer
block H_00 (4,160²; the largest block the diagnostics decompose), each by
``symmetric_eigh(M, backend="torch")`` (``torch.linalg.eigh``: MKL's ``dsyevd``) and by
``backend="scipy"`` (``scipy.linalg.eigh(driver="evd")``: OpenBLAS's ``dsyevd``, its BLAS on
torch's thread count), and eigenvalues alone by ``torch.linalg.eigvalsh``.

How: interleaved round-robin, ``--repeats`` rounds (default 1: the full H takes 30–45 s a
call), best of; each result checked by its residual ‖MV − VΛ‖_F/‖M‖_F, its orthogonality
‖VᵀV − I‖_F and its eigenvalues against the other backend's (max |Δλ| / max |λ|). ``--quick``
uses a random symmetric 1,024² matrix instead (seconds; not representative).

Last line: JSON with every time and check, ``default_backend`` (this machine's choice) and
``ratio`` = torch time / scipy time on the full H (> 1: scipy faster), ``ratio_block`` the same
on H_00, and ``chosen_over_other`` = the other backend's time / the chosen one's on H
(≥ 1 when the machine rule chose well).
"""

from __future__ import annotations

import torch
from _common import emit, header, load_problem, parse_args, time_interleaved

from curvscope.linalg import default_backend, symmetric_eigh


def check(M: torch.Tensor, values: torch.Tensor, vectors: torch.Tensor) -> dict:
    n = M.shape[0]
    residual = torch.linalg.norm(M @ vectors - vectors * values) / torch.linalg.norm(M)
    orthogonality = torch.linalg.norm(vectors.T @ vectors - torch.eye(n, dtype=M.dtype))
    return {"residual": float(residual), "orthogonality": float(orthogonality)}


def compare(name: str, M: torch.Tensor, repeats: int) -> dict:
    timings = time_interleaved({
        "torch": lambda: symmetric_eigh(M, backend="torch"),
        "scipy": lambda: symmetric_eigh(M, backend="scipy"),
        "eigvalsh": lambda: torch.linalg.eigvalsh(M),
    }, repeats=repeats, warmup=0)
    out = {"n": M.shape[0]}
    for backend in ("torch", "scipy"):
        values, vectors = timings[backend].result
        out[backend] = {"seconds": timings[backend].best, **check(M, values, vectors)}
        print(f"   {name} ({M.shape[0]}²) {backend:6s} {timings[backend]}; residual "
              f"{out[backend]['residual']:.1e}, ‖VᵀV − I‖ {out[backend]['orthogonality']:.1e}")
    out["eigvalsh_seconds"] = timings["eigvalsh"].best
    print(f"   {name} eigvalsh        {timings['eigvalsh']}")
    a, b = timings["torch"].result[0], timings["scipy"].result[0]
    out["max_rel_eigenvalue_difference"] = float((a - b).abs().max() / a.abs().max())
    out["ratio"] = out["torch"]["seconds"] / out["scipy"]["seconds"]
    print(f"   {name}: torch / scipy = {out['ratio']:.2f}; eigenvalues agree to "
          f"{out['max_rel_eigenvalue_difference']:.1e} of max |λ|")
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    figures = {"machine": header("symmetric eigendecompositions: torch (MKL) vs scipy "
                                 "(OpenBLAS)"), "default_backend": default_backend()}
    repeats = args.repeats or (3 if args.quick else 1)
    if args.quick:
        g = torch.Generator().manual_seed(0)
        A = torch.randn(1024, 1024, dtype=torch.float64, generator=g)
        figures["H"] = compare("random", (A + A.T) / 2, repeats)
        figures["H_00"] = figures["H"]
    else:
        from curvscope.curvature.context import CurvatureContext, CurvatureSettings

        model, X, y = load_problem(train_epochs=100)
        H = CurvatureContext(model, X, y, CurvatureSettings()).hessian()
        H = (H + H.T) / 2
        figures["H"] = compare("H", H, repeats)
        figures["H_00"] = compare("H_00", H[:4160, :4160].contiguous(), repeats)
    chosen = figures["default_backend"]
    other = "torch" if chosen == "scipy" else "scipy"
    figures["ratio"] = figures["H"]["ratio"]
    figures["ratio_block"] = figures["H_00"]["ratio"]
    figures["chosen_over_other"] = (figures["H"][other]["seconds"]
                                    / figures["H"][chosen]["seconds"])
    print(f"   this machine's choice: {chosen} ({figures['chosen_over_other']:.2f}× the other "
          "on H)")
    emit(figures)


if __name__ == "__main__":
    main()
