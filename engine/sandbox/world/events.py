"""The timeline: scheduled effects (acceptances, replies, first messages, auth changes) applied
lazily, in time order, once their time has come."""

from __future__ import annotations

import heapq

from engine.sandbox.world.conversations import Conversations
from engine.sandbox.world.model import Event
from engine.sandbox.world.times import iso


class Timeline(Conversations):
    """Applies due events at the start of every public method."""

    def advance(self) -> None:
        """Apply every scheduled effect due by now (every public method does this first)."""
        self._advance()

    def _advance(self) -> None:
        """Apply every scheduled effect whose time has come, in time order."""
        now = self.clock.now()
        events = self._events
        while events and events[0].at <= now:
            ev = heapq.heappop(events)
            if self.event_log is not None:
                self.event_log.append((False, ev))
            getattr(self, f"_apply_{ev.kind}")(ev)

    def _apply_accept(self, ev: Event) -> None:
        inv = self.invitations.get(ev.identity, {}).get(ev.profile_url)
        if inv is None or inv.invitation_id != ev.data.get("invitation_id"):
            return  # withdrawn meanwhile
        del self.invitations[ev.identity][ev.profile_url]
        self._connect(ev.identity, ev.profile_url, ev.at)

    def _apply_reply(self, ev: Event) -> None:
        thread = self.threads.get(ev.identity, {}).get(ev.profile_url)
        if thread is None:
            return
        self._pending_replies.discard((ev.identity, ev.profile_url))
        profile = self.profiles[ev.profile_url]
        self._append(thread, from_us=False, sender=profile.profile_id, text=ev.data["text"],
                     at=ev.at)

    def _apply_writes_first(self, ev: Event) -> None:
        profile = self.profiles[ev.profile_url]
        thread = self._thread(ev.identity, ev.profile_url, ev.at)
        self._append(thread, from_us=False, sender=profile.profile_id, text=ev.data["text"],
                     at=ev.at)

    def _apply_auth(self, ev: Event) -> None:
        ident = self.identities.get(ev.identity)
        if ident is None:
            return
        ok = ident.auth_ok(ev.at)
        if ok != self._auth_reported.get(ident.uid, True):
            self._auth_reported[ident.uid] = ok
            self.integration_events.append({
                "event": "AUTH_SUCCESS" if ok else "AUTH_EXPIRED",
                "identity_uid": ident.uid,
                "integration": "linkedin",
                "at": iso(ev.at),
            })
