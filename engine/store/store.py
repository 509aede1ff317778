"""The store: one SQLAlchemy Core engine over SQLite (default) or PostgreSQL.

Every method takes an optional ``conn``: pass the connection of an open
:meth:`Store.transaction` to group several writes atomically (the runner records an action's
outcome and the enrollment's transition in one transaction); without it each call runs in
its own short transaction. Methods return frozen rows, never ORM objects.

:class:`Store` is the one way in; it is composed of one part per table group (each a small
class over :class:`~engine.store.db.StoreBase`), and its hot statements take the
driver-level path of :mod:`engine.store.fast` (SQLite and PostgreSQL alike).

Example::

    store = Store.open(None, Path(".seqrun"))
    lead_id = store.upsert_lead("https://www.linkedin.com/in/jane", {"first_name": "Jane"})
    with store.lock("apply"):
        store.kv_put("schedules", "daily", {"id": "sch_1"})
"""

from __future__ import annotations

from engine.store.actions import Actions
from engine.store.batch import Batch
from engine.store.conversations import Conversations
from engine.store.dnc import DoNotContact
from engine.store.enrollments import EnrollmentCounts, Enrollments
from engine.store.funnel import FunnelCounts
from engine.store.identities import Identities
from engine.store.kv import KV
from engine.store.leads import Leads
from engine.store.leases import Leases
from engine.store.locks import Locks
from engine.store.sequences import Sequences


class Store(
    KV,
    Locks,
    Sequences,
    Leads,
    Enrollments,
    EnrollmentCounts,
    FunnelCounts,
    Actions,
    Batch,
    Conversations,
    Identities,
    DoNotContact,
    Leases,
):
    """The runtime state. Open with :meth:`open`; safe to share within one process."""
