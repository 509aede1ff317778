"""The SQLite fast path: the runner's hot statements straight on the driver.

A tick's reads, a wave's intents, outcomes, transitions and events go to sqlite3 with SQL
compiled once per process, which halves their cost against SQLAlchemy's execution path;
the store takes this path on SQLite (``Store.fast``) and SQLAlchemy's everywhere else. Both
store the same bytes (tests/test_store_fast.py): times as :func:`~engine.store.codecs.db_time`
text, the statements of :mod:`engine.store.statements`.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from engine.errors import StoreError
from engine.store import statements as st
from engine.store import tables as t
from engine.store.codecs import data_json, db_time, py_time, response_json, utcnow
from engine.store.rows import ConversationRow, EnrollmentRow

# statement name -> (SQL text, parameter names in order)
_COMPILED: dict[str, tuple[str, tuple[str, ...]]] = {}
# select name -> (SQL text, parameter names, row type, indexes of the time columns)
_SELECTS: dict[str, tuple[str, tuple[str, ...], Any, tuple[int, ...]]] = {}

# The due enrollments (the SQLAlchemy query in Enrollments.due_enrollments).
_DUE_SQL = (
    "SELECT id, lead_id, sequence, revision, identity, state, next_due_at, attempts, "
    "step_entered_at, paused, last_error, waiting FROM enrollments "
    "WHERE next_due_at <= ? AND paused = 0 "
    "AND sequence NOT IN (SELECT name FROM sequences WHERE paused = 1) {identities}"
    "ORDER BY next_due_at, id"
)
_ACTION_TIMES_SQL = (
    "SELECT finished_at FROM action_log WHERE identity = ? AND action = ? "
    "AND created_at > ? AND finished_at > ? AND status = 'done' "
    "ORDER BY finished_at"
)
_CONVERSATIONS_SQL = (
    "SELECT profile_url, last_sender_is_us, last_activity_at, first_sender_is_us "
    "FROM conversation_cache WHERE identity = ?"
)
# Store._rows_in by name: the same columns in the same order as its SQLAlchemy query;
# {marks} stands for the placeholders of a chunk.
_IN_SQL = {
    "leads": "SELECT id, profile_url, data_json FROM leads WHERE id IN ({marks})",
    "lead_ids": "SELECT profile_url, id FROM leads WHERE profile_url IN ({marks})",
    "enrollments_of_leads": "SELECT lead_id, id, sequence, identity, state FROM enrollments "
    "WHERE lead_id IN ({marks})",
    "do_not_contact": "SELECT profile_url, reason FROM do_not_contact "
    "WHERE profile_url IN ({marks})",
    "last_attempts": "SELECT enrollment_id, step, max(attempt) FROM action_log "
    "WHERE enrollment_id IN ({marks}) GROUP BY enrollment_id, step",
    "entering_events": "SELECT id, enrollment_id, at, to_state, data_json FROM events "
    "WHERE enrollment_id IN ({marks}) AND kind IN ('enrolled', 'transition')",
}
_EVENT_COLS = (
    "at",
    "enrollment_id",
    "subject",
    "kind",
    "from_state",
    "to_state",
    "trigger",
    "revision",
    "data_json",
)


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection


def _expect(names: tuple[str, ...], order: tuple[str, ...]) -> None:
    """The fast path binds tuples in ``order``: the compiled statement must agree."""
    if names != order:  # pragma: no cover - fixed by the statements
        raise StoreError(f"unexpected statement parameters {names}, expected {order}")


def _update_grouped(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``sql`` (an UPDATE ending ``WHERE <table>.id = ?``) for ``rows`` (values..., id):
    rows with the same values (a wave's leads leaving one step together) in one statement
    with ``id IN (...)``, the rest as executemany. The IN lists are padded to a power of two
    with a repeated id, so only a few statement texts reach the driver's statement cache."""
    if not sql.endswith(" = ?"):  # pragma: no cover - fixed by the statements
        raise StoreError(f"cannot group {sql!r}")
    last = {row[-1]: row for row in rows}  # an id given twice: the last row wins, as in order
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for row in last.values():
        groups.setdefault(row[:-1], []).append(row[-1])
    single: list[tuple[Any, ...]] = []
    for values, ids in groups.items():
        if len(ids) == 1:
            single.append((*values, ids[0]))
            continue
        for i in range(0, len(ids), 512):
            chunk = ids[i : i + 512]
            size = 1 << (len(chunk) - 1).bit_length()
            chunk += [chunk[-1]] * (size - len(chunk))
            db.execute(f"{sql[:-4]} IN ({','.join('?' * size)})", (*values, *chunk))
    if single:
        db.executemany(sql, single)


def _with_times(row: tuple[Any, ...], times: list[int]) -> list[Any]:
    out = list(row)
    for i in times:
        out[i] = db_time(out[i])
    return out


class SqliteFastPath:
    """The driver-level statements of one SQLite store (compiled for its dialect)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def compiled(
        self,
        name: str,
        build: Callable[[], sa.sql.ClauseElement],
        keys: Iterable[str] | None = None,
    ) -> tuple[str, tuple[str, ...]]:
        """(SQL text, parameter names in order) of the statement ``build()`` makes, compiled
        once per process (the statements are static; the text depends on the dialect only)."""
        hit = _COMPILED.get(name)
        if hit is None:
            compiled = build().compile(
                dialect=self.dialect, column_keys=None if keys is None else list(keys)
            )
            names = getattr(compiled, "positiontup", None) or ()
            hit = _COMPILED[name] = (str(compiled), tuple(names))
        return hit

    def select(
        self, c: Connection, name: str, build: Callable[[], sa.Select[Any]], params: Any
    ) -> list[Any]:
        """The rows of a static SELECT, compiled once, with its time columns parsed as
        :class:`~engine.store.tables.UTCDateTime` does; the columns are attributes."""
        spec = _SELECTS.get(name)
        if spec is None:
            stmt = build()
            sql, names = self.compiled(f"select-{name}", lambda: stmt)
            columns = list(stmt.selected_columns)
            times = tuple(i for i, col in enumerate(columns) if isinstance(col.type, t.UTCDateTime))
            row_type = namedtuple(f"{name}_row", [col.key for col in columns])  # type: ignore[misc]
            spec = _SELECTS[name] = (sql, names, row_type, times)
        sql, names, row, times = spec
        rows = _driver(c).execute(sql, [params[n] for n in names]).fetchall()
        if not times:
            return [row._make(r) for r in rows]
        out = []
        for r in rows:
            values = list(r)
            for i in times:
                values[i] = py_time(values[i])
            out.append(row._make(values))
        return out

    def rows_in(self, c: Connection, name: str, chunk: list[Any]) -> Iterator[Any]:
        """The rows of the named IN query over one chunk (an expanding IN re-rendered by
        SQLAlchemy at every call costs more than the query): the driver's cursor itself."""
        marks = ",".join("?" * len(chunk))
        return iter(_driver(c).execute(_IN_SQL[name].format(marks=marks), chunk))

    def due_enrollments(
        self,
        c: Connection,
        now: datetime,
        limit: int | None,
        identities: Collection[str] | None = None,
    ) -> list[EnrollmentRow]:
        only = sorted(identities) if identities is not None else []
        where = f"AND identity IN ({','.join('?' * len(only))}) " if only else ""
        sql = _DUE_SQL.format(identities=where) + ("" if limit is None else f" LIMIT {int(limit)}")
        rows = _driver(c).execute(sql, (db_time(now), *only)).fetchall()
        return [
            EnrollmentRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                py_time(r[6]),
                r[7],
                py_time(r[8]),
                bool(r[9]),
                r[10],
                r[11],
            )
            for r in rows
        ]

    def action_times(
        self, c: Connection, identity: str, action: str, start: datetime, since: datetime
    ) -> list[datetime]:
        rows = _driver(c).execute(
            _ACTION_TIMES_SQL, (identity, action, db_time(start), db_time(since))
        )
        return [py_time(r[0]) or since for r in rows]

    def conversations(self, c: Connection, identity: str) -> dict[str, ConversationRow]:
        rows = _driver(c).execute(_CONVERSATIONS_SQL, (identity,))
        return {
            url: ConversationRow(
                identity,
                url,
                bool(us),
                datetime.fromisoformat(at).replace(tzinfo=UTC),
                None if first is None else bool(first),
            )
            for url, us, at, first in rows
        }

    def insert_intents(self, c: Connection, values: list[tuple[Any, ...]]) -> None:
        """Insert intent rows (:data:`~engine.store.statements.INTENT_COLS`, times aware)."""
        sql, names = self.compiled("intents", t.action_log.insert, st.INTENT_COLS)
        _expect(names, st.INTENT_COLS)
        try:
            _driver(c).executemany(sql, [(*v[:11], db_time(v[11]), *v[12:]) for v in values])
        except sqlite3.IntegrityError as exc:
            raise StoreError(st.INTENT_TAKEN) from exc

    def insert_rows(
        self, c: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert many rows of ``table`` (all with the keys of the first) in one executemany:
        a leads import writes a million rows, where SQLAlchemy's per-row parameter processing
        cost more than SQLite. Times as :func:`db_time` writes them."""
        keys = tuple(rows[0])
        sql, names = self.compiled(f"insert-{table.name}-{','.join(keys)}", table.insert, keys)
        times = [i for i, n in enumerate(names) if isinstance(table.c[n].type, t.UTCDateTime)]
        get = itemgetter(*names)  # a row's values in the statement's order, at C speed
        values: Iterable[Any] = (get(r) for r in rows) if len(names) > 1 else (
            (r[names[0]],) for r in rows)
        if times:
            values = (_with_times(v, times) for v in values)
        _driver(c).executemany(sql, values)

    def insert_events(self, c: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        values = [
            (
                db_time(r.get("at") or utcnow()),
                r.get("enrollment_id"),
                r["subject"],
                r["kind"],
                r.get("from_state"),
                r.get("to_state"),
                r.get("trigger"),
                r.get("revision"),
                data_json(r.get("data")),
            )
            for r in rows
        ]
        if values:
            sql, names = self.compiled("events", t.events.insert, _EVENT_COLS)
            if names != _EVENT_COLS:  # pragma: no cover - an insert keeps the key order
                raise StoreError(f"unexpected event insert parameters {names}")
            _driver(c).executemany(sql, values)

    def rewrite_events(self, c: Connection, updates: list[dict[str, Any]]) -> None:
        """Events' data rewritten by id (``b_id``, ``b_data``)."""
        if updates:
            sql, names = self.compiled("event-data", st.event_data_by_id)
            _driver(c).executemany(sql, [tuple(u[n] for n in names) for u in updates])

    def write_batch(
        self,
        c: Connection,
        outcomes: Iterable[Mapping[str, Any]],
        transitions: Iterable[Mapping[str, Any]],
        reschedules: Iterable[Mapping[str, Any]],
        events: Iterable[Mapping[str, Any]],
        conversations: Iterable[Mapping[str, Any]],
        connections: Iterable[Mapping[str, Any]],
    ) -> None:
        """``Store.write_batch``: the same statements, straight to the driver."""
        self._outcomes(c, outcomes)
        self._transitions(c, transitions)
        self._reschedules(c, reschedules)
        self.insert_events(c, events)
        self._upsert_cache(
            c,
            "conversations",
            t.conversation_cache,
            conversations,
            st.CONVERSATION_UPSERT,
            ("last_activity_at",),
        )
        self._upsert_cache(
            c, "connections", t.connection_cache, connections, st.CONNECTION_UPSERT, ("checked_at",)
        )

    def _outcomes(self, c: Connection, outcomes: Iterable[Mapping[str, Any]]) -> None:
        out = [
            (
                o["status"],
                o.get("label"),
                response_json(o.get("response")),
                db_time(o["finished_at"]),
                o["key"],
            )
            for o in outcomes
        ]
        if out:
            sql, names = self.compiled("outcomes", st.outcome_update)
            _expect(names, ("b_status", "b_label", "b_response", "b_finished", "k"))
            _driver(c).executemany(sql, out)

    def _transitions(self, c: Connection, transitions: Iterable[Mapping[str, Any]]) -> None:
        trans = [
            (
                r["state"],
                db_time(r["next_due_at"]),
                r["attempts"],
                db_time(r["step_entered_at"]),
                r["last_error"],
                r.get("waiting"),
                r["id"],
            )
            for r in transitions
        ]
        if trans:
            sql, names = self.compiled("transitions", st.transition_update)
            _expect(
                names,
                ("b_state", "b_due", "b_attempts", "b_entered", "b_error", "b_waiting", "eid"),
            )
            _update_grouped(_driver(c), sql, trans)

    def _reschedules(self, c: Connection, reschedules: Iterable[Mapping[str, Any]]) -> None:
        resch = [
            (db_time(r["next_due_at"]), r["attempts"], r["last_error"], r.get("waiting"), r["id"])
            for r in reschedules
        ]
        if resch:
            sql, names = self.compiled("reschedules", st.reschedule_update)
            _expect(names, ("b_due", "b_attempts", "b_error", "b_waiting", "eid"))
            _update_grouped(_driver(c), sql, resch)

    def _upsert_cache(
        self,
        c: Connection,
        name: str,
        table: sa.Table,
        rows: Iterable[Mapping[str, Any]],
        shape: tuple[tuple[str, ...], tuple[str, ...]],
        times: tuple[str, ...],
    ) -> None:
        rows = list(rows)
        if not rows:
            return
        keys, update = shape
        sql, names = self.compiled(
            f"upsert-{name}", lambda: st.cache_upsert("sqlite", table, keys, update)
        )
        _driver(c).executemany(
            sql, [tuple(db_time(r[n]) if n in times else r[n] for n in names) for r in rows]
        )
