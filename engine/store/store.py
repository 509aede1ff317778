"""The store: one SQLAlchemy Core engine over SQLite (default) or PostgreSQL.

Every method takes an optional ``conn``: pass the connection of an open
:meth:`Store.transaction` to group several writes atomically (the runner records an action's
outcome and the enrollment's transition in one transaction); without it each call runs in
its own short transaction. Methods return frozen rows, never ORM objects.

:class:`Store` is the one way in; it is composed of one part per table group (each a small
class over :class:`~engine.store.db.StoreBase`), and on SQLite its hot statements take the
driver-level path of :mod:`engine.store.sqlite_fast`.

Example::

    store = Store.open(None, Path(".seqrun"))
    lead_id = store.upsert_lead("https://www.linkedin.com/in/jane", {"first_name": "Jane"})
    with store.lock("apply"):
        store.kv_put("schedules", "daily", {"id": "sch_1"})
"""

from __future__ import annotations

from engine.store.actions import ACTION_STATUSES, Actions
from engine.store.batch import Batch
from engine.store.codecs import RESPONSE_MAX, bounded, dump_json, response_json
from engine.store.conversations import Conversations
from engine.store.db import ENV_URL, HEAD, MIGRATIONS
from engine.store.dnc import DoNotContact
from engine.store.enrollments import EnrollmentCounts, Enrollments
from engine.store.identities import IDENTITY_STATUSES, Identities
from engine.store.kv import KV
from engine.store.leads import Leads
from engine.store.locks import LockHandle, Locks
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
from engine.store.sequences import Sequences

__all__ = [
    "ACTION_STATUSES",
    "ENV_URL",
    "HEAD",
    "IDENTITY_STATUSES",
    "MIGRATIONS",
    "RESPONSE_MAX",
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
    "response_json",
]


class Store(
    KV,
    Locks,
    Sequences,
    Leads,
    Enrollments,
    EnrollmentCounts,
    Actions,
    Batch,
    Conversations,
    Identities,
    DoNotContact,
):
    """The runtime state. Open with :meth:`open`; safe to share within one process."""
