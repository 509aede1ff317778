"""Opening the store: the engine (SQLite by default, PostgreSQL by URL), the migrations
check, transactions, and the helpers every table group runs its statements through."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from itertools import chain
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from engine.errors import StoreError
from engine.store import sqlite_file as files
from engine.store.codecs import dump_json, utcnow
from engine.store.fast import FastPath
from engine.store.faults import DRIVER_ERRORS, fault, is_fault
from engine.store.sqlite_file import DB_FILE, FileId
from engine.store.tables import kv

log = logging.getLogger(__name__)

HEAD = "0009"  # the newest migration in engine/store/migrations/versions (a test checks it)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENV_URL = "SEQRUN_DATABASE_URL"
#: the kv row naming a store: a running process checks it is still on the store it opened
STORE_ID = ("store", "id")
_ID_SELECT = sa.select(kv.c.value_json).where(kv.c.ns == STORE_ID[0], kv.c.key == STORE_ID[1])
_ID_SQL = f"SELECT value_json FROM kv WHERE ns = '{STORE_ID[0]}' AND key = '{STORE_ID[1]}'"


# True while a simulation's stores open (throwaway_store): a store deleted at the end of its
# process needs no commit that waits for the disk
_THROWAWAY: ContextVar[bool] = ContextVar("seqrun_throwaway_store", default=False)

_MIGRATE_KEY = 0x5E9_2D4  # the PostgreSQL advisory lock key of migrations


def known_revisions() -> set[str]:
    """The migration revisions this seqrun knows (the files' numbers)."""
    return {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py")}


def schema_revision(conn: Connection) -> str | None:
    """The store's schema revision (None: no tables yet)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return None if found is None else str(found)


def newer_schema(store: object, revision: str) -> str:
    return (f"the store {store} has schema revision {revision}, newer than this seqrun knows "
            f"(its newest is {HEAD}): a newer seqrun migrated it; upgrade seqrun on this "
            "machine (every worker runs the same version)")


def older_schema(store: object, revision: str) -> str:
    return (f"the store {store} has schema revision {revision}, older than this seqrun's "
            f"{HEAD}: a shared store is migrated on purpose, not by whichever command opens it "
            "first (other workers may be running on it): stop the workers of the old "
            "version, run `seqrun db upgrade`, then start the new ones")


def normalize_url(url: str) -> str:
    """``postgres://`` (what Heroku and others hand out) and a ``postgresql://`` without a
    driver as ``postgresql+psycopg://``: SQLAlchemy knows no ``postgres`` scheme, and its
    default driver (psycopg2) is not the one ``seqrun[postgres]`` installs (psycopg 3).
    ``postgres+DRIVER://`` keeps its driver; any other URL is as given."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if sep and scheme.lower().startswith("postgres+"):  # postgres+psycopg://...
        return f"postgresql+{scheme.partition('+')[2]}://{rest}"
    return url


def has_state(state_dir: Path | str) -> bool:
    """Whether a store exists to read: ``$SEQRUN_DATABASE_URL`` names one, or
    ``<state_dir>/state.db`` exists. Read-only commands ask first, so that they never create
    a state directory where nothing was applied."""
    return bool(os.environ.get(ENV_URL)) or (Path(state_dir) / "state.db").is_file()


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours (see the begin hook).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    record.info["synchronous"] = "NORMAL"  # StoreBase._synced changes it as needed
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///PATH`` URL (None for another database or in memory)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    name = parsed.database or ""
    return Path(name) if name and name != ":memory:" else None


class StoreBase:
    """The engine and the ways to run statements on it; the table groups build on it."""

    def __init__(self, engine: Engine, path: Path | None = None) -> None:
        self.engine = engine
        self.path = path  # the SQLite file, if the store is one
        self._path_text = "" if path is None else os.fspath(path)
        self.url = f"sqlite:///{path}" if path else engine.url.render_as_string(hide_password=True)
        # the hot statements' one path, straight on the driver (store/fast.py)
        self.fast = FastPath(engine.dialect)
        self.store_id: str | None = None  # this store's name (kv), known once open
        self.migrated_from: str | None = None  # the schema revision found at open
        self._file_id: FileId | None = None  # the file open (SQLite), known once open
        # (thread, pool, connection): the connection the first thread's transactions reuse
        self._held: tuple[int, Any, Connection] | None = None
        # whether a durable transaction's commit waits for the disk on SQLite (see _synced)
        self.durable_commits = not _THROWAWAY.get()
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "begin", self._sqlite_begin)

    @classmethod
    def open(cls, url: str | None = None, state_dir: Path | str = ".seqrun", *,
             upgrade: bool = False) -> Self:
        """Open the store, migrated to head when it is new, a SQLite file (one machine), or
        ``upgrade`` (``seqrun db upgrade``); a server's store (PostgreSQL) at an older
        revision is a StoreError saying to run ``seqrun db upgrade`` (see :meth:`migrate`).

        ``url`` wins, then ``$SEQRUN_DATABASE_URL``, then ``sqlite:///<state_dir>/state.db``.
        Every failure is a :class:`StoreError` naming the store and what to do.
        """
        url = url or os.environ.get(ENV_URL) or None
        try:
            path = Path(state_dir) / DB_FILE if url is None else sqlite_path(normalize_url(url))
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise StoreError(f"cannot open the store: {exc}") from exc
        if path is not None:
            return cls._open_file(path)
        assert url is not None
        try:
            engine = sa.create_engine(normalize_url(url))
        except ImportError as exc:  # the URL's driver is not installed
            raise StoreError(f"cannot open the store: {exc} (for PostgreSQL: pip install "
                             "'seqrun[postgres]' and a postgresql+psycopg:// URL)") from exc
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"cannot open the store: {exc} (expected a SQLAlchemy URL such as "
                             "postgresql+psycopg://USER:PASSWORD@HOST/DB or sqlite:///PATH)"
                             ) from exc
        return cls(engine)._started(upgrade=upgrade)

    @classmethod
    def _open_file(cls, path: Path) -> Self:
        """The SQLite store ``path``: made (owner-only) when absent, refused when it is not a
        whole seqrun store."""
        files.make_state_dir(path.parent)
        if not os.path.lexists(path):
            files.create(path, cls._initialize)
        files.check(path)
        return cls(files.file_engine(path), path)._started()

    @classmethod
    def _initialize(cls, path: Path) -> None:
        """Migrate and name the new (empty) store file ``path``."""
        cls(files.file_engine(path), path)._started().close()

    def _started(self, *, upgrade: bool = True) -> Self:
        """Migrated, named (a store id in the kv table) and, for a file, its identity noted;
        the engine is disposed of when that fails."""
        try:
            self.migrated_from = self.migrate(upgrade=upgrade)
            self.store_id = self._own_id()
            if self.path is not None:
                self._file_id = FileId.of(self.path)
        except BaseException:
            self.engine.dispose()
            raise
        return self

    def _own_id(self) -> str:
        """This store's id, given on its first open (stores made before ids get one)."""
        with self.transaction() as conn:
            found = conn.execute(_ID_SELECT).scalar()
            if found is None:  # two first opens at once: the first id written stays
                new = {"ns": STORE_ID[0], "key": STORE_ID[1],
                       "value_json": dump_json(uuid.uuid4().hex), "updated_at": utcnow()}
                self._upsert(conn, kv, new, ("ns", "key"), ())
                found = conn.execute(_ID_SELECT).scalar()
        return str(found)

    def _sqlite_begin(self, conn: Connection) -> None:
        """Every transaction on SQLite: BEGIN IMMEDIATE, on the file and the store this
        process opened (StoreError when it was deleted or replaced meanwhile).

        IMMEDIATE: take the write lock up front so two processes never deadlock upgrading a
        read transaction (busy_timeout then queues them). Sent straight to the driver: this
        runs for every transaction, and the full execution path costs more than the BEGIN.
        """
        db = conn.connection.driver_connection
        assert db is not None
        opened = self._file_id
        if opened is not None and not opened.names(self._path_text):
            raise StoreError(self._gone("was deleted or replaced"))
        db.execute("BEGIN IMMEDIATE")
        if self.store_id is not None:
            row = db.execute(_ID_SQL).fetchone()
            if row is None or row[0] != self.store_id:
                db.execute("ROLLBACK")
                raise StoreError(self._gone("was replaced by another store"))

    def _gone(self, what: str) -> str:
        return (f"the store {self.path or self.url} {what} while this process was using it: "
                "stopped, nothing more is recorded; restore the state directory from a "
                "backup (or start again), then run again")

    def verify(self) -> None:
        """StoreError when the store was deleted or replaced since it was opened (checked at
        every transaction on SQLite; this one check works on any database)."""
        with self.transaction() as conn:
            found = conn.execute(_ID_SELECT).scalar()
        if self.store_id is not None and found != self.store_id:
            raise StoreError(self._gone("was replaced by another store"))

    def migrate(self, *, upgrade: bool = True) -> str | None:
        """``alembic upgrade head``; a no-op (one query) when already at head. Returns the
        revision the store was at (None: a new store). A store migrated by a newer seqrun is
        refused (StoreError): this version does not know its tables.

        A server's store (not SQLite) at an older revision is migrated only when ``upgrade``
        (``seqrun db upgrade``), else refused (StoreError naming both revisions and the
        command): it is shared by workers that may be running the old version, and a fleet
        must not be migrated by whichever of its commands starts first. A new (empty) one is
        created, and a SQLite file (one machine) is migrated on open.

        The check and the upgrade are one transaction holding the store's migration lock
        (PostgreSQL: a transaction-level advisory lock; SQLite: BEGIN IMMEDIATE's write
        lock), so processes opening it at once migrate it once."""
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_KEY})
            current = schema_revision(conn)
            if current == HEAD:
                return current
            if current is not None and current not in known_revisions():
                raise StoreError(newer_schema(self.path or self.url, current))
            if current is not None and not upgrade and conn.dialect.name != "sqlite":
                raise StoreError(older_schema(self.path or self.url, current))
            # deferred: alembic is a heavy import that a store already at head never needs
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            log.info("migrating the store from %s to %s", current, HEAD)
            command.upgrade(cfg, "head")
            return current

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held[2].close()
        self.engine.dispose()

    @contextmanager
    def transaction(self, *, pipelined: bool = False, durable: bool = True,
                    reading: bool = False) -> Iterator[Connection]:
        """One atomic transaction; pass the connection as ``conn=`` to store methods.

        ``pipelined``: for statements sent straight to the driver only (the fast path,
        :meth:`FastPath.write_batch`), never SQLAlchemy's: on PostgreSQL the transaction
        is one round trip (:meth:`~engine.store.fast.Driver.atomic`), e.g. a call's commit;
        ``durable`` False: its commit does not wait for the disk (a scheduling hint, never an
        intent; see there). ``reading``: for statements that only read (see :meth:`read`).

        A failure of the database itself (full disk, read-only or damaged file, server
        gone) is raised as a StoreError saying what to do."""
        try:
            held = self._held_connection()
            with (self.engine.connect() if held is None else nullcontext(held)) as conn, (
                    self._begin(conn, pipelined, durable, reading)):
                yield conn
        except DRIVER_ERRORS as exc:
            if not is_fault(exc):
                raise
            raise fault(exc, str(self.path or self.url)) from exc

    def _begin(self, conn: Connection, pipelined: bool, durable: bool,
               reading: bool) -> AbstractContextManager[Any]:
        """The transaction :meth:`transaction` asks for, on ``conn``. On PostgreSQL a
        pipelined one is one round trip (Driver.atomic) and reads take none of their own
        (Driver.reading); on SQLite each is an ordinary one, with no round trip to spare."""
        if self.fast.d.name == "sqlite":
            return conn.begin() if reading else self._synced(conn, durable)
        if pipelined:
            return self.fast.d.atomic(conn, durable=durable)
        return self.fast.d.reading(conn) if reading else conn.begin()

    def _synced(self, conn: Connection, durable: bool) -> AbstractContextManager[Any]:
        """A SQLite transaction that may write: when ``durable``, its commit waits for the
        disk (``synchronous=FULL``: the WAL flushed at the commit), as every commit does on
        PostgreSQL unless it asks not to. An intent is committed before its call so that a
        crash never makes the call twice; WAL's NORMAL mode (the connection's default)
        survives a killed process but may lose the last commits to a power cut or a crash
        of the machine, and with them an intent whose call was made. NORMAL for a hint
        (``durable`` False) and for a simulation's store (deleted at its end:
        :func:`throwaway_store`). The mode stays on the connection between transactions
        (a PRAGMA, outside one), so a run of durable commits sets it once."""
        mode = "FULL" if durable and self.durable_commits else "NORMAL"
        record = conn.connection.info  # the DBAPI connection's (set by _sqlite_pragmas)
        if record["synchronous"] != mode:
            db = conn.connection.driver_connection
            assert db is not None
            db.execute(f"PRAGMA synchronous={mode}")
            record["synchronous"] = mode
        return conn.begin()

    def _held_connection(self) -> Connection | None:
        """The connection the first thread to make a transaction keeps for its next ones
        (the runner commits once a call: checking a connection out of the pool and back
        cost two thirds of an empty transaction); None in another thread or while it is in
        a transaction already (a nested one takes its own, as before). A new one after the
        engine's pool was disposed of, as a pooled connection would be."""
        held, me = self._held, threading.get_ident()
        if held is None:
            if self.store_id is None:  # still opening (migrations): nothing to keep yet
                return None
            held = self._held = (me, self.engine.pool, self.engine.connect())
        owner, pool, conn = held
        if owner != me or conn.in_transaction():
            return None
        if conn.closed or pool is not self.engine.pool:
            conn.close()
            conn = self.engine.connect()
            self._held = (me, self.engine.pool, conn)
        return conn

    def tx(self, conn: Connection | None = None) -> AbstractContextManager[Connection]:
        """``conn`` itself when given (the caller's transaction), else a new transaction
        (not a generator of its own: this runs for every statement group of the store)."""
        return self.transaction() if conn is None else nullcontext(conn)

    def read(self, conn: Connection | None = None) -> AbstractContextManager[Connection]:
        """As :meth:`tx`, for statements that only read: without ``conn``, on PostgreSQL no
        transaction of their own (:meth:`~engine.store.fast.Driver.reading`)."""
        return self.transaction(reading=True) if conn is None else nullcontext(conn)

    def _select(
        self, c: Connection, name: str, build: Callable[[], sa.Select[Any]], **params: Any
    ) -> list[Any]:
        """The rows of a static SELECT (parameters as ``sa.bindparam`` by name), compiled
        once, from the driver; the rows have the columns as attributes."""
        return self.fast.select(c, name, build, params)

    def _rows_in(
        self,
        c: Connection,
        name: str,
        values: list[Any],
    ) -> Iterator[Any]:
        """The rows of the fast path's query ``name`` over many values, 500 at a time (an IN
        list every database takes whole), straight from the driver's cursors (an import:
        millions of rows)."""
        chunks = (values[i : i + 500] for i in range(0, len(values), 500))
        fast = self.fast
        return chain.from_iterable(fast.rows_in(c, name, chunk) for chunk in chunks)

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


@contextmanager
def throwaway_store() -> Iterator[None]:
    """While it lasts, stores open in their state directory whatever
    ``$SEQRUN_DATABASE_URL`` says: a simulation never writes into the user's database. Their
    commits do not wait for the disk (the store goes with the simulation)."""
    saved = os.environ.pop(ENV_URL, None)
    token = _THROWAWAY.set(True)
    try:
        yield
    finally:
        _THROWAWAY.reset(token)
        if saved is not None:
            os.environ[ENV_URL] = saved
