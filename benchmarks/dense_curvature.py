"""Dense curvature: curvscope's exact GGN G and Hessian H vs curvlinops, materialised as d × d.

What: the dense type-2 GGN G = (1/N) Σ_n J_nᵀ Λ_n J_n and the dense Hessian H = ∇²L(θ) of the
mean cross-entropy, for the default problem (digits, N = 1,617, MLP 64→64→32→10 GELU with
bias, d = 6,570, float64, freshly initialised). ``--quick`` uses hidden [16, 16] (d = 1,482).

How: curvscope ``CurvatureContext(model, X, y).ggn()`` and ``.hessian()`` (a fresh context for
every call, so nothing is memoised) against curvlinops ``GGNLinearOperator`` and
``HessianLinearOperator`` on the data as one batch ``[(X, y)]`` with
``check_deterministic=False``, materialised as ``op @ torch.eye(d, dtype=float64)``. curvlinops
vmaps its matrix-vector product over all the columns it is given at once; for the Hessian at
d = 6,570 that needs more than the 24 GB of RAM of the reference machine (the process was
OOM-killed at 24 GB RSS), so the identity is fed in blocks of ``--cl-columns`` columns (default
1024; 0 = all d at once, the plain ``op @ eye``) and the blocks are concatenated — still
curvlinops' own matrix product, only bounded in memory. Relative Frobenius errors
‖ours − curvlinops‖_F / ‖curvlinops‖_F must be ≤ 1e-10 for both. Cheap calls are warmed up once
at full size and timed as the best of a few repeats; the expensive ones (H, and every curvlinops
call at full size) are warmed up once on a small model (hidden [16, 16], 200 points) and timed
once at full size. Peak RSS is read after our calls and again after curvlinops' (ru_maxrss is
monotone, so the second figure is the process peak including curvlinops).

FLOP model (stated so that the achieved rates can be checked; biases are folded into the
inputs, in' = in + 1, and only the dominant matrix products are counted):

* our GGN: for every layer pair (l, m) with l ≤ m the block is one product
  (out_l·out_m × N)(N × in'_l·in'_m), i.e. 2·N·out_l·out_m·in'_l·in'_m flops; summed,
  F_G = Σ_{l≤m} 2·N·out_l·out_m·in'_l·in'_m = N·(d² + Σ_l d_l²), d_l = out_l·in'_l. The forming
  of P = Σ_k g_k g_kᵀ (2·N·C·out_l·out_m) and Q = ā ā ᵀ (N·in'_l·in'_m) is lower order and left
  out. Default model: F_G ≈ 104.9 GFLOP.
* our H (``curvature/hessian_mlp.py``): the same pair products as the GGN (with P_n now holding
  the activations' second-derivative terms too) plus, for every pair m < l, the cross terms
  through the weights, one product (out_l·in_l·out_m × N)(N × in'_m); F_H = F_G +
  Σ_{m<l} 2·N·out_l·in_l·out_m·in'_m. Default model: F_H ≈ 139 GFLOP.
* H by Hessian-vector products (curvlinops', and ours with ``--hvp``): d columns, each costing
  about 8 "units" where one unit = one pass of all the layers' matrix products,
  2·N·Σ_l out_l·in_l flops (forward-over-reverse: tangent forward 2 units, tangent backward 4
  units, plus the primal forward/backward share ≈ 2 units); F_HVP = 8·d·2·N·Σ_l out_l·in_l.
  Default model (Σ out·in = 6,464): F_HVP ≈ 1.10 TFLOP — 8× more work than the assembly, which
  is where most of the speed-up comes from.

Each achieved rate F / t is also reported as a fraction of the machine's float64 matmul rate
(best of 3 products of two 4096 × 4096 matrices; 2048 with ``--quick``), measured before and
again after the other timings; the larger of the two is the yardstick (a much lower one of
the two means other work shared the CPUs during the run).

Figures of merit: ``ratio_ggn`` = curvlinops G time / our G time (target ≥ 3), ``ratio_hessian``
= curvlinops H time / our H time (target ≥ 5, issue 14), ``ratio`` = the smaller of the two.
``--hvp`` also times curvscope's own Hessian-vector-product path (``hessian_by_hvp``, kept for
models the assembly does not cover), once at full size, and checks it against the assembly.
"""

from __future__ import annotations

import torch
from _common import (
    Timing,
    describe_model,
    emit,
    header,
    load_problem,
    matmul_gflops,
    n_params,
    parse_args,
    peak_rss_mib,
    rel_fro,
    time_it,
)
from curvlinops import GGNLinearOperator, HessianLinearOperator

from curvscope.curvature import CurvatureContext

TARGET_GGN = 3.0
TARGET_HESSIAN = 5.0
TOLERANCE = 1e-10
HVP_UNITS = 8


def layer_shapes(model: torch.nn.Module) -> list[tuple[int, int, bool]]:
    return [(m.out_features, m.in_features, m.bias is not None)
            for m in model if isinstance(m, torch.nn.Linear)]


def ggn_flops(model: torch.nn.Module, n: int) -> float:
    """Σ_{l≤m} 2·N·out_l·out_m·in'_l·in'_m (see the module docstring)."""
    shapes = [(out, fan_in + bias) for out, fan_in, bias in layer_shapes(model)]
    return float(sum(2 * n * shapes[l][0] * shapes[m][0] * shapes[l][1] * shapes[m][1]
                     for l in range(len(shapes)) for m in range(l, len(shapes))))


def hessian_flops(model: torch.nn.Module, n: int) -> float:
    """F_G + Σ_{m<l} 2·N·out_l·in_l·out_m·in'_m (the MLP assembly, see the docstring)."""
    shapes = layer_shapes(model)
    cross = sum(2 * n * shapes[l][0] * shapes[l][1] * shapes[m][0] * (shapes[m][1] + shapes[m][2])
                for l in range(len(shapes)) for m in range(l))
    return ggn_flops(model, n) + float(cross)


def hvp_flops(model: torch.nn.Module, n: int) -> float:
    """d columns × HVP_UNITS × 2·N·Σ_l out_l·in_l."""
    unit = 2 * n * sum(out * fan_in for out, fan_in, _ in layer_shapes(model))
    return float(n_params(model) * HVP_UNITS * unit)


def ours_ggn(model, X, y):
    return CurvatureContext(model, X, y).ggn()


def ours_hessian(model, X, y):
    return CurvatureContext(model, X, y).hessian()


def ours_hessian_hvp(model, X, y):
    return CurvatureContext(model, X, y).hessian_by_hvp()


def curvlinops_dense(cls, model, X, y, columns: int = 0):
    """``op @ eye(d)``, fed ``columns`` identity columns at a time (0: all at once)."""
    params = [p for p in model.parameters() if p.requires_grad]
    op = cls(model, torch.nn.CrossEntropyLoss(), params, [(X, y)], check_deterministic=False)
    d = n_params(model)
    eye = torch.eye(d, dtype=torch.float64)
    if columns <= 0 or columns >= d:
        return op @ eye
    return torch.cat([op @ eye[:, s : s + columns] for s in range(0, d, columns)], dim=1)


def measure(fn, problem, small, cheap: bool, repeats: int) -> Timing:
    """Cheap: warm up at full size, best of ``repeats``. Expensive: warm up on ``small``,
    one timed run at full size."""
    if cheap:
        return time_it(lambda: fn(*problem), repeats=repeats)
    fn(*small)
    return time_it(lambda: fn(*problem), repeats=1, warmup=0)


def main() -> None:
    def extra(parser):
        parser.add_argument("--cl-columns", type=int, default=1024,
                            help="identity columns per curvlinops product (0: all at once)")
        parser.add_argument("--hvp", action="store_true",
                            help="also time curvscope's Hessian-vector-product path")

    args = parse_args(__doc__.splitlines()[0], extra)
    info = header("dense G and H: curvscope vs curvlinops (materialised op @ eye)")
    hidden = (16, 16) if args.quick else (64, 32)
    problem = load_problem(hidden=hidden)
    small = load_problem(hidden=(16, 16), n_train=200)
    model, X, y = problem
    d, n = n_params(model), X.shape[0]
    repeats = args.repeats or (2 if args.quick else 3)
    print(f"   {describe_model(model)}, N = {n}, float64")

    size = 2048 if args.quick else 4096
    gflops_start = matmul_gflops(size)
    print(f"float64 matmul ({size}²): {gflops_start:.1f} GFLOP/s")

    ggn_t = measure(ours_ggn, problem, small, cheap=True, repeats=repeats)
    print(f"curvscope ggn():        {ggn_t}")
    hess_t = measure(ours_hessian, problem, small, cheap=True, repeats=repeats)
    print(f"curvscope hessian():    {hess_t}")
    hvp_t = None
    if args.hvp:
        hvp_t = measure(ours_hessian_hvp, problem, small, cheap=args.quick, repeats=1)
        print(f"curvscope hessian_by_hvp(): {hvp_t} (rel. diff to the assembly "
              f"{rel_fro(hvp_t.result, hess_t.result):.3g})")
    rss_ours = peak_rss_mib()

    columns = args.cl_columns
    print(f"curvlinops: identity fed {columns if 0 < columns < d else d} columns at a time")
    cl_ggn_t = measure(lambda *p: curvlinops_dense(GGNLinearOperator, *p, columns), problem, small,
                       cheap=args.quick, repeats=1)
    print(f"curvlinops GGN @ eye:   {cl_ggn_t}")
    err_ggn = rel_fro(ggn_t.result, cl_ggn_t.result)
    del cl_ggn_t.result
    cl_hess_t = measure(lambda *p: curvlinops_dense(HessianLinearOperator, *p, columns), problem,
                        small, cheap=args.quick, repeats=1)
    print(f"curvlinops Hessian @ eye: {cl_hess_t}")
    err_hess = rel_fro(hess_t.result, cl_hess_t.result)
    rss_all = peak_rss_mib()

    gflops_end = matmul_gflops(size)
    gflops = max(gflops_start, gflops_end)
    print(f"float64 matmul ({size}²) again: {gflops_end:.1f} GFLOP/s; yardstick {gflops:.1f}")

    ok = err_ggn <= TOLERANCE and err_hess <= TOLERANCE
    print(f"relative Frobenius error: G {err_ggn:.3g}, H {err_hess:.3g} "
          f"({'OK' if ok else 'FAIL'}: ≤ {TOLERANCE:g})")

    f_g, f_h, f_hvp = ggn_flops(model, n), hessian_flops(model, n), hvp_flops(model, n)
    rate_g, rate_h = f_g / ggn_t.best / 1e9, f_h / hess_t.best / 1e9
    rate_cl_h = f_hvp / cl_hess_t.best / 1e9
    print(f"GGN: {f_g / 1e9:.1f} GFLOP counted → ours {rate_g:.1f} GFLOP/s "
          f"({rate_g / gflops:.0%} of matmul)")
    print(f"H:   {f_h / 1e9:.1f} GFLOP counted (assembly) → ours {rate_h:.1f} GFLOP/s "
          f"({rate_h / gflops:.0%} of matmul); curvlinops {f_hvp / 1e9:.1f} GFLOP counted "
          f"({HVP_UNITS} units per HVP) → {rate_cl_h:.1f} GFLOP/s ({rate_cl_h / gflops:.0%})")

    ratio_ggn = cl_ggn_t.best / ggn_t.best
    ratio_hess = cl_hess_t.best / hess_t.best
    print(f"speed-up vs curvlinops: G {ratio_ggn:.1f}× (target ≥ {TARGET_GGN:g}: "
          f"{'met' if ratio_ggn >= TARGET_GGN else 'MISSED'}), H {ratio_hess:.1f}× "
          f"(target ≥ {TARGET_HESSIAN:g}: {'met' if ratio_hess >= TARGET_HESSIAN else 'MISSED'})")
    print(f"peak RSS: {rss_ours:.0f} MiB after ours, {rss_all:.0f} MiB after curvlinops")
    emit({
        "benchmark": "dense_curvature",
        "quick": args.quick,
        "n_examples": n,
        "n_params": d,
        "matmul_gflops": gflops,
        "matmul_gflops_start": gflops_start,
        "matmul_gflops_end": gflops_end,
        "ours_ggn_s": ggn_t.best,
        "ours_hessian_s": hess_t.best,
        "curvlinops_ggn_s": cl_ggn_t.best,
        "curvlinops_hessian_s": cl_hess_t.best,
        "ours_hessian_hvp_s": hvp_t.best if hvp_t is not None else None,
        "rel_diff_hvp_vs_assembly": rel_fro(hvp_t.result, hess_t.result)
        if hvp_t is not None else None,
        "curvlinops_columns_per_product": columns if 0 < columns < d else d,
        "rel_err_ggn": err_ggn,
        "rel_err_hessian": err_hess,
        "agree": ok,
        "ggn_gflop_counted": f_g / 1e9,
        "hessian_gflop_counted": f_h / 1e9,
        "hvp_gflop_counted": f_hvp / 1e9,
        "ours_ggn_gflops": rate_g,
        "ours_hessian_gflops": rate_h,
        "curvlinops_hessian_gflops": rate_cl_h,
        "ours_ggn_fraction_of_matmul": rate_g / gflops,
        "ours_hessian_fraction_of_matmul": rate_h / gflops,
        "peak_rss_mib_ours": round(rss_ours, 1),
        "peak_rss_mib_with_curvlinops": round(rss_all, 1),
        "targets": {"ggn": TARGET_GGN, "hessian": TARGET_HESSIAN},
        "met_targets": ratio_ggn >= TARGET_GGN and ratio_hess >= TARGET_HESSIAN,
        "machine": info,
        "ratio_ggn": ratio_ggn,
        "ratio_hessian": ratio_hess,
        "ratio": min(ratio_ggn, ratio_hess),
    })


if __name__ == "__main__":
    main()
