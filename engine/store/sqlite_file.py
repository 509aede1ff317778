"""The SQLite file of a store: its directory, its creation, its check at open, its identity.

- The state directory is created owner-only (0700) and the database file is owner-only
  (0600; SQLite gives its ``-wal``/``-shm`` sidecars the mode of the database): it holds
  lead details and message texts.
- A new store is built in a temporary file and linked into place once migrated, so an
  empty ``state.db`` is never one of ours: an empty, truncated or foreign file is refused
  (with the remedy), never silently treated as a new store.
- Once open, the file is only ever opened read-write, never created (``mode=rw``): a store
  deleted under a running process is not recreated empty behind its back; its device and
  inode (:class:`FileId`) tell a running process that its file was deleted or replaced.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from engine.errors import StoreError, one_line

DB_FILE = "state.db"
SIDECARS = ("-wal", "-shm")
_MAGIC = b"SQLite format 3\x00"
_RESTORE = "restore it from a backup, or move it away to start a new store"


class FileId(NamedTuple):
    """Which file a path names: replaced or deleted files change it."""

    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> FileId | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino)

    def names(self, path: str) -> bool:
        """Whether ``path`` still names this file (checked at every transaction: no tuple
        of its own)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return st.st_ino == self.ino and st.st_dev == self.dev


def _reason(exc: OSError) -> str:
    return one_line(exc.strerror or type(exc).__name__)


def make_state_dir(directory: Path) -> None:
    """Create ``directory`` (owner-only) unless it exists; StoreError when it cannot be."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the state directory {directory} ({_reason(exc)}): create it, "
            "or choose a directory this user can write with --state-dir"
        ) from exc


def file_engine(path: Path) -> Engine:
    """An engine on the existing SQLite file ``path``: opened read-write, never created."""
    uri = f"file:{quote(str(path.absolute()))}?mode=rw"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.QueuePool)


def create(path: Path, initialize: Callable[[Path], None]) -> None:
    """Make the store ``path`` unless it exists: ``initialize`` (migrate, name) a temporary
    owner-only file beside it, then link it into place. Another process that made it first
    wins (its store is kept)."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".db")
    except OSError as exc:
        raise StoreError(f"cannot create the store {path} ({_reason(exc)}): make its "
                         "directory writable, or choose another with --state-dir") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        initialize(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # made meanwhile by another process: that one is the store
        except OSError:  # a file system without hard links
            if not os.path.lexists(path):
                os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot create the store {path} ({_reason(exc)}): make its "
                         "directory writable, or choose another with --state-dir") from exc
    finally:
        for suffix in ("", *SIDECARS):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def check(path: Path) -> None:
    """Refuse a ``path`` that is not a whole SQLite database (empty, foreign, truncated),
    and make it (and its sidecars) owner-only."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"the store {path} is not a regular file: {_RESTORE}")
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read the store {path} ({_reason(exc)}): check its owner "
                         "and permissions") from exc
    if not head:
        raise StoreError(f"the store {path} is empty (0 bytes), not a seqrun store: {_RESTORE}")
    if len(head) < 100 or not head.startswith(_MAGIC):
        raise StoreError(f"the store {path} is not a seqrun store (not an SQLite database): "
                         f"{_RESTORE}")
    if _truncated(path, head, st.st_size):
        raise StoreError(f"the store {path} is truncated ({st.st_size} bytes, its header "
                         f"says more): {_RESTORE}")
    _owner_only(path)


def _truncated(path: Path, head: bytes, size: int) -> bool:
    """Is the file shorter than its header's page count (https://sqlite.org/fileformat.html)?
    Only when no write-ahead log holds pages not yet copied into it."""
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96]  # the page count is valid for this change counter
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return False
    return valid and pages > 0 and size < pages * page_size


def _owner_only(path: Path) -> None:
    """chmod 0600 a database (and sidecars) that older versions left readable by others."""
    for p in (path, *(Path(f"{path}{s}") for s in SIDECARS)):
        try:
            if os.stat(p).st_mode & 0o077:
                os.chmod(p, 0o600)
        except OSError:
            pass  # absent, or not ours: the file's owner decides
