"""The pipeline: a StudySpec in, a StudyResult out, stage by stage.

Stages: data → train → gradients → curvature (one per method) → scores → diagnostics.
Expensive stages are cached under hashes of exactly their inputs (``storage.StageCache``);
``results.json`` and ``arrays.npz`` are written atomically.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from curvscope.attribution import influence_scores, per_sample_gradients
from curvscope.curvature import CurvatureContext, CurvatureOperator, CurvatureSettings
from curvscope.data import load_data
from curvscope.diagnostics.report import diagnose
from curvscope.groundtruth import (
    draw_subsets,
    lds_many,
    predicted_losses,
    retrain_slice,
    seed_noise_ceiling,
)
from curvscope.models import ParameterLayout, build_mlp
from curvscope.registry import CHAIN, dense_methods, get_method
from curvscope.spec import StudySpec
from curvscope.storage import StageCache, write_json_atomic, write_npz_atomic
from curvscope.training import train_model

Progress = Callable[[str, float], None]

DENSE_MATRICES_PER_METHOD = 3  # the matrix, its eigenvectors, LAPACK workspace
DENSE_OVERHEAD_MATRICES = 3  # diagnostics: one structured method materialised + differences


class MemoryBudgetError(ValueError):
    """A dense method would need more memory than the budget allows."""


@dataclass
class StudyResult:
    results: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def default_memory_budget_bytes() -> int:
    return psutil.virtual_memory().total // 2


def estimate_dense_memory_bytes(n_params: int, methods: list[str], itemsize: int = 8) -> int:
    """Peak bytes of the d × d matrices a study with these methods holds at once."""
    n_dense = len(dense_methods(methods))
    if n_dense == 0:
        return 0
    matrices = n_dense * DENSE_MATRICES_PER_METHOD + DENSE_OVERHEAD_MATRICES
    return matrices * n_params * n_params * itemsize


def memory_budget_bytes(spec: StudySpec) -> int:
    """The spec's memory budget, default half the machine's RAM."""
    return (int(spec.compute.memory_budget_gib * 2**30) if spec.compute.memory_budget_gib
            else default_memory_budget_bytes())


def check_memory_budget(spec: StudySpec, n_params: int) -> int:
    """Refuse, with a message that says what to change, a dense study over the budget."""
    budget = memory_budget_bytes(spec)
    itemsize = 8 if spec.compute.dtype == "float64" else 4
    need = estimate_dense_memory_bytes(n_params, spec.curvature.methods, itemsize)
    if need > budget:
        dense = ", ".join(dense_methods(spec.curvature.methods))
        raise MemoryBudgetError(
            f"the dense methods ({dense}) need about {need / 2**30:.1f} GiB for "
            f"{n_params:,} parameters, above the memory budget of {budget / 2**30:.1f} GiB; "
            "drop them from curvature.methods (the structured methods run matrix-free), use a "
            "smaller model, or raise compute.memory_budget_gib"
        )
    return need


def estimate_study(spec: StudySpec) -> dict:
    """What a study will cost, before it runs: parameters, dense memory against the budget,
    retrained models and model-epochs. Loads (and so validates) the data; raises
    ``MemoryBudgetError`` when a dense method would not fit."""
    data = load_data(spec.data)
    model = build_mlp(data.n_features, data.n_classes, spec.model, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    need = check_memory_budget(spec, n_params)
    gt = spec.groundtruth
    n_models = len(gt.alphas) * gt.n_subsets * gt.n_seeds if gt.enabled else 0
    model_epochs = n_models * spec.training.epochs
    point_epochs = sum(math.floor(a * data.n_train) for a in gt.alphas) * gt.n_subsets * \
        gt.n_seeds * spec.training.epochs if gt.enabled else 0
    return {
        "n_params": n_params,
        "n_train": data.n_train,
        "n_test": data.n_test,
        "dense_memory_bytes": need,
        "memory_budget_bytes": memory_budget_bytes(spec),
        "n_retrained_models": n_models,
        "retrained_model_epochs": model_epochs,
        # training flops ≈ 6 · parameters per point seen (forward + backward)
        "retraining_gflop": 6 * n_params * point_epochs / 1e9,
        "dense_gflop": (2 * n_params**2 * data.n_train * data.n_classes
                        + 10 * n_params**3) / 1e9 if need else 0.0,
    }


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("compute.device = 'cuda' but no CUDA device is available; use 'auto'")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("curvscope", "torch", "numpy", "scipy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def run_study(spec: StudySpec, out_dir: Path | None = None, cache_dir: Path | None = None,
              progress: Progress | None = None) -> StudyResult:
    """Run every stage of ``spec``; write results.json and arrays.npz to ``out_dir`` if given."""
    report = progress or (lambda stage, fraction: None)
    timings: dict[str, float] = {}
    cache = StageCache(cache_dir)

    @contextmanager
    def stage(name: str):
        report(name, 0.0)
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 4)
        report(name, 1.0)

    dtype = torch.float64 if spec.compute.dtype == "float64" else torch.float32
    device = resolve_device(spec.compute.device)

    with stage("data"):
        data = load_data(spec.data)

        def tensor(a, kind=dtype):
            return torch.as_tensor(a, dtype=kind, device=device)

        X_train, y_train = tensor(data.X_train), tensor(data.y_train, torch.long)
        X_test, y_test = tensor(data.X_test), tensor(data.y_test, torch.long)
        model = build_mlp(data.n_features, data.n_classes, spec.model, seed=spec.training.seed,
                          dtype=dtype).to(device)
        layout = ParameterLayout.from_model(model, spec.curvature.block_structure)
        check_memory_budget(spec, layout.n_params)

    train_material = {"data": spec.data.model_dump(mode="json"),
                      "model": spec.model.model_dump(mode="json"),
                      "training": spec.training.model_dump(mode="json"),
                      "dtype": spec.compute.dtype, "device": device.type}
    with stage("train"):
        def train():
            result = train_model(model, X_train, y_train, spec.training,
                                 progress=lambda e, n: report("train", e / n))
            return {"theta": result.theta.cpu(),
                    "checkpoints": {e: t.cpu() for e, t in result.checkpoints.items()},
                    "epoch_losses": result.epoch_losses}

        trained = cache.get_or_compute("train", train_material, train)
        with torch.no_grad():
            for name, value in layout.unflatten(trained["theta"].to(device)).items():
                model.get_parameter(name).copy_(value)

    with stage("gradients"):
        train_grads = per_sample_gradients(model, X_train, y_train, layout)
        test_grads = per_sample_gradients(model, X_test, y_test, layout)

    settings = CurvatureSettings(block_structure=spec.curvature.block_structure,
                                 fisher_type=spec.curvature.fisher_type,
                                 mc_samples=spec.curvature.mc_samples, seed=spec.training.seed)
    ctx = CurvatureContext(model, X_train, y_train, settings)
    operators: dict[str, CurvatureOperator] = {}
    # dense methods first so EK-FAC can read its eigenvalues off the dense GGN
    order = sorted(spec.curvature.methods, key=lambda n: get_method(n).dense_matrix is None)
    for name in order:
        info = get_method(name)
        with stage(f"curvature/{name}"):
            material = {"train": train_material, "method": name,
                        "settings": spec.curvature.model_dump(
                            mode="json", exclude={"methods", "eigenbasis_k"})}
            operators[name] = cache.get_or_compute(f"curvature/{name}", material,
                                                   lambda info=info: info.build(ctx))
            if info.dense_matrix and not ctx.has(info.dense_matrix):
                # reused from the cache: the matrix is its eigen-decomposition recomposed
                ctx.adopt_dense(info.dense_matrix, operators[name].to_dense())
    operators = {name: operators[name] for name in spec.curvature.methods}

    scores: dict[str, torch.Tensor] = {}
    inversion: dict[str, dict] = {}
    with stage("scores"):
        for name, op in operators.items():
            scores[name], inversion[name] = influence_scores(op, train_grads, test_grads,
                                                             spec.inverse)

    with stage("diagnostics"):
        diagnostics, diag_arrays = diagnose(ctx, operators, spec.curvature.eigenbasis_k,
                                            spec.inverse.damping)
        for name in operators:
            diagnostics["methods"][name]["inverse"] = inversion[name]
            diagnostics["methods"][name]["timing_seconds"] = timings[f"curvature/{name}"]
            diagnostics["methods"][name]["cache"] = cache.events.get(f"curvature/{name}")

    groundtruth, gt_arrays = None, {}
    if spec.groundtruth.enabled:
        groundtruth, gt_arrays = _ground_truth(spec, data, model, scores, cache, stage, report)
        lds_values = groundtruth.pop("lds")
        for name in operators:
            diagnostics["methods"][name]["lds"] = lds_values[name]
        if diagnostics["decomposition"] is not None:
            diagnostics["decomposition"]["lds_lost"] = groundtruth["lds_lost"]

    with torch.no_grad():
        train_logits, test_logits = model(X_train), model(X_test)
        test_losses = F.cross_entropy(test_logits, y_test, reduction="none")
    results = {
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.spec_hash(),
        "versions": package_versions(),
        "device": describe_device(device),
        "n_params": layout.n_params,
        "n_train": data.n_train,
        "n_test": data.n_test,
        "n_classes": data.n_classes,
        "blocks": layout.describe_blocks(),
        "training": {
            "epoch_losses": trained["epoch_losses"],
            "train_loss": float(F.cross_entropy(train_logits, y_train)),
            "train_accuracy": float((train_logits.argmax(1) == y_train).double().mean()),
            "test_loss": float(test_losses.mean()),
            "test_accuracy": float((test_logits.argmax(1) == y_test).double().mean()),
            "checkpoint_epochs": sorted(trained["checkpoints"]),
        },
        "inverse": spec.inverse.model_dump(mode="json"),
        "cache": dict(cache.events),
        **diagnostics,
        "groundtruth": groundtruth,
        "timings": timings,
    }
    arrays = {f"scores/{n}": s for n, s in scores.items()} | diag_arrays | gt_arrays
    arrays |= {f"params/{n}": v for n, v in layout.unflatten(trained["theta"]).items()}
    arrays |= {f"checkpoints/{e}": t for e, t in trained["checkpoints"].items()}
    arrays |= {"split/train": data.train_idx, "split/test": data.test_idx,
               "test_losses": test_losses}
    if data.images is not None:
        arrays["images/test"] = data.images[data.test_idx]
        arrays["images/train"] = data.images[data.train_idx]
    arrays = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v))
              for k, v in arrays.items()}
    if out_dir is not None:
        write_study(Path(out_dir), results, arrays, timings)
    return StudyResult(results, arrays)


@dataclass(frozen=True)
class RetrainTask:
    """One independent piece of a study's retraining: subsets [start, stop) of α, all seeds."""

    alpha: float
    subset_start: int
    subset_stop: int

    @property
    def stage(self) -> str:
        return f"groundtruth/{self.alpha}/{self.subset_start}-{self.subset_stop}"


def plan_retraining(spec: StudySpec) -> list[RetrainTask]:
    """The study's retraining cut into tasks of ``groundtruth.subsets_per_task`` subsets (all
    subsets of an α in one task by default). Tasks are independent: several workers can run
    them at once, and ``run_study`` then reuses their cached outputs."""
    gt = spec.groundtruth
    if not gt.enabled:
        return []
    per_task = gt.subsets_per_task or gt.n_subsets
    return [RetrainTask(alpha, start, min(start + per_task, gt.n_subsets))
            for alpha in gt.alphas for start in range(0, gt.n_subsets, per_task)]


@dataclass
class _RetrainInputs:
    template: torch.nn.Sequential
    tensors: tuple[torch.Tensor, ...]  # X, y, X_test, y_test in the retraining dtype
    material: dict


def _retrain_inputs(spec: StudySpec, data, device: torch.device) -> _RetrainInputs:
    gt = spec.groundtruth
    dtype = torch.float64 if gt.dtype == "float64" else torch.float32
    tensors = (torch.as_tensor(data.X_train, dtype=dtype, device=device),
               torch.as_tensor(data.y_train, device=device),
               torch.as_tensor(data.X_test, dtype=dtype, device=device),
               torch.as_tensor(data.y_test, device=device))
    template = build_mlp(data.n_features, data.n_classes, spec.model, seed=0,
                         dtype=dtype).to(device)
    material = {"data": spec.data.model_dump(mode="json"),
                "model": spec.model.model_dump(mode="json"),
                "training": spec.training.model_dump(mode="json", exclude={"seed"}),
                "groundtruth": gt.model_dump(mode="json", include={"n_seeds", "seed", "dtype"}),
                "device": device.type}
    return _RetrainInputs(template, tensors, material)


def _task_losses(spec, inputs: _RetrainInputs, task: RetrainTask, cache: StageCache,
                 progress=None) -> np.ndarray:
    """Losses (n_checkpoints × subsets × seeds × n_test) of one task, through the cache."""
    material = inputs.material | {"alpha": task.alpha,
                                  "subsets": [task.subset_start, task.subset_stop]}
    return cache.get_or_compute(task.stage, material, lambda: retrain_slice(
        inputs.template, *inputs.tensors, spec.training, spec.groundtruth, task.alpha,
        list(range(task.subset_start, task.subset_stop)),
        list(range(spec.groundtruth.n_seeds)), progress=progress,
        memory_budget_bytes=memory_budget_bytes(spec)))


def run_retraining_task(spec: StudySpec, task: RetrainTask, cache_dir: Path,
                        progress: Callable[[float], None] | None = None) -> None:
    """Run one retraining task into the stage cache (for a worker sharing a study)."""
    device = resolve_device(spec.compute.device)
    inputs = _retrain_inputs(spec, load_data(spec.data), device)
    _task_losses(spec, inputs, task, StageCache(cache_dir), progress)


def _ground_truth(spec, data, model, scores, cache, stage, report):
    """Retrain on subsets for every α, then the LDS of every method with its interval, the
    seed-noise ceiling, the LDS lost at each step of the chain and the hierarchy check."""
    gt = spec.groundtruth
    inputs = _retrain_inputs(spec, data, next(model.parameters()).device)
    epochs = spec.training.checkpoint_epochs()
    arrays: dict[str, np.ndarray] = {}
    retrained: dict[float, np.ndarray] = {}
    masks: dict[float, np.ndarray] = {}
    tasks = plan_retraining(spec)
    for alpha in gt.alphas:
        name = f"groundtruth/{alpha}"
        mine = [t for t in tasks if t.alpha == alpha]
        with stage(name):
            parts = []
            for k, task in enumerate(mine):
                parts.append(_task_losses(
                    spec, inputs, task, cache,
                    lambda f, k=k, name=name, n=len(mine): report(name, (k + f) / n)))
            losses = np.concatenate(parts, axis=1)
        masks[alpha] = draw_subsets(data.n_train, alpha, gt.n_subsets, gt.seed)
        retrained[alpha] = losses[-1].astype(np.float64)  # final epoch: M × R × n_test
        arrays[f"masks/{alpha}"] = masks[alpha]
        arrays[f"retrained_losses/{alpha}"] = losses[-1]
        if len(epochs) > 1:
            arrays[f"retrained_losses_by_epoch/{alpha}"] = losses
    result: dict = {"alphas": gt.alphas, "n_subsets": gt.n_subsets, "n_seeds": gt.n_seeds,
                    "seed": gt.seed, "dtype": gt.dtype, "checkpoint_epochs": epochs,
                    "ceiling": {}, "lds": {n: {} for n in scores}}
    bootstrap: dict[tuple[str, str], np.ndarray] = {}
    with stage("lds"):
        for alpha in gt.alphas:
            key = str(alpha)
            targets = retrained[alpha].mean(axis=1)
            predictions = {name: predicted_losses(masks[alpha], score.detach().cpu().numpy())
                           for name, score in scores.items()}
            for name, value in lds_many(targets, predictions, gt.n_bootstrap,
                                        seed=gt.seed).items():
                arrays[f"lds_per_test/{name}/{alpha}"] = value.pop("per_test")
                bootstrap[name, key] = value.pop("bootstrap")
                result["lds"][name][key] = value
            if gt.n_seeds >= 2:
                ceiling = seed_noise_ceiling(retrained[alpha], gt.n_bootstrap, seed=gt.seed)
                arrays[f"lds_per_test/ceiling/{alpha}"] = ceiling.pop("per_test")
                ceiling.pop("bootstrap")
                result["ceiling"][key] = ceiling
            else:
                result["ceiling"][key] = None
    result["lds_lost"] = [
        {"from": a, "to": b, "lds_lost": {str(x): _paired_difference(result["lds"], bootstrap,
                                                                      a, b, str(x))
                                          for x in gt.alphas}}
        for a, b in _adjacent([n for n in CHAIN if n in scores])]
    result["hierarchy"] = {
        str(x): _hierarchy(result["lds"], bootstrap, str(x)) for x in gt.alphas}
    return result, arrays


def _adjacent(names: list[str]) -> list[tuple[str, str]]:
    return list(zip(names[:-1], names[1:], strict=True))


def _paired_difference(values: dict, bootstrap: dict, a: str, b: str, alpha: str) -> dict:
    """LDS(a) − LDS(b) with a 95 % interval from the paired bootstrap: both methods' LDS are
    taken on the same resampled subsets, so the interval reflects the difference itself."""
    difference = bootstrap[a, alpha] - bootstrap[b, alpha]
    low, high = np.nanquantile(difference, [0.025, 0.975])
    return {"value": values[a][alpha]["value"] - values[b][alpha]["value"],
            "ci_low": float(low), "ci_high": float(high)}


HIERARCHY = ("H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC", "identity")


def _hierarchy(values: dict, bootstrap: dict, alpha: str) -> dict:
    """Test LDS(H) ≈ LDS(G) ≥ LDS(G_bd) ≥ LDS(E) ≥ LDS(K) ≥ LDS(I) pair by pair. A pair is
    "≥" when the paired interval of the difference lies above 0, "≈" when it contains 0, "<"
    when below; the hierarchy holds unless some pair is "<" (a significant reversal)."""
    pairs = []
    for a, b in _adjacent([n for n in HIERARCHY if n in values]):
        diff = _paired_difference(values, bootstrap, a, b, alpha)
        verdict = "≥" if diff["ci_low"] > 0 else ("<" if diff["ci_high"] < 0 else "≈")
        pairs.append({"higher": a, "lower": b, **diff, "verdict": verdict})
    violations = [f"{p['higher']} < {p['lower']}" for p in pairs if p["verdict"] == "<"]
    return {"pairs": pairs, "violations": violations, "holds": not violations,
            "reversals_within_noise": [f"{p['higher']} < {p['lower']}" for p in pairs
                                       if p["verdict"] == "≈" and p["value"] < 0]}


def write_study(out_dir: Path, results: dict, arrays: dict[str, np.ndarray],
                timings: dict[str, float]) -> None:
    """arrays.npz first, then results.json (whose presence marks a finished study)."""
    start = time.perf_counter()
    write_npz_atomic(out_dir / "arrays.npz", arrays)
    timings["write"] = round(time.perf_counter() - start, 4)
    write_json_atomic(out_dir / "results.json", results)
