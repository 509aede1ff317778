"""Workers and identity leases: several ``seqrun run`` processes share one store's
identities, each identity held by one worker at a time.

A worker has a heartbeat row (``workers``) and a lease row per identity it holds
(``identity_leases``: the worker and until when). Claiming is a compare-and-set on the lease's
expiry (``UPDATE ... WHERE expires_at < now``), so two workers never both win one identity on
any database; on PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED`` first, so that
workers claiming at once pass over each other's rows instead of queueing on them (SQLite's
``BEGIN IMMEDIATE`` serializes the whole claim anyway). A heartbeat is one short transaction
whatever the number of identities: the worker's row and its leases renewed together.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.codecs import utcnow
from engine.store.db import StoreBase
from engine.store.locks import dead_local_holder

#: the expiry of a free lease row (released, or never claimed)
FREE = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorkerRow:
    """A live worker and the identities it holds now."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    identities: tuple[str, ...]


@dataclass(frozen=True)
class Claimed:
    """An identity a worker just claimed; ``previous``: the worker that held it before
    (its lease expired or it was released), None for an identity never held."""

    identity: str
    previous: str | None


class Leases(StoreBase):
    def heartbeat(
        self, worker: str, ttl: timedelta, *, host: str, pid: int, started_at: datetime
    ) -> tuple[set[str], str | None]:
        """Renew ``worker``'s row and its leases that have not expired; the identities it
        still holds, and the store's schema revision (a newer seqrun may have migrated it).
        A lease that expired is not renewed (another worker may hold it now)."""
        now = utcnow()
        until = now + ttl
        with self.transaction() as c:
            self._upsert(c, t.workers, {"id": worker, "host": host[:200], "pid": pid,
                                        "started_at": started_at, "heartbeat_at": now,
                                        "expires_at": until},
                         ("id",), ("heartbeat_at", "expires_at"))
            le = t.identity_leases
            c.execute(le.update().where(le.c.worker == worker, le.c.expires_at >= now)
                      .values(expires_at=until))
            rows = c.execute(sa.select(le.c.identity).where(le.c.worker == worker,
                                                            le.c.expires_at >= now))
            held = {str(r.identity) for r in rows}
            revision = c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return held, None if revision is None else str(revision)

    def lease_candidates(self) -> list[str]:
        """Every identity a worker may have to act for: registered, or named by an
        enrollment (a distinct scan of the enrollments' identity index)."""
        e = t.enrollments
        q = sa.union(sa.select(t.identities.c.id.label("identity")),
                     sa.select(e.c.identity).distinct())
        with self.transaction() as c:
            return sorted(str(r.identity) for r in c.execute(q))

    def claim_identities(
        self, worker: str, candidates: Collection[str], want: int, ttl: timedelta
    ) -> list[Claimed]:
        """Claim up to ``want`` of ``candidates`` that no live lease holds, for ``ttl``."""
        if want <= 0 or not candidates:
            return []
        now = utcnow()
        le = t.identity_leases
        claimed: list[Claimed] = []
        with self.transaction() as c:
            known = {str(r.identity) for r in c.execute(
                sa.select(le.c.identity).where(le.c.identity.in_(list(candidates))))}
            for identity in sorted(set(candidates) - known):
                self._upsert(c, le, {"identity": identity, "worker": None, "acquired_at": None,
                                     "expires_at": FREE}, ("identity",), ())
            free = c.execute(
                sa.select(le.c.identity, le.c.worker)
                .where(le.c.identity.in_(list(candidates)), le.c.expires_at < now)
                .order_by(le.c.identity)
                .limit(want)
                .with_for_update(skip_locked=True)  # PostgreSQL; nothing on SQLite
            ).all()
            for row in free:
                res = c.execute(  # the compare-and-set: still free, or someone won it
                    le.update()
                    .where(le.c.identity == row.identity, le.c.expires_at < now)
                    .values(worker=worker, acquired_at=now, expires_at=now + ttl)
                )
                if res.rowcount == 1:
                    claimed.append(Claimed(str(row.identity), row.worker))
        return claimed

    def free_leases(self) -> int:
        """How many lease rows no live worker holds (released, or expired: a dead worker's)."""
        le = t.identity_leases
        with self.transaction() as c:
            found = c.execute(sa.select(sa.func.count()).select_from(le)
                              .where(le.c.expires_at < utcnow())).scalar()
        return int(found or 0)

    def release_identities(self, worker: str, identities: Collection[str]) -> None:
        """Free ``worker``'s leases of ``identities`` (another worker may claim them at once)."""
        if not identities:
            return
        le = t.identity_leases
        with self.transaction() as c:
            c.execute(le.update()
                      .where(le.c.worker == worker, le.c.identity.in_(list(identities)))
                      .values(worker=None, expires_at=FREE))

    def retire_worker(self, worker: str, *, conn: Connection | None = None,
                      died: bool = False) -> None:
        """Remove ``worker``'s row and free every lease it holds (it stopped). ``died``: the
        leases keep its name, so that the worker claiming one reports a take-over."""
        le = t.identity_leases
        with self.tx(conn) as c:
            c.execute(le.update().where(le.c.worker == worker)
                      .values(expires_at=FREE, **({} if died else {"worker": None})))
            c.execute(t.workers.delete().where(t.workers.c.id == worker))

    def reap_dead_workers(self) -> list[str]:
        """Retire the workers that were processes of this host that no longer run (a
        SIGKILL): their identities need not wait out the lease. The rows of workers gone
        for a day (another host's) are deleted on the way."""
        w = t.workers
        with self.transaction() as c:
            c.execute(w.delete().where(w.c.expires_at < utcnow() - timedelta(days=1)))
            ids = [str(r.id) for r in c.execute(sa.select(w.c.id))]
        dead = [i for i in ids if dead_local_holder(i)]
        if dead:
            with self.transaction() as c:
                for gone in dead:
                    self.retire_worker(gone, conn=c, died=True)
        return dead

    def live_workers(self, *, conn: Connection | None = None) -> list[WorkerRow]:
        """The workers whose heartbeat has not expired, with the identities each holds."""
        now = utcnow()
        le, w = t.identity_leases, t.workers
        with self.read(conn) as c:
            rows = c.execute(sa.select(w).where(w.c.expires_at >= now).order_by(w.c.id)).all()
            held: dict[str, list[str]] = {}
            for r in c.execute(sa.select(le.c.identity, le.c.worker)
                               .where(le.c.expires_at >= now).order_by(le.c.identity)):
                held.setdefault(str(r.worker), []).append(str(r.identity))
        return [WorkerRow(str(r.id), str(r.host), int(r.pid), r.started_at, r.heartbeat_at,
                          r.expires_at, tuple(held.get(str(r.id), ()))) for r in rows]
