"""outbox columns (studies.sent_at, studies.finalize_sent_at, study_chunks.sent_at); ids never
reused on SQLite (AUTOINCREMENT on studies and datasets)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00

Rows that exist already count as sent, except queued studies that never got a task id (they
were committed and never reached the broker: exactly what the outbox is for).

SQLite can only add AUTOINCREMENT by rebuilding the table; ``backend.db.upgrade_database``
turns foreign keys off around the migration (a DROP TABLE with them on would cascade into the
chunks), as SQLite's documentation prescribes for table rebuilds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    extra = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}} if sqlite \
        else {}
    with op.batch_alter_table('studies', schema=None, **extra) as batch_op:
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('finalize_sent_at', sa.DateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('datasets', schema=None, **extra) as batch_op:
        pass
    with op.batch_alter_table('study_chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE studies SET sent_at = created_at "
               "WHERE NOT (state = 'queued' AND task_id IS NULL)")
    op.execute("UPDATE studies SET finalize_sent_at = updated_at WHERE finalize_enqueued")
    op.execute("UPDATE study_chunks SET sent_at = COALESCE(started_at, CURRENT_TIMESTAMP)")


def downgrade() -> None:
    with op.batch_alter_table('study_chunks', schema=None) as batch_op:
        batch_op.drop_column('sent_at')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('finalize_sent_at')
        batch_op.drop_column('sent_at')
