"""The store's one path for its hot statements: straight on the driver, on SQLite and on
PostgreSQL alike.

A tick's reads, a wave's intents, outcomes, transitions and events, a plan's bulk inserts go
to the driver (sqlite3, psycopg) with SQL compiled once per process, which costs a fraction
of SQLAlchemy's execution path (issue 11 measured it on SQLite, issue 19 on PostgreSQL's
client CPU). What differs between the databases is one thin layer (:class:`Driver`): the
placeholders, how a time is bound and read back, the driver's errors, and PostgreSQL's
pipeline (a batch of writes and the intent after them in one round trip). Both store the
same rows (tests/test_store_fast.py): times as naive UTC (:func:`~engine.store.codecs.db_time`
text on SQLite, ``timestamp`` on PostgreSQL), the statements of
:mod:`engine.store.statements`.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from engine.errors import StoreError
from engine.store import statements as st
from engine.store import tables as t
from engine.store.codecs import data_json, db_time, py_time, response_json, utcnow
from engine.store.rows import Columns, ConversationRow, EnrollmentRow

# The hand-written statements use "?" for their parameters; Driver.sql gives each driver's.
# The due enrollments (the order and filters the runner relies on).
_DUE_SQL = (
    "SELECT id, lead_id, sequence, revision, identity, state, next_due_at, attempts, "
    "step_entered_at, paused, last_error, waiting FROM enrollments "
    "WHERE next_due_at <= ? AND paused = FALSE "
    "AND sequence NOT IN (SELECT name FROM sequences WHERE paused = TRUE) {identities}"
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
# An intent with the next unused attempt number of its (enrollment, step), computed by the
# insert itself: on PostgreSQL one statement in the batch's pipeline, where a look-up then
# an insert took two round trips; the unique key refuses a number taken meanwhile.
# Parameters: INTENT_PARAMS. On SQLite the look-up and a plain insert cost less (41 K
# instructions an intent under callgrind: SQLite copies an INSERT ... SELECT from the same
# table through a temporary table first), and a statement there is no round trip.
_INTENT_SQL = (
    "INSERT INTO action_log (idempotency_key, enrollment_id, sequence, revision, step, "
    "attempt, identity, action, status, response_json, created_at, variant) "
    "SELECT ? || CAST(n AS VARCHAR(20)), ?, ?, ?, ?, n, ?, ?, 'intent', ?, ?, ? "
    "FROM (SELECT COALESCE(MAX(attempt) + 1, 0) AS n FROM action_log "
    "WHERE enrollment_id = ? AND step = ?) AS next_attempt "
    "RETURNING idempotency_key"
)
_PULL_FORWARD_SQL = (
    "UPDATE enrollments SET next_due_at = ? WHERE id = ? AND waiting = ? AND next_due_at = ?"
)
_LAST_ATTEMPT_SQL = "SELECT max(attempt) FROM action_log WHERE enrollment_id = ? AND step = ?"
_INTENT_INSERT_SQL = (
    "INSERT INTO action_log (idempotency_key, enrollment_id, sequence, revision, step, "
    "attempt, identity, action, status, response_json, created_at, variant) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?)"
)
#: the parameters of one intent, in order (the key's prefix is "<enrollment>:<step>:")
INTENT_PARAMS = ("key_prefix", "enrollment_id", "sequence", "revision", "step", "identity",
                 "action", "response_json", "created_at", "variant", "enrollment_id", "step")
# Store._rows_in by name: the same columns in the same order as its callers' SQLAlchemy
# queries; {marks} stands for the placeholders of a chunk.
_IN_SQL = {
    "leads": "SELECT id, profile_url, data_json FROM leads WHERE id IN ({marks})",
    "lead_ids": "SELECT profile_url, id FROM leads WHERE profile_url IN ({marks})",
    "enrollments_of_leads": "SELECT lead_id, id, sequence, identity, state FROM enrollments "
    "WHERE lead_id IN ({marks})",
    "do_not_contact": "SELECT profile_url, reason FROM do_not_contact "
    "WHERE profile_url IN ({marks})",
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


def _pg_time(value: datetime | None) -> datetime | None:
    """A time as PostgreSQL's ``timestamp`` column takes it: naive UTC (as UTCDateTime)."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value.replace(tzinfo=None)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC")
    return value.astimezone(UTC).replace(tzinfo=None)


def _pg_read_time(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


class Driver:
    """What differs between the databases on the fast path (one instance a dialect)."""

    def __init__(self, dialect: Dialect) -> None:
        self.name = dialect.name
        if dialect.name == "sqlite":
            self.compile_dialect = dialect
            self.time: Callable[[datetime | None], Any] = db_time
            self.read_time: Callable[[Any], datetime | None] = py_time
            self.errors: tuple[type[BaseException], ...] = ()  # sqlite3's are store faults
            self.integrity: type[BaseException] = sqlite3.IntegrityError
        elif dialect.name == "postgresql" and dialect.driver == "psycopg":
            from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

            # positional "%s" parameters: the statements bind tuples, as on SQLite
            self.compile_dialect = PGDialect_psycopg(paramstyle="format")  # type: ignore[no-untyped-call]
            self.time = _pg_time
            self.read_time = _pg_read_time
            self.dbapi = dialect.loaded_dbapi
            self.errors = (self.dbapi.Error,)
            self.integrity = self.dbapi.IntegrityError
        else:
            raise StoreError(
                f"the store does not support {dialect.name}+{dialect.driver}: use SQLite "
                "(the default) or PostgreSQL through psycopg (postgresql+psycopg://...)")
        self._texts: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """A hand-written statement (``?`` parameters) in this driver's placeholders."""
        if self.name == "sqlite":
            return text
        hit = self._texts.get(text)
        if hit is None:
            hit = self._texts[text] = text.replace("?", "%s")
        return hit

    def copy_sql(self, table: str, columns: Sequence[str]) -> str:
        """PostgreSQL's COPY of ``columns`` of ``table`` from the client."""
        return f"COPY {table} ({', '.join(columns)}) FROM STDIN"

    def marks(self, n: int) -> str:
        return ",".join(("?" if self.name == "sqlite" else "%s",) * n)

    def batch(self, c: Connection) -> AbstractContextManager[Any]:
        """A block of writes sent without waiting for each answer: psycopg's pipeline (one
        round trip at the end instead of one a statement); nothing on SQLite, nor when the
        whole transaction is one pipeline already (:meth:`atomic`)."""
        if self.name == "sqlite" or _db(c).pgconn.pipeline_status:
            return nullcontext()
        pipeline: AbstractContextManager[Any] = _db(c).pipeline()
        return pipeline

    @contextmanager
    def atomic(self, c: Connection, *, durable: bool = True) -> Iterator[None]:
        """One transaction on ``c`` (not in one yet) for statements sent straight to the
        driver, on PostgreSQL (SQLite's is an ordinary one, begun by Store.transaction:
        no round trip to save there): one round trip, the statements in one psycopg
        pipeline and nothing else. The server runs what comes before a pipeline's Sync as
        one transaction, committed at the Sync, rolled back whole when a statement fails
        (the extended query protocol's implicit transaction; the connection is in autocommit
        meanwhile, so psycopg sends no BEGIN or COMMIT): a BEGIN and a COMMIT of our own
        would be two statements more a call for the server and the client. The answer comes
        once the commit is durable (``synchronous_commit`` applies as to any commit). A read
        inside waits for its rows (a Flush, not a Sync: the transaction goes on). A failure
        of the block rolls back what it queued: BEGIN makes the implicit transaction an
        explicit one, with the statements before it, which ROLLBACK then ends. The driver's
        errors surface at the end, wrapped.

        ``durable`` False: the commit does not wait for the disk (``synchronous_commit`` off
        for this transaction alone; on SQLite WAL's NORMAL mode, Store._synced): for writes a
        crash may lose at no harm, never a transaction with an intent (that one must be
        durable before its call): ``set_config(..., true)``, which lasts to the end of the
        transaction, the commit at the Sync included (SET LOCAL would need a BEGIN)."""
        db = _db(c)
        idle = self.dbapi.pq.TransactionStatus.IDLE
        if db.pgconn.transaction_status != idle:
            raise StoreError("a pipelined transaction needs a connection outside one")
        db.autocommit = True
        try:
            with db.pipeline():
                if not durable:
                    db.execute("SELECT set_config('synchronous_commit', 'off', true)")
                try:
                    yield
                except BaseException:
                    db.execute("BEGIN")
                    db.execute("ROLLBACK")
                    raise
        except self.errors as exc:
            self.raise_error(exc)
        finally:
            if not db.closed and db.pgconn.transaction_status != idle:
                db.execute("ROLLBACK")  # never left open, whatever failed
            if not db.closed:
                db.autocommit = False

    @contextmanager
    def reading(self, c: Connection) -> Iterator[None]:
        """A span of statements that only read, on ``c`` (not in a transaction yet), on
        PostgreSQL: in autocommit. The store's transactions are READ COMMITTED, where each
        statement sees what was committed before it began, so a transaction of reads sees
        no more than its statements alone would, and its BEGIN and COMMIT were two round
        trips more (a tick made ~15 such reads). SQLite's reads take an ordinary
        transaction (Store.transaction): no round trip to save there."""
        db = _db(c)
        db.autocommit = True
        try:
            with c.begin():  # SQLAlchemy's own bookkeeping: psycopg sends nothing for it
                yield
        finally:
            if not db.closed:
                db.autocommit = False

    def raise_error(self, exc: BaseException) -> NoReturn:
        """A driver error of a batch of writes: an intent's key already taken is the
        store's StoreError, the rest as SQLAlchemy raises them."""
        diag = getattr(exc, "diag", None)
        if isinstance(exc, self.integrity) and getattr(diag, "table_name", None) == (
                "action_log"):
            raise StoreError(st.INTENT_TAKEN) from exc
        self.raise_wrapped(exc)

    def raise_wrapped(self, exc: BaseException) -> NoReturn:
        """A driver error as SQLAlchemy raises it (the store's callers and its fault
        translation read SQLAlchemy's errors)."""
        raise sa.exc.DBAPIError.instance(None, None, exc, self.dbapi.Error) from exc


# (dialect name, statement name) -> (SQL text, parameter names in order)
_COMPILED: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
# (dialect name, select name) -> (SQL text, parameter names, row type, time column indexes)
_SELECTS: dict[tuple[str, str], tuple[str, tuple[str, ...], Any, tuple[int, ...]]] = {}


def _last_value(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` remembering its last argument and result (rows written together share their
    times: a plan's 100,000 enrollments one ``now``)."""
    last: list[Any] = [object(), None]

    def call(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, fn(value)
        return last[1]

    return call


def _db(conn: Connection) -> Any:
    # the driver's connection: a sync driver's (sqlite3, psycopg) is the DBAPI connection
    # itself, an attribute where driver_connection is two properties (every statement)
    return conn.connection.dbapi_connection


def _expect(names: tuple[str, ...], order: tuple[str, ...]) -> None:
    """The fast path binds tuples in ``order``: the compiled statement must agree."""
    if names != order:  # pragma: no cover - fixed by the statements
        raise StoreError(f"unexpected statement parameters {names}, expected {order}")


class FastPath:
    """The driver-level statements of one store (compiled for its dialect)."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = Driver(dialect)

    # ---- running statements (every driver call goes through these) ------------------------

    def _run(self, c: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return _db(c).execute(sql, params)
        except self.d.errors as exc:
            self.d.raise_wrapped(exc)

    def _insert_many(
        self, c: Connection, sql: str, table: str, columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Insert ``rows`` (values of ``columns`` in order) with ``sql``, their INSERT. On
        PostgreSQL outside a pipeline as COPY, which takes a row for a fraction of what
        an INSERT costs the client (psycopg binds, and the server plans, each row: an
        import or an apply writes 100,000s); COPY has no place in a pipeline (the runner's
        batches, a few rows), where the INSERT goes."""
        if self.d.name == "sqlite" or _db(c).pgconn.pipeline_status:
            self._many(c, sql, rows)
            return
        try:
            with _db(c).cursor().copy(self.d.copy_sql(table, columns)) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
        except self.d.errors as exc:
            self.d.raise_wrapped(exc)

    def _many(self, c: Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            _db(c).cursor().executemany(sql, rows)
        except self.d.errors as exc:
            self.d.raise_wrapped(exc)

    def compiled(
        self,
        name: str,
        build: Callable[[], sa.sql.ClauseElement],
        keys: Iterable[str] | None = None,
        expect: tuple[str, ...] | None = None,
    ) -> tuple[str, tuple[str, ...]]:
        """(SQL text, parameter names in order) of the statement ``build()`` makes, compiled
        once per process and dialect (the statements are static); ``expect``: the order the
        caller binds its tuples in, checked once, when compiled."""
        hit = _COMPILED.get((self.d.name, name))
        if hit is None:
            compiled = build().compile(
                dialect=self.d.compile_dialect,
                column_keys=None if keys is None else list(keys),
                for_executemany=True,  # no RETURNING of an insert's id
            )
            names = tuple(getattr(compiled, "positiontup", None) or ())
            if expect is not None:
                _expect(names, expect)
            hit = _COMPILED[(self.d.name, name)] = (str(compiled), names)
        return hit

    # ---- reads ----------------------------------------------------------------------------

    def select(
        self, c: Connection, name: str, build: Callable[[], sa.Select[Any]], params: Any
    ) -> list[Any]:
        """The rows of a static SELECT, compiled once, with its time columns read as
        :class:`~engine.store.tables.UTCDateTime` does; the columns are attributes."""
        spec = _SELECTS.get((self.d.name, name))
        if spec is None:
            stmt = build()
            sql, names = self.compiled(f"select-{name}", lambda: stmt)
            columns = list(stmt.selected_columns)
            times = tuple(i for i, col in enumerate(columns) if isinstance(col.type, t.UTCDateTime))
            row_type = namedtuple(f"{name}_row", [col.key for col in columns])  # type: ignore[misc]
            spec = _SELECTS[(self.d.name, name)] = (sql, names, row_type, times)
        sql, names, row, times = spec
        rows = self._run(c, sql, [params[n] for n in names]).fetchall()
        if not times:
            return [row._make(r) for r in rows]
        read = self.d.read_time
        out = []
        for r in rows:
            values = list(r)
            for i in times:
                values[i] = read(values[i])
            out.append(row._make(values))
        return out

    def rows_in(self, c: Connection, name: str, chunk: list[Any]) -> Iterator[Any]:
        """The rows of the named IN query over one chunk (an expanding IN re-rendered by
        SQLAlchemy at every call costs more than the query): the driver's cursor itself."""
        sql = _IN_SQL[name].format(marks=self.d.marks(len(chunk)))
        return iter(self._run(c, self.d.sql(sql), chunk))

    def due_enrollments(
        self,
        c: Connection,
        now: datetime,
        limit: int | None,
        identities: Collection[str] | None = None,
    ) -> list[EnrollmentRow]:
        only = sorted(identities) if identities is not None else []
        where = f"AND identity IN ({self.d.marks(len(only))}) " if only else ""
        sql = _DUE_SQL.format(identities=where) + ("" if limit is None else f" LIMIT {int(limit)}")
        rows = self._run(c, self.d.sql(sql), (self.d.time(now), *only)).fetchall()
        read = self.d.read_time
        return [
            EnrollmentRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                read(r[6]),
                r[7],
                read(r[8]),
                bool(r[9]),
                r[10],
                r[11],
            )
            for r in rows
        ]

    def action_times(
        self, c: Connection, identity: str, action: str, start: datetime, since: datetime
    ) -> list[datetime]:
        time, read = self.d.time, self.d.read_time
        rows = self._run(
            c, self.d.sql(_ACTION_TIMES_SQL), (identity, action, time(start), time(since))
        )
        return [read(r[0]) or since for r in rows]

    def conversations(self, c: Connection, identity: str) -> dict[str, ConversationRow]:
        rows = self._run(c, self.d.sql(_CONVERSATIONS_SQL), (identity,))
        read = self.d.read_time
        return {
            url: ConversationRow(
                identity,
                url,
                bool(us),
                read(at) or utcnow(),
                None if first is None else bool(first),
            )
            for url, us, at, first in rows
        }

    # ---- writes ---------------------------------------------------------------------------

    def pull_forward(
        self, c: Connection, enrollment_id: int, waiting: str, due: datetime, now: datetime
    ) -> Any:
        """``Store.pull_forward``'s UPDATE: its cursor, whose ``rowcount`` says whether the
        enrollment moved once the statement is through (in a pipeline: at its end)."""
        time = self.d.time
        return self._run(c, self.d.sql(_PULL_FORWARD_SQL),
                         (time(now), enrollment_id, waiting, time(due)))

    def insert_columns(self, c: Connection, table: sa.Table, rows: Columns) -> None:
        """Insert ``rows`` (by column) in one executemany (COPY on PostgreSQL: see
        :meth:`_insert_many`) whose parameter tuples are zipped from the columns at C speed:
        a leads import writes a million rows a table, where building a dict, then a tuple, a
        row cost more than the database. A shared value is
        converted once (times as the driver binds them, a bool as SQLite's 0/1); a shared
        NULL of a column without default is left out of the statement (a NULL binds through
        the driver's adapter look-up, each row)."""
        n = len(rows)
        if not n:
            return
        same = {k: self._shared(table.c[k], v) for k, v in rows.same.items()
                if v is not None or table.c[k].default is not None
                or table.c[k].server_default is not None}
        keys = (*same, *rows.each)
        sql, names = self.compiled(f"insert-{table.name}-{','.join(keys)}", table.insert, keys)
        if not set(names) <= set(keys):  # pragma: no cover - a column's default not given
            raise StoreError(f"insert into {table.name}: {names} not all in {keys}")
        time = _last_value(self.d.time)  # rows written together share their times

        def column(name: str) -> Iterable[Any]:
            if name in same:
                return repeat(same[name], n)
            values = rows.each[name]
            return map(time, values) if isinstance(table.c[name].type, t.UTCDateTime) else values

        self._insert_many(c, sql, table.name, names, zip(*map(column, names), strict=True))

    def _shared(self, col: sa.Column[Any], value: Any) -> Any:
        if isinstance(col.type, t.UTCDateTime):
            return self.d.time(value)
        if isinstance(value, bool) and self.d.name == "sqlite":
            return int(value)
        return value

    def new_ids(self, c: Connection, table: sa.Table, n: int) -> Sequence[int]:
        """``n`` unused ids of ``table`` (its integer primary key ``id``), for rows the
        caller inserts with them: their ids are known without reading the rows back (an
        import looked a million ids up again). SQLite: those after the largest, which is
        what SQLite gives a row itself; no other writer takes them, as every transaction
        holds the write lock from its BEGIN IMMEDIATE (see Store._sqlite_begin).
        PostgreSQL: drawn from the column's sequence, as a default would."""
        if n <= 0:
            return ()
        if self.d.name == "sqlite":
            (last,) = self._run(c, f"SELECT max(id) FROM {table.name}").fetchone()
            return range((last or 0) + 1, (last or 0) + 1 + n)
        rows = self._run(c, "SELECT nextval(pg_get_serial_sequence(%s, 'id')) "
                            "FROM generate_series(1, %s)", (table.name, n))
        return [int(r[0]) for r in rows]

    def insert_events(self, c: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        time = _last_value(self.d.time)
        values = [
            (
                time(r.get("at") or utcnow()),
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
            sql, _ = self.compiled("events", t.events.insert, _EVENT_COLS, _EVENT_COLS)
            self._insert_many(c, sql, "events", _EVENT_COLS, values)

    def write_batch(
        self,
        c: Connection,
        outcomes: Iterable[Mapping[str, Any]],
        transitions: Iterable[Mapping[str, Any]],
        reschedules: Iterable[Mapping[str, Any]],
        events: Iterable[Mapping[str, Any]],
        conversations: Iterable[Mapping[str, Any]],
        connections: Iterable[Mapping[str, Any]],
        rewrites: list[dict[str, Any]],
        intents: list[tuple[Any, ...]],
    ) -> list[Any]:
        """``Store.write_batch``: one statement (or executemany) per kind, then the intents
        (:data:`INTENT_PARAMS` tuples, times aware) one insert each; what :meth:`keys` reads
        their keys from once the batch is through. On PostgreSQL the whole batch is one
        round trip (the pipeline; with :meth:`Driver.atomic`, its commit too)."""
        try:
            with self.d.batch(c):  # (an empty list skips its kind; an iterator is read)
                if outcomes:
                    self._outcomes(c, outcomes)
                if transitions:
                    self._transitions(c, transitions)
                if reschedules:
                    self._reschedules(c, reschedules)
                if events:
                    self.insert_events(c, events)
                if conversations:
                    self._upsert_cache(c, "conversations", t.conversation_cache,
                                       conversations, st.CONVERSATION_UPSERT,
                                       ("last_activity_at",))
                if connections:
                    self._upsert_cache(c, "connections", t.connection_cache, connections,
                                       st.CONNECTION_UPSERT, ("checked_at",))
                if rewrites:
                    sql, names = self.compiled("event-data", st.event_data_by_id)
                    self._many(c, sql, [tuple(u[n] for n in names) for u in rewrites])
                keys = self._intents(c, intents)
        except self.d.errors as exc:  # PostgreSQL: what failed in the pipeline, at its end
            self.d.raise_error(exc)
        return keys

    @staticmethod
    def keys(results: list[Any]) -> list[str]:
        """The intents' keys of :meth:`write_batch`'s results, once its pipeline is through
        (on PostgreSQL the cursors of the inserts; reading one earlier waits for it)."""
        return [k if isinstance(k, str) else k.fetchall()[0][0] for k in results]

    def _intents(self, c: Connection, intents: list[tuple[Any, ...]]) -> list[Any]:
        """Insert the intents: their keys, or on PostgreSQL the cursors that will return
        them once the pipeline is through."""
        if not intents:
            return []
        time, db = self.d.time, _db(c)
        out: list[Any] = []
        try:
            if self.d.name == "sqlite":
                for v in intents:
                    (last,) = db.execute(_LAST_ATTEMPT_SQL, (v[1], v[4])).fetchone()
                    n = 0 if last is None else last + 1
                    key = f"{v[0]}{n}"
                    db.execute(_INTENT_INSERT_SQL, (key, *v[1:5], n, *v[5:8], time(v[8]), v[9]))
                    out.append(key)
                return out
            sql = self.d.sql(_INTENT_SQL)
            for v in intents:
                out.append(db.execute(sql, (*v[:8], time(v[8]), *v[9:])))
        except self.d.integrity as exc:
            raise StoreError(st.INTENT_TAKEN) from exc
        except self.d.errors as exc:
            self.d.raise_wrapped(exc)
        return out

    def _outcomes(self, c: Connection, outcomes: Iterable[Mapping[str, Any]]) -> None:
        time = self.d.time
        out = [
            (
                o["status"],
                o.get("label"),
                response_json(o.get("response")),
                time(o["finished_at"]),
                o["key"],
            )
            for o in outcomes
        ]
        if out:
            sql, _ = self.compiled("outcomes", st.outcome_update, expect=(
                "b_status", "b_label", "b_response", "b_finished", "k"))
            self._many(c, sql, out)

    def _transitions(self, c: Connection, transitions: Iterable[Mapping[str, Any]]) -> None:
        time = self.d.time
        trans = [
            (
                r["state"],
                time(r["next_due_at"]),
                r["attempts"],
                time(r["step_entered_at"]),
                r["last_error"],
                r.get("waiting"),
                r["id"],
            )
            for r in transitions
        ]
        if trans:
            sql, _ = self.compiled("transitions", st.transition_update, expect=(
                "b_state", "b_due", "b_attempts", "b_entered", "b_error", "b_waiting", "eid"))
            self._update_grouped(c, sql, trans)

    def _reschedules(self, c: Connection, reschedules: Iterable[Mapping[str, Any]]) -> None:
        time = self.d.time
        resch = [
            (time(r["next_due_at"]), r["attempts"], r["last_error"], r.get("waiting"), r["id"])
            for r in reschedules
        ]
        if resch:
            sql, _ = self.compiled("reschedules", st.reschedule_update, expect=(
                "b_due", "b_attempts", "b_error", "b_waiting", "eid"))
            self._update_grouped(c, sql, resch)

    def _update_grouped(self, c: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``sql`` (an UPDATE ending ``WHERE <table>.id = <mark>``) for ``rows`` (values...,
        id): rows with the same values (a wave's leads leaving one step together) in one
        statement with ``id IN (...)``, the rest as executemany. The IN lists are padded to a
        power of two with a repeated id, so only a few statement texts reach the driver's
        statement cache."""
        if len(rows) == 1:  # nearly every call's commit: one transition, nothing to group
            self._many(c, sql, rows)
            return
        head, sep, mark = sql.rpartition(" = ")
        if not sep or mark not in ("?", "%s", "%s::INTEGER"):  # pragma: no cover - fixed
            raise StoreError(f"cannot group {sql!r}")
        last = {row[-1]: row for row in rows}  # an id given twice: the last row wins
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
                self._run(c, f"{head} IN ({self.d.marks(size)})", (*values, *chunk))
        if single:
            self._many(c, sql, single)

    def _upsert_cache(
        self,
        c: Connection,
        name: str,
        table: sa.Table,
        rows: Iterable[Mapping[str, Any]],
        shape: tuple[tuple[str, ...], tuple[str, ...]],
        times: tuple[str, ...],
    ) -> None:
        """One executemany upsert of cache rows; a key given twice keeps its last row (one
        ``ON CONFLICT DO UPDATE`` may not touch a row twice in a statement on PostgreSQL)."""
        keys, update = shape
        last = {tuple(r[k] for k in keys): r for r in rows}
        if not last:
            return
        sql, names = self.compiled(
            f"upsert-{name}", lambda: st.cache_upsert(self.d.name, table, keys, update)
        )
        time = self.d.time
        self._many(
            c, sql, [tuple(time(r[n]) if n in times else r[n] for n in names)
                     for r in last.values()]
        )
