"""/api/v1/sweeps: one study per point of a grid over spec fields (width, depth, training
time (``training.evaluate_at_epoch``), damping, α, seed, or any other field), checked as a
whole before anything is stored.

A sweep is stored as a group of studies (``backend.groups.StudyGroup``, kind ``sweep``): its
grid and, per point, the values and the study. ``GET /sweeps`` lists them and ``GET
/sweeps/{id}`` gives the grid, every point's study and state, and the sweep's progress. Studies
are shared, not owned: posting the same sweep again returns the same studies (an identical spec that succeeded, or is queued or running, is
returned rather than run again, as for ``POST /studies``), so a sweep is safe to repeat and
to extend with more values."""

from __future__ import annotations

import itertools
import json
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import SessionDep, SettingsDep, WriteAuth, write_tx
from backend import crud
from backend.api.routes.studies import _enqueue, _reusable
from backend.core.problems import Problem
from backend.disk import require_space
from backend.estimate import timed_resolved, timed_resolved_sweep
from backend.groups import StudyGroup, add_group, group_state, list_groups
from backend.models import Study
from backend.schemas import (
    API_PREFIX,
    PROBLEM_RESPONSES,
    STORAGE_RESPONSES,
    StudyOut,
    study_extras,
    study_out,
)
from backend.specs import invalid, resolve

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=PROBLEM_RESPONSES)

FIELD_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")


class SweepIn(BaseModel):
    """A base spec and, per spec field, the values to try: one study per combination."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "base": {"preset": "quick"}, "name": "damping × width",
        "grid": {"inverse.damping": [1e-4, 1e-3, 1e-2], "model.hidden": [[32], [64]]}}]})

    base: dict[str, Any] = Field(
        default_factory=lambda: {"preset": "quick"},
        description="The spec every point starts from: a preset plus overrides, as for POST "
        "/studies (default the quick preset).")
    grid: dict[str, list[Any]] = Field(
        min_length=1, max_length=8,
        description="Spec field as a dotted path (model.hidden, training.epochs, "
        "inverse.damping, groundtruth.alphas, training.seed, …) → the values it takes. The "
        "studies are every combination, in the order the fields are given.")
    name: str | None = Field(
        default=None, max_length=120,
        description="Names the studies '<name>: <field>=<value>, …' (default 'sweep').")


class SweepPoint(BaseModel):
    values: dict[str, Any] = Field(description="This point's value of each grid field.")
    reused: bool = Field(description="True: an identical study already existed (succeeded, or "
                         "queued or running) and is returned instead of a new one.")
    study: StudyOut


class SweepOut(BaseModel):
    id: int = Field(description="The sweep's id (GET /api/v1/sweeps/{id}).")
    name: str | None = None
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="The grid as posted.")
    state: str = Field(default="queued", description="queued, running, succeeded (every "
                       "point), failed (some point failed, was cancelled or deleted).")
    progress: float = Field(default=0.0, description="Mean progress of the points, 0..1.")
    count: int
    created: int
    reused: int
    fields: list[str]
    points: list[SweepPoint]
    compare: str = Field(description="The dashboard's compare page for these studies.")
    links: dict[str, str] = Field(default_factory=dict)
    estimate: dict[str, Any] | None = Field(
        None, description="On POST: the sweep's time estimate (as POST /sweeps/validate).")


class SweepValidation(BaseModel):
    """A sweep checked and estimated, nothing stored."""

    valid: bool
    count: int
    fields: list[str]
    points: list[dict[str, Any]] = Field(description="Per point: its values, spec hash, an "
                                         "identical existing study (reused) and its seconds.")
    estimate: dict[str, Any] | None = Field(
        None, description="curvscope.cost's sweep estimate: total seconds (one worker; stages "
        "an earlier point caches counted once, reused studies not at all), per point, peak "
        "memory and the basis.")


class SweepList(BaseModel):
    data: list[SweepOut]
    count: int


def _nested(path: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def _points(body: SweepIn, limit: int) -> list[dict[str, Any]]:
    errors = []
    for path, values in body.grid.items():
        if not FIELD_PATH.match(path) or path == "name":
            errors.append({"field": f"grid.{path}", "message": "must be a spec field as a "
                           "dotted path, e.g. inverse.damping (GET /api/v1/schema lists them)"})
        elif not values:
            errors.append({"field": f"grid.{path}", "message": "needs at least one value"})
    if errors:
        raise invalid(errors, intro="The sweep is invalid", kind="invalid-sweep")
    count = 1
    for values in body.grid.values():
        count *= len(values)
    if count > limit:
        sizes = " × ".join(str(len(v)) for v in body.grid.values())
        raise invalid([{"field": "grid", "message": f"{sizes} = {count} studies, more than the "
                        f"{limit} one sweep may create (CURVSCOPE_MAX_SWEEP_STUDIES)"}],
                      intro="The sweep is too large", kind="sweep-too-large")
    fields = list(body.grid)
    return [dict(zip(fields, combination, strict=True))
            for combination in itertools.product(*body.grid.values())]


def _label(values: dict[str, Any]) -> str:
    """inverse.damping=0.001, model.hidden=[32]"""
    return ", ".join(f"{path}={json.dumps(value)}" for path, value in values.items())


def _config(body: SweepIn, values: dict[str, Any]) -> dict:
    from curvscope.spec import deep_merge

    config = dict(body.base)
    for path, value in values.items():
        config = deep_merge(config, _nested(path, value))
    config["name"] = f"{body.name or 'sweep'}: {_label(values)}"[:200]
    return config


def _resolve_points(points: list[dict[str, Any]], configs: list[dict],
                    session, settings) -> list:
    """Every point's resolved spec, or one 422 naming each invalid point."""
    resolved, errors = [], []
    for index, (values, config) in enumerate(zip(points, configs, strict=True)):
        try:
            resolved.append(resolve(config, session, settings))
        except Problem as problem:  # resolve's 422: say which point
            if problem.status != 422 or not problem.errors:
                raise
            errors += [{"field": f"point {index} ({_label(values)}): {e['field']}",
                        "message": e["message"]} for e in problem.errors]
    if errors:
        raise invalid(errors, intro="Some points of the sweep are invalid (nothing was "
                      "stored)", kind="invalid-sweep")
    return resolved


@router.post("/validate", response_model=SweepValidation, summary="Validate and estimate a "
             "sweep without storing anything")
def validate_sweep(body: SweepIn, session: SessionDep, settings: SettingsDep
                   ) -> SweepValidation:
    points = _points(body, settings.max_sweep_studies)
    configs = [_config(body, values) for values in points]
    resolved = _resolve_points(points, configs, session, settings)
    existing = [_reusable(session, r.spec_hash) for r in resolved]
    estimate = timed_resolved_sweep(resolved, [e is not None for e in existing], session,
                                    settings)
    per_point = (estimate or {}).get("points") or [{}] * len(points)
    return SweepValidation(valid=True, count=len(points), fields=list(body.grid), points=[
        {"values": values, "spec_hash": r.spec_hash,
         "existing_study_id": e.id if e is not None else None,
         "seconds": p.get("seconds"), "cached_stages": p.get("cached_stages", [])}
        for values, r, e, p in zip(points, resolved, existing, per_point, strict=True)],
        estimate=estimate)


@router.post("", status_code=202, response_model=SweepOut, dependencies=[WriteAuth],
             summary="Submit a sweep: one study per combination of the grid's values",
             responses={200: {"model": SweepOut, "description": "Every point already existed "
                              "(succeeded, queued or running): those studies."},
                        202: {"description": "At least one new study was queued."},
                        **STORAGE_RESPONSES})
def create_sweep(request: Request, body: SweepIn, session: SessionDep,
                 settings: SettingsDep) -> JSONResponse:
    require_space(settings)
    points = _points(body, settings.max_sweep_studies)
    configs = [_config(body, values) for values in points]
    resolved = _resolve_points(points, configs, session, settings)
    rows: list[tuple[dict, Study, bool]] = []
    with write_tx(request) as tx:
        for values, config, spec in zip(points, configs, resolved, strict=True):
            existing = _reusable(tx, spec.spec_hash)
            if existing is None:
                study = crud.create(tx, name=spec.spec.name, spec=spec.spec_dict,
                                    request=config, spec_hash=spec.spec_hash,
                                    preset=spec.preset,
                                    estimate=timed_resolved(spec, tx, settings),
                                    dataset_id=spec.dataset_id)
            rows.append((values, existing or study, existing is not None))
        estimate = timed_resolved_sweep(resolved, [r for _, _, r in rows], tx, settings)
        group = StudyGroup(kind="sweep", name=body.name, definition=body.model_dump(mode="json"),
                           members=[{"label": _label(values), "values": values,
                                     "study_id": study.id, "reused": reused}
                                    for values, study, reused in rows])
        add_group(tx, group)
        group_id = group.id
    created = [study for _, study, reused in rows if not reused]
    if created:  # every point on its own: a broker error leaves the rest owed, none lost
        _enqueue(request, settings, created)
    out = _sweep_out(session.get(StudyGroup, group_id), session)
    out.estimate = estimate
    return JSONResponse(out.model_dump(mode="json"), status_code=202 if created else 200,
                        headers={"Location": f"{API_PREFIX}/sweeps/{group_id}"})


def _sweep_out(group: StudyGroup, session) -> SweepOut:
    """A stored sweep with its points' studies as they are now."""
    members = group.members
    studies = [session.get(Study, m["study_id"]) for m in members]
    state, progress = group_state(studies)
    extras = study_extras(session, studies)
    grid = group.definition.get("grid", {})
    ids = ",".join(str(m["study_id"]) for m in members)
    first = next(iter(grid), "")
    reused = sum(bool(m.get("reused")) for m in members)
    return SweepOut(
        id=group.id, name=group.name, grid=grid, state=state, progress=progress,
        count=len(members), created=len(members) - reused, reused=reused, fields=list(grid),
        points=[SweepPoint(values=m["values"], reused=bool(m.get("reused")),
                           study=study_out(st, extras.get(st.id)))
                for m, st in zip(members, studies, strict=True) if st is not None],
        compare=f"/compare?ids={ids}&param={quote(first)}",
        links={"self": f"{API_PREFIX}/sweeps/{group.id}",
               "studies": f"{API_PREFIX}/studies?ids={ids}",
               "page": f"/sweeps/{group.id}",
               "compare": f"/compare?ids={ids}&param={quote(first)}"})


@router.get("", response_model=SweepList, summary="List sweeps, newest first")
def list_sweeps(session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0) -> SweepList:
    groups, count = list_groups(session, "sweep", limit, offset)
    return SweepList(data=[_sweep_out(g, session) for g in groups], count=count)


@router.get("/{sweep_id:int}", response_model=SweepOut, summary="A sweep: its grid, its points' "
            "studies and their states, its progress")
def get_sweep(sweep_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
              session: SessionDep) -> SweepOut:
    group = session.get(StudyGroup, sweep_id)
    if group is None or group.kind != "sweep":
        raise Problem(404, f"There is no sweep with id {sweep_id}.", kind="sweep-not-found")
    return _sweep_out(group, session)
