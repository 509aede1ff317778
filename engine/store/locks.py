"""Named locks with a time to live (``apply``, ``run``...): a holder that died leaves a
lock that expires, and at once when the holder was a process of this host that is gone
(a SIGKILL, a full disk: the next start need not wait out the TTL)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import LockError
from engine.store import tables as t
from engine.store.codecs import utcnow
from engine.store.db import StoreBase


@dataclass
class LockHandle:
    """A held lock; ``refresh()`` extends it (a daemon calls it every poll)."""

    store: StoreBase
    name: str
    holder: str
    ttl: timedelta

    def refresh(self) -> None:
        now = utcnow()
        with self.store.transaction() as conn:
            res = conn.execute(
                t.locks.update()
                .where(t.locks.c.name == self.name, t.locks.c.holder == self.holder)
                .values(expires_at=now + self.ttl)
            )
            if res.rowcount != 1:
                raise LockError(f"lock {self.name!r} was lost (expired and taken over)")


class Locks(StoreBase):
    @contextmanager
    def lock(
        self, name: str, *, ttl: timedelta = timedelta(minutes=10), holder: str | None = None
    ) -> Iterator[LockHandle]:
        """Hold the named lock for the block; :class:`LockError` if someone else holds it.

        A holder that died leaves a lock that expires after ``ttl``.
        """
        host, pid, token = socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8]
        holder = holder or f"{host}:{pid}:{token}:{_pid_ns()}"
        if not self._take(name, holder, ttl):
            with self.transaction() as conn:
                row = conn.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
            if row is not None and dead_local_holder(str(row.holder)):
                with self.transaction() as conn:  # its holder is gone: free it, take it once
                    conn.execute(t.locks.delete().where(
                        t.locks.c.name == name, t.locks.c.holder == row.holder))
                if self._take(name, holder, ttl):
                    row = None
            if row is not None:
                who = f" by {row.holder} since {row.acquired_at:%Y-%m-%d %H:%M:%S}Z"
                raise LockError(f"the {name!r} lock is held{who}")
        try:
            yield LockHandle(self, name, holder, ttl)
        finally:
            with self.transaction() as conn:
                conn.execute(
                    t.locks.delete().where(t.locks.c.name == name, t.locks.c.holder == holder)
                )

    def _take(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Insert the lock row (an expired one is removed first); False when it is held."""
        now = utcnow()
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
            return False
        return True

    def live_lock_holder(self, name: str, *, conn: Connection | None = None) -> str | None:
        """Who holds the named lock now (None: free, expired or a dead process of this
        host)."""
        q = sa.select(t.locks.c.holder).where(
            t.locks.c.name == name, t.locks.c.expires_at >= utcnow()
        )
        with self.tx(conn) as c:
            holder = c.execute(q).scalar()
        if holder is None or dead_local_holder(str(holder)):
            return None
        return str(holder)


def _pid_ns() -> str:
    """This process's PID namespace: containers may share a host name, not their PIDs."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def dead_local_holder(holder: str) -> bool:
    """Is ``holder`` (``HOST:PID:TOKEN:PIDNS``) a process of this host and PID namespace
    that no longer runs?"""
    parts = holder.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or parts[3] != _pid_ns():
        return False  # another host or container (or a named holder): only its TTL frees it
    if not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False
