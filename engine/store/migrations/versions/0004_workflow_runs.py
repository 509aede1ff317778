"""workflow runs in their own table instead of the kv namespace "workflows"

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

A workflow's record (state, history, workflow id, nodes) was a JSON value in ``kv`` under
``("workflows", name)``. It moves, text unchanged, to ``workflow_runs``, whose columns copy
the fields a listing or a delivered result looks a workflow up by. Downgrade puts the
records back in ``kv``.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAMESPACE = "workflows"

# The two tables as this migration knows them (the data moves between them).
_kv = sa.table(
    "kv",
    sa.column("ns", sa.String),
    sa.column("key", sa.String),
    sa.column("value_json", sa.Text),
    sa.column("updated_at", sa.DateTime),
)
_runs = sa.table(
    "workflow_runs",
    sa.column("name", sa.String),
    sa.column("provider", sa.String),
    sa.column("state", sa.String),
    sa.column("workflow_id", sa.String),
    sa.column("revision", sa.String),
    sa.column("record_json", sa.Text),
    sa.column("updated_at", sa.DateTime),
)


def _columns(name: str, value_json: str) -> dict[str, Any]:
    """The copied fields of one record; a value that is not an object keeps empty ones."""
    try:
        record = json.loads(value_json)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        record = {}
    wid = record.get("workflow_id")
    revision = record.get("revision")
    return {
        "name": name,
        "provider": str(record.get("provider") or ""),
        "state": str(record.get("state") or ""),
        "workflow_id": None if wid is None else str(wid),
        "revision": None if revision is None else str(revision),
    }


def upgrade() -> None:
    op.create_table(
        "workflow_runs",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.Column("revision", sa.String(length=64), nullable=True),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workflow_runs")),
    )
    op.create_index(
        op.f("ix_workflow_runs_workflow_id"), "workflow_runs", ["workflow_id"], unique=False
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_kv.c.key, _kv.c.value_json, _kv.c.updated_at).where(_kv.c.ns == NAMESPACE)
    ).all()
    for row in rows:
        bind.execute(
            _runs.insert().values(
                **_columns(row.key, row.value_json),
                record_json=row.value_json,
                updated_at=row.updated_at,
            )
        )
    bind.execute(_kv.delete().where(_kv.c.ns == NAMESPACE))


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_runs.c.name, _runs.c.record_json, _runs.c.updated_at)
    ).all()
    for row in rows:
        bind.execute(
            _kv.insert().values(
                ns=NAMESPACE, key=row.name, value_json=row.record_json, updated_at=row.updated_at
            )
        )
    op.drop_index(op.f("ix_workflow_runs_workflow_id"), table_name="workflow_runs")
    op.drop_table("workflow_runs")
