"""What a study will cost, in closed form (the counts are ``curvscope.sizes``; this module adds
the server's caps): the API never builds a model nor loads data to
answer ``POST /studies/validate`` or ``POST /studies``.

* parameters of the MLP ``n_features → hidden… → n_classes``: Σ_l (fan_in_l + bias) · fan_out_l;
* rows of the data set: the built-in sets' known sizes, an upload's stored row count, the
  synthetic set's ``n_samples``; test rows ``max(1, round(test_fraction · n))`` as
  ``curvscope.data.split.n_test_rows``;
* dense memory: ``curvscope.sizes.estimate_dense_memory_bytes`` (arithmetic on d and the
  dense methods), checked against the smaller of the spec's budget and the server's cap
  (``Settings.max_memory_budget_gib``, by default half this machine's memory): a client can
  lower the budget, never raise it past what workers can hold, and never switch the guard off;
* retrained models ``|α| · n_subsets · n_seeds`` against ``Settings.max_retrained_models``;
* time and peak memory (``timed``): ``curvscope.cost`` per stage, at the rates of the
  workers' calibration probes (``<data>/calibration/*.json``, median over hosts; the
  reference machine's without one), each stage kind corrected by the median of measured /
  predicted over the last ``HISTORY`` succeeded studies of this service (``stage_seconds``
  from their results' timings, retraining from their chunks' run times); the answer's
  ``time_basis`` says which. Added fields: ``seconds``, ``stage_seconds``, ``group_seconds``,
  ``peak_memory_bytes``, ``time_basis``, ``calibration`` (host, threads, measured_at).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from curvscope.sizes import BUILTIN_SHAPES as BUILTIN_SIZES  # noqa: F401  (re-exported)
from curvscope.sizes import closed_form_estimate
from curvscope.sizes import mlp_n_params as n_params  # noqa: F401  (re-exported)


class OverBudget(ValueError):
    """The study asks for more than this server can hold; ``field`` names what to change."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _file_shape(data: Any, dataset: Any | None) -> tuple[int, int, int] | None:
    """An upload's recorded (rows, features, classes), for a file data set."""
    if data.name != "file":
        return None
    if dataset is None:
        raise ValueError("a file data set needs an uploaded data set (dataset:<id>)")
    return int(dataset.n_rows), int(dataset.n_features), int(dataset.n_classes)


def estimate(spec: Any, dataset: Any | None, max_budget_gib: float,
             max_retrained_models: int) -> dict[str, Any]:
    """``curvscope.sizes.closed_form_estimate`` checked against the server's caps: the memory
    budget (the smaller of the spec's and the server's) and the retrained models."""
    from curvscope.registry import dense_methods

    sizes = closed_form_estimate(spec, _file_shape(spec.data, dataset))
    cap = int(max_budget_gib * 2**30)
    asked = spec.compute.memory_budget_gib
    if asked is not None and asked > max_budget_gib:
        raise OverBudget("compute.memory_budget_gib", (
            f"at most {max_budget_gib:g} GiB on this server (what its workers can hold; "
            f"CURVSCOPE_MAX_MEMORY_BUDGET_GIB), got {asked:g}"))
    budget = min(cap, int(asked * 2**30)) if asked is not None else cap
    need, d = sizes["dense_memory_bytes"], sizes["n_params"]
    if need > budget:
        dense = ", ".join(dense_methods(list(spec.curvature.methods)))
        raise OverBudget("curvature.methods", (
            f"the dense methods ({dense}) need about {need / 2**30:.1f} GiB for {d:,} "
            f"parameters, above the memory budget of {budget / 2**30:.1f} GiB; drop them from "
            "curvature.methods (the structured methods run matrix-free), or use a smaller "
            "model"))
    n_models = sizes["n_retrained_models"]
    if n_models > max_retrained_models:
        raise OverBudget("groundtruth.n_subsets", (
            f"{n_models:,} retrained models (|alphas| × n_subsets × n_seeds) are more than the "
            f"{max_retrained_models:,} this server runs for one study "
            "(CURVSCOPE_MAX_RETRAINED_MODELS)"))
    sizes.pop("n_classes")
    return {**sizes, "memory_budget_bytes": budget}


log = logging.getLogger("curvscope.api")

#: How many recent succeeded studies correct the probe's rates.
HISTORY = 20
_history_cache: dict[str, Any] = {}
_history_lock = threading.Lock()


def _rates(settings: Any) -> tuple[dict | None, dict | None]:
    """(median rates over the workers' probes, what the newest probe says about itself)."""
    from curvscope.cost import calibration_dir, combine_calibrations, read_calibrations

    probes = read_calibrations(calibration_dir(settings.data_dir))
    if not probes:
        return None, None
    newest = probes[0]
    about = {"hosts": len(probes), "host": newest.get("host"),
             "threads": newest.get("threads"), "measured_at": newest.get("measured_at"),
             "load": newest.get("load")}
    return combine_calibrations(probes), about


def _measured_stages(study: Any) -> dict[str, float]:
    """A succeeded study's stage seconds; a retraining stage from its chunks' run times
    (the finalize step found them in the cache)."""
    measured = {k: float(v) for k, v in (study.timings or {}).items()
                if isinstance(v, (int, float))}
    per_alpha: dict[str, float] = {}
    for chunk in study.chunks or []:
        if chunk.started_at and chunk.finished_at and chunk.state == "done":
            seconds = (chunk.finished_at - chunk.started_at).total_seconds()
            key = f"groundtruth/{chunk.alpha}"
            per_alpha[key] = per_alpha.get(key, 0.0) + max(seconds, 0.0)
    for key, seconds in per_alpha.items():
        measured[key] = max(measured.get(key, 0.0), seconds)
    return measured


def _corrections(session: Any, rates: dict | None) -> tuple[dict, int]:
    """Per-stage corrections (``curvscope.cost.stage_corrections``) from the last HISTORY
    succeeded studies, and how many studies they came from; cached until a study succeeds."""
    from sqlalchemy import func, select

    from backend.models import Dataset, Study
    from curvscope.cost import predict_stages, stage_corrections
    from curvscope.spec import StudySpec

    newest = session.execute(select(func.max(Study.finished_at), func.count(Study.id))
                             .where(Study.state == "succeeded")).one()
    key = f"{newest[0]}/{newest[1]}/{sorted((rates or {}).items())}"
    with _history_lock:
        if _history_cache.get("key") == key:
            return _history_cache["value"]
    studies = session.scalars(select(Study).where(Study.state == "succeeded",
                                                  Study.timings.is_not(None))
                              .order_by(Study.finished_at.desc()).limit(HISTORY)).all()
    pairs = []
    for study in studies:
        try:
            spec = StudySpec.model_validate(study.spec)
            shape = None
            if spec.data.name == "file":
                dataset = session.get(Dataset, study.dataset_id) if study.dataset_id else None
                if dataset is None:
                    continue
                shape = (dataset.n_rows, dataset.n_features, dataset.n_classes)
            budget = (study.estimate or {}).get("memory_budget_bytes")
            pairs.append((predict_stages(spec, rates or {}, shape, budget),
                          _measured_stages(study)))
        except Exception:  # a spec of an older schema: not a sample
            continue
    value = (stage_corrections(pairs), len(pairs))
    with _history_lock:
        _history_cache.update(key=key, value=value)
    return value


def basis_sentence(about: dict | None, n_studies: int, corrected: int) -> str:
    """How the time was estimated, for people."""
    if about:
        where = (f"the worker's calibration probe ({about.get('host')}, "
                 f"{about.get('threads')} threads, {str(about.get('measured_at'))[:10]})")
        if about.get("hosts", 1) > 1:
            where = f"the calibration probes of {about['hosts']} workers (median)"
    else:
        where = "the reference machine's rates (no worker has probed this machine yet)"
    if corrected:
        return (f"from {n_studies} finished stud{'y' if n_studies == 1 else 'ies'} on this "
                f"service ({corrected} stage kinds corrected) and {where}")
    return f"from {where}"


def timed(spec: Any, dataset: Any | None, cost: dict, session: Any, settings: Any) -> dict:
    """``cost`` (``estimate``'s answer) with the time and memory of ``curvscope.cost`` added:
    seconds per stage and in total (one worker), peak memory, and the basis."""
    from curvscope.cost import estimate_time

    try:
        rates, about = _rates(settings)
        corrections, n_studies = _corrections(session, rates)
        result = estimate_time(spec, rates, _file_shape(spec.data, dataset), corrections,
                               cost.get("memory_budget_bytes"),
                               basis_sentence(about, n_studies, len(corrections)))
    except Exception:  # the estimate is a guide: never the reason a valid spec is refused
        log.exception("could not estimate the time of a study")
        return cost
    return {**cost, "seconds": result["seconds"], "stage_seconds": result["stage_seconds"],
            "group_seconds": result["group_seconds"],
            "peak_memory_bytes": result["peak_memory_bytes"], "time_basis": result["basis"],
            "calibration": about, "history_studies": n_studies}


def timed_sweep(points: list[tuple[Any, Any | None, dict]], reused: list[bool], session: Any,
                settings: Any) -> dict | None:
    """A sweep's total: ``curvscope.cost.sweep_estimate`` over its points (spec, dataset,
    cost), stages cached by an earlier point counted once, reused studies not at all."""
    from curvscope.cost import sweep_estimate

    try:
        rates, about = _rates(settings)
        corrections, n_studies = _corrections(session, rates)
        budget = max((c.get("memory_budget_bytes") or 0 for _, _, c in points), default=0)
        return sweep_estimate([p[0] for p in points], rates,
                              [_file_shape(p[0].data, p[1]) for p in points], corrections,
                              budget or None, basis_sentence(about, n_studies,
                                                             len(corrections)), reused)
    except Exception:
        log.exception("could not estimate the time of a sweep")
        return None


def _dataset(session: Any, dataset_id: int | None) -> Any | None:
    from backend.models import Dataset

    return session.get(Dataset, dataset_id) if dataset_id is not None else None


def timed_resolved(resolved: Any, session: Any, settings: Any) -> dict:
    """``timed`` for a ``backend.specs.Resolved`` (what the routes hold)."""
    return timed(resolved.spec, _dataset(session, resolved.dataset_id), resolved.estimate,
                 session, settings)


def timed_resolved_sweep(resolved: list[Any], reused: list[bool], session: Any,
                         settings: Any) -> dict | None:
    """``timed_sweep`` for the points' ``Resolved``."""
    return timed_sweep([(r.spec, _dataset(session, r.dataset_id), r.estimate)
                        for r in resolved], reused, session, settings)
