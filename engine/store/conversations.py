"""The conversation and connection caches of each identity (what the last sync saw)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import statements as st
from engine.store import tables as t
from engine.store.db import StoreBase
from engine.store.rows import ConversationRow


class Conversations(StoreBase):
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
                *st.CONVERSATION_UPSERT,
            )

    def conversations(
        self, identity: str, *, conn: Connection | None = None
    ) -> dict[str, ConversationRow]:
        with self.read(conn) as c:
            return self.fast.conversations(c, identity)

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
                *st.CONNECTION_UPSERT,
            )

    def connection(
        self, identity: str, profile_url: str, *, conn: Connection | None = None
    ) -> tuple[str, datetime] | None:
        """(status, checked_at) from the cache, or None."""
        with self.read(conn) as c:
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
        with self.read(conn) as c:
            return {r.profile_url: r.status for r in c.execute(q)}
