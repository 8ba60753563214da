"""study_groups: ablation ladders (and other groups of studies asked for together)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_groups",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_study_groups_kind", "study_groups", ["kind"])
    op.create_index("ix_study_groups_created_at", "study_groups", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_study_groups_created_at", "study_groups")
    op.drop_index("ix_study_groups_kind", "study_groups")
    op.drop_table("study_groups")
