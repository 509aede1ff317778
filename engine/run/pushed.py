"""What managed Edges schedules push to ``seqrun serve``, as a source the runner can trust
instead of a live read while it is fresh.

Each consumed result of a managed schedule (``linkedin-extract-connections``,
``linkedin-extract-conversations``, ``linkedin-extract-messages``) is noted per identity and
action: when it was received and when that schedule runs next (its cron after that time). A
note is *fresh* until the next run is overdue by :data:`GRACE`: while the schedule keeps its
interval, everything it can report has been reported, at most one interval late. A schedule
paused or deleted, a receiver down, a callback lost: the next run is overdue and the runner
reads the provider live again, as without a schedule.

The notes live in kv (namespace :data:`PUSHED`, written with the event's consumption) and in
the runner's memory (:class:`Pushed`, read once per process, kept by its own inbound drain).

Example::

    pushed.note(store, "ident-a", CONNECTIONS, at, config, conn)  # with the event's effects
    pushed.fresh("ident-a", CONNECTIONS, now)  # the time of the fresh result, or None
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy.engine import Connection

from engine.store import Store

PUSHED = "schedule-results"  # kv namespace: "identity|action" -> {"at", "next"}
#: how late a schedule's next run (and its callback) may be before its last result is stale
GRACE = timedelta(minutes=15)
#: a pushed inbox result this young is a sync "immediately before" a message (seed 001): about
#: what a live sync is worth by the end of its tick's wave of sends
IMMEDIATE = timedelta(minutes=2)
#: the longest a due message waits for the inbox schedule's next result instead of syncing
HOLD = timedelta(hours=1)
CONNECTIONS = "linkedin-extract-connections"
CONVERSATIONS = "linkedin-extract-conversations"
MESSAGES = "linkedin-extract-messages"
INBOX = (CONVERSATIONS, MESSAGES)


def next_run(config: Mapping[str, Any], after: datetime) -> datetime | None:
    """The schedule's next run after ``after`` (its cron in its timezone); None when it has
    no cron (a one-off: its result is never fresh for long) or the cron cannot be read."""
    cron = config.get("cron")
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        return None
    try:
        zone = ZoneInfo(str(config.get("timezone") or "UTC"))
    except (ValueError, OSError):
        return None
    found: datetime = croniter(cron, after.astimezone(zone)).get_next(datetime)
    return found.astimezone(after.tzinfo)


class Pushed:
    """The runner's view of the notes (one per runner, shared by its parts)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._notes: dict[str, tuple[datetime, datetime | None]] | None = None

    def _all(self, conn: Connection | None = None) -> dict[str, tuple[datetime, datetime | None]]:
        if self._notes is None:
            self._notes = {}
            for key, value in self.store.kv_items(PUSHED, conn=conn).items():
                self._keep(key, value)
        return self._notes

    def _keep(self, key: str, value: Any) -> None:
        try:
            at = datetime.fromisoformat(value["at"])
            nxt = datetime.fromisoformat(value["next"]) if value.get("next") else None
        except (TypeError, KeyError, ValueError):
            return
        assert self._notes is not None
        self._notes[key] = (at, nxt)

    def note(
        self,
        identity: str,
        action: str,
        at: datetime,
        config: Mapping[str, Any],
        conn: Connection,
    ) -> None:
        """A result of ``action`` for ``identity`` received at ``at`` (in ``conn``'s
        transaction: the note holds only if the event's effects do)."""
        nxt = next_run(config, at)
        value = {"at": at.isoformat(), "next": None if nxt is None else nxt.isoformat()}
        self.store.kv_put(PUSHED, f"{identity}|{action}", value, conn=conn)
        self._all(conn)
        self._keep(f"{identity}|{action}", value)

    def forget(self) -> None:
        """Read the notes again (a transaction that wrote one was rolled back)."""
        self._notes = None

    def fresh(self, identity: str, action: str, now: datetime) -> datetime | None:
        """When the last result of ``action`` for ``identity`` was received, if its schedule's
        next run is not overdue at ``now``; else None."""
        found = self._all().get(f"{identity}|{action}")
        if found is None:
            return None
        at, nxt = found
        if nxt is None or now > nxt + GRACE or at > now:
            return None
        return at

    def inbox(self, identity: str, now: datetime) -> datetime | None:
        """The newest fresh inbox result (conversations or messages) of ``identity``."""
        times = [t for a in INBOX if (t := self.fresh(identity, a, now)) is not None]
        return max(times, default=None)

    def inbox_next(self, identity: str, now: datetime) -> datetime | None:
        """When the soonest of ``identity``'s fresh inbox schedules runs next."""
        notes = self._all()
        times = [nxt for a in INBOX if self.fresh(identity, a, now) is not None
                 and (nxt := notes[f"{identity}|{a}"][1]) is not None]
        return min(times, default=None)
