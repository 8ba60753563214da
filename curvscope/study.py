"""The pipeline: a StudySpec in, a StudyResult out, a short loop over named stages.

``stage_plan(spec)`` lists the stages in order: data → train → gradients → curvature/<method>
(one per method, dense first) → scores → diagnostics → groundtruth/<α> (one per α) → lds.
Each is a small function of a :class:`StudyState` (``STAGES`` maps a stage's kind to it);
``assemble`` turns the final state into results.json and arrays.npz, written atomically.
Expensive stages are cached under hashes of exactly their inputs (``storage.StageCache``);
the key material of every cached stage kind is built by one function here
(``train_material``, ``curvature_material``, ``retrain_material``) and holds curvscope's
version and ``CODE_VERSION``, so a code fix never reuses a stale stage.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from curvscope.attribution import influence_scores, per_sample_gradients
from curvscope.curvature import CurvatureContext, CurvatureOperator, CurvatureSettings
from curvscope.curvature.mc_fisher import degenerate_message, mc_fisher_diagnostics
from curvscope.data import load_data
from curvscope.diagnostics.report import diagnose
from curvscope.diagnostics.shares import lds_share
from curvscope.groundtruth import (
    RetrainedLosses,
    draw_subsets,
    lds_many,
    loss_spread,
    predicted_losses,
    retrain_slice,
    seed_noise_ceiling,
)
from curvscope.groundtruth.hierarchy import hierarchy_check, lds_lost
from curvscope.linalg import default_backend
from curvscope.models import ParameterLayout, build_mlp
from curvscope.registry import CHAIN, dense_methods, get_method
from curvscope.results import (
    LABELS_TEST,
    LABELS_TRAIN,
    SCHEMA_VERSION,
    SPLIT_FIT,
    SPLIT_TEST,
    SPLIT_TRAIN,
    TEST_LOSSES,
    add_warning,
    alpha_key,
    checkpoint_name,
    general_warnings,
    images_name,
    json_safe,
    lds_bootstrap_name,
    lds_per_test_name,
    masks_name,
    params_name,
    retrained_losses_by_epoch_name,
    retrained_losses_name,
    retrained_train_losses_name,
    scores_name,
)
from curvscope.sizes import (  # noqa: F401  (re-exported: the closed-form sizes live there)
    DENSE_MATRICES_PER_METHOD,
    DENSE_OVERHEAD_MATRICES,
    estimate_dense_memory_bytes,
    mlp_n_params,
)
from curvscope.spec import FISHER_METHODS, StudySpec, known_pitfalls
from curvscope.storage import StageCache, write_json_atomic, write_npz_atomic
from curvscope.training import train_model

Progress = Callable[[str, float], None]



class MemoryBudgetError(ValueError):
    """A dense method would need more memory than the budget allows."""


@dataclass
class StudyResult:
    results: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def default_memory_budget_bytes() -> int:
    return psutil.virtual_memory().total // 2


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
    n_params = mlp_n_params(data.n_features, data.n_classes, spec.model.hidden, spec.model.bias)
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


# ----- cache-key material: the one place every stage's key is built ------------------------

#: Bumped on any fix that changes the numbers of a cached stage (a numerics fix in training,
#: curvature or retraining). Every cache key holds it with the package version, so a code fix
#: never reuses a stale cached stage.
CODE_VERSION = 1


def code_version() -> dict:
    """What names the code in every cache key: curvscope's package version and CODE_VERSION."""
    return {"curvscope": package_versions()["curvscope"], "code": CODE_VERSION}


def train_material(spec: StudySpec, device_type: str) -> dict:
    """Everything the trained model depends on (not the epoch the study attributes at: one
    training run serves every checkpoint)."""
    return {"version": code_version(),
            "data": spec.data.model_dump(mode="json"),
            "model": spec.model.model_dump(mode="json"),
            "training": spec.training.model_dump(mode="json", exclude={"evaluate_at_epoch"}),
            "dtype": spec.compute.dtype, "device": device_type}


def curvature_material(spec: StudySpec, method: str, device_type: str) -> dict:
    """Everything one method's curvature operator depends on: the trained model and the
    curvature settings THIS method reads (``method_curvature_settings``), so that changing
    the block structure or one method's Fisher type (an ablation ladder rung) reuses every
    other method's cached operator. On CPU also the eigensolver (``linalg.default_backend``):
    an operator decomposed by the other LAPACK differs from this machine's at round-off, so
    it is not reused."""
    material = {"version": code_version(), "train": train_material(spec, device_type),
                "epoch": spec.training.evaluated_epoch(), "method": method,
                "settings": method_curvature_settings(spec, method)}
    if device_type == "cpu":
        material["eigensolver"] = default_backend()
    return material


def method_curvature_settings(spec: StudySpec, method: str) -> dict:
    """The curvature settings ``method``'s operator depends on: none for H, the GGN and the
    baselines; the block structure for GGN-blockdiag; for K-FAC and EK-FAC also their own
    Fisher type and, for a Monte-Carlo Fisher, its samples per point (its seed is the
    training seed, in the train material). Not the methods list, the diagnostics' k, nor
    mc_replicates (replicates feed the diagnostics only)."""
    c = spec.curvature
    settings: dict = {}
    if method in ("GGN-blockdiag", *FISHER_METHODS):
        settings["block_structure"] = c.block_structure
    if method in FISHER_METHODS:
        settings["fisher_type"] = c.fisher_type_of(method)
        if settings["fisher_type"] == "mc":
            settings["mc_samples"] = c.mc_samples
    return settings


#: What a cached retraining task holds: 2 = ``groundtruth.RetrainedLosses`` (test losses and
#: the models' training-loss curves); 1 held the test losses alone.
RETRAIN_FORMAT = 2


def retrain_material(spec: StudySpec, device_type: str, task: RetrainTask) -> dict:
    """Everything one retraining task's losses depend on (not the training seed of the
    studied model: retraining seeds are groundtruth.seed + r), and the cached value's
    format."""
    gt = spec.groundtruth
    return {"version": code_version(), "format": RETRAIN_FORMAT,
            "data": spec.data.model_dump(mode="json"),
            "model": spec.model.model_dump(mode="json"),
            "training": spec.training.model_dump(mode="json",
                                                 exclude={"seed", "evaluate_at_epoch"}),
            "groundtruth": gt.model_dump(mode="json", include={"n_seeds", "seed", "dtype"}),
            "device": device_type,
            "alpha": task.alpha, "subsets": [task.subset_start, task.subset_stop]}


# ----- the stages --------------------------------------------------------------------------

def curvature_order(spec: StudySpec) -> list[str]:
    """The order methods are built in: dense methods first, so EK-FAC can read its
    eigenvalues off the dense GGN."""
    return sorted(spec.curvature.methods, key=lambda n: get_method(n).dense_matrix is None)


def stage_plan(spec: StudySpec) -> list[str]:
    """The stages ``run_study`` runs and reports, in order (the worker's progress uses it)."""
    stages = ["data", "train", "gradients",
              *[f"curvature/{m}" for m in curvature_order(spec)], "scores", "diagnostics"]
    if spec.groundtruth.enabled:
        stages += [f"groundtruth/{a}" for a in spec.groundtruth.alphas] + ["lds"]
    return stages


@dataclass
class StudyState:
    """What the stages of one study pass to each other. Each stage reads what earlier stages
    left here and adds its own outputs; ``assemble`` turns the final state into results."""

    spec: StudySpec
    cache: StageCache
    report: Progress
    device: torch.device
    dtype: torch.dtype
    timings: dict[str, float] = field(default_factory=dict)
    # data
    data: Any = None
    X_train: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    # what the model is fitted on: the training points above unless data.split = per_loader
    X_fit: torch.Tensor | None = None
    y_fit: torch.Tensor | None = None
    model: torch.nn.Module | None = None
    layout: ParameterLayout | None = None
    # train
    trained: dict | None = None
    # gradients
    train_grads: torch.Tensor | None = None
    test_grads: torch.Tensor | None = None
    # curvature (in build order; ``methods`` gives the spec's order)
    ctx: CurvatureContext | None = None
    operators: dict[str, CurvatureOperator] = field(default_factory=dict)
    # scores
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    inversion: dict[str, dict] = field(default_factory=dict)
    # diagnostics
    diagnostics: dict | None = None
    diag_arrays: dict = field(default_factory=dict)
    # ground truth
    retrain_inputs: _RetrainInputs | None = None
    masks: dict[float, np.ndarray] = field(default_factory=dict)
    retrained: dict[float, np.ndarray] = field(default_factory=dict)
    # α key → the retrained models' training-loss spread (``groundtruth.loss_spread``)
    loss_curves: dict[str, dict] = field(default_factory=dict)
    groundtruth: dict | None = None
    lds: dict[str, dict] = field(default_factory=dict)
    bootstrap: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    gt_arrays: dict = field(default_factory=dict)
    # results.warnings (``results.add_warning``) and results.known_pitfalls
    warnings: list[dict] = field(default_factory=list)
    known_pitfalls: list[str] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return list(self.spec.curvature.methods)

    def tensor(self, array, kind: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(array, dtype=kind or self.dtype, device=self.device)


def stage_data(state: StudyState, name: str) -> None:
    """Load and split the data, build the model, check the dense-memory budget."""
    spec = state.spec
    data = state.data = load_data(spec.data)
    state.X_train, state.y_train = state.tensor(data.X_train), state.tensor(data.y_train,
                                                                           torch.long)
    state.X_test, state.y_test = state.tensor(data.X_test), state.tensor(data.y_test,
                                                                        torch.long)
    if data.X_fit is data.X_train:  # the shared split: the model fits the attributed points
        state.X_fit, state.y_fit = state.X_train, state.y_train
    else:  # split = per_loader: loader 1's rows (SplitData's three roles)
        state.X_fit, state.y_fit = state.tensor(data.X_fit), state.tensor(data.y_fit,
                                                                         torch.long)
    state.known_pitfalls = known_pitfalls(spec)
    if state.known_pitfalls:
        add_warning(state.warnings, "known_pitfalls",
                    f"this study uses {len(state.known_pitfalls)} of the official code's "
                    "protocol choices that are known pitfalls (see known_pitfalls); its numbers "
                    "reproduce that code, not a clean comparison")
    state.model = build_mlp(data.n_features, data.n_classes, spec.model,
                            seed=spec.training.seed, dtype=state.dtype).to(state.device)
    state.layout = ParameterLayout.from_model(state.model, spec.curvature.block_structure)
    check_memory_budget(spec, state.layout.n_params)


def stage_train(state: StudyState, name: str) -> None:
    """Train the model (cached) and load its parameters at the evaluated epoch (the end of
    training unless ``training.evaluate_at_epoch`` names a checkpoint)."""
    spec, model = state.spec, state.model

    def train():
        result = train_model(model, state.X_fit, state.y_fit, spec.training,
                             progress=lambda e, n: state.report(name, e / n))
        return {"theta": result.theta.cpu(),
                "checkpoints": {e: t.cpu() for e, t in result.checkpoints.items()},
                "epoch_losses": result.epoch_losses}

    state.trained = state.cache.get_or_compute(
        name, train_material(spec, state.device.type), train)
    epoch = spec.training.evaluated_epoch()
    theta = state.trained["theta"] if epoch == spec.training.epochs \
        else state.trained["checkpoints"][epoch]
    with torch.no_grad():
        for param, value in state.layout.unflatten(theta.to(state.device)).items():
            model.get_parameter(param).copy_(value)


def stage_gradients(state: StudyState, name: str) -> None:
    """Per-sample gradients of the training and test losses."""
    state.train_grads = per_sample_gradients(state.model, state.X_train, state.y_train,
                                             state.layout)
    state.test_grads = per_sample_gradients(state.model, state.X_test, state.y_test,
                                            state.layout)


def curvature_settings(spec: StudySpec) -> CurvatureSettings:
    return CurvatureSettings(block_structure=spec.curvature.block_structure,
                             fisher_type=spec.curvature.fisher_type,
                             mc_samples=spec.curvature.mc_samples, seed=spec.training.seed,
                             fisher_types=tuple(sorted(spec.curvature.fisher_types.items())))


def stage_curvature(state: StudyState, name: str) -> None:
    """Build one method's curvature operator (cached); ``name`` is ``curvature/<method>``."""
    method = name.split("/", 1)[1]
    spec = state.spec
    if state.ctx is None:
        state.ctx = CurvatureContext(state.model, state.X_train, state.y_train,
                                     curvature_settings(spec))
    ctx, info = state.ctx, get_method(method)
    state.operators[method] = state.cache.get_or_compute(
        name, curvature_material(spec, method, state.device.type), lambda: info.build(ctx))
    if info.dense_matrix and not ctx.has(info.dense_matrix):
        # reused from the cache: the matrix is its eigen-decomposition recomposed
        ctx.adopt_dense(info.dense_matrix, state.operators[method].to_dense())


def stage_scores(state: StudyState, name: str) -> None:
    """Influence scores of every method under the spec's inverse rule."""
    state.operators = {m: state.operators[m] for m in state.methods}
    for method, op in state.operators.items():
        state.scores[method], state.inversion[method] = influence_scores(
            op, state.train_grads, state.test_grads, state.spec.inverse)


def stage_diagnostics(state: StudyState, name: str) -> None:
    """Residuals, spectra, overlaps and the error decomposition (SCIENCE.md §5)."""
    spec = state.spec
    state.diagnostics, state.diag_arrays = diagnose(
        state.ctx, state.operators, spec.curvature.eigenbasis_k, spec.inverse.damping,
        rule=spec.inverse, scores=state.scores)
    for method in state.operators:
        entry = state.diagnostics["methods"][method]
        entry["inverse"] = state.inversion[method]
        if "damping_received" in state.inversion[method]:  # results contract: per method
            entry["damping_received"] = state.inversion[method]["damping_received"]
        entry["timing_seconds"] = state.timings[f"curvature/{method}"]
        entry["cache"] = state.cache.events.get(f"curvature/{method}")
        if method in FISHER_METHODS and spec.curvature.fisher_type_of(method) == "mc":
            entry["mc_fisher"] = mc_fisher_diagnostics(state.ctx, spec.curvature.mc_replicates)
            if entry["mc_fisher"]["degenerate"]:
                add_warning(state.warnings, "mc_fisher_degenerate",
                            degenerate_message(method, entry["mc_fisher"]), method=method)
        dropped = state.inversion[method]["n_dropped"]
        if dropped:
            add_warning(state.warnings, "eigenvalues_dropped",
                        f"the inverse rule {spec.inverse.rule!r} dropped {dropped} of "
                        f"{dropped + state.inversion[method]['n_inverted']} eigenvalues of "
                        f"{method} (shifted eigenvalue at or below the cutoff "
                        f"{state.inversion[method]['cutoff']:.3g}): they get weight 0 in the "
                        "inverse", severity="info", method=method)


def stage_retraining(state: StudyState, name: str) -> None:
    """Retrain on the subsets of one α (``name`` is ``groundtruth/<α>``), through the cache
    task by task (tasks may already have run on other workers)."""
    spec, gt = state.spec, state.spec.groundtruth
    alpha = next(a for a in gt.alphas if name == f"groundtruth/{a}")
    if state.retrain_inputs is None:
        state.retrain_inputs = _retrain_inputs(spec, state.data,
                                               next(state.model.parameters()).device)
    mine = [t for t in plan_retraining(spec) if t.alpha == alpha]
    parts = []
    for k, task in enumerate(mine):
        parts.append(_task_losses(
            spec, state.retrain_inputs, task, state.cache,
            lambda f, k=k, n=len(mine): state.report(name, (k + f) / n)))
    losses = np.concatenate([p.test_losses for p in parts], axis=1)
    train_losses = np.concatenate([p.train_losses for p in parts], axis=0)
    state.loss_curves[alpha_key(alpha)] = loss_spread(train_losses,
                                                      parts[0].train_loss_epochs)
    state.gt_arrays[retrained_train_losses_name(alpha)] = train_losses
    state.masks[alpha] = draw_subsets(state.data.n_train, alpha, gt.n_subsets, gt.seed)
    # the evaluated epoch's checkpoint (the final one by default): M × R × n_test
    at = spec.training.checkpoint_epochs().index(spec.training.evaluated_epoch())
    state.retrained[alpha] = losses[at].astype(np.float64)
    state.gt_arrays[masks_name(alpha)] = state.masks[alpha]
    state.gt_arrays[retrained_losses_name(alpha)] = losses[at]
    if len(spec.training.checkpoint_epochs()) > 1:
        state.gt_arrays[retrained_losses_by_epoch_name(alpha)] = losses


def stage_lds(state: StudyState, name: str) -> None:
    """The LDS of every method with its interval, the seed-noise ceiling, the LDS lost at each
    step of the chain and the hierarchy check (``groundtruth.hierarchy``)."""
    gt = state.spec.groundtruth
    result: dict = {"alphas": gt.alphas, "n_subsets": gt.n_subsets, "n_seeds": gt.n_seeds,
                    "seed": gt.seed, "dtype": gt.dtype,
                    "checkpoint_epochs": state.spec.training.checkpoint_epochs(),
                    "ceiling": {}}
    state.lds = {m: {} for m in state.scores}
    arrays = state.gt_arrays
    for alpha in gt.alphas:
        key = str(alpha)
        targets = state.retrained[alpha].mean(axis=1)
        predictions = {m: predicted_losses(state.masks[alpha], score.detach().cpu().numpy())
                       for m, score in state.scores.items()}
        for m, value in lds_many(targets, predictions, gt.n_bootstrap, seed=gt.seed,
                                 summary=gt.lds_summary,
                                 official=gt.lds_summary == "interval_midpoint").items():
            arrays[lds_per_test_name(m, alpha)] = value.pop("per_test")
            state.bootstrap[m, key] = value.pop("bootstrap")
            # kept so that two studies on the same subsets (the ablation ladder's rungs) can
            # be compared pairwise: the same seed draws the same resamples
            arrays[lds_bootstrap_name(m, alpha)] = state.bootstrap[m, key]
            state.lds[m][key] = value
        if gt.n_seeds >= 2:
            ceiling = seed_noise_ceiling(state.retrained[alpha], gt.n_bootstrap, seed=gt.seed)
            arrays[lds_per_test_name("ceiling", alpha)] = ceiling.pop("per_test")
            ceiling.pop("bootstrap")
            result["ceiling"][key] = ceiling
        else:
            result["ceiling"][key] = None
    alphas = [str(x) for x in gt.alphas]
    result["lds_lost"] = lds_lost(state.lds, state.bootstrap,
                                  [n for n in CHAIN if n in state.scores], alphas)
    result["hierarchy"] = {a: hierarchy_check(state.lds, state.bootstrap, a) for a in alphas}
    state.groundtruth = result
    for method in state.operators:
        state.diagnostics["methods"][method]["lds"] = state.lds[method]
    decomposition = state.diagnostics["decomposition"]
    if decomposition is not None:
        decomposition["lds_lost"] = result["lds_lost"]
        decomposition["eigenvalue_mismatch_share"]["lds"] = lds_share(state.lds, alphas)


#: The function of each stage kind (the part of a stage name before the first "/").
STAGES: dict[str, Callable[[StudyState, str], None]] = {
    "data": stage_data,
    "train": stage_train,
    "gradients": stage_gradients,
    "curvature": stage_curvature,
    "scores": stage_scores,
    "diagnostics": stage_diagnostics,
    "groundtruth": stage_retraining,
    "lds": stage_lds,
}


def run_stage(state: StudyState, name: str) -> None:
    """Run the stage ``name``, reporting its start and end and recording its wall time."""
    state.report(name, 0.0)
    start = time.perf_counter()
    STAGES[name.split("/", 1)[0]](state, name)
    state.timings[name] = round(time.perf_counter() - start, 4)
    state.report(name, 1.0)


def assemble(state: StudyState) -> tuple[dict, dict[str, np.ndarray]]:
    """results.json's content and the arrays of a study whose stages have all run."""
    spec, data, model, layout, trained = (state.spec, state.data, state.model, state.layout,
                                          state.trained)
    with torch.no_grad():
        # the training loss is on what the model was fitted on (loader 1's rows under
        # data.split = per_loader, the training points otherwise)
        train_logits, test_logits = model(state.X_fit), model(state.X_test)
        test_losses = F.cross_entropy(test_logits, state.y_test, reduction="none")
    results = {
        "schema_version": SCHEMA_VERSION,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.spec_hash(),
        "versions": package_versions(),
        "device": describe_device(state.device),
        "n_params": layout.n_params,
        "n_train": data.n_train,
        "n_test": data.n_test,
        "n_classes": data.n_classes,
        "blocks": layout.describe_blocks(),
        "training": {
            "epoch_losses": trained["epoch_losses"],
            "retrained_loss_curves": state.loss_curves,
            "train_loss": float(F.cross_entropy(train_logits, state.y_fit)),
            "train_accuracy": float((train_logits.argmax(1) == state.y_fit).double().mean()),
            "test_loss": float(test_losses.mean()),
            "test_accuracy": float((test_logits.argmax(1) == state.y_test).double().mean()),
            "checkpoint_epochs": sorted(trained["checkpoints"]),
            # the checkpoint every number below attributes at (train/test loss, accuracy too)
            "evaluated_epoch": spec.training.evaluated_epoch(),
        },
        "inverse": spec.inverse.model_dump(mode="json") | {
            # the methods whose inverse kfac_damping changes (none when K-FAC is not studied)
            "kfac_damping_applied_to": [m for m in state.operators
                                        if state.inversion[m]["damping_received"]["rule"]
                                        == "heuristic"]},
        # which rows play which role, and how many attributed / test points were fitted on
        "data_split": data.overlap(),
        "cache": dict(state.cache.events),
        **state.diagnostics,
        "groundtruth": state.groundtruth,
        "timings": state.timings,
    }
    arrays = {scores_name(n): s for n, s in state.scores.items()} | state.diag_arrays | \
        state.gt_arrays
    arrays |= {params_name(n): v for n, v in layout.unflatten(trained["theta"]).items()}
    arrays |= {checkpoint_name(e): t for e, t in trained["checkpoints"].items()}
    arrays |= {SPLIT_TRAIN: data.train_idx, SPLIT_TEST: data.test_idx,
               TEST_LOSSES: test_losses, LABELS_TRAIN: data.y_train, LABELS_TEST: data.y_test}
    if data.split != "shared":  # the rows the model was fitted on (loader 1's)
        arrays[SPLIT_FIT] = data.fit_idx
    if data.images is not None:
        arrays[images_name("test")] = data.images[data.test_idx]
        arrays[images_name("train")] = data.images[data.train_idx]
    arrays = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v))
              for k, v in arrays.items()}
    results["images"] = ({"shape": list(arrays[images_name("test")].shape[1:])}
                         if data.images is not None else None)
    results["array_names"] = list(arrays)
    results["known_pitfalls"] = list(state.known_pitfalls)
    results["warnings"] = list(state.warnings)
    for warning in general_warnings(results):
        if warning not in results["warnings"]:
            results["warnings"].append(warning)
    safe = json_safe(results)
    safe["timings"] = state.timings  # the same dict: write_study adds the write's time
    return safe, arrays


def run_study(spec: StudySpec, out_dir: Path | None = None, cache_dir: Path | None = None,
              progress: Progress | None = None) -> StudyResult:
    """Run every stage of ``stage_plan(spec)``; write results.json and arrays.npz to
    ``out_dir`` if given."""
    state = StudyState(spec=spec, cache=StageCache(cache_dir),
                       report=progress or (lambda stage, fraction: None),
                       device=resolve_device(spec.compute.device),
                       dtype=torch.float64 if spec.compute.dtype == "float64" else torch.float32)
    for name in stage_plan(spec):
        run_stage(state, name)
    results, arrays = assemble(state)
    if out_dir is not None:
        write_study(Path(out_dir), results, arrays, state.timings)
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
    device_type: str


def _retrain_inputs(spec: StudySpec, data, device: torch.device) -> _RetrainInputs:
    gt = spec.groundtruth
    dtype = torch.float64 if gt.dtype == "float64" else torch.float32
    tensors = (torch.as_tensor(data.X_train, dtype=dtype, device=device),
               torch.as_tensor(data.y_train, device=device),
               torch.as_tensor(data.X_test, dtype=dtype, device=device),
               torch.as_tensor(data.y_test, device=device))
    template = build_mlp(data.n_features, data.n_classes, spec.model, seed=0,
                         dtype=dtype).to(device)
    return _RetrainInputs(template, tensors, device.type)


def _task_losses(spec, inputs: _RetrainInputs, task: RetrainTask, cache: StageCache,
                 progress=None) -> RetrainedLosses:
    """One task's test losses (n_checkpoints × subsets × seeds × n_test) and training-loss
    curves, through the cache."""
    return cache.get_or_compute(
        task.stage, retrain_material(spec, inputs.device_type, task), lambda: retrain_slice(
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


def write_study(out_dir: Path, results: dict, arrays: dict[str, np.ndarray],
                timings: dict[str, float]) -> None:
    """arrays.npz first, then results.json (whose presence marks a finished study)."""
    start = time.perf_counter()
    write_npz_atomic(out_dir / "arrays.npz", arrays)
    timings["write"] = round(time.perf_counter() - start, 4)
    write_json_atomic(out_dir / "results.json", results)
