"""The words of seqrun's language shared by every layer: canonical actions and outcome labels,
terminals, wait events, days, limit aliases, LinkedAPI's action types. Pure data: this module
imports nothing of engine, so the manifest layer, the runner, the providers and the sandbox
can all read it without depending on each other."""

from __future__ import annotations

from collections.abc import Mapping

TERMINALS: tuple[str, ...] = ("completed", "replied", "removed", "failed", "stopped")
CANONICAL_ACTIONS: tuple[str, ...] = (
    "visit_profile",
    "connect",
    "send_message",
    "send_inmail",
    "withdraw_invitation",
    "check_connection",
    "follow",
)
WAIT_EVENTS: tuple[str, ...] = ("connection_accepted", "reply")
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

LIMIT_ALIASES: Mapping[str, str] = {
    "visit": "visit_profile",
    "message": "send_message",
    "inmail": "send_inmail",
    "withdraw": "withdraw_invitation",
    "check": "check_connection",
}

# Canonical action -> LinkedAPI action type.
LINKEDAPI_ACTIONS: Mapping[str, str] = {
    "visit_profile": "st.openPersonPage",
    "connect": "st.sendConnectionRequest",
    "send_message": "st.sendMessage",
    "withdraw_invitation": "st.withdrawConnectionRequest",
    "check_connection": "st.checkConnectionStatus",
}

# Canonical outcome labels. Provider adapters map their own errors onto these, so a
# manifest's `on:` routing is the same whatever the provider.
LIMIT_REACHED = "LIMIT_REACHED"
NOT_CONNECTED = "NOT_CONNECTED"
ALREADY_CONNECTED = "ALREADY_CONNECTED"
INVITATION_PENDING = "INVITATION_PENDING"
NOT_PENDING = "NOT_PENDING"
PROFILE_NOT_ACCESSIBLE = "PROFILE_NOT_ACCESSIBLE"
AUTH_EXPIRED = "AUTH_EXPIRED"
INVALID_INPUT = "INVALID_INPUT"
STATUS_429 = "STATUS_429"
SERVER_ERROR = "SERVER_ERROR"  # 5xx
TIMEOUT = "TIMEOUT"  # no answer: the call may or may not have happened
MESSAGING_NOT_ALLOWED = "MESSAGING_NOT_ALLOWED"
NOTE_TOO_LONG = "NOTE_TOO_LONG"

ERROR_LABELS: tuple[str, ...] = (
    LIMIT_REACHED,
    NOT_CONNECTED,
    ALREADY_CONNECTED,
    INVITATION_PENDING,
    NOT_PENDING,
    PROFILE_NOT_ACCESSIBLE,
    AUTH_EXPIRED,
    INVALID_INPUT,
    STATUS_429,
    SERVER_ERROR,
    TIMEOUT,
    MESSAGING_NOT_ALLOWED,
    NOTE_TOO_LONG,
)
# Labels worth retrying with backoff; everything else is routed or terminal.
TRANSIENT_LABELS: frozenset[str] = frozenset({STATUS_429, SERVER_ERROR, TIMEOUT})

#: kv (namespace, key) of the kill switch that `seqrun pause --all` sets
KILL_SWITCH = ("runtime", "paused_all")

#: kv (namespace, key) of the applied Policy, resolved (engine.apply.policy writes it)
POLICY_KEY = ("policy", "current")
#: the actions that contact a person: one lead one voice, frequency caps, send caps
SENDS: tuple[str, ...] = ("connect", "send_message", "send_inmail")
