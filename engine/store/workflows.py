"""Workflow runs in the store: one record per applied Workflow (table ``workflow_runs``).

A record is the JSON object a run keeps (see :mod:`engine.run.workflow_record`); it is read
back exactly as it was written. The table's other columns are copied from the record when it
is written.

Example::

    put_workflow_run(store, "check-then-message", {"name": "check-then-message",
                                                   "provider": "linkedapi", "state": "pending"})
    workflow_run(store, "check-then-message")["state"]  # "pending"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from engine.store import Store, dump_json
from engine.store.tables import workflow_runs as runs


def workflow_run(store: Store, name: str) -> Any | None:
    """The record of workflow ``name``, None when it never ran."""
    with store.transaction() as conn:
        text = conn.execute(sa.select(runs.c.record_json).where(runs.c.name == name)).scalar()
    return None if text is None else json.loads(text)


def workflow_runs(store: Store) -> dict[str, Any]:
    """Every workflow's record, by name, in name order."""
    with store.transaction() as conn:
        rows = conn.execute(
            sa.select(runs.c.name, runs.c.record_json).order_by(runs.c.name)
        ).all()
    return {row.name: json.loads(row.record_json) for row in rows}


def workflow_run_by_id(store: Store, workflow_id: str | None) -> Any | None:
    """The record of the workflow the provider knows as ``workflow_id`` (None: one that has
    no id; the last by name when several match), None when none does."""
    with store.transaction() as conn:
        text = conn.execute(
            sa.select(runs.c.record_json)
            .where(runs.c.workflow_id == workflow_id)
            .order_by(runs.c.name.desc())
            .limit(1)
        ).scalar()
    return None if text is None else json.loads(text)


def put_workflow_run(store: Store, name: str, record: Mapping[str, Any]) -> None:
    """Write the record of workflow ``name`` (created or replaced)."""
    wid = record.get("workflow_id")
    revision = record.get("revision")
    values = {
        "provider": str(record.get("provider") or ""),
        "state": str(record.get("state") or ""),
        "workflow_id": None if wid is None else str(wid),
        "revision": None if revision is None else str(revision),
        "record_json": dump_json(record),
        "updated_at": datetime.now(UTC),
    }
    with store.transaction() as conn:
        done = conn.execute(runs.update().where(runs.c.name == name).values(**values))
        if not done.rowcount:
            conn.execute(runs.insert().values(name=name, **values))
