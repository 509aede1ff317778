"""What an identity reads back: itself, its connections, invitations and conversations."""

from __future__ import annotations

from datetime import datetime

from engine.sandbox.world.actions import Actions
from engine.sandbox.world.model import (
    IdentityState,
    Invitation,
    Message,
    Profile,
    Thread,
    WorldError,
)
from engine.sandbox.world.state import ConnectionOrder


class Reads(Actions):
    """An identity's own view of LinkedIn (checked like an action, without a limit)."""

    def me(self, identity: str) -> IdentityState:
        ident, _ = self._check(identity, None, None)
        return ident

    def connections_of(self, identity: str) -> list[tuple[Profile, datetime]]:
        """Connections, most recent first (in one instant, the last written first: a reader
        that stops at the first connection it knows must not miss one after it)."""
        ident, _ = self._check(identity, None, None)
        order = self._current_order(ident.uid)
        if order is None:  # first read, or the network was loaded: sorted once
            seqs = self.connection_seqs.get(ident.uid, {})
            order = ConnectionOrder([((at, seqs.get(u, 0)), (self.profiles[u], at))
                                     for u, at in self.network[ident.uid].items()])
            self._orders[ident.uid] = (self._network_key(ident.uid), order)
        return order.newest_first()

    def connections(self, identity: str) -> list[tuple[Profile, datetime]]:
        """Alias of :meth:`connections_of`: ``[(profile, connected_at)]``, newest first."""
        return self.connections_of(identity)

    def pending_invitations(self, identity: str) -> list[Invitation]:
        """Sent invitations still pending, most recent first."""
        ident, _ = self._check(identity, None, None)
        invs = list(self.invitations[ident.uid].values())
        invs.sort(key=lambda i: (i.sent_at, i.profile_url), reverse=True)
        return invs

    def conversations(self, identity: str) -> list[Thread]:
        """Threads, most recent activity first."""
        ident, _ = self._check(identity, None, None)
        version = self._thread_versions.get(ident.uid, 0)
        cached = self._sorted_threads.get(ident.uid)
        if cached is not None and cached[0] == version:
            return list(cached[1])
        threads = [t for t in self.threads[ident.uid].values() if t.messages]
        # in one instant, the last written first (as connections_of)
        threads.sort(key=lambda t: (t.last_activity_at, t.last_message.seq), reverse=True)
        self._sorted_threads[ident.uid] = (version, threads)
        return list(threads)

    def thread(self, identity: str, thread_id: str) -> Thread:
        """One thread by id (or by thread URL); ``WorldError("INVALID_INPUT")`` when unknown."""
        ident, _ = self._check(identity, None, None)
        tid = thread_id.rstrip("/").rsplit("/", 1)[-1]
        where = self._thread_index.get(tid)
        if where is None or where[0] != ident.uid:
            raise WorldError("INVALID_INPUT", f"unknown conversation {thread_id!r}")
        return self.threads[where[0]][where[1]]

    def thread_with(self, identity: str, url: str) -> Thread | None:
        """The conversation with a profile, if any."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        return self.threads[ident.uid].get(profile.url)

    def messages(self, identity: str, thread_id: str,
                 since: datetime | None = None) -> list[Message]:
        """Messages of a thread, oldest first, optionally only those after ``since``."""
        thread = self.thread(identity, thread_id)
        return [m for m in thread.messages if since is None or m.created_at > since]

    def write_mark(self) -> int:
        """The number of the last message or connection written, every due event applied
        first: an incremental list taken now holds the writes up to it, the next one those
        after it (many writes share one virtual instant: times cannot say which came first)."""
        self._advance()
        return self._writes

    def connection_seq(self, identity: str, url: str) -> int:
        """The write number of the connection of ``identity`` with ``url`` (0: none)."""
        return self.connection_seqs.get(identity, {}).get(url, 0)

    def writes_before(self, at: datetime) -> int:
        """What an incremental watermark saved as a time (before the write numbers) reads
        as: the number just before the first message or connection dated at or after ``at``
        (the current mark when there is none). Nothing of that instant or later is missed; a
        write dated in the past but numbered later (a pre-existing connection materialized
        with a new identity) may come once more."""
        connections = (self.connection_seq(uid, url) for uid, conns in self.network.items()
                       for url, t in conns.items() if t >= at)
        messages = (m.seq for threads in self.threads.values() for t in threads.values()
                    for m in t.messages if m.created_at >= at)
        first = min(min(connections, default=self._writes + 1),
                    min(messages, default=self._writes + 1))
        return first - 1

    def sender_url(self, message: Message) -> str:
        return self._by_profile_id.get(message.sender_profile_id, "")
