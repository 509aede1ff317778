"""enrollments.waiting: why a lead waits to act

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A lead held back by a limit, the sending window or a cooldown is scheduled once for the
instant it can act; the column keeps why (``seqrun status`` counts it) so that the lead's
"postponed" event is written once, when it starts waiting, not at every re-postponement.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("waiting", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("waiting")
