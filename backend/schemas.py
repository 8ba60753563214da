"""Response models of the REST API (they document the OpenAPI schema at /docs)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from backend.models import Dataset, Study, StudyChunk, Worker

API_PREFIX = "/api/v1"


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ChunkOut(BaseModel):
    index: int
    alpha: float
    subset_start: int
    subset_stop: int
    state: str
    progress: float
    worker: str | None
    device: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class Timings(BaseModel):
    queued_seconds: float | None = Field(None, description="How long its latest attempt "
                                         "waited: from queued_at (creation, or the last "
                                         "retry) to a worker's start (or now).")
    running_seconds: float | None = Field(None, description="From start to finish (or now).")
    stages: dict[str, float] | None = Field(None, description="Seconds per stage of the "
                                            "finished study (results.json timings).")


class GroupRef(BaseModel):
    kind: str = Field(description="sweep or ladder")
    id: int = Field(description="GET /api/v1/sweeps/{id} or /api/v1/ladders/{id}.")
    name: str | None
    label: str | None = Field(description="The study's place in the group: the sweep point's "
                              "values (inverse.damping=0.001) or the ladder's rung.")


class StudyOut(BaseModel):
    id: int
    name: str | None
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    stage: str | None = Field(description="Current (or last) stage, e.g. train, "
                              "groundtruth/retrain, curvature/K-FAC.")
    stage_progress: float
    progress: float = Field(description="Fraction of the whole study done, 0..1.")
    spec_hash: str
    preset: str | None
    error: str | None = Field(description="Why the study failed, as a sentence.")
    error_type: str | None
    cancel_requested: bool
    attempts: int
    device: str | None
    worker: str | None
    summary: dict[str, Any] | None = Field(
        description="Headline numbers of a succeeded study: per method the LDS at each α and "
        "the relative residual to H.")
    data: dict[str, Any] | None = Field(
        description="The spec's data section (which data set, its split), so that a list "
        "can say what each study ran on without fetching every study.")
    model: dict[str, Any] | None = Field(description="The spec's model section (hidden widths, "
                                         "activation, dtype).")
    created_at: datetime
    queued_at: datetime = Field(description="When the study was last put in the queue: its "
                                "creation, then each retry.")
    queue_position: int | None = Field(
        None, description="Its place among the queued studies, 1 = the next a worker takes "
        "(in the order they were queued); null unless queued.")
    sweep_id: int | None = Field(None, description="The (first) sweep that holds this study "
                                 "(GET /api/v1/sweeps/{id}); filter with ?sweep_id=.")
    sweep_name: str | None = Field(None, description="That sweep's name.")
    ladder_id: int | None = Field(None, description="The (first) ablation ladder that holds "
                                  "this study (GET /api/v1/ladders/{id}); filter with "
                                  "?ladder_id=.")
    ladder_name: str | None = Field(None, description="That ladder's name.")
    groups: list[GroupRef] = Field(default_factory=list, description="Every sweep and ladder "
                                   "that holds this study, oldest first (an identical spec "
                                   "asked for twice is one study).")
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str]


class StudyDetail(StudyOut):
    log_tail: list[str] | None = Field(
        None, description="A failed study: the last lines (at most 50) the worker logged "
        "while it ran the task that failed, its traceback included; null otherwise.")
    spec: dict[str, Any]
    request: dict[str, Any]
    estimate: dict[str, Any] | None
    dataset_id: int | None
    timings: Timings
    chunks: list[ChunkOut]


class StudyList(BaseModel):
    data: list[StudyOut]
    count: int = Field(description="Studies matching the filters (before limit/offset).")


class ValidationOut(BaseModel):
    valid: bool
    spec: dict[str, Any]
    spec_hash: str
    estimate: dict[str, Any]
    existing_study_id: int | None = Field(
        None, description="A succeeded (or active) study with the same spec hash; submitting "
        "this spec returns it instead of computing again.")


class DatasetOut(BaseModel):
    id: int
    name: str
    format: str
    sha256: str
    size_bytes: int
    label_column: str | None
    n_rows: int
    n_features: int
    n_classes: int
    created_at: datetime
    reference: str = Field(description="Use as data.path with data.name = 'file'.")


class DatasetList(BaseModel):
    data: list[DatasetOut]
    count: int


class ArrayInfo(BaseModel):
    name: str
    shape: list[int]
    dtype: str


class ArrayList(BaseModel):
    data: list[ArrayInfo]
    count: int


class WorkerOut(BaseModel):
    hostname: str
    device: str
    pid: int
    state: str
    online: bool | None = Field(description="Answered a ping just now (None: broker down).")
    tasks_done: int
    started_at: datetime
    last_seen: datetime
    active: list[dict[str, Any]] | None = None


class WorkerList(BaseModel):
    data: list[WorkerOut]
    count: int


def study_links(study_id: int) -> dict[str, str]:
    base = f"{API_PREFIX}/studies/{study_id}"
    return {"self": base, "results": f"{base}/results", "arrays": f"{base}/arrays",
            "export_csv": f"{base}/export?format=csv", "export_json": f"{base}/export?format=json",
            "cancel": f"{base}/cancel", "retry": f"{base}/retry"}


class StudyExtras(BaseModel):
    """What a study's row alone does not say: its place in the queue, its groups."""

    queue_position: int | None = None
    groups: list[dict[str, Any]] = Field(default_factory=list)


def study_extras(session, studies: list[Study]) -> dict[int, StudyExtras]:
    """Study id → its extras, in two queries for all of ``studies``."""
    from backend import crud
    from backend.groups import groups_of

    ids = [s.id for s in studies if s is not None]
    queued = [s.id for s in studies if s is not None and s.state == "queued"]
    positions = crud.queue_positions(session, queued) if queued else {}
    held = groups_of(session, ids)
    return {i: StudyExtras(queue_position=positions.get(i), groups=held.get(i, []))
            for i in ids}


def _first(groups: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((g for g in groups if g["kind"] == kind), {})


def study_out(study: Study, extras: StudyExtras | None = None) -> StudyOut:
    extras = extras or StudyExtras()
    sweep, ladder = _first(extras.groups, "sweep"), _first(extras.groups, "ladder")
    return StudyOut(
        id=study.id, name=study.name, state=study.state, stage=study.stage,
        stage_progress=study.stage_progress, progress=study.progress,
        spec_hash=study.spec_hash, preset=study.preset, error=study.error,
        error_type=study.error_type, cancel_requested=study.cancel_requested,
        attempts=study.attempts, device=study.device, worker=study.worker,
        summary=study.summary, data=(study.spec or {}).get("data"),
        model=(study.spec or {}).get("model"), created_at=as_utc(study.created_at),
        queued_at=as_utc(study.queued_at or study.created_at),
        queue_position=extras.queue_position if study.state == "queued" else None,
        sweep_id=sweep.get("id"), sweep_name=sweep.get("name"), ladder_id=ladder.get("id"),
        ladder_name=ladder.get("name"), groups=[GroupRef(**g) for g in extras.groups],
        started_at=as_utc(study.started_at), finished_at=as_utc(study.finished_at),
        links=study_links(study.id))


def chunk_out(chunk: StudyChunk) -> ChunkOut:
    return ChunkOut(index=chunk.index, alpha=chunk.alpha, subset_start=chunk.subset_start,
                    subset_stop=chunk.subset_stop, state=chunk.state, progress=chunk.progress,
                    worker=chunk.worker, device=chunk.device, error=chunk.error,
                    started_at=as_utc(chunk.started_at), finished_at=as_utc(chunk.finished_at))


def timings_of(study: Study) -> Timings:
    now = datetime.now(UTC)
    since, started, finished = (as_utc(study.queued_at or study.created_at),
                                as_utc(study.started_at), as_utc(study.finished_at))
    queued = max(0.0, ((started or finished or now) - since).total_seconds()) if since \
        else None
    running = ((finished or now) - started).total_seconds() if started else None
    return Timings(queued_seconds=queued, running_seconds=running, stages=study.timings)


def study_detail(study: Study, extras: StudyExtras | None = None) -> StudyDetail:
    tail = study.log_tail.splitlines() if study.log_tail and study.state == "failed" else None
    return StudyDetail(**study_out(study, extras).model_dump(), log_tail=tail,
                       spec=study.spec, request=study.request,
                       estimate=study.estimate, dataset_id=study.dataset_id,
                       timings=timings_of(study), chunks=[chunk_out(c) for c in study.chunks])


def dataset_out(dataset: Dataset) -> DatasetOut:
    return DatasetOut(id=dataset.id, name=dataset.name, format=dataset.format,
                      sha256=dataset.sha256, size_bytes=dataset.size_bytes,
                      label_column=dataset.label_column, n_rows=dataset.n_rows,
                      n_features=dataset.n_features, n_classes=dataset.n_classes,
                      created_at=as_utc(dataset.created_at), reference=f"dataset:{dataset.id}")


def worker_out(worker: Worker, online: bool | None,
               active: list[dict[str, Any]] | None) -> WorkerOut:
    return WorkerOut(hostname=worker.hostname, device=worker.device, pid=worker.pid,
                     state=worker.state, online=online, tasks_done=worker.tasks_done,
                     started_at=as_utc(worker.started_at), last_seen=as_utc(worker.last_seen),
                     active=active)


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. training.epochs.")
    message: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str = Field(description="A sentence a person understands.")
    instance: str | None = None
    errors: list[FieldError] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemOut, "description": text,
             "content": {"application/problem+json": {}}}
    for status, text in [(400, "The Host header does not name this server (a loopback "
                               "address answers only to localhost names: DNS rebinding)."),
                         (401, "Missing or wrong bearer token (writes only)."),
                         (403, "A write from a page of another origin (browsers' Origin / "
                               "Sec-Fetch-Site)."),
                         (404, "No such resource."), (409, "Not possible in the current state."),
                         (422, "Invalid input: field paths and messages in `errors`.")]
}
#: What a write that stores something may answer besides.
STORAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    507: {"model": ProblemOut, "description": "The data folder's disk is full: nothing was "
          "stored.", "content": {"application/problem+json": {}}},
}
