"""Opening the store: the engine (SQLite by default, PostgreSQL by URL), the migrations
check, transactions, and the helpers every table group runs its statements through."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from engine.errors import StoreError
from engine.store.sqlite_fast import SqliteFastPath

log = logging.getLogger(__name__)

HEAD = "0005"  # the newest migration in engine/store/migrations/versions (a test checks it)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENV_URL = "SEQRUN_DATABASE_URL"


def normalize_url(url: str) -> str:
    """``postgres://`` (what Heroku and others hand out) as ``postgresql://``, the scheme
    SQLAlchemy knows; any other URL as given."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() == "postgres":
        return f"postgresql://{rest}"
    if sep and scheme.lower().startswith("postgres+"):  # postgres+psycopg://...
        return f"postgresql+{scheme.partition('+')[2]}://{rest}"
    return url


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


class StoreBase:
    """The engine and the ways to run statements on it; the table groups build on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        # SQLite: the runner's hot statements take the driver-level path (sqlite_fast);
        # other databases take the SQLAlchemy path.
        self.fast = SqliteFastPath(engine.dialect) if engine.dialect.name == "sqlite" else None

    @classmethod
    def open(cls, url: str | None = None, state_dir: Path | str = ".seqrun") -> Self:
        """Open (and migrate to head) the store.

        ``url`` wins, then ``$SEQRUN_DATABASE_URL``, then ``sqlite:///<state_dir>/state.db``.
        """
        url = url or os.environ.get(ENV_URL) or None
        if url is None:
            state = Path(state_dir)
            state.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{state / 'state.db'}"
        try:
            engine = sa.create_engine(normalize_url(url))
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
            # deferred: alembic is a heavy import that a store already at head never needs
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

    def _select(
        self, c: Connection, name: str, build: Callable[[], sa.Select[Any]], **params: Any
    ) -> list[Any]:
        """The rows of a static SELECT (parameters as ``sa.bindparam`` by name): on SQLite
        from the fast path, elsewhere through SQLAlchemy. The rows have the columns as
        attributes either way."""
        if self.fast is None:
            return list(c.execute(build(), params))
        return self.fast.select(c, name, build, params)

    def _rows_in(
        self,
        c: Connection,
        name: str,
        values: list[Any],
        build: Callable[[list[Any]], sa.Select[Any]],
    ) -> Iterator[Any]:
        """The rows of one query over many values, 500 at a time (an IN list every database
        takes whole): ``build(chunk)``, or on SQLite the fast path's query of that ``name``
        (the same columns in the same order)."""
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            if self.fast is not None:
                yield from self.fast.rows_in(c, name, chunk)
            else:
                yield from c.execute(build(chunk))

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
    ``$SEQRUN_DATABASE_URL`` says: a simulation never writes into the user's database."""
    saved = os.environ.pop(ENV_URL, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ENV_URL] = saved
