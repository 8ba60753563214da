"""Validation of a submitted study spec, with the science library's own rules.

Decision (docs/service.md): the API validates with ``curvscope.spec.resolve_spec`` (the very
validators, bounds and method registry that ``curvscope run`` uses) and estimates the cost in
closed form (``backend.estimate``: parameters from the layer sizes, dense memory from d, never
a model built or data loaded), capped by what this server's workers can hold. Those modules import torch, so the
API imports them lazily, on the first validation (and the /schema, /methods, /presets reads):
the list/get/results/arrays endpoints and the app's import stay torch-free. The API never runs
a study and never touches a GPU (the estimate builds the model on the CPU to count its
parameters); the work itself reaches a worker only through the queue, by task name.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from backend.core.problems import Problem, pydantic_errors, sentence
from backend.models import Dataset

DATASET_REF = re.compile(r"^dataset:(\d{1,18})$")

_estimates: dict[str, dict] = {}
_estimates_lock = threading.Lock()


@dataclass
class Resolved:
    spec: Any  # curvscope.spec.StudySpec
    spec_dict: dict
    spec_hash: str
    preset: str | None
    estimate: dict
    dataset_id: int | None


def invalid(errors: list[dict[str, str]], intro: str = "The study spec is invalid",
            kind: str = "invalid-spec") -> Problem:
    return Problem(422, sentence(intro, errors), kind=kind, title="Invalid study spec",
                   errors=errors)


def _resolve_dataset(config: dict, session: Session) -> tuple[dict, Dataset | None]:
    """Replace ``data.path = "dataset:<id>"`` by the uploaded file's stored path. The service
    reads no other file: any other path is refused."""
    data = config.get("data")
    if not isinstance(data, dict) or data.get("path") is None:
        return config, None
    path = data["path"]
    match = DATASET_REF.match(path) if isinstance(path, str) else None
    if match is None:
        raise invalid([{"field": "data.path", "message": (
            "must name an uploaded data set as 'dataset:<id>' (upload the file with "
            "POST /api/v1/datasets); the service reads no other files"
            f" (got {path!r})")}])
    dataset = session.get(Dataset, int(match.group(1)))
    if dataset is None:
        raise invalid([{"field": "data.path", "message": (
            f"there is no uploaded data set with id {match.group(1)}; GET /api/v1/datasets "
            "lists them")}])
    data = dict(data, path=dataset.path)
    if data.get("label_column") is None and dataset.label_column is not None:
        label = dataset.label_column
        data["label_column"] = int(label) if label.isdigit() else label
    return dict(config, data=data), dataset


def resolve(config: Any, session: Session, settings: Any = None) -> Resolved:
    """A submitted config (a preset name plus overrides) → the fully resolved spec and its
    cost estimate; raises :class:`Problem` 422 with field paths for anything wrong."""
    from pydantic import ValidationError

    from backend.estimate import OverBudget, estimate
    from curvscope.spec import resolve_spec

    if not isinstance(config, dict):
        raise invalid([{"field": "(body)", "message": "the study spec must be a JSON object, "
                        f"not {type(config).__name__}"}])
    preset = config.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise invalid([{"field": "preset", "message": f"must be a preset name (got {preset!r})"}])
    config, dataset = _resolve_dataset(config, session)
    dataset_id = dataset.id if dataset is not None else None
    try:
        spec = resolve_spec(config)
    except ValidationError as exc:
        raise invalid(pydantic_errors(exc.errors())) from None
    except ValueError as exc:  # unknown preset
        raise invalid([{"field": "preset", "message": str(exc)}]) from None
    spec_hash = spec.spec_hash()
    if settings is None:
        from backend.core.config import get_settings

        settings = get_settings()
    cap, max_models = settings.memory_budget_cap_gib, settings.max_retrained_models
    key = f"{spec_hash}/{spec.compute.memory_budget_gib}/{cap}/{max_models}/{dataset_id}"
    with _estimates_lock:
        cost = _estimates.get(key)
    if cost is None:
        try:
            cost = estimate(spec, dataset, cap, max_models)
        except OverBudget as exc:
            raise invalid([{"field": exc.field, "message": str(exc)}],
                          intro="The study does not fit what this server can hold",
                          kind="over-memory-budget") from None
        except (ValueError, KeyError) as exc:
            raise invalid([{"field": "data", "message": str(exc)}],
                          intro="The study's data cannot be used", kind="invalid-data") from None
        with _estimates_lock:
            if len(_estimates) > 1024:
                _estimates.clear()
            _estimates[key] = cost
    estimate = cost
    return Resolved(spec=spec, spec_dict=spec.model_dump(mode="json"), spec_hash=spec_hash,
                    preset=preset, estimate=estimate, dataset_id=dataset_id)
