"""lighter indexes for the runner's writes: open intents only; event subjects only for
events of no enrollment; the limit usage index on start time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The runner writes an intent, its outcome and a transition event for every step. A full index
on ``action_log.status`` was updated twice a step for a query (recover) that only wants the
open intents, a full index on ``events.subject`` took a row per step although the events
of an enrollment are found through ``enrollment_id``, and the limit usage index on
``finished_at`` was rewritten by every outcome (the usage scan now runs on ``created_at``,
the intent's time, written once, and still counts by ``finished_at``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN = "status = 'intent'"
UNLINKED = "enrollment_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.drop_index("ix_action_log_identity_action_finished_at")
        batch_op.create_index(
            "ix_action_log_identity_action_created_at",
            ["identity", "action", "created_at"],
            unique=False,
        )
        batch_op.drop_index("ix_action_log_status")
        batch_op.create_index(
            "ix_action_log_open_intents",
            ["status"],
            unique=False,
            sqlite_where=sa.text(OPEN),
            postgresql_where=sa.text(OPEN),
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_subject")
        batch_op.create_index(
            "ix_events_unlinked_subject",
            ["subject"],
            unique=False,
            sqlite_where=sa.text(UNLINKED),
            postgresql_where=sa.text(UNLINKED),
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_unlinked_subject")
        batch_op.create_index("ix_events_subject", ["subject"], unique=False)
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.drop_index("ix_action_log_open_intents")
        batch_op.create_index("ix_action_log_status", ["status"], unique=False)
        batch_op.drop_index("ix_action_log_identity_action_created_at")
        batch_op.create_index(
            "ix_action_log_identity_action_finished_at",
            ["identity", "action", "finished_at"],
            unique=False,
        )
