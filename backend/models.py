"""SQLAlchemy 2 models: the source of truth for studies, their chunks, data sets and workers.

A study's lifecycle is a column (``state``): queued → running (``stage``, ``progress``) →
succeeded | failed (``error``, ``log_tail``) | cancelled; ``queued_at`` is when it was last
put in the queue (creation or retry). Its ground-truth retraining is split into
``StudyChunk`` rows that any worker may take; each records which worker and device ran it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
CHUNK_STATES = ("pending", "running", "done", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Study(Base):
    __tablename__ = "studies"
    # AUTOINCREMENT on SQLite: an id is never handed out again after a DELETE (a stale link
    # must not point at another study); PostgreSQL's sequence never reuses one either.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    stage: Mapped[str | None] = mapped_column(String(100))
    stage_progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    spec_hash: Mapped[str] = mapped_column(String(32), index=True)
    preset: Mapped[str | None] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(100))
    # the last lines the worker logged while running the task that failed the study (its
    # traceback included), newline-separated; cleared by a retry
    log_tail: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    finalize_enqueued: Mapped[bool] = mapped_column(Boolean, default=False)
    # The outbox (backend.outbox): when the start (resp. finalize) message was handed to the
    # broker; NULL while it is owed, so a sweeper sends whatever was committed but not sent.
    sent_at: Mapped[datetime | None] = mapped_column()
    finalize_sent_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(255))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # when the study was last put in the queue: its creation, then each retry (what "queued
    # for" counts from, and the order of the queue)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    chunks: Mapped[list[StudyChunk]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True,
        order_by="StudyChunk.index")


class StudyChunk(Base):
    """One retraining task of a study (``curvscope.study.RetrainTask``)."""

    __tablename__ = "study_chunks"
    __table_args__ = (UniqueConstraint("study_id", "index", name="uq_study_chunks_study_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          index=True)
    index: Mapped[int] = mapped_column(Integer)
    alpha: Mapped[float] = mapped_column(Float)
    subset_start: Mapped[int] = mapped_column(Integer)
    subset_stop: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    sent_at: Mapped[datetime | None] = mapped_column()  # outbox: NULL while a message is owed
    worker: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    study: Mapped[Study] = relationship(back_populates="chunks")


class Dataset(Base):
    """An uploaded .csv/.npz file, stored content-addressed under <data_dir>/datasets."""

    __tablename__ = "datasets"
    __table_args__ = {"sqlite_autoincrement": True}  # ids never reused (dataset:<id> links)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(4096))
    size_bytes: Mapped[int] = mapped_column(Integer)
    label_column: Mapped[str | None] = mapped_column(String(1000))
    n_rows: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    n_classes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """``Idempotency-Key`` of a POST /studies: the same key and body give the same study."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    status_code: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """A Celery worker as it announced itself (device, pid) and was last seen."""

    __tablename__ = "workers"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    device: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="online")
    tasks_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


# the groups' tables (backend.groups) belong to the same metadata: importing the models
# always gives the whole schema (the migrations' target, create_all in tests)
from backend import groups as _groups  # noqa: E402,F401
