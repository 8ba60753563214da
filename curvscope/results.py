"""The results contract: typed models of results.json, its schema version, the names of the
arrays in arrays.npz, and the structured warnings of a study.

Everyone who reads a study's results (the worker, the API, ``curvscope report``, the
dashboard) reads them through this module: ``load_results`` validates a results.json (a path
or an already-parsed dict), upgrades an older schema, and returns a :class:`StudyResults`;
``has_images`` and the ``*_name`` helpers say what is in arrays.npz, so no reader guesses from
another field (e.g. images from ``data.name == "digits"``).

Imports no torch: the API and the dashboard use it.

Schema versions:
  1  results.json without ``schema_version`` (curvscope ≤ 0.1.0 before this contract);
  2  adds ``schema_version``, ``warnings``, ``known_pitfalls``, ``images``, ``array_names``,
     per-method ``damping_received`` and (optional) ``mc_fisher``, LDS entries with
     ``interval_midpoint`` and ``headline``, and ``decomposition.eigenvalue_mismatch_share``
     / ``official_eigenvalue_overlap``. ``upgrade_results`` turns a version-1 dict into 2.

Sub-objects that teammates are extending carry ``extra="allow"``: unknown keys are kept, known
keys are typed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2

# ----- array names (arrays.npz) ------------------------------------------------------------


def alpha_key(alpha: float | str) -> str:
    """The key of a subset fraction α in results and array names: ``str(float(α))``, e.g.
    ``0.5 → "0.5"``, ``"0.50" → "0.5"``."""
    return str(float(alpha))


def scores_name(method: str) -> str:
    """n_test × n_train influence scores τ(x, z_j) of ``method``."""
    return f"scores/{method}"


def eigenvalues_name(method: str) -> str:
    """All eigenvalues of ``method``'s curvature, sorted ascending."""
    return f"eigenvalues/{method}"


def block_eigenvalues_name(method: str, block: str) -> str:
    """Eigenvalues of ``method``'s diagonal block ``block``, sorted ascending."""
    return f"block_eigenvalues/{method}/{block}"


def lds_per_test_name(method: str, alpha: float | str) -> str:
    """Per-test-point Spearman of ``method`` at α (``method = "ceiling"``: the seed-noise
    ceiling's)."""
    return f"lds_per_test/{method}/{alpha_key(alpha)}"


def lds_bootstrap_name(method: str, alpha: float | str) -> str:
    """The bootstrap resamples of ``method``'s LDS at α (paired across methods and studies on
    the same subsets and seed)."""
    return f"lds_bootstrap/{method}/{alpha_key(alpha)}"


def masks_name(alpha: float | str) -> str:
    """Boolean subset masks (n_subsets × n_train) of α."""
    return f"masks/{alpha_key(alpha)}"


def retrained_losses_name(alpha: float | str) -> str:
    """Retrained test losses (n_subsets × n_seeds × n_test) at the final epoch."""
    return f"retrained_losses/{alpha_key(alpha)}"


def retrained_train_losses_name(alpha: float | str) -> str:
    """Each retrained model's running training loss (mean minibatch loss over the epoch, on
    its own subset; n_subsets × n_seeds × epochs, float32) at
    ``training.retrained_loss_curves[α].epochs``."""
    return f"retrained_train_losses/{alpha_key(alpha)}"


def retrained_losses_by_epoch_name(alpha: float | str) -> str:
    """Retrained test losses per checkpoint (n_checkpoints × n_subsets × n_seeds × n_test)."""
    return f"retrained_losses_by_epoch/{alpha_key(alpha)}"


def heatmap_name(matrix: str) -> str:
    """log10 |entries| pooled to at most 128 × 128, for ``matrix`` in H, GGN, H-GGN."""
    return f"heatmaps/{matrix}"


def params_name(parameter: str) -> str:
    """A trained parameter tensor, e.g. ``params/0.weight``."""
    return f"params/{parameter}"


def checkpoint_name(epoch: int) -> str:
    """The flat parameter vector θ at a checkpoint epoch."""
    return f"checkpoints/{int(epoch)}"


def images_name(part: Literal["test", "train"]) -> str:
    """Images (n × h × w) of the test or attributed training points (only when
    ``has_images``)."""
    if part not in ("test", "train"):
        raise ValueError(f"images part must be 'test' or 'train', not {part!r}")
    return f"images/{part}"


SPLIT_TRAIN = "split/train"  # row indices of the attributed training points in the data set
SPLIT_TEST = "split/test"  # row indices of the test points
SPLIT_FIT = "split/fit"  # rows the model was fitted on, when data.split != "shared"
TEST_LOSSES = "test_losses"  # the trained model's loss on each test point
LABELS_TRAIN = "labels/train"  # class label of each attributed training point (split/train order)
LABELS_TEST = "labels/test"  # class label of each test point (split/test order)

#: The kinds of array names, as the part before the first "/".
ARRAY_KINDS = ("scores", "eigenvalues", "block_eigenvalues", "lds_per_test", "lds_bootstrap",
               "masks", "retrained_losses", "retrained_losses_by_epoch",
               "retrained_train_losses", "heatmaps", "params",
               "checkpoints", "images", "split", "test_losses", "labels")


def array_kind(name: str) -> str:
    """The kind of an array name (``"scores/K-FAC" → "scores"``); ValueError if unknown."""
    kind = name.split("/", 1)[0]
    if kind not in ARRAY_KINDS:
        raise ValueError(f"unknown array {name!r}; kinds: {', '.join(ARRAY_KINDS)}")
    return kind


# ----- warnings ----------------------------------------------------------------------------

WarningCode = Literal["few_test_points", "accuracy_at_chance", "mc_fisher_degenerate",
                      "lds_ceiling_low", "eigenvalues_dropped", "known_pitfalls"]
WARNING_CODES: tuple[str, ...] = WarningCode.__args__  # type: ignore[attr-defined]

#: Below this many test points the LDS (a mean over test points) is too noisy to compare.
FEW_TEST_POINTS = 30
#: Test accuracy at most 1/C + this is "at chance": the model learnt nothing to attribute.
CHANCE_MARGIN = 0.05
#: A seed-noise ceiling below this leaves no room to tell methods apart.
LOW_CEILING = 0.1


class StudyWarning(BaseModel):
    """One structured warning: a stable ``code``, a sentence, and the method it concerns."""

    model_config = ConfigDict(extra="forbid")

    code: WarningCode
    severity: Literal["info", "warning"] = "warning"
    message: str = Field(min_length=1)
    method: str | None = None


def add_warning(results_warnings: list[dict], code: str, message: str,
                severity: Literal["info", "warning"] = "warning",
                method: str | None = None) -> dict:
    """Append a validated warning to ``results_warnings`` (the results' ``warnings`` list)
    unless the same (code, method, message) is already there; returns the entry."""
    entry = StudyWarning(code=code, severity=severity, message=message,
                         method=method).model_dump()
    if entry not in results_warnings:
        results_warnings.append(entry)
    return entry


def general_warnings(results: dict) -> list[dict]:
    """The warnings every study can raise from its own results (dict form):
    few_test_points (n_test < 30), accuracy_at_chance (test accuracy ≤ 1/C + 0.05),
    lds_ceiling_low (a seed-noise ceiling missing, NaN or below 0.1)."""
    warnings: list[dict] = []
    n_test = results.get("n_test")
    if isinstance(n_test, int) and n_test < FEW_TEST_POINTS:
        add_warning(warnings, "few_test_points",
                    f"only {n_test} test points: the LDS is a mean over test points and is "
                    f"noisy below {FEW_TEST_POINTS}; raise data.test_fraction or use more data")
    n_classes = results.get("n_classes")
    accuracy = (results.get("training") or {}).get("test_accuracy")
    if isinstance(n_classes, int) and n_classes > 0 and accuracy is not None:
        chance = 1.0 / n_classes
        if accuracy <= chance + CHANCE_MARGIN:
            add_warning(warnings, "accuracy_at_chance",
                        f"test accuracy {accuracy:.3f} is at chance (1/{n_classes} = "
                        f"{chance:.3f}): the model learnt little, so its attributions mean "
                        "little; train longer or with another learning rate")
    groundtruth = results.get("groundtruth") or {}
    if groundtruth and groundtruth.get("n_seeds", 0) >= 2:
        for alpha, ceiling in (groundtruth.get("ceiling") or {}).items():
            value = (ceiling or {}).get("value")
            if value is None or not math.isfinite(value) or value < LOW_CEILING:
                shown = "undefined" if value is None or not math.isfinite(value) else \
                    f"{value:.3f}"
                add_warning(warnings, "lds_ceiling_low",
                            f"the seed-noise ceiling at α = {alpha} is {shown} (below "
                            f"{LOW_CEILING}): retraining noise hides the differences between "
                            "methods; use more seeds (groundtruth.n_seeds) or a longer training")
    return warnings


# ----- the typed model of results.json -----------------------------------------------------

class _Open(BaseModel):
    """A sub-object teammates extend: unknown keys are kept."""

    model_config = ConfigDict(extra="allow")


class Interval(_Open):
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


class LdsEntry(Interval):
    """methods.<m>.lds.<α>: the point estimate with its 95 % percentile bootstrap interval,
    the official code's interval midpoint, and the headline (value or midpoint, per
    ``groundtruth.lds_summary``)."""

    n_excluded: int = 0
    interval_midpoint: float | None = None
    headline: float | None = None


class DampingBlock(_Open):
    block: str
    pi: float | None = None
    damping_A: float | None = None
    damping_S: float | None = None


class DampingReceived(_Open):
    """The damping a method's inverse really received."""

    rule: Literal["exact", "heuristic"] = "exact"
    damping: float
    per_block: list[DampingBlock] | None = None


class InverseRecord(_Open):
    rule: str
    damping: float
    threshold: float
    cutoff: float | None = None
    n_inverted: int
    n_dropped: int
    condition_number_inverted: float | None = None
    n_negative_inverted_as_abs: int = 0
    damping_received: DampingReceived | None = None


class ConditionNumber(_Open):
    matrix: float | None = None
    damped: float | None = None
    singular: bool = False


class Spectrum(_Open):
    min: float
    max: float
    trace: float
    n_negative: int
    negative_mass: float


class McFisher(_Open):
    """methods.<m>.mc_fisher, for a Monte-Carlo Fisher only."""

    mc_samples: int | None = None
    n_labels_differ_from_argmax: int | None = None
    n_labels: int | None = None
    trace_ratio_to_ggn: float | None = None
    degenerate: bool | None = None
    replicates: list[Any] = Field(default_factory=list)


class MethodResult(_Open):
    relative_residual_to_H: float | None = None
    relative_residual_to_GGN: float | None = None
    condition_number: ConditionNumber
    spectrum: Spectrum
    eigenvalue_overlap: dict[str, float | None] = Field(default_factory=dict)
    eigenbasis_overlap: dict[str, float | None] = Field(default_factory=dict)
    eigenbasis_overlap_by_k: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    inverse: InverseRecord | None = None
    damping_received: DampingReceived | None = None
    mc_fisher: McFisher | None = None
    timing_seconds: float | None = None
    cache: str | None = None
    lds: dict[str, LdsEntry] = Field(default_factory=dict)


class OffBlock(_Open):
    ratio: float
    energy: float


class ShareEntry(_Open):
    """decomposition.eigenvalue_mismatch_share.<definition>: the share, its formula, and per
    block where it is defined per block. For ``lds`` the value is a dict per α."""

    value: float | dict[str, float | None] | None = None
    formula: str
    per_block: dict[str, float | None] | None = None


class Decomposition(_Open):
    fisher_type: str | None = None
    per_block: dict[str, dict[str, Any]] = Field(default_factory=dict)
    kfac_error: dict[str, float] | None = None
    ggn_to_kfac: dict[str, float] | None = None
    chain_steps: list[dict[str, Any]] = Field(default_factory=list)
    lds_lost: list[dict[str, Any]] | None = None
    eigenvalue_mismatch_share: dict[str, ShareEntry] | None = None
    official_eigenvalue_overlap: dict[str, Any] | None = None


class HierarchyPair(_Open):
    higher: str
    lower: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: Literal["≥", "≈", "<"]


class HierarchyCheck(_Open):
    pairs: list[HierarchyPair]
    violations: list[str]
    holds: bool
    reversals_within_noise: list[str] = Field(default_factory=list)


class LdsStep(_Open):
    from_: str = Field(alias="from")
    to: str
    lds_lost: dict[str, Interval]

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Ceiling(Interval):
    n_excluded: int = 0
    seeds_per_half: int | None = None


class GroundTruth(_Open):
    alphas: list[float]
    n_subsets: int
    n_seeds: int
    seed: int
    dtype: str
    checkpoint_epochs: list[int] = Field(default_factory=list)
    ceiling: dict[str, Ceiling | None] = Field(default_factory=dict)
    lds_lost: list[LdsStep] = Field(default_factory=list)
    hierarchy: dict[str, HierarchyCheck] = Field(default_factory=dict)


class LossSpread(_Open):
    """The retrained models' training-loss curves at one α, summarised per epoch: the 10 %,
    50 % and 90 % quantiles over the ``n_models`` models (``retrained_train_losses/<α>`` holds
    every curve)."""

    epochs: list[int]
    n_models: int
    p10: list[float]
    median: list[float]
    p90: list[float]


class TrainingSummary(_Open):
    epoch_losses: list[float] = Field(default_factory=list)
    # α key → the ground truth's retrained models' loss spread (studies with ground truth)
    retrained_loss_curves: dict[str, LossSpread] = Field(default_factory=dict)
    train_loss: float | None = None
    train_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    checkpoint_epochs: list[int] = Field(default_factory=list)


class BlockInfo(_Open):
    name: str
    size: int
    start: int
    stop: int


class ImagesInfo(_Open):
    """Present iff arrays.npz holds ``images/test`` and ``images/train``."""

    shape: list[int]


class StudyResults(_Open):
    """results.json, schema version 2."""

    schema_version: Literal[2] = SCHEMA_VERSION
    spec: dict[str, Any]
    spec_hash: str
    versions: dict[str, str] = Field(default_factory=dict)
    device: str = ""
    n_params: int
    n_train: int
    n_test: int
    n_classes: int
    blocks: list[BlockInfo] = Field(default_factory=list)
    training: TrainingSummary = Field(default_factory=TrainingSummary)
    inverse: dict[str, Any] = Field(default_factory=dict)
    cache: dict[str, str] = Field(default_factory=dict)
    methods: dict[str, MethodResult]
    off_block: dict[str, OffBlock] = Field(default_factory=dict)
    decomposition: Decomposition | None = None
    groundtruth: GroundTruth | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[StudyWarning] = Field(default_factory=list)
    known_pitfalls: list[str] = Field(default_factory=list)
    images: ImagesInfo | None = None
    array_names: list[str] | None = None
    data_split: dict[str, Any] | None = None

    # ----- questions readers ask ----------------------------------------------------------
    @property
    def method_names(self) -> list[str]:
        return list(self.methods)

    @property
    def alphas(self) -> list[str]:
        """α keys of the ground truth ("0.5", …), empty without ground truth."""
        return [alpha_key(a) for a in self.groundtruth.alphas] if self.groundtruth else []

    def lds(self, method: str, alpha: float | str) -> LdsEntry | None:
        return self.methods[method].lds.get(alpha_key(alpha))

    def to_dict(self) -> dict:
        """The JSON-ready dict (aliases as in results.json: ``from`` of lds_lost)."""
        return self.model_dump(mode="json", by_alias=True)


def has_images(results: StudyResults | dict) -> bool:
    """Whether arrays.npz holds ``images/test`` and ``images/train`` (digits today)."""
    if isinstance(results, StudyResults):
        return results.images is not None
    if "schema_version" not in results:
        results = upgrade_results(results)
    return results.get("images") is not None


# ----- loading and upgrading ---------------------------------------------------------------

def schema_version_of(results: dict) -> int:
    return int(results.get("schema_version", 1))


def upgrade_results(results: dict) -> dict:
    """A schema-version-2 dict from a version-1 (or 2) results dict; the input is not changed.

    Version 1 knew one damping rule (exact) and one LDS summary (the point estimate), so the
    upgrade records ``damping_received = {"rule": "exact", "damping": λ}`` per method and
    ``headline = value`` per LDS entry; images are recorded for the digits data set (the only
    one with images in version 1); the general warnings are derived from the numbers."""
    version = schema_version_of(results)
    if version == SCHEMA_VERSION:
        return results
    if version != 1:
        raise ValueError(f"results schema_version {version} is not supported (this curvscope "
                         f"reads 1 and {SCHEMA_VERSION})")
    upgraded = json.loads(json.dumps(results))  # a deep copy of plain JSON
    upgraded["schema_version"] = SCHEMA_VERSION
    damping = (upgraded.get("inverse") or {}).get("damping")
    for method in (upgraded.get("methods") or {}).values():
        if damping is not None:
            method.setdefault("damping_received", {"rule": "exact", "damping": damping})
        for entry in (method.get("lds") or {}).values():
            entry.setdefault("headline", entry.get("value"))
    data = (upgraded.get("spec") or {}).get("data") or {}
    upgraded.setdefault("images", {"shape": [8, 8]} if data.get("name") == "digits" else None)
    upgraded.setdefault("known_pitfalls", [])
    upgraded.setdefault("warnings", general_warnings(upgraded))
    return upgraded


def load_results(source: str | Path | dict | StudyResults) -> StudyResults:
    """Validate results (a results.json path, its folder, or a parsed dict), upgrading an
    older schema; raises pydantic's ``ValidationError`` for results that break the contract
    and ``ValueError`` for an unknown schema version."""
    if isinstance(source, StudyResults):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / "results.json"
        source = json.loads(path.read_text())
    return StudyResults.model_validate(upgrade_results(source))


def results_dict(source: str | Path | dict | StudyResults) -> dict:
    """``load_results(source).to_dict()``: the validated, upgraded results as plain JSON."""
    return load_results(source).to_dict()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None: results.json is
    strict JSON, and an undefined number (an LDS with no valid test point) is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def expected_array_names(results: StudyResults | dict) -> list[str]:
    """The array names a study's results promise in arrays.npz (scores, spectra, ground
    truth, split, losses, images), computed from the results alone."""
    results = load_results(results)
    names = [scores_name(m) for m in results.methods]
    for m in results.methods:
        names.append(eigenvalues_name(m))
        names += [block_eigenvalues_name(m, b.name) for b in results.blocks]
    if results.groundtruth is not None:
        for alpha in results.alphas:
            names += [masks_name(alpha), retrained_losses_name(alpha)]
            names += [lds_per_test_name(m, alpha) for m in results.methods]
    names += [retrained_train_losses_name(a) for a in results.training.retrained_loss_curves]
    names += [SPLIT_TRAIN, SPLIT_TEST, TEST_LOSSES]
    if has_images(results):
        names += [images_name("test"), images_name("train")]
    return names


def missing_arrays(results: StudyResults | dict, available: Iterable[str]) -> list[str]:
    """The promised arrays (``expected_array_names``) that ``available`` lacks."""
    have = set(available)
    return [n for n in expected_array_names(results) if n not in have]
