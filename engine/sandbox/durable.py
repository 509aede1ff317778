"""The sandbox's world kept crash-safe in ``state_dir/sandbox.db`` (SQLite).

The sandbox writes its world through here after every call it answers, before the answer
leaves (see :func:`persisting`), and after every tick, so a change a client was told about
survives a SIGKILL of the process that made it (an embedded ``seqrun run``, or ``seqrun
sandbox serve``). Each write holds only the rows that changed (see
engine/sandbox/world/records.py), in one transaction. The database is in WAL mode with
``synchronous=NORMAL``: a committed transaction is in the WAL file once ``write()`` returned,
which is what survives a killed process; only a crash of the machine itself could lose the
last ones (an fsync per call would cost 0.4 ms per call on the CI box, most of a
simulate's time).

Example::

    db = WorldDB(Path(".seqrun") / DB_FILE)
    clock, doc = db.load()            # None, None for a new directory
    db.write_all(world, clock=None)   # the whole world, then
    db.write(tracker.changes())       # what each call changed
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from engine.sandbox.world import World
from engine.sandbox.world.records import Row, all_rows, assemble

__all__ = ["DB_FILE", "WorldDB", "persisting"]

DB_FILE = "sandbox.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    section TEXT NOT NULL,
    key TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (section, key)
)
"""
# an upsert keeps the row's rowid, so reading by rowid gives the order of first writes
_UPSERT = ("INSERT INTO rows (section, key, body) VALUES (?, ?, ?) "
           "ON CONFLICT (section, key) DO UPDATE SET body = excluded.body")
_DELETE = "DELETE FROM rows WHERE section = ? AND key = ?"


class WorldDB:
    """One sandbox database: the rows of one world and its virtual clock."""

    def __init__(self, path: Path) -> None:
        from engine.store.sqlite_file import make_state_dir  # deferred: the store's imports

        self.path = path
        make_state_dir(path.parent)  # owner-only, as the store's: the world holds messages
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        # a checkpoint fsyncs: every 64 MB of WAL rather than every 4 MB (on a busy disk
        # each fsync can take 100 ms; a simulate writes thousands of calls a minute)
        self._db.execute("PRAGMA wal_autocheckpoint = 16384")
        self._db.execute(_SCHEMA)
        with contextlib.suppress(OSError):
            path.chmod(0o600)  # the world holds message texts

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # another process may be reading
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def load(self) -> tuple[str | None, dict[str, Any] | None]:
        """The saved virtual clock (ISO) and :meth:`World.to_json` document; ``(None, None)``
        when the database holds no world yet."""
        cur = self._db.execute("SELECT section, key, body FROM rows ORDER BY rowid")
        rows = cur.fetchall()
        if not rows:
            return None, None
        return assemble(rows)

    def write_all(self, world: World, clock: str | None) -> None:
        """Replace the saved world with ``world`` (one transaction)."""
        self._transaction(lambda db: (db.execute("DELETE FROM rows"),
                                      db.executemany(_UPSERT, all_rows(world, clock))))

    def write(self, rows: Iterable[Row]) -> None:
        """Write ``rows`` (``body`` None: delete the row) in one transaction."""
        rows = list(rows)
        if rows:
            self._transaction(lambda db: _apply(db, rows))

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            work(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _apply(db: sqlite3.Connection, rows: list[Row]) -> None:
    final = {(s, k): b for s, k, b in rows}  # the last word on a row wins (an event
    # scheduled then applied in one call is a write then a delete)
    db.executemany(_UPSERT, [(s, k, b) for (s, k), b in final.items() if b is not None])
    db.executemany(_DELETE, [(s, k) for (s, k), b in final.items() if b is None])


ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]


def persisting(app: Any, persist: Callable[[MutableMapping[str, Any]], None]) -> ASGIApp:
    """``app`` calling ``persist(scope)`` when a response starts, before its status line is
    sent: the client hears of a change only once it is written."""

    async def wrapped(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                      send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_after_write(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                persist(scope)
            await send(message)

        await app(scope, receive, send_after_write)

    return wrapped
