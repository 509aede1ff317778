"""The world's records: profiles, identities, invitations, threads, deliveries, scheduled events,
and the error LinkedIn answers with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class WorldError(Exception):
    """A LinkedIn-side failure, labelled with the Edges error label (e.g. ``LIMIT_REACHED``)."""

    def __init__(self, label: str, message: str = "", params: Mapping[str, Any] | None = None):
        self.label = label
        self.message = message or label
        self.params: dict[str, Any] = dict(params or {})
        super().__init__(f"{label}: {self.message}")


@dataclass
class Profile:
    url: str  # normalized https://www.linkedin.com/in/<handle>
    handle: str
    profile_id: int
    sales_navigator_profile_id: str
    first_name: str
    last_name: str
    full_name: str
    company: str
    job_title: str = ""
    headline: str = ""
    location: str = ""
    accessible: bool = True
    accepts: bool | None = None  # None: drawn per identity from accept_probability
    replies: bool | None = None  # None: drawn per message from reply_probability
    already_connected_with: tuple[str, ...] | None = ()  # None: drawn from the fraction
    writes_first_to: tuple[str, ...] | None = ()  # None: drawn from the fraction
    generated: bool = False


@dataclass
class IdentityState:
    uid: str
    profile_id: int
    profile_url: str
    name: str
    kind: str = "classic"  # classic | sales_navigator
    type: str = "engagement"  # engagement | standard
    aliases: tuple[str, ...] = ()
    provider: str | None = None  # edges | linkedapi | connectsafely | None (all)
    limits: dict[str, int] = field(default_factory=dict)  # overrides of the config's
    # caps per calendar week (Monday 00:00 UTC), beside the rolling 24 h limits: ConnectSafely
    # documents 90 connection requests a week per account, going over puts it on a 24 h hold
    weekly_limits: dict[str, int] = field(default_factory=dict)
    # caps per calendar month (the 1st, 00:00 UTC): LinkedAPI's admin `limits.set` with
    # period "monthly"; going over refuses the action until the next month
    monthly_limits: dict[str, int] = field(default_factory=dict)
    auth_history: list[tuple[datetime, bool]] = field(default_factory=list)  # sorted by time
    created_at: datetime | None = None

    def auth_ok(self, now: datetime) -> bool:
        ok = True
        for at, value in self.auth_history:
            if at > now:
                break
            ok = value
        return ok


@dataclass
class Invitation:
    invitation_id: str
    identity: str
    profile_url: str
    sent_at: datetime
    note: str | None = None


@dataclass
class Message:
    message_id: str
    thread_id: str
    sender_profile_id: int
    from_us: bool
    text: str
    created_at: datetime
    subject: str | None = None
    #: the world's write number (see WorldState._next_write): orders writes that share one
    #: virtual instant; 0 only while a world saved before the numbers is being loaded
    seq: int = 0


@dataclass
class Thread:
    thread_id: str
    identity: str
    profile_url: str
    created_at: datetime
    messages: list[Message] = field(default_factory=list)
    inmail: bool = False

    @property
    def last_message(self) -> Message:
        return self.messages[-1]

    @property
    def last_activity_at(self) -> datetime:
        return self.messages[-1].created_at if self.messages else self.created_at

    @property
    def first_sender_is_us(self) -> bool:
        return self.messages[0].from_us

    @property
    def unread_count(self) -> int:
        n = 0
        for m in reversed(self.messages):
            if m.from_us:
                break
            n += 1
        return n

    @property
    def thread_url(self) -> str:
        return f"https://www.linkedin.com/messaging/thread/{self.thread_id}/"


@dataclass(frozen=True)
class Delivery:
    """One real effect on LinkedIn: what tests assert against."""

    identity: str
    profile_url: str
    kind: str  # visit | invite | withdraw | disconnect | message | inmail | follow
    at: datetime
    text: str | None = None


@dataclass(order=True)
class Event:
    """A scheduled effect, applied lazily once ``at <= clock.now()``."""

    at: datetime
    seq: int
    kind: str = field(compare=False)  # accept | reply | writes_first | auth
    identity: str = field(compare=False)
    profile_url: str = field(compare=False, default="")
    data: dict[str, Any] = field(compare=False, default_factory=dict)


@dataclass(frozen=True)
class FaultPlan:
    kind: str  # 429 | 5xx | timeout
    after: bool = False  # timeout only: the action was performed before the call "timed out"
