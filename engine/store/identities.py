"""Identities: the LinkedIn accounts sequences send from, with their status (active,
paused by the user, or stopped by an expired authentication)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import StoreError
from engine.store import tables as t
from engine.store.codecs import utcnow
from engine.store.db import StoreBase
from engine.store.rows import IdentityRow, identity_row

IDENTITY_STATUSES = ("active", "paused", "auth_expired")


def _identity_select() -> sa.Select[Any]:
    return sa.select(t.identities).where(t.identities.c.id == sa.bindparam("id"))


def _identities_select() -> sa.Select[Any]:
    return sa.select(t.identities).order_by(t.identities.c.id)


class Identities(StoreBase):
    def get_identity(self, identity: str, *, conn: Connection | None = None) -> IdentityRow | None:
        with self.read(conn) as c:
            rows = self._select(c, "identity", _identity_select, id=identity)
        return identity_row(rows[0]) if rows else None

    def list_identities(self, *, conn: Connection | None = None) -> list[IdentityRow]:
        with self.read(conn) as c:
            return [identity_row(r) for r in self._select(c, "identities", _identities_select)]

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
                        updated_at=utcnow(),
                    )
                )
            elif profile_id is not None:
                c.execute(
                    t.identities.update()
                    .where(t.identities.c.id == identity)
                    .values(profile_id=profile_id, updated_at=utcnow())
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
                .values(status=status, reason=reason, updated_at=utcnow())
            )
            if not res.rowcount:
                c.execute(
                    t.identities.insert().values(
                        id=identity,
                        provider=provider,
                        status=status,
                        reason=reason,
                        updated_at=utcnow(),
                    )
                )
