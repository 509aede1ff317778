"""Schedule state in its tables: the managed Edges schedules (:data:`MANAGED`), the applies in
progress (:data:`INTENTS`), the registered ``mode: async`` schedules (:data:`ASYNC`) and their
current runs (:data:`RUNS`).

Entries go in and come out as the JSON-shaped dicts the schedule code works with (times as
ISO-8601 text, ``config`` as a dict), one table column per key; a key that is ``None`` or
missing is stored as NULL and reads back missing, so readers use ``.get``.

    >>> put(store, MANAGED, "inbox-sync", {"uid": "sch-1", ...})   # doctest: +SKIP
    >>> get(store, MANAGED, "inbox-sync")["uid"]                   # doctest: +SKIP
    'sch-1'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from engine.store import Store, dump_json
from engine.store import tables as t


def now_iso() -> str:
    """The time stamp schedule entries carry: UTC to the second, which the tables keep exactly."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _time_in(value: Any) -> datetime:
    when = datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _time_out(value: datetime) -> str:
    return value.isoformat()


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _Field:
    key: str  # in the entry dict
    column: str
    encode: Callable[[Any], Any] = _same
    decode: Callable[[Any], Any] = _same


def _json(key: str) -> _Field:
    return _Field(key, f"{key}_json", dump_json, json.loads)


def _time(key: str) -> _Field:
    return _Field(key, key, _time_in, _time_out)


@dataclass(frozen=True)
class Kind:
    """One table of schedule state and how its rows map to entry dicts."""

    table: sa.Table
    fields: tuple[_Field, ...]

    def to_row(self, name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"name": name}
        for f in self.fields:
            value = entry.get(f.key)
            row[f.column] = None if value is None else f.encode(value)
        return row

    def to_entry(self, row: Any) -> dict[str, Any]:
        values = row._mapping
        return {f.key: f.decode(values[f.column]) for f in self.fields
                if values[f.column] is not None}


MANAGED = Kind(t.schedules, (
    _Field("uid", "uid"), _Field("fingerprint", "fingerprint"), _json("config"),
    _Field("action", "action"), _Field("origin", "origin"), _time("applied_at"),
))
INTENTS = Kind(t.schedule_intents, (
    _Field("op", "op"), _Field("old_uid", "old_uid"), _Field("fingerprint", "fingerprint"),
    _Field("new_uid", "new_uid"), _Field("old_cancelled", "old_cancelled", bool, bool),
    _time("started_at"),
))
ASYNC = Kind(t.async_schedules, (
    _json("config"), _Field("fingerprint", "fingerprint"), _time("applied_at"),
))
RUNS = Kind(t.schedule_runs, (
    _Field("run_uid", "run_uid"), _Field("fingerprint", "fingerprint"),
    _Field("status", "status"), _Field("previous_status", "previous_status"),
    _Field("continues", "continues", int, int), _time("started_at"), _time("continued_at"),
))
KINDS = (MANAGED, INTENTS, ASYNC, RUNS)


def get(store: Store, kind: Kind, name: str) -> dict[str, Any] | None:
    """The entry ``name`` of ``kind``, or None."""
    with store.transaction() as conn:
        row = conn.execute(sa.select(kind.table).where(kind.table.c.name == name)).first()
    return None if row is None else kind.to_entry(row)


def items(store: Store, kind: Kind) -> dict[str, dict[str, Any]]:
    """Every entry of ``kind``, by name (sorted)."""
    with store.transaction() as conn:
        rows = conn.execute(sa.select(kind.table).order_by(kind.table.c.name)).all()
    return {row.name: kind.to_entry(row) for row in rows}


def put(store: Store, kind: Kind, name: str, entry: Mapping[str, Any]) -> None:
    """Write (or replace) the entry ``name`` of ``kind``."""
    with store.transaction() as conn:
        conn.execute(kind.table.delete().where(kind.table.c.name == name))
        conn.execute(kind.table.insert().values(kind.to_row(name, entry)))


def delete(store: Store, kind: Kind, name: str) -> bool:
    """Remove the entry ``name`` of ``kind``; True if there was one."""
    with store.transaction() as conn:
        res = conn.execute(kind.table.delete().where(kind.table.c.name == name))
    return bool(res.rowcount)


def exists(store: Store, *kinds: Kind) -> bool:
    """True when any of ``kinds`` has an entry."""
    with store.read() as conn:
        for kind in kinds:
            if conn.execute(sa.select(kind.table.c.name).limit(1)).first() is not None:
                return True
    return False
