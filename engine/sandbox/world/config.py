"""How leads behave, how strict LinkedIn is and which failures are injected."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

#: Edges' smart limits per identity per rolling 24 h, by subscription tier (an identity's
#: ``kind``): what an Edges identity (or one open to every provider) gets unless overridden.
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "classic": {"visit": 80, "connect": 25, "message": 50, "inmail": 20, "search": 2000},
    "sales_navigator": {"visit": 500, "connect": 30, "message": 250, "inmail": 50, "search": 2000},
}

#: The limits the other providers document, per tier, replacing Edges' table for their
#: identities: ``(rolling 24 h limits, calendar-week caps)``. Actions absent are not limited by
#: the provider (LinkedIn's own refusals are the world's other checks).
#: * LinkedAPI: the admin API's default account limits (``limits.getDefaults``: stMessages 50 a
#:   day, stConnectionRequests 10 a day); Sales Navigator messages (nvMessages) have no default.
#: * ConnectSafely: 100 messages a day, 90 connection requests a calendar week (Monday 00:00 UTC;
#:   going over puts the account on a 24 h hold); no daily connection limit.
PROVIDER_LIMITS: dict[str, dict[str, tuple[dict[str, int], dict[str, int]]]] = {
    "linkedapi": {
        "classic": ({"connect": 10, "message": 50}, {}),
        "sales_navigator": ({"connect": 10, "message": 50}, {}),
    },
    "connectsafely": {
        "classic": ({"message": 100}, {"connect": 90}),
        "sales_navigator": ({"message": 100}, {"connect": 90}),
    },
}


@dataclass
class FaultConfig:
    """Injected failures. Rates are probabilities per API call, drawn from the seeded RNG."""

    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    retry_after_s: int = 30
    #: real seconds a served sandbox hangs before answering a "timeout" (0 = answer at once)
    timeout_hang_s: float = 0.0
    auth_expire_at: dict[str, datetime] = field(default_factory=dict)
    reauth_at: dict[str, datetime] = field(default_factory=dict)
    #: share of run callbacks delivered a second time, under a new callback_ref_uid (a
    #: duplicate the receiver's dedupe cannot catch: the runner must)
    callback_twice: float = 0.0
    #: seconds of world time a run callback is held before its first delivery (late)
    callback_delay_s: float = 0.0
    #: world op (visit, connect, message, inmail, withdraw, follow) -> the error labels its
    #: next calls fail with, one per call, in order (`seqrun test`'s scripted provider errors)
    scripted: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class TextRule:
    """Leads sent a text containing ``contains`` accept (a connection note) or reply (a
    message or InMail) with these probabilities instead of the world's: how a scenario gives
    A/B variants a known truth to measure."""

    contains: str
    accept_probability: float | None = None
    reply_probability: float | None = None


@dataclass
class WorldConfig:
    """How leads behave and how strict LinkedIn is. Delay ranges are (min, max) hours."""

    accept_probability: float = 0.6
    accept_delay_hours: tuple[float, float] = (2.0, 72.0)
    reply_probability: float = 0.3
    reply_delay_hours: tuple[float, float] = (1.0, 48.0)
    already_connected_fraction: float = 0.1
    writes_first_fraction: float = 0.05
    writes_first_delay_hours: tuple[float, float] = (0.0, 72.0)
    inaccessible_fraction: float = 0.03
    limits: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_LIMITS.items()}
    )
    #: unknown but well-formed profile URLs become generated profiles (else PROFILE_NOT_ACCESSIBLE)
    auto_create_profiles: bool = True
    #: real | fast | none: how long calls and LinkedAPI workflows take (engine.sandbox.latency)
    latency: str = "fast"
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: probabilities by what was sent (the first rule whose text matches wins)
    by_text: tuple[TextRule, ...] = ()

    def limit(self, kind: str, action: str) -> int | None:
        return self.limits.get(kind, {}).get(action)

    def accept_for(self, note: str | None) -> float:
        """The chance a lead accepts an invitation with ``note``."""
        for rule in self.by_text:
            if rule.accept_probability is not None and note and rule.contains in note:
                return rule.accept_probability
        return self.accept_probability

    def reply_for(self, texts: list[str]) -> float:
        """The chance a lead replies to a conversation where we wrote ``texts``."""
        for rule in self.by_text:
            if rule.reply_probability is not None and any(rule.contains in t for t in texts):
                return rule.reply_probability
        return self.reply_probability
