"""action_log.variant: the A/B variant an action sent

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A step with `variants:` sends each lead one named text; the name is written with the call's
intent (and never changed by its outcome), so `seqrun why` shows which variant a lead got and
`seqrun status` counts each variant's funnel with one grouped query.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_log") as batch:
        batch.add_column(sa.Column("variant", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_log") as batch:
        batch.drop_column("variant")
