"""The runtime store (SQLAlchemy Core; SQLite by default, PostgreSQL via SEQRUN_DATABASE_URL)."""

from __future__ import annotations

from engine.store.store import (
    HEAD,
    ActionRow,
    ConversationRow,
    EnrollmentRow,
    EventRow,
    IdentityRow,
    LeadRow,
    LockHandle,
    RevisionRow,
    SequenceRow,
    Store,
    bounded,
    dump_json,
)

__all__ = [
    "HEAD",
    "ActionRow",
    "ConversationRow",
    "EnrollmentRow",
    "EventRow",
    "IdentityRow",
    "LeadRow",
    "LockHandle",
    "RevisionRow",
    "SequenceRow",
    "Store",
    "bounded",
    "dump_json",
]
