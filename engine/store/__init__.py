"""The runtime store (SQLAlchemy Core; SQLite by default, PostgreSQL via SEQRUN_DATABASE_URL)."""

from __future__ import annotations

from engine.store.codecs import bounded, dump_json
from engine.store.db import HEAD
from engine.store.locks import LockHandle
from engine.store.rows import (
    ActionRow,
    ConversationRow,
    EnrollmentRow,
    EventRow,
    IdentityRow,
    LeadRow,
    RevisionRow,
    SequenceRow,
)
from engine.store.store import Store

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
