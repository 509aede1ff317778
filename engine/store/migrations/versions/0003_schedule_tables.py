"""Schedule state in tables: managed schedules, apply intents, async schedules and their runs
move from the kv namespaces "schedules", "schedules-intent", "schedule-async" and
"schedule-runs" to their own tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

The upgrade copies every kv entry of those namespaces into its table and deletes it, so a
state keeps its schedules; the downgrade copies them back. The row shapes below are frozen
here on purpose: engine.store.schedules may change later, this migration must not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# table -> (kv namespace, entry keys in column order; "*_json" columns hold a dict,
# "*_at" columns a time)
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "schedules": ("schedules", ("uid", "action", "fingerprint", "origin", "config_json",
                                "applied_at")),
    "schedule_intents": ("schedules-intent", ("op", "old_uid", "new_uid", "fingerprint",
                                              "old_cancelled", "started_at")),
    "async_schedules": ("schedule-async", ("fingerprint", "config_json", "applied_at")),
    "schedule_runs": ("schedule-runs", ("run_uid", "fingerprint", "status", "previous_status",
                                        "continues", "started_at", "continued_at")),
}

KV = sa.table(
    "kv", sa.column("ns"), sa.column("key"), sa.column("value_json"),
    sa.column("updated_at", sa.DateTime()),
)


def _name() -> sa.Column[str]:
    return sa.Column("name", sa.String(length=200), nullable=False)


def _create_tables() -> None:
    op.create_table(
        "schedules", _name(),
        sa.Column("uid", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedules")),
    )
    op.create_table(
        "schedule_intents", _name(),
        sa.Column("op", sa.String(length=20), nullable=False),
        sa.Column("old_uid", sa.String(length=200), nullable=True),
        sa.Column("new_uid", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("old_cancelled", sa.Boolean(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedule_intents")),
    )
    op.create_table(
        "async_schedules", _name(),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_async_schedules")),
    )
    op.create_table(
        "schedule_runs", _name(),
        sa.Column("run_uid", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("previous_status", sa.String(length=40), nullable=True),
        sa.Column("continues", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("continued_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedule_runs")),
    )


def _column(name: str) -> sa.ColumnClause[Any]:
    if name.endswith("_at"):
        return sa.column(name, sa.DateTime())
    return sa.column(name, sa.Boolean()) if name == "old_cancelled" else sa.column(name)


def _table(name: str) -> sa.TableClause:
    return sa.table(name, sa.column("name"), *(_column(c) for c in TABLES[name][1]))


def _naive_utc(text: Any) -> datetime:
    when = datetime.fromisoformat(str(text))
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def _to_row(name: str, entry: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name}
    for column in columns:
        key = column.removesuffix("_json")
        value = entry.get(key)
        if value is not None and column.endswith("_json"):
            value = json.dumps(value, sort_keys=True)
        elif value is not None and column.endswith("_at"):
            value = _naive_utc(value)
        row[column] = value
    return row


def _to_entry(row: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for column in columns:
        value = row._mapping[column]
        if value is None:
            continue
        if column.endswith("_json"):
            value = json.loads(value)
        elif column.endswith("_at"):
            value = value.replace(tzinfo=UTC).isoformat()
        entry[column.removesuffix("_json")] = value
    return entry


def _kv_entries(conn: sa.Connection, ns: str) -> Iterator[tuple[str, dict[str, Any]]]:
    rows = conn.execute(sa.select(KV.c.key, KV.c.value_json).where(KV.c.ns == ns)).all()
    for key, text in rows:
        value = json.loads(text)
        if isinstance(value, dict):  # anything else was never read by the schedule code
            yield key, value


def upgrade() -> None:
    _create_tables()
    conn = op.get_bind()
    for table, (ns, columns) in TABLES.items():
        rows = [_to_row(key, entry, columns) for key, entry in _kv_entries(conn, ns)]
        if rows:
            conn.execute(_table(table).insert(), rows)
        conn.execute(KV.delete().where(KV.c.ns == ns))


def downgrade() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    for table, (ns, columns) in TABLES.items():
        t = _table(table)
        rows = [
            {"ns": ns, "key": row.name, "updated_at": now,
             "value_json": json.dumps(_to_entry(row, columns), sort_keys=True)}
            for row in conn.execute(sa.select(t)).all()
        ]
        if rows:
            conn.execute(KV.insert(), rows)
    for table in reversed(list(TABLES)):
        op.drop_table(table)
