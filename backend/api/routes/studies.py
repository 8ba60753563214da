"""/api/v1/studies: create (202 + Location, Idempotency-Key), list, get, results, arrays,
export, cancel, retry, delete, and validate-without-storing."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BeforeValidator, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backend import artifacts, crud, outbox
from backend.api.deps import SessionDep, SettingsDep, WriteAuth, write_tx
from backend.core.problems import Problem
from backend.disk import require_space
from backend.estimate import timed_resolved
from backend.groups import member_ids
from backend.models import ACTIVE_STATES, STATES, IdempotencyKey, Study
from backend.schemas import (
    API_PREFIX,
    PROBLEM_RESPONSES,
    STORAGE_RESPONSES,
    ArrayList,
    StudyDetail,
    StudyList,
    StudyOut,
    ValidationOut,
    StudyExtras,
    as_utc,
    study_detail,
    study_extras,
    study_out,
)
from backend.specs import resolve

log = logging.getLogger("curvscope.api")
router = APIRouter(prefix="/studies", tags=["studies"], responses=PROBLEM_RESPONSES)

SPEC_EXAMPLES = {
    "quick": {"summary": "the quick preset", "value": {"preset": "quick"}},
    "override": {"summary": "a preset with overrides",
                 "value": {"preset": "quick", "training": {"epochs": 20},
                           "curvature": {"methods": ["GGN", "EK-FAC", "K-FAC"]}}},
}
SpecBody = Annotated[dict[str, Any], Body(
    description="A study spec: optionally a preset ('quick' or 'paper') plus overrides of any "
    "field (GET /api/v1/schema). The stored spec is the fully resolved one.",
    openapi_examples=SPEC_EXAMPLES)]
#: Path and query integers are bounded (no 500 for an id above what the database holds).
MAX_ID = 2**31 - 1
StudyId = Annotated[int, Path(ge=1, le=MAX_ID, description="The study's id.")]
SORT_FIELDS = {"id", "created_at", "queued_at", "started_at", "finished_at", "name", "state",
               "progress"}
SORT_PATTERN = r"^-?(" + "|".join(sorted(SORT_FIELDS)) + r")$"
STATE_PATTERN = r"^(" + "|".join(STATES) + r")(,(" + "|".join(STATES) + r"))*$"
IDS_PATTERN = r"^[0-9]{1,9}(,[0-9]{1,9})*$"


def _iso_only(value: Any) -> Any:
    """A query date-time is an RFC 3339 string, not a number read as a Unix time."""
    if not isinstance(value, str) or not value[:4].isdigit() or "-" not in value:
        raise ValueError("must be an RFC 3339 date-time such as 2026-12-01T09:30:00Z")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]


def _get(session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise Problem(404, f"There is no study with id {study_id}.", kind="study-not-found")
    return study


def _extras(session, study: Study) -> StudyExtras | None:
    return study_extras(session, [study]).get(study.id)


def _reply(study: Study, status: int, extras: StudyExtras | None = None) -> JSONResponse:
    return JSONResponse(study_out(study, extras).model_dump(mode="json"), status_code=status,
                        headers={"Location": f"{API_PREFIX}/studies/{study.id}"})


@router.post("/validate", response_model=ValidationOut, summary="Validate and estimate a spec "
             "without storing anything")
def validate_study(body: SpecBody, session: SessionDep, settings: SettingsDep) -> ValidationOut:
    resolved = resolve(body, session, settings)
    existing = _reusable(session, resolved.spec_hash)
    return ValidationOut(valid=True, spec=resolved.spec_dict, spec_hash=resolved.spec_hash,
                         estimate=timed_resolved(resolved, session, settings),
                         existing_study_id=existing.id if existing else None)


def _reusable(session, spec_hash: str) -> Study | None:
    """A succeeded study with this hash, else one still queued or running (not cancelled)."""
    for states in (("succeeded",), ACTIVE_STATES):
        study = session.scalars(
            select(Study).where(Study.spec_hash == spec_hash, Study.state.in_(states),
                                Study.cancel_requested.is_(False))
            .order_by(Study.id.desc()).limit(1)).first()
        if study is not None:
            return study
    return None


@router.post("", status_code=202, response_model=StudyOut, dependencies=[WriteAuth],
             summary="Submit a study", responses={
                 200: {"model": StudyOut, "description": "An identical spec already succeeded "
                       "(or is running): that study, not a new one."},
                 202: {"description": "Queued; Location names the new study."},
                 **STORAGE_RESPONSES})
def create_study(request: Request, body: SpecBody, session: SessionDep, settings: SettingsDep,
                 idempotency_key: Annotated[str | None, Header(
                     alias="Idempotency-Key", max_length=255,
                     description="Repeat a POST safely: the same key and body return the "
                     "same study.")] = None) -> JSONResponse:
    from curvscope.spec import content_hash

    request_hash = content_hash(body)
    if idempotency_key is not None:
        earlier = session.get(IdempotencyKey, idempotency_key)
        if earlier is not None and as_utc(earlier.created_at) < datetime.now(UTC) - timedelta(
                seconds=settings.idempotency_ttl_s):
            with write_tx(request) as tx:
                stale = tx.get(IdempotencyKey, idempotency_key)
                if stale is not None:
                    tx.delete(stale)
            earlier = None
        if earlier is not None:
            if earlier.request_hash != request_hash:
                raise Problem(422, "This Idempotency-Key was already used with a different "
                              "request body; use a new key for a new study.",
                              kind="idempotency-key-reused")
            study = session.get(Study, earlier.study_id)
            if study is not None:
                return _reply(study, earlier.status_code, _extras(session, study))

    require_space(settings)
    resolved = resolve(body, session, settings)
    try:
        with write_tx(request) as tx:
            existing = _reusable(tx, resolved.spec_hash)
            if existing is not None:
                status, study = 200, existing
            else:
                status = 202
                study = crud.create(tx, name=resolved.spec.name, spec=resolved.spec_dict,
                                    request=body, spec_hash=resolved.spec_hash,
                                    preset=resolved.preset,
                                    estimate=timed_resolved(resolved, tx, settings),
                                    dataset_id=resolved.dataset_id)
            if idempotency_key is not None:
                tx.add(IdempotencyKey(key=idempotency_key, request_hash=request_hash,
                                      study_id=study.id, status_code=status))
            extras = _extras(tx, study)
    except IntegrityError:
        raise Problem(409, "Another request with this Idempotency-Key is being processed; "
                      "repeat the request in a moment.", kind="idempotency-key-in-use") from None
    if status == 202:
        _enqueue(request, settings, [study])
    return _reply(study, status, extras)


def _enqueue(request: Request, settings, studies: list[Study] | Study) -> None:
    """Send the start messages these committed studies owe (``backend.outbox``). A broker
    that is down loses nothing: the studies stay queued with their message owed, the sweeper
    sends it later (workers' heartbeats, the next API start), and the answer says so."""
    if isinstance(studies, Study):
        studies = [studies]
    sent = outbox.flush(settings, [s.id for s in studies])
    if not sent.failed:
        return
    log.warning("broker unreachable; %d start message(s) stay owed: %s", sent.failed,
                sent.error)
    done = set(sent.start)
    note = ("waiting for the message broker (unreachable); the study is sent as soon as it "
            "is back")
    for study in studies:
        if study.id not in done:
            study.stage = note[:100]
    with write_tx(request) as tx:
        for study in studies:
            row = tx.get(Study, study.id)
            if study.id not in done and row is not None and row.state == "queued":
                row.stage = note[:100]


@router.get("", response_model=StudyList, summary="List studies")
def list_studies(
    session: SessionDep,
    state: Annotated[list[Annotated[str, StringConstraints(pattern=STATE_PATTERN)]] | None, Query(
        description="Filter by state (repeat or comma-separate: state=running,queued).")] = None,
    ids: Annotated[list[Annotated[str, StringConstraints(pattern=IDS_PATTERN)]] | None, Query(
        description="Only these studies (repeat or comma-separate: ids=3,5,7), e.g. the "
        "studies of a sweep.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Name contains (case-"
                                   "insensitive).")] = None,
    spec_hash: Annotated[str | None, Query(max_length=32)] = None,
    preset: Annotated[str | None, Query(max_length=32)] = None,
    sweep_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only the studies of "
                                          "this sweep (GET /api/v1/sweeps/{id}).")] = None,
    ladder_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only the studies of "
                                           "this ablation ladder.")] = None,
    created_after: Annotated[IsoDatetime | None, Query(
        description="Created at or after this RFC 3339 date-time.")] = None,
    created_before: Annotated[IsoDatetime | None, Query(
        description="Created before this RFC 3339 date-time.")] = None,
    sort: Annotated[str, Query(pattern=SORT_PATTERN, description="Field, '-' prefix for "
                               "descending: " + ", ".join(sorted(SORT_FIELDS)))] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> StudyList:
    conditions = []
    if state:
        states = [s.strip() for item in state for s in item.split(",") if s.strip()]
        unknown = sorted(set(states) - set(STATES))
        if unknown:
            raise Problem(422, f"Unknown state {', '.join(unknown)}; allowed: "
                          f"{', '.join(STATES)}.", errors=[{"field": "query.state", "message":
                                                            f"allowed: {', '.join(STATES)}"}])
        conditions.append(Study.state.in_(states))
    if ids:
        wanted = [s.strip() for item in ids for s in item.split(",") if s.strip()]
        bad = [s for s in wanted if not (s.isdigit() and len(s) <= 10 and int(s) <= MAX_ID)]
        if bad:
            raise Problem(422, f"ids must be study ids (whole numbers up to {MAX_ID}), not "
                          f"{', '.join(bad)[:200]}.",
                          errors=[{"field": "query.ids", "message": "comma-separated ids"}])
        conditions.append(Study.id.in_([int(s) for s in wanted]))
    if q:
        conditions.append(func.lower(Study.name).contains(q.lower(), autoescape=True))
    if spec_hash:
        conditions.append(Study.spec_hash == spec_hash)
    if preset:
        conditions.append(Study.preset == preset)
    if sweep_id is not None:
        conditions.append(Study.id.in_(member_ids("sweep", sweep_id)))
    if ladder_id is not None:
        conditions.append(Study.id.in_(member_ids("ladder", ladder_id)))
    if created_after:
        conditions.append(Study.created_at >= created_after)
    if created_before:
        conditions.append(Study.created_at < created_before)
    field = sort.removeprefix("-")
    if field not in SORT_FIELDS:
        raise Problem(422, f"Cannot sort by {field!r}; sort by one of "
                      f"{', '.join(sorted(SORT_FIELDS))} ('-' prefix for descending).",
                      errors=[{"field": "query.sort", "message": "unknown sort field"}])
    column = getattr(Study, field)
    order = column.desc() if sort.startswith("-") else column.asc()
    tie = Study.id.desc() if sort.startswith("-") else Study.id.asc()
    count = session.scalar(select(func.count()).select_from(Study).where(*conditions))
    rows = session.scalars(select(Study).where(*conditions).order_by(order, tie)
                           .limit(limit).offset(offset)).all()
    extras = study_extras(session, list(rows))
    return StudyList(data=[study_out(s, extras.get(s.id)) for s in rows], count=count or 0)


@router.get("/{study_id:int}", response_model=StudyDetail, summary="One study: state, stage, "
            "progress, timings, error, chunks")
def get_study(study_id: StudyId, session: SessionDep) -> StudyDetail:
    study = _get(session, study_id)
    return study_detail(study, _extras(session, study))


def _succeeded(session, settings, study_id: int) -> Study:
    study = _get(session, study_id)
    if study.state != "succeeded":
        why = f" ({study.error})" if study.state == "failed" and study.error else ""
        raise Problem(409, f"Study {study_id} is {study.state}{why}; results exist once it "
                      "has succeeded.", kind="study-not-succeeded", state=study.state)
    if not artifacts.results_path(settings, study_id).exists():
        raise Problem(404, f"Study {study_id} succeeded but its files are gone from "
                      f"{artifacts.study_dir(settings, study_id)}.", kind="results-missing")
    return study


@router.get("/{study_id:int}/results", summary="results.json of a succeeded study",
            response_class=FileResponse, responses={200: {"content": {"application/json": {}}}})
def get_results(study_id: StudyId, session: SessionDep, settings: SettingsDep) -> FileResponse:
    _succeeded(session, settings, study_id)
    return FileResponse(artifacts.results_path(settings, study_id),
                        media_type="application/json")


@router.get("/{study_id:int}/arrays", response_model=ArrayList, summary="Names, shapes, dtypes "
            "of the study's arrays")
def list_study_arrays(study_id: StudyId, session: SessionDep, settings: SettingsDep) -> ArrayList:
    _succeeded(session, settings, study_id)
    items = artifacts.list_arrays(artifacts.arrays_path(settings, study_id))
    return ArrayList(data=items, count=len(items))


@router.get("/{study_id:int}/arrays/{name:path}", summary="One array as JSON or .npy",
            responses={200: {"content": {"application/json": {}, "application/x-npy": {}}}})
def get_array(request: Request, study_id: StudyId, name: str, session: SessionDep,
              settings: SettingsDep,
              format: Annotated[Literal["json", "npy"] | None, Query(
                  description="json (nested lists, NaN → null) or npy; default from the "
                  "Accept header, else json.")] = None,
              index: Annotated[int | None, Query(
                  ge=0, le=MAX_ID, description="Only the array's row ``[index]`` along its first axis, "
                  "e.g. one test point's scores: scores/K-FAC?index=5 is τ(x_5, ·), one "
                  "value per training point.")] = None) -> Response:
    _succeeded(session, settings, study_id)
    if name.endswith(".npy"):
        name, format = name[:-4], "npy"
    if format is None:
        accept = request.headers.get("accept", "")
        format = "npy" if ("application/x-npy" in accept
                           or "application/octet-stream" in accept) else "json"
    array = artifacts.load_array(artifacts.arrays_path(settings, study_id), name)
    if array is None:
        raise Problem(404, f"Study {study_id} has no array {name!r}; GET "
                      f"{API_PREFIX}/studies/{study_id}/arrays lists them.",
                      kind="array-not-found")
    if index is not None:
        if array.ndim == 0 or index >= array.shape[0]:
            allowed = ("none: it is a scalar" if array.ndim == 0 else
                       f"0 ≤ index < {array.shape[0]}")
            raise Problem(422, f"index {index} is out of range for array {name!r} of shape "
                          f"{tuple(array.shape)}; allowed: {allowed}.", kind="index-out-of-range")
        array = array[index]
        name = f"{name}[{index}]"
    if format == "npy":
        filename = name.replace("/", "_") + ".npy"
        return Response(artifacts.npy_bytes(array), media_type="application/x-npy",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    if array.size > settings.max_json_array_elements:
        raise Problem(422, f"Array {name!r} has {array.size:,} elements, more than "
                      f"{settings.max_json_array_elements:,} served as JSON; ask for "
                      "format=npy.", kind="array-too-large-for-json")
    return JSONResponse({"name": name, "shape": list(array.shape), "dtype": str(array.dtype),
                         "data": artifacts.json_safe(array)})


@router.get("/{study_id:int}/export", summary="Export a study as CSV (per method and α) or JSON "
            "(the study record and its results)",
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export_study(study_id: StudyId, session: SessionDep, settings: SettingsDep,
                 format: Literal["csv", "json"] = "json") -> Response:
    study = _succeeded(session, settings, study_id)
    results = artifacts.load_results(settings, study_id)
    filename = f"study-{study_id}-{study.spec_hash}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return Response(artifacts.results_csv(study_id, results), media_type="text/csv",
                        headers=headers)
    return JSONResponse({"study": study_detail(study, _extras(session, study)).model_dump(
        mode="json"),
                         "results": results}, headers=headers)


def _transition_problem(exc: crud.TransitionError, kind: str) -> Problem:
    return Problem(409, str(exc), kind=kind, state=exc.state)


@router.post("/{study_id:int}/cancel", response_model=StudyOut, dependencies=[WriteAuth],
             summary="Cancel a queued or running study (cooperatively)",
             responses={202: {"description": "Running: the worker stops at its next check."}})
def cancel_study(request: Request, study_id: StudyId) -> JSONResponse:
    with write_tx(request) as tx:
        try:
            study, at_once = crud.request_cancel(tx, study_id)
        except crud.StudyNotFound as exc:
            raise Problem(404, str(exc), kind="study-not-found") from None
        except crud.TransitionError as exc:
            raise _transition_problem(exc, "study-finished") from None
        extras = _extras(tx, study)
    return _reply(study, 200 if at_once else 202, extras)


@router.post("/{study_id:int}/retry", response_model=StudyOut, status_code=202,
             dependencies=[WriteAuth], summary="Run a failed or cancelled study again "
             "(finished stages and chunks are reused from the cache), or send a queued one "
             "that never reached the broker")
def retry_study(request: Request, study_id: StudyId, settings: SettingsDep) -> JSONResponse:
    with write_tx(request) as tx:
        try:
            study = crud.retry(tx, study_id)
        except crud.StudyNotFound as exc:
            raise Problem(404, str(exc), kind="study-not-found") from None
        except crud.TransitionError as exc:
            raise _transition_problem(exc, "study-not-retryable") from None
        tx.flush()
        extras = _extras(tx, study)
    _enqueue(request, settings, [study])
    return _reply(study, 202, extras)


@router.delete("/{study_id:int}", status_code=204, dependencies=[WriteAuth],
               summary="Delete a finished study and its files")
def delete_study(request: Request, study_id: StudyId, settings: SettingsDep) -> Response:
    with write_tx(request) as tx:
        try:
            crud.delete(tx, study_id)
        except crud.StudyNotFound as exc:
            raise Problem(404, str(exc), kind="study-not-found") from None
        except crud.TransitionError as exc:
            raise Problem(409, f"{exc} Cancel it first (POST {API_PREFIX}/studies/"
                          f"{study_id}/cancel).", kind="study-active", state=exc.state) from None
    shutil.rmtree(artifacts.study_dir(settings, study_id), ignore_errors=True)
    return Response(status_code=204)
