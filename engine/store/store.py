"""The store: one SQLAlchemy Core engine over SQLite (default) or PostgreSQL.

Every method takes an optional ``conn``: pass the connection of an open
:meth:`Store.transaction` to group several writes atomically (the runner records an action's
outcome and the enrollment's transition in one transaction); without it each call runs in
its own short transaction. Methods return frozen dataclasses, never ORM objects.

Example::

    store = Store.open(None, Path(".seqrun"))
    lead_id = store.upsert_lead("https://www.linkedin.com/in/jane", {"first_name": "Jane"})
    with store.lock("apply"):
        store.kv_put("schedules", "daily", {"id": "sch_1"})
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import uuid
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engine.errors import LockError, StoreError
from engine.store import tables as t

log = logging.getLogger(__name__)

HEAD = "0004"  # the newest migration in engine/store/migrations/versions (a test checks it)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENV_URL = "SEQRUN_DATABASE_URL"

ACTION_STATUSES = ("intent", "done", "failed", "unknown")
IDENTITY_STATUSES = ("active", "paused", "auth_expired")


# orjson: the runner writes three small JSON documents a step (intent, outcome, event), and
# the standard encoder's Python-level setup costs more than the encoding. Times keep their
# str() form (what the standard encoder's default=str wrote), keys may be non-strings.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def dump_json(value: Any) -> str:
    """The text of a JSON column (the store's and the planner's bulk writes alike)."""
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    except TypeError:  # what orjson refuses (an integer beyond 64 bits...): the stdlib's text
        return json.dumps(value, separators=(",", ":"), default=str)


RESPONSE_MAX = 8192  # characters of a provider answer the action log keeps as it came


def response_json(value: Any) -> str | None:
    """The action log's text of a provider answer: as it came when it is small (nearly
    always), else a bounded copy of it."""
    if value is None:
        return None
    text = dump_json(value)
    if len(text) <= RESPONSE_MAX:
        return text
    if isinstance(value, Mapping):
        return dump_json(bounded(value))
    return dump_json(text[:RESPONSE_MAX])  # a long list or text: its JSON, cut


def bounded(data: Mapping[str, Any]) -> dict[str, Any]:
    """A bounded, JSON-safe copy of a mapping: 20 keys, scalars kept, strings and anything
    else cut to 500 characters."""
    out: dict[str, Any] = {}
    for k, v in islice(data.items(), 20):
        if isinstance(v, str):
            out[str(k)] = v[:500]
        elif v is None or isinstance(v, int | float | bool):
            out[str(k)] = v
        else:
            out[str(k)] = str(v)[:500]
    return out


def _db_time(value: datetime | None) -> str | None:
    """A time as the SQLite fast path stores it: naive UTC text, exactly the format of
    SQLAlchemy's SQLite DATETIME (``YYYY-MM-DD HH:MM:SS.ffffff``) so both paths compare."""
    if value is None:
        return None
    hit = _DB_TIMES.get(value)  # a tick writes the same few instants many times
    if hit is not None:
        return hit
    if value.tzinfo is UTC:  # the clocks' own times: the fields are UTC already
        minute = (value.year, value.month, value.day, value.hour, value.minute)
        prefix = _DB_MINUTES.get(minute)
        if prefix is None:
            if len(_DB_MINUTES) >= 4096:
                _DB_MINUTES.clear()
            prefix = _DB_MINUTES[minute] = "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:".format(*minute)
        text = f"{prefix}{value.second:02d}.{value.microsecond:06d}"
    elif value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC")
    else:
        text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if len(_DB_TIMES) >= 4096:
        _DB_TIMES.clear()
    _DB_TIMES[value] = text  # equal instants (whatever their zone) store the same text
    return text


_DB_MINUTES: dict[tuple[int, int, int, int, int], str] = {}
_DB_TIMES: dict[datetime, str] = {}


def _py_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    hit = _PY_TIMES.get(value)
    if hit is None:
        if len(_PY_TIMES) >= 4096:
            _PY_TIMES.clear()
        try:  # the zone in the text: 5x cheaper than parsing, then replace(tzinfo=UTC)
            hit = datetime.fromisoformat(f"{value}+00:00")
        except ValueError:  # a text with its own offset
            hit = datetime.fromisoformat(value).astimezone(UTC)
        _PY_TIMES[value] = hit
    return hit


_PY_TIMES: dict[str, datetime] = {}


def _expect(names: tuple[str, ...], order: tuple[str, ...]) -> None:
    """The fast path binds tuples in ``order``: the compiled statement must agree."""
    if names != order:  # pragma: no cover - fixed by the statements above
        raise StoreError(f"unexpected statement parameters {names}, expected {order}")


# The runner's batched UPDATEs, one builder each for both paths (bound by name, b_*).
def _outcome_update() -> sa.Update:
    a = t.action_log
    return (
        a.update()
        .where(a.c.idempotency_key == sa.bindparam("k"))
        .values(
            status=sa.bindparam("b_status"),
            label=sa.bindparam("b_label"),
            response_json=sa.bindparam("b_response"),
            finished_at=sa.bindparam("b_finished"),
        )
    )


def _transition_update() -> sa.Update:
    e = t.enrollments
    return (
        e.update()
        .where(e.c.id == sa.bindparam("eid"))
        .values(
            state=sa.bindparam("b_state"),
            next_due_at=sa.bindparam("b_due"),
            step_entered_at=sa.bindparam("b_entered"),
            attempts=sa.bindparam("b_attempts"),
            last_error=sa.bindparam("b_error"),
        )
    )


def _kv_select() -> sa.Select[Any]:
    return sa.select(t.kv.c.value_json).where(
        t.kv.c.ns == sa.bindparam("ns"), t.kv.c.key == sa.bindparam("key")
    )


def _identity_select() -> sa.Select[Any]:
    return sa.select(t.identities).where(t.identities.c.id == sa.bindparam("id"))


def _identities_select() -> sa.Select[Any]:
    return sa.select(t.identities).order_by(t.identities.c.id)


def _pending_select() -> sa.Select[Any]:
    # a literal, not a parameter: the partial index only serves `status = 'intent'`
    a = t.action_log
    return sa.select(a).where(a.c.status == sa.literal_column("'intent'")).order_by(a.c.id)


def _reschedule_update() -> sa.Update:
    e = t.enrollments
    return (
        e.update()
        .where(e.c.id == sa.bindparam("eid"))
        .values(
            next_due_at=sa.bindparam("b_due"),
            attempts=sa.bindparam("b_attempts"),
            last_error=sa.bindparam("b_error"),
        )
    )


def _update_grouped(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``sql`` (an UPDATE ending ``WHERE <table>.id = ?``) for ``rows`` (values..., id):
    rows with the same values (a wave's leads leaving one step together) in one statement
    with ``id IN (...)``, the rest as executemany. The IN lists are padded to a power of two
    with a repeated id, so only a few statement texts reach the driver's statement cache."""
    if not sql.endswith(" = ?"):  # pragma: no cover - fixed by the statements above
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


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN/Infinity, which the stdlib writes and orjson refuses
        return json.loads(text)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# SQLite fast path: statement name -> (SQL text, parameter names in order).
_COMPILED: dict[str, tuple[str, tuple[str, ...]]] = {}
# Store._select: name -> (SQL text, parameter names, row type, indexes of the time columns)
_SELECTS: dict[str, tuple[str, tuple[str, ...], Any, tuple[int, ...]]] = {}

# The due enrollments on the SQLite fast path (the SQLAlchemy query in due_enrollments).
_DUE_SQL = (
    "SELECT id, lead_id, sequence, revision, identity, state, next_due_at, attempts, "
    "step_entered_at, paused, last_error FROM enrollments "
    "WHERE next_due_at <= ? AND paused = 0 "
    "AND sequence NOT IN (SELECT name FROM sequences WHERE paused = 1) "
    "ORDER BY next_due_at, id"
)

# The columns of an intent row, in the order the runner's batched insert binds them.
_INTENT_COLS = (
    "idempotency_key",
    "enrollment_id",
    "sequence",
    "revision",
    "step",
    "attempt",
    "identity",
    "action",
    "status",
    "label",
    "response_json",
    "created_at",
    "finished_at",
)

# ---- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionRow:
    hash: str
    sequence: str
    kind: str
    manifest: Any
    created_at: datetime


@dataclass(frozen=True)
class SequenceRow:
    name: str
    kind: str
    provider: str
    current_revision: str
    paused: bool


# The two rows the runner reads (and makes) for every step are NamedTuples: as immutable as
# a frozen dataclass, and four times cheaper to build (no object.__setattr__ per field).
class LeadRow(NamedTuple):
    id: int
    profile_url: str
    data: Mapping[str, Any]


class EnrollmentRow(NamedTuple):
    id: int
    lead_id: int
    sequence: str
    revision: str
    identity: str
    state: str
    next_due_at: datetime | None
    attempts: int
    step_entered_at: datetime | None
    paused: bool
    last_error: str | None


@dataclass(frozen=True)
class ActionRow:
    id: int
    idempotency_key: str
    enrollment_id: int
    sequence: str
    revision: str
    step: str
    attempt: int
    identity: str
    action: str
    status: str  # intent | done | failed | unknown
    label: str | None
    response: Any
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    id: int
    at: datetime
    enrollment_id: int | None
    subject: str
    kind: str
    from_state: str | None
    to_state: str | None
    trigger: str | None
    revision: str | None
    data: Any


@dataclass(frozen=True)
class ConversationRow:
    identity: str
    profile_url: str
    last_sender_is_us: bool
    last_activity_at: datetime
    first_sender_is_us: bool | None


@dataclass(frozen=True)
class IdentityRow:
    id: str
    provider: str
    profile_id: str | None
    status: str  # active | paused | auth_expired
    reason: str | None
    updated_at: datetime | None


@dataclass
class LockHandle:
    """A held lock; ``refresh()`` extends it (a daemon calls it every poll)."""

    store: Store
    name: str
    holder: str
    ttl: timedelta

    def refresh(self) -> None:
        now = _utcnow()
        with self.store.transaction() as conn:
            res = conn.execute(
                t.locks.update()
                .where(t.locks.c.name == self.name, t.locks.c.holder == self.holder)
                .values(expires_at=now + self.ttl)
            )
            if res.rowcount != 1:
                raise LockError(f"lock {self.name!r} was lost (expired and taken over)")


def _enrollment(r: Any) -> EnrollmentRow:
    return EnrollmentRow(
        id=r.id,
        lead_id=r.lead_id,
        sequence=r.sequence,
        revision=r.revision,
        identity=r.identity,
        state=r.state,
        next_due_at=r.next_due_at,
        attempts=r.attempts,
        step_entered_at=r.step_entered_at,
        paused=bool(r.paused),
        last_error=r.last_error,
    )


def _action(r: Any) -> ActionRow:
    return ActionRow(
        id=r.id,
        idempotency_key=r.idempotency_key,
        enrollment_id=r.enrollment_id,
        sequence=r.sequence,
        revision=r.revision,
        step=r.step,
        attempt=r.attempt,
        identity=r.identity,
        action=r.action,
        status=r.status,
        label=r.label,
        response=_loads(r.response_json),
        created_at=r.created_at,
        finished_at=r.finished_at,
    )


def _event(r: Any) -> EventRow:
    return EventRow(
        id=r.id,
        at=r.at,
        enrollment_id=r.enrollment_id,
        subject=r.subject,
        kind=r.kind,
        from_state=r.from_state,
        to_state=r.to_state,
        trigger=r.trigger,
        revision=r.revision,
        data=_loads(r.data_json),
    )


def _identity(r: Any) -> IdentityRow:
    return IdentityRow(
        id=r.id,
        provider=r.provider,
        profile_id=r.profile_id,
        status=r.status,
        reason=r.reason,
        updated_at=r.updated_at,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours (see the begin hook).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE: take the write lock up front so two processes never deadlock upgrading a
    # read transaction (busy_timeout then queues them). Sent straight to the driver: this
    # runs for every transaction, and the full execution path costs more than the BEGIN.
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


class Store:
    """The runtime state. Open with :meth:`open`; safe to share within one process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        # SQLite: the runner's hot statements (a tick's reads, a wave's intents, outcomes,
        # transitions and events) go straight to the driver with SQL compiled once, which
        # halves their cost; other databases take the SQLAlchemy path.
        self.fast = engine.dialect.name == "sqlite"

    def _compiled(
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
                dialect=self.engine.dialect, column_keys=None if keys is None else list(keys)
            )
            names = getattr(compiled, "positiontup", None) or ()
            hit = _COMPILED[name] = (str(compiled), tuple(names))
        return hit

    @staticmethod
    def _driver(conn: Connection) -> Any:
        return conn.connection.driver_connection

    def _select(
        self, c: Connection, name: str, build: Callable[[], sa.Select[Any]], **params: Any
    ) -> list[Any]:
        """The rows of a static SELECT (parameters as ``sa.bindparam`` by name). On SQLite
        straight from the driver, compiled once, with its time columns parsed as
        :class:`~engine.store.tables.UTCDateTime` does; elsewhere through SQLAlchemy. The
        rows have the columns as attributes either way."""
        if not self.fast:
            return list(c.execute(build(), params))
        spec = _SELECTS.get(name)
        if spec is None:
            stmt = build()
            sql, names = self._compiled(f"select-{name}", lambda: stmt)
            columns = list(stmt.selected_columns)
            times = tuple(
                i for i, col in enumerate(columns) if isinstance(col.type, t.UTCDateTime)
            )
            row_type = namedtuple(f"{name}_row", [col.key for col in columns])  # type: ignore[misc]
            spec = _SELECTS[name] = (sql, names, row_type, times)
        sql, names, row, times = spec
        rows = self._driver(c).execute(sql, [params[n] for n in names]).fetchall()
        if not times:
            return [row._make(r) for r in rows]
        out = []
        for r in rows:
            values = list(r)
            for i in times:
                values[i] = _py_time(values[i])
            out.append(row._make(values))
        return out

    def _rows_in(
        self,
        c: Connection,
        values: list[Any],
        fast_sql: str,
        build: Callable[[list[Any]], sa.Select[Any]],
    ) -> Iterator[Any]:
        """The rows of one query over many values, 500 at a time (an IN list every database
        takes whole): on SQLite ``fast_sql`` (``{marks}`` stands for the placeholders) on the
        driver, which spares SQLAlchemy re-rendering an expanding IN at every call; elsewhere
        ``build(chunk)``. Both select the same columns in the same order."""
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            if self.fast:
                marks = ",".join("?" * len(chunk))
                yield from self._driver(c).execute(fast_sql.format(marks=marks), chunk)
            else:
                yield from c.execute(build(chunk))

    # ---- lifecycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, state_dir: Path | str = ".seqrun") -> Store:
        """Open (and migrate to head) the store.

        ``url`` wins, then ``$SEQRUN_DATABASE_URL``, then ``sqlite:///<state_dir>/state.db``.
        """
        url = url or os.environ.get(ENV_URL) or None
        if url is None:
            state = Path(state_dir)
            state.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{state / 'state.db'}"
        try:
            engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open the store: {exc}") from exc
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "begin", _sqlite_begin)
        store = cls(engine)
        try:
            store.migrate()
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the store at {store.url}: {exc.orig}") from exc
        return store

    def migrate(self) -> None:
        """``alembic upgrade head``; a no-op (one query) when already at head."""
        with self.engine.begin() as conn:
            current = None
            if sa.inspect(conn).has_table("alembic_version"):
                current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            if current == HEAD:
                return
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            log.info("migrating the store from %s to %s", current, HEAD)
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic transaction; pass the connection as ``conn=`` to store methods."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def tx(self, conn: Connection | None = None) -> Iterator[Connection]:
        """``conn`` itself when given (the caller's transaction), else a new transaction."""
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        values: Mapping[str, Any],
        keys: Iterable[str],
        update: Iterable[str],
    ) -> None:
        keys, update = list(keys), list(update)
        dialect = conn.dialect.name
        if dialect == "sqlite" or dialect == "postgresql":
            from sqlalchemy.dialects import postgresql, sqlite

            stmt: Any = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
            stmt = stmt.values(**values)
            if update:
                stmt = stmt.on_conflict_do_update(
                    index_elements=keys, set_={c: stmt.excluded[c] for c in update}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=keys)
            conn.execute(stmt)
            return
        where = [table.c[k] == values[k] for k in keys]
        if update:
            res = conn.execute(table.update().where(*where).values({c: values[c] for c in update}))
            if res.rowcount:
                return
        elif conn.execute(sa.select(sa.literal(1)).select_from(table).where(*where)).first():
            return
        conn.execute(table.insert().values(**values))

    # ---- kv -----------------------------------------------------------------------------

    def kv_get(self, ns: str, key: str, *, conn: Connection | None = None) -> Any | None:
        with self.tx(conn) as c:
            rows = self._select(c, "kv", _kv_select, ns=ns, key=key)
        return _loads(rows[0].value_json) if rows else None

    def kv_put(self, ns: str, key: str, value: Any, *, conn: Connection | None = None) -> None:
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.kv,
                {"ns": ns, "key": key, "value_json": dump_json(value), "updated_at": _utcnow()},
                ("ns", "key"),
                ("value_json", "updated_at"),
            )

    def kv_delete(self, ns: str, key: str, *, conn: Connection | None = None) -> bool:
        with self.tx(conn) as c:
            res = c.execute(t.kv.delete().where(t.kv.c.ns == ns, t.kv.c.key == key))
        return bool(res.rowcount)

    def kv_items(self, ns: str, *, conn: Connection | None = None) -> dict[str, Any]:
        with self.tx(conn) as c:
            rows = c.execute(
                sa.select(t.kv.c.key, t.kv.c.value_json).where(t.kv.c.ns == ns).order_by(t.kv.c.key)
            ).all()
        return {r.key: _loads(r.value_json) for r in rows}

    # ---- locks --------------------------------------------------------------------------

    @contextmanager
    def lock(
        self, name: str, *, ttl: timedelta = timedelta(minutes=10), holder: str | None = None
    ) -> Iterator[LockHandle]:
        """Hold the named lock for the block; :class:`LockError` if someone else holds it.

        A holder that died leaves a lock that expires after ``ttl``.
        """
        holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        now = _utcnow()
        try:
            with self.transaction() as conn:
                conn.execute(
                    t.locks.delete().where(t.locks.c.name == name, t.locks.c.expires_at < now)
                )
                conn.execute(
                    t.locks.insert().values(
                        name=name, holder=holder, acquired_at=now, expires_at=now + ttl
                    )
                )
        except sa.exc.IntegrityError:
            with self.transaction() as conn:
                row = conn.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
            who = f" by {row.holder} since {row.acquired_at:%Y-%m-%d %H:%M:%S}Z" if row else ""
            raise LockError(f"the {name!r} lock is held{who}") from None
        try:
            yield LockHandle(self, name, holder, ttl)
        finally:
            with self.transaction() as conn:
                conn.execute(
                    t.locks.delete().where(t.locks.c.name == name, t.locks.c.holder == holder)
                )

    def live_lock_holder(self, name: str, *, conn: Connection | None = None) -> str | None:
        """Who holds the named lock now (None: free or expired)."""
        q = sa.select(t.locks.c.holder).where(
            t.locks.c.name == name, t.locks.c.expires_at >= _utcnow()
        )
        with self.tx(conn) as c:
            holder = c.execute(q).scalar()
        return None if holder is None else str(holder)

    # ---- revisions and sequences --------------------------------------------------------

    def put_revision(
        self,
        hash: str,
        sequence: str,
        kind: str,
        manifest: Any,
        *,
        at: datetime | None = None,
        conn: Connection | None = None,
    ) -> bool:
        """Store a revision once; True if it was new."""
        with self.tx(conn) as c:
            if c.execute(sa.select(t.revisions.c.hash).where(t.revisions.c.hash == hash)).first():
                return False
            c.execute(
                t.revisions.insert().values(
                    hash=hash,
                    sequence=sequence,
                    kind=kind,
                    manifest_json=dump_json(manifest),
                    created_at=at or _utcnow(),
                )
            )
        return True

    def get_revision(self, hash: str, *, conn: Connection | None = None) -> RevisionRow | None:
        with self.tx(conn) as c:
            r = c.execute(sa.select(t.revisions).where(t.revisions.c.hash == hash)).first()
        if r is None:
            return None
        return RevisionRow(r.hash, r.sequence, r.kind, _loads(r.manifest_json), r.created_at)

    def revisions(
        self, sequence: str | None = None, *, conn: Connection | None = None
    ) -> list[RevisionRow]:
        q = sa.select(t.revisions).order_by(t.revisions.c.created_at)
        if sequence is not None:
            q = q.where(t.revisions.c.sequence == sequence)
        with self.tx(conn) as c:
            rows = c.execute(q).all()
        return [
            RevisionRow(r.hash, r.sequence, r.kind, _loads(r.manifest_json), r.created_at)
            for r in rows
        ]

    def put_sequence(
        self,
        name: str,
        kind: str,
        provider: str,
        current_revision: str,
        *,
        conn: Connection | None = None,
    ) -> None:
        """Create or update a sequence (its ``paused`` flag is kept)."""
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.sequences,
                {
                    "name": name,
                    "kind": kind,
                    "provider": provider,
                    "current_revision": current_revision,
                    "paused": False,
                },
                ("name",),
                ("kind", "provider", "current_revision"),
            )

    def get_sequence(self, name: str, *, conn: Connection | None = None) -> SequenceRow | None:
        with self.tx(conn) as c:
            r = c.execute(sa.select(t.sequences).where(t.sequences.c.name == name)).first()
        return (
            None
            if r is None
            else SequenceRow(r.name, r.kind, r.provider, r.current_revision, bool(r.paused))
        )

    def list_sequences(self, *, conn: Connection | None = None) -> list[SequenceRow]:
        with self.tx(conn) as c:
            rows = c.execute(sa.select(t.sequences).order_by(t.sequences.c.name)).all()
        return [
            SequenceRow(r.name, r.kind, r.provider, r.current_revision, bool(r.paused))
            for r in rows
        ]

    def set_sequence_paused(
        self, name: str | None, paused: bool, *, conn: Connection | None = None
    ) -> int:
        """Pause or resume one sequence (``None``: all of them). Returns how many changed."""
        q = t.sequences.update().values(paused=paused)
        if name is not None:
            q = q.where(t.sequences.c.name == name)
        with self.tx(conn) as c:
            return c.execute(q).rowcount

    # ---- leads --------------------------------------------------------------------------

    def upsert_lead(
        self, profile_url: str, data: Mapping[str, Any], *, conn: Connection | None = None
    ) -> int:
        """Insert a lead by (already normalized) profile URL, or merge ``data`` into it."""
        with self.tx(conn) as c:
            r = c.execute(
                sa.select(t.leads.c.id, t.leads.c.data_json).where(
                    t.leads.c.profile_url == profile_url
                )
            ).first()
            if r is None:
                res = c.execute(
                    t.leads.insert().values(
                        profile_url=profile_url, data_json=dump_json(dict(data))
                    )
                )
                return int(res.inserted_primary_key[0])  # type: ignore[index]
            merged = {**(_loads(r.data_json) or {}), **dict(data)}
            c.execute(
                t.leads.update().where(t.leads.c.id == r.id).values(data_json=dump_json(merged))
            )
            return int(r.id)

    def get_lead(self, lead_id: int, *, conn: Connection | None = None) -> LeadRow | None:
        with self.tx(conn) as c:
            r = c.execute(sa.select(t.leads).where(t.leads.c.id == lead_id)).first()
        return None if r is None else LeadRow(r.id, r.profile_url, _loads(r.data_json))

    def lead_by_url(self, profile_url: str, *, conn: Connection | None = None) -> LeadRow | None:
        with self.tx(conn) as c:
            r = c.execute(sa.select(t.leads).where(t.leads.c.profile_url == profile_url)).first()
        return None if r is None else LeadRow(r.id, r.profile_url, _loads(r.data_json))

    def leads_by_ids(
        self, ids: Iterable[int], *, conn: Connection | None = None
    ) -> dict[int, LeadRow]:
        ls = t.leads
        with self.tx(conn) as c:
            rows = self._rows_in(
                c,
                list(set(ids)),
                "SELECT id, profile_url, data_json FROM leads WHERE id IN ({marks})",
                lambda chunk: sa.select(ls.c.id, ls.c.profile_url, ls.c.data_json).where(
                    ls.c.id.in_(chunk)
                ),
            )
            return {lid: LeadRow(lid, url, _loads(data)) for lid, url, data in rows}

    # ---- enrollments --------------------------------------------------------------------

    def enroll(
        self,
        lead_id: int,
        sequence: str,
        revision: str,
        identity: str,
        state: str,
        next_due_at: datetime | None,
        *,
        conn: Connection | None = None,
    ) -> int | None:
        """Enroll a lead; None when it is already enrolled in that sequence."""
        with self.tx(conn) as c:
            exists = c.execute(
                sa.select(t.enrollments.c.id).where(
                    t.enrollments.c.lead_id == lead_id, t.enrollments.c.sequence == sequence
                )
            ).first()
            if exists:
                return None
            res = c.execute(
                t.enrollments.insert().values(
                    lead_id=lead_id,
                    sequence=sequence,
                    revision=revision,
                    identity=identity,
                    state=state,
                    next_due_at=next_due_at,
                    attempts=0,
                    step_entered_at=next_due_at,
                    paused=False,
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def get_enrollment(
        self, enrollment_id: int, *, conn: Connection | None = None
    ) -> EnrollmentRow | None:
        with self.tx(conn) as c:
            r = c.execute(
                sa.select(t.enrollments).where(t.enrollments.c.id == enrollment_id)
            ).first()
        return None if r is None else _enrollment(r)

    def enrollments(
        self,
        *,
        sequence: str | None = None,
        identity: str | None = None,
        lead_id: int | None = None,
        states: Iterable[str] | None = None,
        conn: Connection | None = None,
    ) -> list[EnrollmentRow]:
        q = sa.select(t.enrollments).order_by(t.enrollments.c.id)
        if sequence is not None:
            q = q.where(t.enrollments.c.sequence == sequence)
        if identity is not None:
            q = q.where(t.enrollments.c.identity == identity)
        if lead_id is not None:
            q = q.where(t.enrollments.c.lead_id == lead_id)
        if states is not None:
            q = q.where(t.enrollments.c.state.in_(list(states)))
        with self.tx(conn) as c:
            return [_enrollment(r) for r in c.execute(q)]

    def due_enrollments(
        self, now: datetime, *, limit: int | None = None, conn: Connection | None = None
    ) -> list[EnrollmentRow]:
        """Enrollments due at ``now`` (by the ``next_due_at`` index): not paused, sequence not
        paused. Terminal enrollments carry ``next_due_at = NULL`` so they never show up."""
        if self.fast:
            sql = _DUE_SQL + ("" if limit is None else f" LIMIT {int(limit)}")
            with self.tx(conn) as c:
                rows = self._driver(c).execute(sql, (_db_time(now),)).fetchall()
            return [
                EnrollmentRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    _py_time(r[6]),
                    r[7],
                    _py_time(r[8]),
                    bool(r[9]),
                    r[10],
                )
                for r in rows
            ]
        paused_seqs = sa.select(t.sequences.c.name).where(t.sequences.c.paused == sa.true())
        q = (
            sa.select(t.enrollments)
            .where(
                t.enrollments.c.next_due_at <= now,
                t.enrollments.c.paused == sa.false(),
                t.enrollments.c.sequence.not_in(paused_seqs),
            )
            .order_by(t.enrollments.c.next_due_at, t.enrollments.c.id)
        )
        if limit is not None:
            q = q.limit(limit)
        with self.tx(conn) as c:
            return [_enrollment(r) for r in c.execute(q)]

    def next_due_at(self, *, conn: Connection | None = None) -> datetime | None:
        """The earliest ``next_due_at`` among runnable enrollments."""
        paused_seqs = sa.select(t.sequences.c.name).where(t.sequences.c.paused == sa.true())
        q = sa.select(sa.func.min(t.enrollments.c.next_due_at)).where(
            t.enrollments.c.next_due_at.is_not(None),
            t.enrollments.c.paused == sa.false(),
            t.enrollments.c.sequence.not_in(paused_seqs),
        )
        with self.tx(conn) as c:
            value = c.execute(q).scalar()
        if value is None:
            return None
        return t.UTCDateTime().process_result_value(value, self.engine.dialect)

    def update_enrollment(
        self, enrollment_id: int, *, conn: Connection | None = None, **values: Any
    ) -> None:
        """Set columns of one enrollment (state, next_due_at, attempts, ...)."""
        unknown = set(values) - set(t.enrollments.c.keys())
        if unknown:
            raise StoreError(f"unknown enrollment columns: {sorted(unknown)}")
        with self.tx(conn) as c:
            c.execute(
                t.enrollments.update().where(t.enrollments.c.id == enrollment_id).values(**values)
            )

    def reschedule(
        self, items: Iterable[tuple[int, datetime | None]], *, conn: Connection | None = None
    ) -> None:
        """Set ``next_due_at`` of many enrollments in one statement (executemany)."""
        rows = [{"eid": eid, "due": due} for eid, due in items]
        if not rows:
            return
        stmt = (
            t.enrollments.update()
            .where(t.enrollments.c.id == sa.bindparam("eid"))
            .values(next_due_at=sa.bindparam("due"))
        )
        with self.tx(conn) as c:
            c.execute(stmt, rows)

    def set_enrollments_paused(
        self,
        paused: bool,
        *,
        identity: str | None = None,
        sequence: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Pause or resume the non-terminal enrollments of an identity and/or sequence
        (both None: every enrollment). Their state and due time are kept."""
        q = t.enrollments.update().values(paused=paused)
        if identity is not None:
            q = q.where(t.enrollments.c.identity == identity)
        if sequence is not None:
            q = q.where(t.enrollments.c.sequence == sequence)
        with self.tx(conn) as c:
            return c.execute(q).rowcount

    def count_enrollments(self, *, conn: Connection | None = None) -> dict[tuple[str, str], int]:
        """(sequence, state) -> number of enrollments, for the funnel."""
        q = sa.select(t.enrollments.c.sequence, t.enrollments.c.state, sa.func.count()).group_by(
            t.enrollments.c.sequence, t.enrollments.c.state
        )
        with self.tx(conn) as c:
            return {(r[0], r[1]): int(r[2]) for r in c.execute(q)}

    def live_enrollments_for_profiles(
        self, identity: str, profile_urls: Iterable[str], *, conn: Connection | None = None
    ) -> list[tuple[EnrollmentRow, LeadRow]]:
        """Non-terminal enrollments (``next_due_at`` set, paused or not) of these leads on
        this identity, with their leads."""
        q = (
            sa.select(t.enrollments, t.leads.c.profile_url, t.leads.c.data_json)
            .join(t.leads, t.leads.c.id == t.enrollments.c.lead_id)
            .where(
                t.enrollments.c.identity == identity,
                t.leads.c.profile_url.in_(list(profile_urls)),
                t.enrollments.c.next_due_at.is_not(None),
            )
            .order_by(t.enrollments.c.id)
        )
        with self.tx(conn) as c:
            return [
                (_enrollment(r), LeadRow(r.lead_id, r.profile_url, _loads(r.data_json)))
                for r in c.execute(q)
            ]

    # ---- action log ---------------------------------------------------------------------

    def log_intent(
        self,
        *,
        enrollment_id: int,
        sequence: str,
        revision: str,
        step: str,
        attempt: int | None,
        identity: str,
        action: str,
        at: datetime,
        request: Any = None,
        conn: Connection | None = None,
    ) -> str:
        """Write (and, without ``conn``, commit) the intent row before a provider call.

        Returns the idempotency key ``"<enrollment>:<step>:<attempt>"`` (``attempt=None``: the
        next unused number, computed in the same transaction); a second intent with the same
        key raises :class:`StoreError`.
        """
        try:
            with self.tx(conn) as c:
                if attempt is None:
                    attempt = self.next_attempt(enrollment_id, step, conn=c)
                key = f"{enrollment_id}:{step}:{attempt}"
                c.execute(
                    t.action_log.insert().values(
                        idempotency_key=key,
                        enrollment_id=enrollment_id,
                        sequence=sequence,
                        revision=revision,
                        step=step,
                        attempt=attempt,
                        identity=identity,
                        action=action,
                        status="intent",
                        response_json=None if request is None else dump_json({"request": request}),
                        created_at=at,
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise StoreError(
                f"action {enrollment_id}:{step}:{attempt} was already attempted"
            ) from exc
        return key

    def next_attempt(self, enrollment_id: int, step: str, *, conn: Connection | None = None) -> int:
        """The attempt number for the next call of ``step`` (keys are never reused, even when
        a step is entered again)."""
        q = sa.select(sa.func.max(t.action_log.c.attempt)).where(
            t.action_log.c.enrollment_id == enrollment_id, t.action_log.c.step == step
        )
        with self.tx(conn) as c:
            last = c.execute(q).scalar()
        return 0 if last is None else int(last) + 1

    def log_intents(
        self, rows: Iterable[Mapping[str, Any]], *, conn: Connection | None = None
    ) -> list[str]:
        """Write many intent rows at once (the runner commits them before its calls), each
        with the next unused attempt number of its (enrollment, step). ``rows`` carry the
        keyword arguments of :meth:`log_intent` except ``attempt``, plus an optional ``holder``
        (the run lock holder, kept beside the request). Returns the keys."""
        rows = list(rows)
        if not rows:
            return []
        with self.tx(conn) as c:
            ids = sorted({int(r["enrollment_id"]) for r in rows})
            a = t.action_log
            attempts = self._rows_in(
                c,
                ids,
                "SELECT enrollment_id, step, max(attempt) FROM action_log "
                "WHERE enrollment_id IN ({marks}) GROUP BY enrollment_id, step",
                lambda chunk: sa.select(a.c.enrollment_id, a.c.step, sa.func.max(a.c.attempt))
                .where(a.c.enrollment_id.in_(chunk))
                .group_by(a.c.enrollment_id, a.c.step),
            )
            last = {(int(eid), str(step)): int(attempt) for eid, step, attempt in attempts}
            keys: list[str] = []
            values: list[tuple[Any, ...]] = []
            empty: dict[str | None, str] = {}  # the stored JSON of requests without parameters
            for r in rows:
                pair = (int(r["enrollment_id"]), str(r["step"]))
                attempt = last.get(pair, -1) + 1
                last[pair] = attempt
                key = f"{pair[0]}:{pair[1]}:{attempt}"
                keys.append(key)
                request, holder = r.get("request"), r.get("holder") or None
                no_params = isinstance(request, dict) and not request
                if no_params and holder in empty:
                    stored_json: str | None = empty[holder]
                else:
                    stored = {} if request is None else {"request": request}
                    if holder:  # the run lock holder that makes the call (see recover)
                        stored["holder"] = holder
                    stored_json = dump_json(stored) if stored else None
                    if no_params and stored_json is not None:
                        empty[holder] = stored_json
                values.append(
                    (
                        key,
                        pair[0],
                        r["sequence"],
                        r["revision"],
                        pair[1],
                        attempt,
                        r["identity"],
                        r["action"],
                        "intent",
                        None,
                        stored_json,
                        _db_time(r["at"]) if self.fast else r["at"],
                        None,
                    )
                )
            try:
                if self.fast:
                    sql, names = self._compiled("intents", t.action_log.insert, _INTENT_COLS)
                    _expect(names, _INTENT_COLS)
                    self._driver(c).executemany(sql, values)
                else:
                    c.execute(
                        t.action_log.insert(),
                        [dict(zip(_INTENT_COLS, v, strict=True)) for v in values],
                    )
            except (sa.exc.IntegrityError, sqlite3.IntegrityError) as exc:
                raise StoreError("an action was already attempted under one of these keys") from exc
        return keys

    def write_batch(
        self,
        *,
        outcomes: Iterable[Mapping[str, Any]] = (),
        transitions: Iterable[Mapping[str, Any]] = (),
        reschedules: Iterable[Mapping[str, Any]] = (),
        events: Iterable[Mapping[str, Any]] = (),
        conversations: Iterable[Mapping[str, Any]] = (),
        connections: Iterable[Mapping[str, Any]] = (),
        conn: Connection | None = None,
    ) -> None:
        """Many runner writes in one transaction, one executemany per kind.

        ``outcomes``: key, status, label, response, finished_at. ``transitions``: id, state,
        next_due_at, step_entered_at, attempts, last_error. ``reschedules``: id, next_due_at,
        attempts, last_error. ``events``: as :meth:`record_events`. ``conversations`` and
        ``connections``: rows of those caches (upserted).
        """
        if self.fast:
            with self.tx(conn) as c:
                self._write_batch_fast(
                    c, outcomes, transitions, reschedules, events, conversations, connections
                )
            return
        out = [
            {
                "k": o["key"],
                "b_status": o["status"],
                "b_label": o.get("label"),
                "b_response": response_json(o.get("response")),
                "b_finished": o["finished_at"],
            }
            for o in outcomes
        ]
        trans = [
            {
                "eid": r["id"],
                "b_state": r["state"],
                "b_due": r["next_due_at"],
                "b_entered": r["step_entered_at"],
                "b_attempts": r["attempts"],
                "b_error": r["last_error"],
            }
            for r in transitions
        ]
        resch = [
            {
                "eid": r["id"],
                "b_due": r["next_due_at"],
                "b_attempts": r["attempts"],
                "b_error": r["last_error"],
            }
            for r in reschedules
        ]
        convs, links = list(conversations), list(connections)
        with self.tx(conn) as c:
            if out:
                c.execute(_outcome_update(), out)
            if trans:
                c.execute(_transition_update(), trans)
            if resch:
                c.execute(_reschedule_update(), resch)
            self.record_events(events, conn=c)
            for row in convs:
                self._upsert(
                    c,
                    t.conversation_cache,
                    row,
                    ("identity", "profile_url"),
                    ("last_sender_is_us", "last_activity_at", "first_sender_is_us"),
                )
            for row in links:
                self._upsert(
                    c,
                    t.connection_cache,
                    row,
                    ("identity", "profile_url"),
                    ("status", "checked_at"),
                )

    def _write_batch_fast(
        self,
        c: Connection,
        outcomes: Iterable[Mapping[str, Any]],
        transitions: Iterable[Mapping[str, Any]],
        reschedules: Iterable[Mapping[str, Any]],
        events: Iterable[Mapping[str, Any]],
        conversations: Iterable[Mapping[str, Any]],
        connections: Iterable[Mapping[str, Any]],
    ) -> None:
        """:meth:`write_batch` on SQLite: the same statements, straight to the driver."""
        db = self._driver(c)
        out = [
            (
                o["status"],
                o.get("label"),
                response_json(o.get("response")),
                _db_time(o["finished_at"]),
                o["key"],
            )
            for o in outcomes
        ]
        if out:
            sql, names = self._compiled("outcomes", _outcome_update)
            _expect(names, ("b_status", "b_label", "b_response", "b_finished", "k"))
            db.executemany(sql, out)
        trans = [
            (
                r["state"],
                _db_time(r["next_due_at"]),
                r["attempts"],
                _db_time(r["step_entered_at"]),
                r["last_error"],
                r["id"],
            )
            for r in transitions
        ]
        if trans:
            sql, names = self._compiled("transitions", _transition_update)
            _expect(names, ("b_state", "b_due", "b_attempts", "b_entered", "b_error", "eid"))
            _update_grouped(db, sql, trans)
        resch = [
            (_db_time(r["next_due_at"]), r["attempts"], r["last_error"], r["id"])
            for r in reschedules
        ]
        if resch:
            sql, names = self._compiled("reschedules", _reschedule_update)
            _expect(names, ("b_due", "b_attempts", "b_error", "eid"))
            _update_grouped(db, sql, resch)
        self._events_fast(c, events)
        for name, table, rows, keys, update, times in (
            (
                "conversations",
                t.conversation_cache,
                conversations,
                ("identity", "profile_url"),
                ("last_sender_is_us", "last_activity_at", "first_sender_is_us"),
                ("last_activity_at",),
            ),
            (
                "connections",
                t.connection_cache,
                connections,
                ("identity", "profile_url"),
                ("status", "checked_at"),
                ("checked_at",),
            ),
        ):
            rows = list(rows)
            if not rows:
                continue
            from sqlalchemy.dialects import sqlite

            def upsert(
                table: sa.Table = table,
                keys: tuple[str, ...] = keys,
                update: tuple[str, ...] = update,
            ) -> sa.sql.ClauseElement:
                stmt = sqlite.insert(table).values({k: sa.bindparam(k) for k in keys + update})
                return stmt.on_conflict_do_update(
                    index_elements=list(keys), set_={k: stmt.excluded[k] for k in update}
                )

            sql, names = self._compiled(f"upsert-{name}", upsert)
            db.executemany(
                sql,
                [tuple(_db_time(r[n]) if n in times else r[n] for n in names) for r in rows],
            )

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

    def _events_fast(self, c: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        values = [
            (
                _db_time(r.get("at") or _utcnow()),
                r.get("enrollment_id"),
                r["subject"],
                r["kind"],
                r.get("from_state"),
                r.get("to_state"),
                r.get("trigger"),
                r.get("revision"),
                None if r.get("data") is None else dump_json(r["data"]),
            )
            for r in rows
        ]
        if values:
            sql, names = self._compiled("events", t.events.insert, self._EVENT_COLS)
            if names != self._EVENT_COLS:  # pragma: no cover - an insert keeps the key order
                raise StoreError(f"unexpected event insert parameters {names}")
            self._driver(c).executemany(sql, values)

    def log_outcome(
        self,
        key: str,
        status: str,
        *,
        at: datetime,
        label: str | None = None,
        response: Any = None,
        conn: Connection | None = None,
    ) -> None:
        if status not in ACTION_STATUSES[1:]:
            raise StoreError(f"bad action status {status!r}")
        with self.tx(conn) as c:
            c.execute(
                t.action_log.update()
                .where(t.action_log.c.idempotency_key == key)
                .values(
                    status=status,
                    label=label,
                    response_json=response_json(response),
                    finished_at=at,
                )
            )

    def pending_intents(self, *, conn: Connection | None = None) -> list[ActionRow]:
        """Intents with no recorded outcome (a crash or a lost answer after the intent)."""
        with self.tx(conn) as c:
            return [_action(r) for r in self._select(c, "pending", _pending_select)]

    def actions(
        self,
        *,
        enrollment_id: int | None = None,
        identity: str | None = None,
        conn: Connection | None = None,
    ) -> list[ActionRow]:
        q = sa.select(t.action_log).order_by(t.action_log.c.id)
        if enrollment_id is not None:
            q = q.where(t.action_log.c.enrollment_id == enrollment_id)
        if identity is not None:
            q = q.where(t.action_log.c.identity == identity)
        with self.tx(conn) as c:
            return [_action(r) for r in c.execute(q)]

    def action_times(
        self, identity: str, action: str, since: datetime, *, conn: Connection | None = None
    ) -> list[datetime]:
        """When each ``done`` action of this identity finished after ``since``, oldest first
        (the rolling-24-h limit usage). The scan runs on the index of the actions' start
        (written once, so outcomes do not rewrite it), from a day before ``since``: an
        action finishes within a day of its intent (recover settles older ones)."""
        start = since - timedelta(days=1)
        if self.fast:
            with self.tx(conn) as c:
                rows = self._driver(c).execute(
                    "SELECT finished_at FROM action_log WHERE identity = ? AND action = ? "
                    "AND created_at > ? AND finished_at > ? AND status = 'done' "
                    "ORDER BY finished_at",
                    (identity, action, _db_time(start), _db_time(since)),
                )
                return [_py_time(r[0]) or since for r in rows]
        q = (
            sa.select(t.action_log.c.finished_at)
            .where(
                t.action_log.c.identity == identity,
                t.action_log.c.action == action,
                t.action_log.c.created_at > start,
                t.action_log.c.finished_at > since,
                t.action_log.c.status == "done",
            )
            .order_by(t.action_log.c.finished_at)
        )
        with self.tx(conn) as c:
            return [r[0] for r in c.execute(q)]

    # ---- events -------------------------------------------------------------------------

    def record_event(
        self,
        kind: str,
        subject: str,
        data: Any = None,
        *,
        at: datetime | None = None,
        enrollment_id: int | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        trigger: str | None = None,
        revision: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Append an event; ``subject`` is what ``why`` looks up (a lead URL, a sequence...)."""
        with self.tx(conn) as c:
            res = c.execute(
                t.events.insert().values(
                    at=at or _utcnow(),
                    enrollment_id=enrollment_id,
                    subject=subject,
                    kind=kind,
                    from_state=from_state,
                    to_state=to_state,
                    trigger=trigger,
                    revision=revision,
                    data_json=None if data is None else dump_json(data),
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def record_events(
        self, rows: Iterable[Mapping[str, Any]], *, conn: Connection | None = None
    ) -> None:
        """Append many events at once; each row has the keyword arguments of
        :meth:`record_event` (``kind``, ``subject``, ``data``, ``at``, ...)."""
        if self.fast:
            rows = list(rows)
            if rows:
                with self.tx(conn) as c:
                    self._events_fast(c, rows)
            return
        values = [
            {
                "at": r.get("at") or _utcnow(),
                "enrollment_id": r.get("enrollment_id"),
                "subject": r["subject"],
                "kind": r["kind"],
                "from_state": r.get("from_state"),
                "to_state": r.get("to_state"),
                "trigger": r.get("trigger"),
                "revision": r.get("revision"),
                "data_json": None if r.get("data") is None else dump_json(r["data"]),
            }
            for r in rows
        ]
        if values:
            with self.tx(conn) as c:
                c.execute(t.events.insert(), values)

    def events(
        self,
        subject: str | None = None,
        *,
        enrollment_id: int | None = None,
        kind: str | None = None,
        limit: int | None = None,
        unlinked: bool = False,
        conn: Connection | None = None,
    ) -> list[EventRow]:
        """Events in order. ``unlinked``: only those of no enrollment (the events of an
        enrollment are found by ``enrollment_id``; only unlinked ones are indexed by subject)."""
        q = sa.select(t.events).order_by(t.events.c.id)
        if subject is not None:
            q = q.where(t.events.c.subject == subject)
        if unlinked:
            q = q.where(t.events.c.enrollment_id.is_(None))
        if enrollment_id is not None:
            q = q.where(t.events.c.enrollment_id == enrollment_id)
        if kind is not None:
            q = q.where(t.events.c.kind == kind)
        if limit is not None:
            q = q.limit(limit)
        with self.tx(conn) as c:
            return [_event(r) for r in c.execute(q)]

    # ---- conversation and connection caches ----------------------------------------------

    def put_conversation(
        self,
        identity: str,
        profile_url: str,
        *,
        last_sender_is_us: bool,
        last_activity_at: datetime,
        first_sender_is_us: bool | None = None,
        conn: Connection | None = None,
    ) -> None:
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.conversation_cache,
                {
                    "identity": identity,
                    "profile_url": profile_url,
                    "last_sender_is_us": last_sender_is_us,
                    "last_activity_at": last_activity_at,
                    "first_sender_is_us": first_sender_is_us,
                },
                ("identity", "profile_url"),
                ("last_sender_is_us", "last_activity_at", "first_sender_is_us"),
            )

    def conversations(
        self, identity: str, *, conn: Connection | None = None
    ) -> dict[str, ConversationRow]:
        if self.fast:
            with self.tx(conn) as c:
                rows = self._driver(c).execute(
                    "SELECT profile_url, last_sender_is_us, last_activity_at, first_sender_is_us "
                    "FROM conversation_cache WHERE identity = ?",
                    (identity,),
                )
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
        q = sa.select(t.conversation_cache).where(t.conversation_cache.c.identity == identity)
        with self.tx(conn) as c:
            return {
                r.profile_url: ConversationRow(
                    r.identity,
                    r.profile_url,
                    bool(r.last_sender_is_us),
                    r.last_activity_at,
                    None if r.first_sender_is_us is None else bool(r.first_sender_is_us),
                )
                for r in c.execute(q)
            }

    def put_connection(
        self,
        identity: str,
        profile_url: str,
        status: str,
        *,
        at: datetime,
        conn: Connection | None = None,
    ) -> None:
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.connection_cache,
                {
                    "identity": identity,
                    "profile_url": profile_url,
                    "status": status,
                    "checked_at": at,
                },
                ("identity", "profile_url"),
                ("status", "checked_at"),
            )

    def connection(
        self, identity: str, profile_url: str, *, conn: Connection | None = None
    ) -> tuple[str, datetime] | None:
        """(status, checked_at) from the cache, or None."""
        with self.tx(conn) as c:
            r = c.execute(
                sa.select(t.connection_cache.c.status, t.connection_cache.c.checked_at).where(
                    t.connection_cache.c.identity == identity,
                    t.connection_cache.c.profile_url == profile_url,
                )
            ).first()
        return None if r is None else (r.status, r.checked_at)

    def connection_statuses(
        self, identity: str, *, conn: Connection | None = None
    ) -> dict[str, str]:
        """profile URL -> cached status for one identity."""
        q = sa.select(t.connection_cache.c.profile_url, t.connection_cache.c.status).where(
            t.connection_cache.c.identity == identity
        )
        with self.tx(conn) as c:
            return {r.profile_url: r.status for r in c.execute(q)}

    # ---- identities ---------------------------------------------------------------------

    def get_identity(self, identity: str, *, conn: Connection | None = None) -> IdentityRow | None:
        with self.tx(conn) as c:
            rows = self._select(c, "identity", _identity_select, id=identity)
        return _identity(rows[0]) if rows else None

    def list_identities(self, *, conn: Connection | None = None) -> list[IdentityRow]:
        with self.tx(conn) as c:
            return [_identity(r) for r in self._select(c, "identities", _identities_select)]

    def put_identity(
        self,
        identity: str,
        provider: str,
        *,
        profile_id: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Register an identity (status active) or update its cached profile id."""
        with self.tx(conn) as c:
            r = c.execute(sa.select(t.identities).where(t.identities.c.id == identity)).first()
            if r is None:
                c.execute(
                    t.identities.insert().values(
                        id=identity,
                        provider=provider,
                        profile_id=profile_id,
                        status="active",
                        updated_at=_utcnow(),
                    )
                )
            elif profile_id is not None:
                c.execute(
                    t.identities.update()
                    .where(t.identities.c.id == identity)
                    .values(profile_id=profile_id, updated_at=_utcnow())
                )

    def set_identity_status(
        self,
        identity: str,
        status: str,
        reason: str | None = None,
        *,
        provider: str = "",
        conn: Connection | None = None,
    ) -> None:
        if status not in IDENTITY_STATUSES:
            raise StoreError(f"bad identity status {status!r}")
        with self.tx(conn) as c:
            res = c.execute(
                t.identities.update()
                .where(t.identities.c.id == identity)
                .values(status=status, reason=reason, updated_at=_utcnow())
            )
            if not res.rowcount:
                c.execute(
                    t.identities.insert().values(
                        id=identity,
                        provider=provider,
                        status=status,
                        reason=reason,
                        updated_at=_utcnow(),
                    )
                )

    # ---- do not contact -----------------------------------------------------------------

    def add_do_not_contact(
        self, profile_url: str, reason: str | None = None, *, conn: Connection | None = None
    ) -> None:
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.do_not_contact,
                {"profile_url": profile_url, "reason": reason},
                ("profile_url",),
                ("reason",),
            )

    def remove_do_not_contact(self, profile_url: str, *, conn: Connection | None = None) -> bool:
        with self.tx(conn) as c:
            res = c.execute(
                t.do_not_contact.delete().where(t.do_not_contact.c.profile_url == profile_url)
            )
        return bool(res.rowcount)

    def is_do_not_contact(self, profile_url: str, *, conn: Connection | None = None) -> bool:
        with self.tx(conn) as c:
            return (
                c.execute(
                    sa.select(t.do_not_contact.c.profile_url).where(
                        t.do_not_contact.c.profile_url == profile_url
                    )
                ).first()
                is not None
            )

    def do_not_contact(
        self, among: Iterable[str] | None = None, *, conn: Connection | None = None
    ) -> dict[str, str | None]:
        """The do-not-contact list (URL -> reason), or only its entries ``among`` the given
        URLs (a tick asks for its due leads, whatever the size of the list)."""
        d = t.do_not_contact
        q = sa.select(d.c.profile_url, d.c.reason)
        with self.tx(conn) as c:
            if among is None:
                return {url: reason for url, reason in c.execute(q)}
            rows = self._rows_in(
                c,
                list(among),
                "SELECT profile_url, reason FROM do_not_contact WHERE profile_url IN ({marks})",
                lambda chunk: q.where(d.c.profile_url.in_(chunk)),
            )
            return {url: reason for url, reason in rows}
