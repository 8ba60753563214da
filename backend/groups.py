"""Groups of studies that were asked for together: an ablation ladder (``kind = "ladder"``)
or a sweep (``kind = "sweep"``).

A group is its definition (the request that made it) and its members, in order: each member is
a label (the rung), the choices it switched and the study that runs it. Studies are shared: an
identical spec asked for by two groups is one study (the API reuses a succeeded, queued or
running study with the same spec hash), so members point at studies rather than own them; a
deleted study leaves its member pointing nowhere, which the API reports as ``deleted``.

The members are also rows of ``study_group_members`` (group, position, study id, label), written
once with the group (:func:`add_group`), so that "which groups hold study N" and "the studies of
sweep N" are indexed queries rather than a scan of every group's JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

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


class StudyGroupMember(Base):
    """One member of a group: the study at ``position`` of group ``group_id`` (no foreign key
    to the study: a deleted study leaves its member pointing nowhere, as in ``members``)."""

    __tablename__ = "study_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("study_groups.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(Integer, index=True)
    label: Mapped[str | None] = mapped_column(String(500))


def add_group(session: Session, group: StudyGroup) -> StudyGroup:
    """Store a new group and one ``study_group_members`` row per member (in its order)."""
    session.add(group)
    session.flush()
    for position, member in enumerate(group.members):
        session.add(StudyGroupMember(group_id=group.id, position=position,
                                     study_id=int(member["study_id"]),
                                     label=(str(member.get("label") or ""))[:500] or None))
    session.flush()
    return group


def groups_of(session: Session, study_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Study id → the groups that hold it, oldest first: ``{"kind", "id", "name", "label"}``
    each (a study in one group twice is listed once, with its first label)."""
    if not study_ids:
        return {}
    rows = session.execute(
        select(StudyGroupMember.study_id, StudyGroup.kind, StudyGroup.id, StudyGroup.name,
               StudyGroupMember.label)
        .join(StudyGroup, StudyGroup.id == StudyGroupMember.group_id)
        .where(StudyGroupMember.study_id.in_(set(study_ids)))
        .order_by(StudyGroup.id, StudyGroupMember.position)).all()
    out: dict[int, list[dict[str, Any]]] = {}
    for study_id, kind, group_id, name, label in rows:
        held = out.setdefault(int(study_id), [])
        if not any(g["id"] == group_id for g in held):
            held.append({"kind": kind, "id": int(group_id), "name": name, "label": label})
    return out


def member_ids(kind: str, group_id: int):
    """A subquery of the ids of the studies of group ``group_id`` of ``kind`` (empty when
    there is no such group)."""
    return (select(StudyGroupMember.study_id)
            .join(StudyGroup, StudyGroup.id == StudyGroupMember.group_id)
            .where(StudyGroup.id == group_id, StudyGroup.kind == kind))


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
