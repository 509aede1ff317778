"""The actions an identity performs on LinkedIn: visit, connect, follow, withdraw, message,
InMail, search."""

from __future__ import annotations

from datetime import timedelta

from engine.sandbox.world.limits import Limits
from engine.sandbox.world.model import Invitation, Profile, Thread, WorldError
from engine.sandbox.world.urls import normalize_url

MAX_NOTE = 300
MAX_MESSAGE = 8000


class Actions(Limits):
    """Real effects on LinkedIn, each recorded as a :class:`Delivery`."""

    def visit(self, identity: str, url: str) -> Profile:
        """View a profile; returns it."""
        ident, profile = self._check(identity, url, "visit")
        assert profile is not None
        self._scripted_fault('visit')
        self._deliver(ident, profile, "visit", "visit")
        return profile

    def relationship(self, identity: str, url: str) -> str:
        """``connected`` | ``pending`` | ``none``."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        if profile.url in self.network[ident.uid]:
            return "connected"
        if profile.url in self.invitations[ident.uid]:
            return "pending"
        return "none"

    def connect(self, identity: str, url: str, note: str | None = None) -> Invitation:
        """Send an invitation: ALREADY_CONNECTED, INVITATION_PENDING, or a pending invitation
        that the lead accepts (or not) after a seeded delay."""
        if note is not None and len(note) > MAX_NOTE:
            raise WorldError("NOTE_TOO_LONG", f"note longer than {MAX_NOTE} characters",
                             {"max_length": MAX_NOTE, "length": len(note)})
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        self._scripted_fault('connect')
        if profile.url in self.network[ident.uid]:
            raise WorldError("ALREADY_CONNECTED", "already a 1st degree connection")
        if profile.url in self.invitations[ident.uid]:
            raise WorldError("INVITATION_PENDING", "an invitation is already pending")
        self._check_limit(ident, "connect")
        inv = Invitation(self._next_id("inv"), ident.uid, profile.url, self.now, note or None)
        self.invitations[ident.uid][profile.url] = inv
        self._deliver(ident, profile, "invite", "connect", note or None)
        sent = self._invite_counts.get((ident.uid, profile.url), 0) + 1
        self._invite_counts[(ident.uid, profile.url)] = sent
        rng = self._rng("accept", ident.uid, profile.url, sent)
        accepts = profile.accepts if profile.accepts is not None else (
            rng.random() < self.config.accept_for(note))
        lo, hi = self.config.accept_delay_hours
        delay = timedelta(hours=rng.uniform(lo, hi))
        if accepts:
            self._schedule(self.now + delay, "accept", ident.uid, profile.url,
                           invitation_id=inv.invitation_id)
        return inv

    def follow(self, identity: str, url: str) -> Profile:
        """Follow a profile (idempotent: following twice delivers once)."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        self._scripted_fault('follow')
        follows = self.follows.setdefault(ident.uid, [])
        if profile.url not in follows:
            follows.append(profile.url)
            self._deliver(ident, profile, "follow", None)
        return profile

    def following(self, identity: str, url: str) -> bool:
        uid = self.identity(identity).uid
        return normalize_url(url) in self.follows.get(uid, [])

    def withdraw(self, identity: str, url: str) -> Invitation:
        """Withdraw a pending invitation (``NOT_PENDING`` when there is none)."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        self._scripted_fault('withdraw')
        inv = self.invitations[ident.uid].pop(profile.url, None)
        if inv is None:
            if profile.url in self.network[ident.uid]:
                raise WorldError("ALREADY_CONNECTED", "the invitation was already accepted")
            raise WorldError("NOT_PENDING", "no pending invitation to withdraw")
        self._deliver(ident, profile, "withdraw", None)
        return inv

    def remove_connection(self, identity: str, url: str) -> Profile:
        """Remove a 1st degree connection (``NOT_CONNECTED`` when there is none)."""
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        if not self._disconnect(ident.uid, profile.url):
            raise WorldError("NOT_CONNECTED", "not a 1st degree connection")
        self._deliver(ident, profile, "disconnect", None)
        return profile

    def message(self, identity: str, url: str, text: str) -> Thread:
        """Send a message: needs a connection or an existing conversation (else NOT_CONNECTED).
        Returns the thread (``thread.thread_id``)."""
        if not text:
            raise WorldError("INVALID_INPUT", "empty message")
        if len(text) > MAX_MESSAGE:
            raise WorldError("INVALID_INPUT", f"message longer than {MAX_MESSAGE} characters")
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        self._scripted_fault('message')
        existing = self.threads[ident.uid].get(profile.url)
        if profile.url not in self.network[ident.uid] and existing is None:
            raise WorldError("NOT_CONNECTED", "you can only message 1st degree connections")
        self._check_limit(ident, "message")
        thread = self._thread(ident.uid, profile.url, self.now)
        self._append(thread, from_us=True, sender=ident.profile_id, text=text, at=self.now)
        self._deliver(ident, profile, "message", "message", text)
        self._maybe_schedule_reply(ident, profile, thread)
        return thread

    def inmail(self, identity: str, url: str, subject: str, text: str) -> Thread:
        """Send an InMail (no connection needed; Sales Navigator subscription needed)."""
        if not text:
            raise WorldError("INVALID_INPUT", "empty message")
        ident, profile = self._check(identity, url, None)
        assert profile is not None
        self._scripted_fault('inmail')
        if ident.kind != "sales_navigator":
            raise WorldError("SN_ACCOUNT_UPGRADE", "InMail needs a Sales Navigator subscription")
        self._check_limit(ident, "inmail")
        thread = self._thread(ident.uid, profile.url, self.now)
        thread.inmail = thread.inmail or not thread.messages
        self._append(thread, from_us=True, sender=ident.profile_id, text=text, at=self.now,
                     subject=subject or None)
        self._deliver(ident, profile, "inmail", "inmail", text)
        self._maybe_schedule_reply(ident, profile, thread)
        return thread

    def search_people(self, query: str = "", limit: int = 25,
                      identity: str | None = None) -> list[Profile]:
        """Accessible profiles whose name, company or headline contains every query word."""
        if identity is not None:
            self.count_action(identity, "search")
        else:
            self._advance()
        words = query.lower().split()
        out = []
        for p in sorted(self.profiles.values(), key=lambda p: p.url):
            if not p.accessible:
                continue
            hay = f"{p.full_name} {p.company} {p.headline} {p.location}".lower()
            if all(w in hay for w in words):
                out.append(p)
                if len(out) >= limit:
                    break
        return out
