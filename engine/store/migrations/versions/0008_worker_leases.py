"""workers and identity_leases: many `seqrun run` workers on one store

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

A worker's heartbeat row, and one lease row per identity (the worker holding it and until
when), so that several runners share the identities and one identity never acts in two.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "identity_leases",
        sa.Column("identity", sa.String(length=200), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("acquired_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("identity", name=op.f("pk_identity_leases")),
    )


def downgrade() -> None:
    op.drop_table("identity_leases")
    op.drop_table("workers")
