"""Database failures as :class:`~engine.errors.StoreError`: one line naming the store and
what to do (a full disk, a read-only or damaged file, a database that cannot be reached),
never a driver traceback.

Constraint violations and programming errors are not store faults: the store's callers
handle the first (a lock already taken, an intent already logged) and the second is a bug.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from engine.errors import StoreError, one_line

#: errors that are not the store's condition: they pass through untouched
_NOT_FAULTS: tuple[type[BaseException], ...] = (
    sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.DataError, sa.exc.InterfaceError,
    sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError, sqlite3.InterfaceError,
)
#: the driver errors that are translated (SQLAlchemy wraps the driver's; the SQLite fast
#: path raises the driver's own)
DRIVER_ERRORS = (sa.exc.DBAPIError, sqlite3.Error)

# SQLite primary result codes (https://sqlite.org/rescode.html) -> what the user should do
_SQLITE_ADVICE = {
    3: ("is not accessible", "check its owner and permissions"),  # SQLITE_PERM
    5: ("is locked by another process", "try again once it is done"),  # SQLITE_BUSY
    6: ("is locked by another process", "try again once it is done"),  # SQLITE_LOCKED
    8: ("is read-only for this user",  # SQLITE_READONLY
        "make it and its directory writable, or use another --state-dir"),
    10: ("could not be read or written (I/O error)",  # SQLITE_IOERR
         "check the disk, then run again (what was committed is kept)"),
    11: ("is damaged",  # SQLITE_CORRUPT
         "restore it from a backup, or move it away to start a new store"),
    13: ("cannot grow: the disk is full",  # SQLITE_FULL
         "free some space, then run again (what was committed is kept)"),
    14: ("cannot be opened",  # SQLITE_CANTOPEN
         "check that it and its directory exist and are writable"),
    26: ("is not a seqrun store (not an SQLite database)",  # SQLITE_NOTADB
         "restore it from a backup, or move it away to start a new store"),
}


def is_fault(exc: BaseException) -> bool:
    """Is ``exc`` a failure of the database itself (translated) rather than a constraint
    or a bug (passed through)?"""
    orig = getattr(exc, "orig", None)
    return not isinstance(exc, _NOT_FAULTS) and not isinstance(orig, _NOT_FAULTS)


def fault(exc: BaseException, where: str) -> StoreError:
    """``exc`` (a driver error on the store ``where``) as one line with the remedy."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    detail = one_line(text.splitlines()[0] if text else type(orig).__name__)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _SQLITE_ADVICE:
        what, todo = _SQLITE_ADVICE[code & 0xFF]
        return StoreError(f"the store {where} {what} ({detail}): {todo}")
    if isinstance(orig, sqlite3.Error):
        return StoreError(f"the store {where} failed ({detail}): check the disk and the file")
    return StoreError(f"the store {where} failed ({detail}): check that the database is "
                      "reachable and this user may write to it")
