"""The do-not-contact list: profile URLs no sequence may enroll or contact."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.db import StoreBase


class DoNotContact(StoreBase):
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
        with self.read(conn) as c:
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
        with self.read(conn) as c:
            if among is None:
                return {url: reason for url, reason in c.execute(q)}
            rows = self._rows_in(c, "do_not_contact", list(among))
            return {url: reason for url, reason in rows}
