"""Groups of studies that were asked for together: an ablation ladder (``kind = "ladder"``)
or a sweep (``kind = "sweep"``).

A group is its definition (the request that made it) and its members, in order: each member is
a label (the rung), the choices it switched and the study that runs it. Studies are shared: an
identical spec asked for by two groups is one study (the API reuses a succeeded, queued or
running study with the same spec hash), so members point at studies rather than own them; a
deleted study leaves its member pointing nowhere, which the API reports as ``deleted``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from backend.models import Base, utcnow

GROUP_KINDS = ("ladder", "sweep")


class StudyGroup(Base):
    __tablename__ = "study_groups"
    __table_args__ = {"sqlite_autoincrement": True}  # ids never reused (links to /ladder/<id>)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"label", "path", "switched": [...], "study_id"}] in the group's order
    members: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def group_state(studies: list) -> tuple[str, float]:
    """A group's state from its studies' (None: deleted): failed when any failed, was
    cancelled or deleted; succeeded when all did; running when any runs; else queued. The
    progress is the mean of the studies' (a succeeded one counts 1)."""
    if not studies:
        return "succeeded", 1.0
    if any(s is None or s.state in ("failed", "cancelled") for s in studies):
        state = "failed"
    elif all(s.state == "succeeded" for s in studies):
        state = "succeeded"
    elif any(s.state == "running" for s in studies):
        state = "running"
    else:
        state = "queued"
    done = [0.0 if s is None else (1.0 if s.state == "succeeded" else s.progress or 0.0)
            for s in studies]
    return state, sum(done) / len(done)


def list_groups(session, kind: str, limit: int, offset: int) -> tuple[list[StudyGroup], int]:
    """One page of the groups of ``kind``, newest first, and how many there are."""
    query = select(StudyGroup).where(StudyGroup.kind == kind)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    groups = session.scalars(query.order_by(StudyGroup.id.desc()).limit(limit)
                             .offset(offset)).all()
    return list(groups), count
