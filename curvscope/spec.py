"""StudySpec: everything that defines a study, typed, bounded and described.

Its canonical JSON hash (``spec_hash``) names the study's artifacts; fields that cannot change
a number (the study's display name, the memory budget) are left out of the hash.
A spec may start from a preset and override any field (``resolve_spec``).

Imports no torch (the API validates and lists studies with it): the section classes live in
``curvscope.specs`` and the method registry is a pure capability table.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curvscope.registry import METHOD_NAMES, get_method
from curvscope.specs import DataSpec, GroundTruthSpec, InverseRule, ModelSpec, TrainingSpec


#: The methods built on a Fisher / GGN approximation whose type can be chosen.
FISHER_METHODS: tuple[str, ...] = ("K-FAC", "EK-FAC")


class CurvatureSpec(BaseModel):
    """Which curvature methods to build and how."""

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(
        default_factory=lambda: list(METHOD_NAMES), min_length=1,
        description=f"Methods to compare; allowed: {', '.join(METHOD_NAMES)}.",
    )
    block_structure: Literal["layer", "tensor"] = Field(
        default="layer", description="Blocks of GGN-blockdiag, K-FAC and EK-FAC: one per layer "
        "(weight and bias together) or one per tensor.")
    fisher_type: Literal["type2", "mc", "empirical"] = Field(
        default="type2", description="Curvature behind K-FAC/EK-FAC: exact type-2 GGN (default), "
        "Monte-Carlo Fisher or empirical Fisher; fisher_types overrides it per method.")
    fisher_types: dict[str, Literal["type2", "mc", "empirical"]] = Field(
        default_factory=dict, max_length=len(FISHER_METHODS),
        description="Per-method Fisher type overriding fisher_type, e.g. {\"K-FAC\": \"mc\"}; "
        f"allowed keys: {', '.join(FISHER_METHODS)} (the methods built on a Fisher). The "
        "official code uses a 1-sample Monte-Carlo Fisher for both.")
    mc_samples: int = Field(default=1, ge=1, le=1000,
                            description="Labels drawn per point when fisher_type = mc.")
    mc_replicates: int = Field(
        default=1, ge=1, le=100,
        description="Monte-Carlo Fisher replicates over MC seeds seed, seed+1, …: the first is "
        "the operator inverted, all are reported (labels differing from the argmax, "
        "tr(F_mc)/tr(G)) with their spread.")
    eigenbasis_k: int = Field(default=10, ge=1, le=100_000,
                              description="k of the top-k eigenbasis overlap.")

    @field_validator("fisher_types")
    @classmethod
    def _fisher_methods_only(cls, value: dict) -> dict:
        for key in value:
            if key not in FISHER_METHODS:
                raise ValueError(
                    f"curvature.fisher_types: {key!r} has no Fisher type; allowed keys: "
                    f"{', '.join(FISHER_METHODS)}")
        return value

    def fisher_type_of(self, method: str) -> str:
        """The Fisher type behind ``method`` (its override, else ``fisher_type``)."""
        return self.fisher_types.get(method, self.fisher_type)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        for name in value:
            get_method(name)
        if len(set(value)) != len(value):
            raise ValueError("methods must not repeat")
        return value


class ComputeSpec(BaseModel):
    """Where and in what precision the study runs."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["float64", "float32"] = Field(
        default="float64", description="Precision of training and curvature.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto picks cuda when available, else cpu.")
    memory_budget_gib: float | None = Field(
        default=None, gt=0, le=100_000,
        description="Refuse dense methods whose estimate exceeds this; default half the RAM.")


class StudySpec(BaseModel):
    """A whole study: data, model, training, curvature, inversion, compute."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, description="A label for people.")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    curvature: CurvatureSpec = Field(default_factory=CurvatureSpec)
    inverse: InverseRule = Field(default_factory=InverseRule)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    groundtruth: GroundTruthSpec = Field(default_factory=GroundTruthSpec)

    def hashed_content(self) -> dict:
        content = self.model_dump(mode="json")
        content.pop("name")
        content["compute"].pop("memory_budget_gib")
        content["groundtruth"].pop("max_models_per_chunk")
        content["groundtruth"].pop("subsets_per_task")
        return content

    def spec_hash(self) -> str:
        return content_hash(self.hashed_content())


def content_hash(content: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace), first 16 hex digits."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


PRESETS: dict[str, dict] = {
    # The paper's default study (SCIENCE.md §1): digits, MLP 64→64→32→10, 100 epochs.
    "paper": {
        "name": "paper",
        "training": {"checkpoints": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]},
        "groundtruth": {"alphas": [0.3, 0.5, 0.7, 0.9]},
    },
    # The paper's study under the official code's protocol choices (SCIENCE.md §7), each one a
    # known pitfall: per-loader permutations, per-tensor blocks, 1-sample Monte-Carlo Fisher
    # for K-FAC and EK-FAC, heuristic π damping for K-FAC, the absolute-threshold
    # eigen-inverse, the interval midpoint as the LDS, a cosine schedule. Its results carry
    # ``known_pitfalls``.
    "paper-code": {
        "name": "paper-code",
        "data": {"split": "per_loader"},
        "training": {"checkpoints": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
                     "schedule": "cosine"},
        "curvature": {"block_structure": "tensor",
                      "fisher_types": {"K-FAC": "mc", "EK-FAC": "mc"}, "mc_samples": 1},
        "inverse": {"kfac_damping": "heuristic", "rule": "drop_absolute"},
        "groundtruth": {"alphas": [0.3, 0.5, 0.7, 0.9], "lds_summary": "interval_midpoint",
                        "n_bootstrap": 100},
    },
    # A small study that runs end to end in seconds: narrower MLP, fewer epochs, α = 0.5 only.
    "quick": {
        "name": "quick",
        "model": {"hidden": [16, 16]},
        "training": {"epochs": 20, "lr": 0.03, "checkpoints": [10, 20]},
    },
}


def known_pitfalls(spec: StudySpec) -> list[str]:
    """Sentences for the official-code choices in ``spec`` that SCIENCE.md §1 lists as
    pitfalls (Hong et al. 2025's public code): the per-loader split, a Monte-Carlo Fisher
    behind K-FAC/EK-FAC, K-FAC's heuristic damping, the interval midpoint as the LDS. Empty
    for curvscope's defaults. results.json carries them as ``known_pitfalls``."""
    out = []
    if spec.data.split == "per_loader":
        out.append(
            "data.split = per_loader: each data loader draws its own permutation (the official "
            "code), so the model trains on loader 1's rows while curvature and training "
            "gradients use loader 2's and the test points are loader 3's; most test points "
            "were trained on (160 of 180 on digits) and only part of the attributed points "
            "(1,453 of 1,617) are in the model's training set.")
    methods = set(spec.curvature.methods)
    mc = [m for m in FISHER_METHODS if m in methods and spec.curvature.fisher_type_of(m) == "mc"]
    if mc:
        out.append(
            f"{' and '.join(mc)} use a {spec.curvature.mc_samples}-sample Monte-Carlo Fisher "
            "while H and the GGN are exact: the comparison along the chain is confounded, and "
            "on a confident model the sampled labels may carry almost no curvature (see "
            "methods.<m>.mc_fisher).")
    if spec.inverse.kfac_damping == "heuristic" and "K-FAC" in methods:
        out.append(
            "K-FAC is inverted with heuristic π damping while every other method gets exact "
            "damping λI: part of the K-FAC / EK-FAC difference is the damping, not the "
            "curvature (see methods.K-FAC.damping_received).")
    if spec.groundtruth.enabled and spec.groundtruth.lds_summary == "interval_midpoint":
        out.append(
            "The headline LDS is the midpoint of the bootstrap interval, not the point "
            "estimate (the official code's reported 'mean'); the point estimate is kept as "
            "methods.<m>.lds.<α>.value.")
    return out


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_spec(config: dict | None = None, preset: str | None = None) -> StudySpec:
    """A full StudySpec from an optional preset (argument or ``config["preset"]``) plus the
    config's overrides. Raises ``ValueError`` for an unknown preset, pydantic's
    ``ValidationError`` for a bad field."""
    config = dict(config or {})
    preset = preset or config.pop("preset", None)
    config.pop("preset", None)
    base: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
        base = PRESETS[preset]
    return StudySpec.model_validate(deep_merge(base, config))
