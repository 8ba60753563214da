"""/api/v1/ladders: the ablation ladder (``curvscope.ladder``) as one request.

``POST /ladders`` takes a base study and the official-code choices to switch (each alone, and
one after another), checks every rung's spec before anything is stored, queues one study per
rung (reusing identical studies, so rungs share the trained model and the retraining through
the workers' stage cache), and stores the ladder. ``GET /ladders/{id}`` lists its rungs and
their studies' states; ``GET /ladders/{id}/summary`` is the table the dashboard's ladder page
and ``curvscope report`` show: per rung the headline LDS per method and α with intervals, the
paired difference against the base rung, the hierarchy verdict and the paper's two claims.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from backend import artifacts, crud
from backend.api.deps import SessionDep, SettingsDep, WriteAuth, write_tx
from backend.api.routes.studies import _enqueue, _reusable
from backend.core.problems import Problem
from backend.disk import require_space
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
from curvscope.ladder import LadderSpec, Rung, ladder_rungs, summarize_ladder

router = APIRouter(prefix="/ladders", tags=["ladders"], responses=PROBLEM_RESPONSES)

LadderId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The ladder's id.")]


class LadderRungOut(BaseModel):
    label: str = Field(description="base, a choice's name, or the cumulative path so far.")
    path: str = Field(description="base, each (one choice alone) or cumulative.")
    switched: list[str] = Field(description="The official-code choices this rung switches.")
    study: StudyOut | None = Field(description="The rung's study (null once deleted).")
    reused: bool | None = Field(default=None, description="On creation: an identical study "
                                "already existed and is shared.")


class LadderOut(BaseModel):
    id: int
    name: str | None
    ladder: dict[str, Any] = Field(description="The ladder as asked for (base, rungs, path).")
    state: str = Field(description="queued, running, succeeded (every rung), failed (some "
                       "rung failed or was cancelled or deleted).")
    progress: float = Field(description="Mean progress of the rungs' studies, 0..1.")
    rungs: list[LadderRungOut]
    links: dict[str, str]


class LadderList(BaseModel):
    data: list[LadderOut]
    count: int


def _validate(body: dict[str, Any]) -> LadderSpec:
    try:
        return LadderSpec.model_validate(body)
    except ValidationError as exc:
        raise invalid([{"field": ".".join(str(p) for p in e["loc"]) or "ladder",
                        "message": e["msg"].removeprefix("Value error, ")}
                       for e in exc.errors()], intro="The ladder is invalid",
                      kind="invalid-ladder") from None


def _out(group: StudyGroup, session, reused: dict[int, bool] | None = None) -> LadderOut:
    studies = [session.get(Study, m["study_id"]) for m in group.members]
    state, progress = group_state(studies)
    extras = study_extras(session, studies)
    return LadderOut(
        id=group.id, name=group.name, ladder=group.definition, state=state, progress=progress,
        rungs=[LadderRungOut(label=m["label"], path=m["path"], switched=m["switched"],
                             study=study_out(s, extras.get(s.id)) if s is not None else None,
                             reused=None if reused is None else reused.get(m["study_id"]))
               for m, s in zip(group.members, studies, strict=True)],
        links={"self": f"{API_PREFIX}/ladders/{group.id}",
               "summary": f"{API_PREFIX}/ladders/{group.id}/summary",
               "page": f"/ladder/{group.id}"})


@router.post("", status_code=202, response_model=LadderOut, dependencies=[WriteAuth],
             summary="Submit an ablation ladder: curvscope's protocol toward the official "
             "code's, one choice at a time",
             responses={202: {"description": "Queued; Location names the ladder."},
                        **STORAGE_RESPONSES})
def create_ladder(request: Request, body: dict[str, Any], session: SessionDep,
                  settings: SettingsDep) -> JSONResponse:
    require_space(settings)
    ladder = _validate(body)
    rungs = ladder_rungs(ladder)
    resolved, errors = [], []
    for rung in rungs:
        try:
            resolved.append(resolve(rung.config, session, settings))
        except Problem as problem:
            if problem.status != 422 or not problem.errors:
                raise
            errors += [{"field": f"rung {rung.label}: {e['field']}", "message": e["message"]}
                       for e in problem.errors]
    if errors:
        raise invalid(errors, intro="Some rungs of the ladder are invalid (nothing was stored)",
                      kind="invalid-ladder")
    created: list[Study] = []
    reused: dict[int, bool] = {}
    with write_tx(request) as tx:
        members = []
        by_hash: dict[str, Study] = {}
        for rung, spec in zip(rungs, resolved, strict=True):
            study = by_hash.get(spec.spec_hash) or _reusable(tx, spec.spec_hash)
            if study is None:
                study = crud.create(tx, name=spec.spec.name, spec=spec.spec_dict,
                                    request=rung.config, spec_hash=spec.spec_hash,
                                    preset=spec.preset, estimate=spec.estimate,
                                    dataset_id=spec.dataset_id)
                created.append(study)
                reused[study.id] = False
            else:
                reused.setdefault(study.id, True)
            by_hash[spec.spec_hash] = study
            members.append({"label": rung.label, "path": rung.path,
                            "switched": list(rung.switched), "study_id": study.id})
        group = StudyGroup(kind="ladder", name=ladder.name, members=members,
                           definition=ladder.model_dump(mode="json"))
        add_group(tx, group)
        group_id = group.id
    if created:  # every rung on its own: a broker error leaves the rest owed, none lost
        _enqueue(request, settings, created)
    group = session.get(StudyGroup, group_id)
    out = _out(group, session, reused)
    return JSONResponse(out.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"{API_PREFIX}/ladders/{group_id}"})


def _get(session, ladder_id: int) -> StudyGroup:
    group = session.get(StudyGroup, ladder_id)
    if group is None or group.kind != "ladder":
        raise Problem(404, f"There is no ladder with id {ladder_id}.", kind="ladder-not-found")
    return group


@router.get("", response_model=LadderList, summary="List ladders, newest first")
def list_ladders(session: SessionDep,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0) -> LadderList:
    groups, count = list_groups(session, "ladder", limit, offset)
    return LadderList(data=[_out(g, session) for g in groups], count=count)


@router.get("/{ladder_id}", response_model=LadderOut, summary="A ladder: its rungs and their "
            "studies' states")
def get_ladder(ladder_id: LadderId, session: SessionDep) -> LadderOut:
    return _out(_get(session, ladder_id), session)


@router.get("/{ladder_id}/summary", summary="The ladder's table: LDS per rung, method and α, "
            "paired differences to the base rung, verdicts and the paper's claims")
def ladder_summary(ladder_id: LadderId, session: SessionDep, settings: SettingsDep) -> dict:
    group = _get(session, ladder_id)
    ladder = LadderSpec.model_validate(group.definition)
    by_label = {m["label"]: m["study_id"] for m in group.members}

    def load(rung: Rung):
        study = session.get(Study, by_label.get(rung.label, -1))
        if study is None or study.state != "succeeded":
            return None
        results = artifacts.load_results(settings, study.id)
        path = artifacts.arrays_path(settings, study.id)
        names = [a["name"] for a in artifacts.list_arrays(path)
                 if a["name"].startswith("lds_bootstrap/")]
        return results, {name: artifacts.load_array(path, name) for name in names}

    summary = summarize_ladder(ladder, load)
    for row in summary["rungs"]:
        row["study_id"] = by_label.get(row["label"])
    summary["id"] = group.id
    return _finite(summary)


def _finite(value: Any) -> Any:
    """JSON has no NaN: NaN and ±inf become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
