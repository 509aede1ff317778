"""Inbound events: what ``seqrun serve`` accepted from a provider (table ``inbound_events``).

The receiver writes each event once (:func:`record_inbound`: a second delivery with the same
dedupe key changes nothing), before it answers 2xx; the runner reads the ones it has not
consumed (:func:`pending_inbound`) and marks each consumed with what it did
(:func:`consume_inbound`), in the transaction of its effects when it has one.

Example::

    record_inbound(store, source="edges", kind="integration", dedupe_key="edges:int:ab12",
                   subject="ident-alice", payload={"event": "AUTH_EXPIRED"})  # True
    [row.payload for row in pending_inbound(store)]  # [{"event": "AUTH_EXPIRED"}]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from engine.store import Store
from engine.store.codecs import dump_json, load_json, utcnow
from engine.store.tables import inbound_events as inbound


@dataclass(frozen=True)
class InboundRow:
    id: int
    dedupe_key: str
    source: str
    kind: str
    subject: str | None
    payload: Any
    received_at: datetime
    consumed_at: datetime | None
    outcome: str | None


def _row(r: Any) -> InboundRow:
    return InboundRow(
        r.id,
        r.dedupe_key,
        r.source,
        r.kind,
        r.subject,
        load_json(r.payload_json),
        r.received_at,
        r.consumed_at,
        r.outcome,
    )


def record_inbound(
    store: Store,
    *,
    source: str,
    kind: str,
    dedupe_key: str,
    subject: str | None,
    payload: Any,
    at: datetime | None = None,
) -> bool:
    """Write the event unless one with ``dedupe_key`` is already there; True when written.
    Committed when it returns (the receiver answers 2xx only then)."""
    values = {
        "dedupe_key": dedupe_key[:300],
        "source": source,
        "kind": kind,
        "subject": None if subject is None else subject[:500],
        "payload_json": dump_json(payload),
        "received_at": at or utcnow(),
    }
    with store.transaction() as conn:
        if conn.dialect.name in ("sqlite", "postgresql"):
            insert: Any = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
            stmt = insert(inbound).values(**values).on_conflict_do_nothing(
                index_elements=["dedupe_key"]
            )
            return bool(conn.execute(stmt).rowcount)
        seen = conn.execute(
            sa.select(inbound.c.id).where(inbound.c.dedupe_key == values["dedupe_key"])
        ).first()
        if seen is not None:
            return False
        conn.execute(inbound.insert().values(**values))
        return True


def pending_inbound(
    store: Store, *, limit: int = 500, conn: Connection | None = None
) -> list[InboundRow]:
    """The events not consumed yet, oldest first. Read every tick: on the store's fast
    path (a statement compiled once), where a SQLAlchemy select built and run each time
    cost more than the rest of an idle tick's reads."""
    with store.read(conn) as c:
        rows = store.fast.select(c, "pending_inbound", _pending_select,
                                 {"limit": limit, "offset": 0})
    return [_row(r) for r in rows]


def _pending_select() -> sa.Select[Any]:
    return (
        sa.select(inbound)
        .where(inbound.c.consumed_at.is_(None))
        .order_by(inbound.c.id)
        .limit(sa.bindparam("limit"))
        .offset(sa.bindparam("offset"))  # named: SQLite's LIMIT always comes with one
    )


def consume_inbound(
    store: Store, event_id: int, outcome: str, *, at: datetime, conn: Connection | None = None
) -> None:
    """Mark the event consumed, with what the runner did about it."""
    with store.tx(conn) as c:
        c.execute(
            inbound.update()
            .where(inbound.c.id == event_id)
            .values(consumed_at=at, outcome=outcome[:300])
        )


def inbound_events(store: Store) -> list[InboundRow]:
    """Every event received, oldest first (tests, ``seqrun status``)."""
    with store.transaction() as conn:
        return [_row(r) for r in conn.execute(sa.select(inbound).order_by(inbound.c.id))]
