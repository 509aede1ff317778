"""Workflow runs in the store: the accessors, and the migration from kv "workflows"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from engine.apply.workflows import workflow_record, workflow_results
from engine.store import HEAD, Store
from engine.store.db import MIGRATIONS
from engine.store.workflows import (
    put_workflow_run,
    workflow_run,
    workflow_run_by_id,
    workflow_runs,
)

RECORD: dict[str, Any] = {
    "name": "check-then-message",
    "provider": "linkedapi",
    "api": "current",
    "identity": "acct-alice",
    "revision": "0123456789ab",
    "body": {"actionType": "st.checkConnectionStatus", "personUrl": "https://x.example/in/a"},
    "attempt": 1,
    "history": [
        {"at": "2026-01-05T09:00:00+00:00", "from": None, "to": "pending", "note": ""},
        {"at": "2026-01-05T09:00:01+00:00", "from": "pending", "to": "running", "note": ""},
    ],
    "workflow_id": "wf-1",
    "reconciled": False,
    "state": "running",
    "phase": "submitted",
    "note": "Grüße, ünïcode kept",
}
WAITING: dict[str, Any] = {
    "name": "a-hooked",
    "provider": "linkedapi",
    "state": "running",
    "phase": "hook",
    "workflow_id": None,
}


def _config(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _kv_rows(conn: sa.Connection) -> list[tuple[str, str, Any]]:
    # the store's own id (engine.store.db.STORE_ID) is not the data under test
    rows = conn.execute(sa.text("SELECT ns, key, value_json FROM kv WHERE ns != 'store' "
                                "ORDER BY ns, key")).all()
    return [(r.ns, r.key, json.loads(r.value_json)) for r in rows]


def test_records_round_trip_and_are_found_by_workflow_id() -> None:
    store = Store.open("sqlite://")
    assert workflow_run(store, RECORD["name"]) is None
    put_workflow_run(store, RECORD["name"], {**RECORD, "state": "pending", "workflow_id": None})
    put_workflow_run(store, RECORD["name"], RECORD)  # replaced, not added
    put_workflow_run(store, WAITING["name"], WAITING)
    assert workflow_run(store, RECORD["name"]) == RECORD
    assert list(workflow_runs(store)) == ["a-hooked", "check-then-message"]
    assert workflow_run_by_id(store, "wf-1") == RECORD
    assert workflow_run_by_id(store, None) == WAITING
    assert workflow_run_by_id(store, "wf-2") is None
    assert store.kv_items("workflows") == {}


def test_kv_workflow_rows_upgrade_intact_and_downgrade_back(tmp_path: Path) -> None:
    """A store whose workflows are in kv "workflows" (before 0004) keeps every record."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0002")
        for key, value in ((RECORD["name"], RECORD), (WAITING["name"], WAITING)):
            conn.execute(
                sa.text("INSERT INTO kv (ns, key, value_json, updated_at) VALUES "
                        "('workflows', :key, :value, '2026-01-05 09:00:00.000000')"),
                {"key": key, "value": json.dumps(value)},
            )
        conn.execute(sa.text(
            "INSERT INTO kv (ns, key, value_json, updated_at) VALUES "
            "('other', 'k', '{\"v\": 1}', '2026-01-05 09:00:00.000000')"))
    engine.dispose()

    store = Store.open(url)
    try:
        assert workflow_record(store, RECORD["name"]) == RECORD
        assert workflow_record(store, WAITING["name"]) == WAITING
        assert workflow_run_by_id(store, "wf-1") == RECORD
        assert [(r.name, r.state) for r in workflow_results(store)] == [
            ("a-hooked", "running"),
            ("check-then-message", "running"),
        ]
        assert store.kv_items("workflows") == {}
        assert store.kv_get("other", "k") == {"v": 1}
        with store.transaction() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
            command.downgrade(_config(conn), "0002")
            assert _kv_rows(conn) == [
                ("other", "k", {"v": 1}),
                ("workflows", "a-hooked", WAITING),
                ("workflows", "check-then-message", RECORD),
            ]
            assert not sa.inspect(conn).has_table("workflow_runs")
    finally:
        store.close()
