"""Events: the append-only history ``seqrun why`` reads (transitions, enrollments,
pauses...), by subject (a lead URL, a sequence...) or by enrollment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.codecs import dump_json, utcnow
from engine.store.db import StoreBase
from engine.store.rows import Columns, EventRow, event_row


class Events(StoreBase):
    def record_event(
        self,
        kind: str,
        subject: str,
        data: Any = None,
        *,
        at: datetime | None = None,
        enrollment_id: int | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        trigger: str | None = None,
        revision: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Append an event; ``subject`` is what ``why`` looks up (a lead URL, a sequence...)."""
        with self.tx(conn) as c:
            res = c.execute(
                t.events.insert().values(
                    at=at or utcnow(),
                    enrollment_id=enrollment_id,
                    subject=subject,
                    kind=kind,
                    from_state=from_state,
                    to_state=to_state,
                    trigger=trigger,
                    revision=revision,
                    data_json=None if data is None else dump_json(data),
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def record_events(
        self, rows: Iterable[Mapping[str, Any]] | Columns, *, conn: Connection | None = None
    ) -> None:
        """Append many events at once; each row has the keyword arguments of
        :meth:`record_event` (``kind``, ``subject``, ``data``, ``at``, ...), or, in bulk,
        the table's columns (``data_json`` its text; an import's one event a lead)."""
        if isinstance(rows, Columns):
            if len(rows):
                with self.tx(conn) as c:
                    self.fast.insert_columns(c, t.events, rows)
            return
        rows = list(rows)
        if rows:
            with self.tx(conn) as c:
                self.fast.insert_events(c, rows)

    def events(
        self,
        subject: str | None = None,
        *,
        enrollment_id: int | None = None,
        kind: str | None = None,
        limit: int | None = None,
        unlinked: bool = False,
        conn: Connection | None = None,
    ) -> list[EventRow]:
        """Events in order. ``unlinked``: only those of no enrollment (the events of an
        enrollment are found by ``enrollment_id``; only unlinked ones are indexed by subject)."""
        q = sa.select(t.events).order_by(t.events.c.id)
        if subject is not None:
            q = q.where(t.events.c.subject == subject)
        if unlinked:
            q = q.where(t.events.c.enrollment_id.is_(None))
        if enrollment_id is not None:
            q = q.where(t.events.c.enrollment_id == enrollment_id)
        if kind is not None:
            q = q.where(t.events.c.kind == kind)
        if limit is not None:
            q = q.limit(limit)
        with self.read(conn) as c:
            return [event_row(r) for r in c.execute(q)]

    def events_after(
        self, after: int, kinds: Iterable[str], *, limit: int = 500,
        conn: Connection | None = None,
    ) -> list[EventRow]:
        """The events of ``kinds`` with an id above ``after``, in order (notices out read
        from a cursor: the primary key keeps the scan to the new rows)."""
        q = (sa.select(t.events).where(t.events.c.id > after, t.events.c.kind.in_(list(kinds)))
             .order_by(t.events.c.id).limit(limit))
        with self.read(conn) as c:
            return [event_row(r) for r in c.execute(q)]

    def last_event_id(
        self, kind: str | None = None, subject: str | None = None, *,
        conn: Connection | None = None,
    ) -> int:
        """The id of the newest event (of ``kind`` about ``subject`` if given); 0 for none."""
        q = sa.select(sa.func.max(t.events.c.id))
        if kind is not None:
            q = q.where(t.events.c.kind == kind)
        if subject is not None:
            q = q.where(t.events.c.subject == subject)
        with self.read(conn) as c:
            return int(c.execute(q).scalar() or 0)
