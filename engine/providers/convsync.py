"""Incremental conversation sync for list APIs that return conversations newest first.

The runner syncs an identity's conversations once per tick. A full sweep reads every page of a
list that only grows; but the list is sorted by last activity, newest first, so everything that
changed since the previous sync is at its top. :class:`ConversationSync` keeps, per identity,
the summaries already seen and the high-water mark (the newest activity seen); an incremental
sync stops paging at the first conversation older than that mark (minus ``overlap``, for
activity the provider indexes late) and merges what it read into the kept summaries, so the
adapter still returns every conversation.

Safety nets: the first sync of an identity, every ``full_every``-th one and ``full=True`` sweep
every page and replace the kept summaries; a sync whose items are not provably newest first
(a missing or unparsable time, or a time going up) never stops early; the mark only moves
after a sync that ran to its end (an error mid-sync keeps the previous mark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.providers.base import ConversationSummary

FULL_EVERY = 50  # incremental syncs between two full sweeps
OVERLAP = timedelta(minutes=5)


@dataclass
class _Identity:
    summaries: dict[str, ConversationSummary] = field(default_factory=dict)
    mark: datetime | None = None
    incremental: int = 0  # incremental syncs since the last full sweep


class Sweep:
    """One sync of one identity: feed it each item of each page, ask whether to stop."""

    def __init__(self, state: _Identity, full: bool, overlap: timedelta) -> None:
        self._state = state
        self.full = full
        self._stop_before = None if full or state.mark is None else state.mark - overlap
        self._seen: dict[str, ConversationSummary] = {}
        self._newest: datetime | None = None
        self._previous: datetime | None = None
        self._ordered = True
        self._reached_known = False

    def add(self, summary: ConversationSummary | None, when: datetime | None) -> None:
        """One item of the list; ``when`` is its raw last-activity time (None if absent)."""
        if when is None or (self._previous is not None and when > self._previous):
            self._ordered = False
        if when is not None:
            self._previous = when
            if self._newest is None or when > self._newest:
                self._newest = when
            if self._stop_before is not None and when < self._stop_before:
                self._reached_known = True
        if summary is not None:
            self._seen.setdefault(summary.profile_url, summary)  # newest first: keep the first

    @property
    def done(self) -> bool:
        """True when the pages still unread can only hold conversations already known."""
        return self._reached_known and self._ordered

    def finish(self) -> list[ConversationSummary]:
        """Commit the sync (new mark, merged summaries); every known conversation."""
        state = self._state
        if self.full:
            state.summaries = self._seen
            state.incremental = 0
        else:
            state.summaries.update(self._seen)
            state.incremental += 1
        if self._newest is not None and (state.mark is None or self._newest > state.mark):
            state.mark = self._newest
        return list(state.summaries.values())


class ConversationSync:
    """Per-identity incremental sync state, kept by an adapter instance."""

    def __init__(self, full_every: int = FULL_EVERY, overlap: timedelta = OVERLAP) -> None:
        self.full_every = full_every
        self.overlap = overlap
        self._identities: dict[str, _Identity] = {}

    def begin(self, identity: str, *, full: bool = False) -> Sweep:
        state = self._identities.get(identity)
        if state is None:
            state = self._identities[identity] = _Identity()
            full = True
        elif state.mark is None or state.incremental >= self.full_every:
            full = True
        return Sweep(state, full, self.overlap)

    def forget(self, identity: str) -> None:
        """Drop what is known of ``identity`` (the next sync is a full sweep)."""
        self._identities.pop(identity, None)
