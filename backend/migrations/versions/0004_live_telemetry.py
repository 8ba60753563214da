"""live telemetry: studies.queued_at (when it was last put in the queue), studies.log_tail
(the worker's last log lines of a failed study), study_group_members (which groups hold a study)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00

Backfill: ``queued_at`` = ``created_at`` (the time of a retry before this revision is not
known); one ``study_group_members`` row per member of every stored group, in its order.
On SQLite the NOT NULL on ``queued_at`` rebuilds the table (keeping AUTOINCREMENT), with
foreign keys off around it as for 0002 (``backend.db.upgrade_database``).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("log_tail", sa.Text(), nullable=True))
    op.execute("UPDATE studies SET queued_at = created_at")
    extra = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}} if sqlite \
        else {}
    with op.batch_alter_table("studies", schema=None, **extra) as batch_op:
        batch_op.alter_column("queued_at", existing_type=sa.DateTime(timezone=True),
                              nullable=False)
        batch_op.create_index("ix_studies_queued_at", ["queued_at"])

    members = op.create_table(
        "study_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(500)),
        sa.ForeignKeyConstraint(["group_id"], ["study_groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "position"),
    )
    op.create_index("ix_study_group_members_study_id", "study_group_members", ["study_id"])
    rows = []
    for group_id, stored in bind.execute(sa.text("SELECT id, members FROM study_groups")):
        listed = json.loads(stored) if isinstance(stored, str) else (stored or [])
        for position, member in enumerate(listed):
            label = str(member.get("label") or "")[:500] or None
            rows.append({"group_id": group_id, "position": position,
                         "study_id": int(member["study_id"]), "label": label})
    if rows:
        op.bulk_insert(members, rows)


def downgrade() -> None:
    op.drop_index("ix_study_group_members_study_id", "study_group_members")
    op.drop_table("study_group_members")
    sqlite = op.get_bind().dialect.name == "sqlite"
    extra = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}} if sqlite \
        else {}
    with op.batch_alter_table("studies", schema=None, **extra) as batch_op:
        batch_op.drop_index("ix_studies_queued_at")
        batch_op.drop_column("log_tail")
        batch_op.drop_column("queued_at")
