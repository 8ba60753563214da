"""Structured curvature: time to fit K-FAC and EK-FAC, curvscope vs curvlinops vs kronfluence.

What: fitting K-FAC (per-layer Kronecker factors S ⊗ A) and EK-FAC (K-FAC's eigenbasis with
corrected eigenvalues) on the default problem (digits, N = 1,617, MLP 64→64→32→10 GELU with
bias, d = 6,570, float64, freshly initialised), one block per layer (weight and bias together).
``--quick`` uses hidden [16, 16] and 400 points.

How, per library (each warmed up once, then best/median of ``--repeats`` (default 7)
``time.perf_counter`` runs, the six fits interleaved round-robin so that bursts of other work
on a shared machine hit all alike):

* curvscope: ``kfac.build(ctx)`` / ``ekfac.build(ctx)`` on a fresh ``CurvatureContext`` each
  time (exact type-2 factors, C = 10 backward passes, then ``eigh`` of every factor; EK-FAC adds
  the per-sample projection for the corrected eigenvalues).
* curvlinops: ``KFACLinearOperator`` / ``EKFACLinearOperator`` with
  ``fisher_type=FisherType.TYPE2``, ``separate_weight_and_bias=False``,
  ``check_deterministic=False``, data ``[(X, y)]``; the timed fit is construction plus the
  public ``compute_kronecker_factors()`` (K-FAC) or ``compute_eigenvalue_correction()`` (EK-FAC,
  which computes the factors, their eigenvectors and the corrected eigenvalues). Type-2 like
  ours, so the two must give the same matrices: both are materialised (curvscope
  ``op.to_dense()``, curvlinops ``op @ eye(d)``) and compared, relative Frobenius error ≤ 1e-8.
* kronfluence: ``Analyzer.fit_all_factors`` with ``FactorArguments(strategy="kfac" | "ekfac")``
  on a ``TensorDataset``, one batch of all N points (``per_device_batch_size=N``, so no
  batch-size search), ``cpu=True``, progress bars and logging off, output under a temporary
  directory (its time includes writing the factors as safetensors files, which is how it
  works). All its dtypes (covariances, per-sample gradients, lambda) are set to float64; its
  eigendecomposition is float64 by default. NOTE: kronfluence fits the Monte-Carlo Fisher — the
  task's ``compute_train_loss(sample=True)`` draws one label per point from the model's
  softmax — so it runs ONE backward pass per batch where the exact type-2 factors need C = 10;
  its matrices are therefore a different (noisy) estimate and are not compared numerically.

Figures of merit: speed-ups of curvscope over each peer for K-FAC and EK-FAC; ``ratio`` =
curvscope's speed-up over curvlinops for EK-FAC.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings

import torch
import torch.nn.functional as F
from _common import (
    describe_model,
    emit,
    header,
    load_problem,
    n_params,
    parse_args,
    peak_rss_mib,
    rel_fro,
    time_interleaved,
)
from curvlinops import EKFACLinearOperator, FisherType, KFACLinearOperator

from curvscope.curvature import CurvatureContext, ekfac, kfac

TOLERANCE = 1e-8


# ----- curvscope ------------------------------------------------------------------------------
def curvscope_fit(builder, model, X, y):
    return builder(CurvatureContext(model, X, y))


# ----- curvlinops -----------------------------------------------------------------------------
def curvlinops_operator(cls, model, X, y):
    return cls(model, torch.nn.CrossEntropyLoss(), [p for p in model.parameters()], [(X, y)],
               fisher_type=FisherType.TYPE2, separate_weight_and_bias=False,
               check_deterministic=False)


def curvlinops_kfac(model, X, y):
    op = curvlinops_operator(KFACLinearOperator, model, X, y)
    op.compute_kronecker_factors()
    return op


def curvlinops_ekfac(model, X, y):
    op = curvlinops_operator(EKFACLinearOperator, model, X, y)
    op.compute_eigenvalue_correction()
    return op


# ----- kronfluence ----------------------------------------------------------------------------
def kronfluence_fitter(model, X, y, workdir: str):
    """A function strategy → fitted factors' folder, with kronfluence set up once."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments
    from kronfluence.task import Task

    generator = torch.Generator().manual_seed(0)

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):
            inputs, targets = batch
            logits = model(inputs)
            if sample:  # Monte-Carlo Fisher: labels drawn from the model
                with torch.no_grad():
                    probs = torch.softmax(logits.detach(), dim=-1)
                    targets = torch.multinomial(probs, 1, generator=generator).flatten()
            return F.cross_entropy(logits, targets, reduction="sum")

        def compute_measurement(self, batch, model):
            inputs, targets = batch
            return F.cross_entropy(model(inputs), targets, reduction="sum")

    task = Classification()
    prepared = prepare_model(copy.deepcopy(model), task)  # wraps modules in place
    analyzer = Analyzer("bench", prepared, task, cpu=True, disable_tqdm=True,
                        output_dir=workdir, log_level=logging.ERROR)
    dataset = torch.utils.data.TensorDataset(X, y)
    f64 = torch.float64
    counter = iter(range(10**9))

    def fit(strategy: str):
        args = FactorArguments(strategy=strategy, activation_covariance_dtype=f64,
                               gradient_covariance_dtype=f64, per_sample_gradient_dtype=f64,
                               lambda_dtype=f64, eigendecomposition_dtype=f64)
        name = f"{strategy}_{next(counter)}"
        analyzer.fit_all_factors(name, dataset, per_device_batch_size=len(dataset),
                                 factor_args=args, overwrite_output_dir=True)
        return name

    return fit


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    info = header("K-FAC / EK-FAC fitting: curvscope vs curvlinops vs kronfluence")
    hidden = (16, 16) if args.quick else (64, 32)
    model, X, y = load_problem(hidden=hidden, n_train=400 if args.quick else None)
    d, n = n_params(model), X.shape[0]
    repeats = args.repeats or (2 if args.quick else 7)
    print(f"   {describe_model(model)}, N = {n}, float64, one block per layer")
    warnings.filterwarnings("ignore", category=FutureWarning)  # kronfluence's GradScaler

    results = {}
    runs = {
        ("curvscope", "kfac"): lambda: curvscope_fit(kfac.build, model, X, y),
        ("curvscope", "ekfac"): lambda: curvscope_fit(ekfac.build, model, X, y),
        ("curvlinops", "kfac"): lambda: curvlinops_kfac(model, X, y),
        ("curvlinops", "ekfac"): lambda: curvlinops_ekfac(model, X, y),
    }
    with tempfile.TemporaryDirectory(prefix="curvscope-bench-kronfluence-") as workdir:
        fit = kronfluence_fitter(model, X, y, workdir)
        runs[("kronfluence", "kfac")] = lambda: fit("kfac")
        runs[("kronfluence", "ekfac")] = lambda: fit("ekfac")
        times = time_interleaved(runs, repeats=repeats)
        for (library, method), timing in times.items():
            results[(library, method)] = timing.result
            print(f"{library:<11} {method:<5} {timing}")

    eye = torch.eye(d, dtype=torch.float64)
    err_k = rel_fro(results[("curvscope", "kfac")].to_dense(),
                    results[("curvlinops", "kfac")] @ eye)
    err_e = rel_fro(results[("curvscope", "ekfac")].to_dense(),
                    results[("curvlinops", "ekfac")] @ eye)
    ok = err_k <= TOLERANCE and err_e <= TOLERANCE
    print(f"curvscope vs curvlinops, relative Frobenius error: K-FAC {err_k:.3g}, "
          f"EK-FAC {err_e:.3g} ({'OK' if ok else 'FAIL'}: ≤ {TOLERANCE:g})")
    print("note: kronfluence fits the Monte-Carlo Fisher (1 sampled label per point, 1 backward "
          "pass) where curvscope and curvlinops fit the exact type-2 factors (C = 10 passes); "
          "its factors are not compared numerically")

    best = {key: t.best for key, t in times.items()}
    speedups = {}
    for peer in ("curvlinops", "kronfluence"):
        for method in ("kfac", "ekfac"):
            speedups[f"{method}_vs_{peer}"] = best[(peer, method)] / best[("curvscope", method)]
    print("curvscope speed-up: " + ", ".join(f"{k} {v:.1f}×" for k, v in speedups.items()))
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    emit({
        "benchmark": "structured_curvature",
        "quick": args.quick,
        "n_examples": n,
        "n_params": d,
        "times_s": {f"{lib}_{method}": t for (lib, method), t in best.items()},
        "median_times_s": {f"{lib}_{method}": t.median for (lib, method), t in times.items()},
        "rel_err_kfac_vs_curvlinops": err_k,
        "rel_err_ekfac_vs_curvlinops": err_e,
        "agree": ok,
        "kronfluence_fisher": "monte-carlo (1 sampled label per point), float64 dtypes",
        "speedups": speedups,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "machine": info,
        "ratio": speedups["ekfac_vs_curvlinops"],
    })


if __name__ == "__main__":
    main()
