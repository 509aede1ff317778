"""Sequences and their revisions (a revision is a compiled manifest, stored once by hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.codecs import dump_json, utcnow
from engine.store.db import StoreBase
from engine.store.rows import RevisionRow, SequenceRow, revision_row, sequence_row


def _sequences_select() -> sa.Select[Any]:
    return sa.select(t.sequences).order_by(t.sequences.c.name)


class Sequences(StoreBase):
    def put_revision(
        self,
        hash: str,
        sequence: str,
        kind: str,
        manifest: Any,
        *,
        at: datetime | None = None,
        conn: Connection | None = None,
    ) -> bool:
        """Store a revision once; True if it was new."""
        with self.tx(conn) as c:
            if c.execute(sa.select(t.revisions.c.hash).where(t.revisions.c.hash == hash)).first():
                return False
            c.execute(
                t.revisions.insert().values(
                    hash=hash,
                    sequence=sequence,
                    kind=kind,
                    manifest_json=dump_json(manifest),
                    created_at=at or utcnow(),
                )
            )
        return True

    def get_revision(self, hash: str, *, conn: Connection | None = None) -> RevisionRow | None:
        with self.read(conn) as c:
            r = c.execute(sa.select(t.revisions).where(t.revisions.c.hash == hash)).first()
        return None if r is None else revision_row(r)

    def revisions(
        self, sequence: str | None = None, *, conn: Connection | None = None
    ) -> list[RevisionRow]:
        q = sa.select(t.revisions).order_by(t.revisions.c.created_at)
        if sequence is not None:
            q = q.where(t.revisions.c.sequence == sequence)
        with self.read(conn) as c:
            rows = c.execute(q).all()
        return [revision_row(r) for r in rows]

    def put_sequence(
        self,
        name: str,
        kind: str,
        provider: str,
        current_revision: str,
        *,
        conn: Connection | None = None,
    ) -> None:
        """Create or update a sequence (its ``paused`` flag is kept)."""
        with self.tx(conn) as c:
            self._upsert(
                c,
                t.sequences,
                {
                    "name": name,
                    "kind": kind,
                    "provider": provider,
                    "current_revision": current_revision,
                    "paused": False,
                },
                ("name",),
                ("kind", "provider", "current_revision"),
            )

    def get_sequence(self, name: str, *, conn: Connection | None = None) -> SequenceRow | None:
        with self.read(conn) as c:
            r = c.execute(sa.select(t.sequences).where(t.sequences.c.name == name)).first()
        return None if r is None else sequence_row(r)

    def list_sequences(self, *, conn: Connection | None = None) -> list[SequenceRow]:
        """Every sequence by name (a tick's read: on the fast path)."""
        with self.read(conn) as c:
            rows = self._select(c, "sequences", _sequences_select)
        return [sequence_row(r) for r in rows]

    def set_sequence_paused(
        self, name: str | None, paused: bool, *, conn: Connection | None = None
    ) -> int:
        """Pause or resume one sequence (``None``: all of them). Returns how many changed."""
        q = t.sequences.update().values(paused=paused)
        if name is not None:
            q = q.where(t.sequences.c.name == name)
        with self.tx(conn) as c:
            return c.execute(q).rowcount
