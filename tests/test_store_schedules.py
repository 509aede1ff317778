"""Schedule state in its tables (engine.store.schedules) and the migration that moved it there
from the kv namespaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from engine.store import HEAD, Store
from engine.store import schedules as schedule_db
from engine.store.db import MIGRATIONS
from engine.views.status import schedule_statuses

AT = "2026-01-05T09:00:00+00:00"
CONFIG = {"action": "linkedin-extract-messages", "identity_ids": ["ident-alice"],
          "cron": "0 9 * * *", "timezone": "UTC", "parameters": {"max_results": 500},
          "callback": {"url": "https://x.test/h", "headers": {"X-Token": "sha256:abc"},
                       "on": "all"}}

# What the kv namespaces held before the tables, one entry of every shape the code wrote.
KV: dict[str, dict[str, dict[str, Any]]] = {
    "schedules": {
        "inbox-sync": {"uid": "sch-1", "fingerprint": "f1", "config": CONFIG,
                       "action": "linkedin-extract-messages", "origin": "created",
                       "applied_at": AT},
    },
    "schedules-intent": {
        "inbox-sync": {"op": "replace", "old_uid": "sch-1", "fingerprint": "f2",
                       "new_uid": "sch-2", "old_cancelled": False, "started_at": AT},
        "gone": {"op": "delete", "old_uid": "sch-9", "started_at": AT},
    },
    "schedule-async": {
        "inbox-async": {"config": CONFIG, "fingerprint": "f3", "applied_at": AT},
    },
    "schedule-runs": {
        "inbox-async": {"run_uid": "run-2", "fingerprint": "f3", "status": "CREATED",
                        "continues": 1, "started_at": AT, "previous_status": "SUCCEEDED",
                        "continued_at": "2026-01-05T10:00:00+00:00"},
    },
}
KINDS = {"schedules": schedule_db.MANAGED, "schedules-intent": schedule_db.INTENTS,
         "schedule-async": schedule_db.ASYNC, "schedule-runs": schedule_db.RUNS}


def _config(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _kv(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    # the store's own id (engine.store.db.STORE_ID) is not the data under test
    for ns, key, text in conn.execute(sa.text("SELECT ns, key, value_json FROM kv "
                                              "WHERE ns != 'store'")):
        out.setdefault(ns, {})[key] = json.loads(text)
    return out


def test_a_state_with_kv_schedules_upgrades_with_its_schedules_and_downgrades_back(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0002")
        for ns, entries in KV.items():
            for key, value in entries.items():
                conn.execute(sa.text(
                    "INSERT INTO kv (ns, key, value_json, updated_at) VALUES (:ns, :k, :v, :at)"),
                    {"ns": ns, "k": key, "v": json.dumps(value), "at": "2026-01-05 09:00:00"})
        conn.execute(sa.text("INSERT INTO kv (ns, key, value_json, updated_at) VALUES "
                             "('runtime', 'paused_all', 'true', '2026-01-05 09:00:00')"))
    engine.dispose()

    store = Store.open(url)
    try:
        for ns, kind in KINDS.items():
            assert schedule_db.items(store, kind) == KV[ns]
            assert store.kv_items(ns) == {}
        assert store.kv_get("runtime", "paused_all") is True
        assert [(s.name, s.mode, s.uid, s.run_uid, s.continues)
                for s in schedule_statuses(store)] == [
            ("inbox-async", "async", None, "run-2", 1),
            ("inbox-sync", "schedule", "sch-1", None, 0),
        ]
        with store.engine.begin() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
            command.downgrade(_config(conn), "0002")
            assert _kv(conn) == {**KV, "runtime": {"paused_all": True}}
            assert not sa.inspect(conn).has_table("schedules")
    finally:
        store.close()


def test_entries_round_trip_and_none_reads_back_missing(tmp_path: Path) -> None:
    store = Store.open(None, tmp_path)
    try:
        assert not schedule_db.exists(store, *schedule_db.KINDS)
        intent = {"op": "create", "old_uid": None, "fingerprint": "f", "new_uid": None,
                  "old_cancelled": False, "started_at": schedule_db.now_iso()}
        schedule_db.put(store, schedule_db.INTENTS, "a", intent)
        assert schedule_db.get(store, schedule_db.INTENTS, "a") == {
            k: v for k, v in intent.items() if v is not None}
        schedule_db.put(store, schedule_db.INTENTS, "a", {**intent, "new_uid": "sch-7"})
        assert schedule_db.get(store, schedule_db.INTENTS, "a")["new_uid"] == "sch-7"
        assert schedule_db.exists(store, schedule_db.MANAGED, schedule_db.INTENTS)
        assert not schedule_db.exists(store, schedule_db.MANAGED)
        assert schedule_db.delete(store, schedule_db.INTENTS, "a") is True
        assert schedule_db.delete(store, schedule_db.INTENTS, "a") is False
        assert schedule_db.get(store, schedule_db.INTENTS, "a") is None
    finally:
        store.close()
