"""The provider contract: one adapter per API behind one Protocol, found through a registry.

Adapters translate canonical actions to provider calls and provider errors to canonical
labels (raising :class:`engine.errors.ProviderError`). Only adapters import httpx exception
types. Credentials come from environment variables named in the spec, never the store or logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

import httpx

from engine.clock import Clock
from engine.model import PeopleSearch


class Lead(NamedTuple):
    """What an adapter needs to act on a lead (a NamedTuple: the runner makes one a call)."""

    profile_url: str  # normalized https://www.linkedin.com/in/<handle>
    custom_data: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ActionResult:
    """A successful canonical action. ``status`` is set by check_connection:
    connected | pending | not_connected."""

    data: Mapping[str, Any] = field(default_factory=dict)
    status: str | None = None


@dataclass(frozen=True)
class AsyncRun:
    """Where an async run is (``execution: async``): ``running`` (queued or under way),
    ``blocked`` until ``postponed_until`` (the provider retries it; it is never resent), or
    ``finished`` with its ``output`` (``{status, data, error}``, as a callback carries it)."""

    state: str
    postponed_until: datetime | None = None
    output: Mapping[str, Any] | None = None


@runtime_checkable
class AsyncActions(Protocol):
    """A provider that can run outreach actions asynchronously (Edges ``run/async``)."""

    async def submit_async(
        self,
        identity: str,
        action: str,
        lead: Lead,
        params: Mapping[str, Any],
        callback: Mapping[str, Any] | None,
    ) -> str: ...

    async def async_run(self, uid: str) -> AsyncRun: ...

    def output_result(self, action: str, output: Mapping[str, Any]) -> ActionResult: ...

    async def find_async_run(
        self, identity: str, action: str, key: str, since: datetime
    ) -> str | None: ...


@dataclass(frozen=True)
class ConversationSummary:
    """One conversation of an identity, as the last_message optimization needs it."""

    profile_url: str  # the other participant
    last_sender_is_us: bool
    last_activity_at: datetime
    first_sender_is_us: bool | None = None  # None when the provider does not say
    our_texts: tuple[str, ...] = ()  # filled by adapters that see message bodies
    thread: str | None = None  # the provider's reference of the thread (see our_messages)


@dataclass(frozen=True)
class SentMessage:
    """One of our messages in a thread (what reconciling a lost answer looks for)."""

    text: str
    at: datetime


@dataclass(frozen=True)
class Relationship:
    status: str  # connected | pending | none
    # False when the adapter could not look everywhere (e.g. no list of sent invitations:
    # a pending invitation then reads as "none")
    verified: bool = True
    # when the connection was made, where the provider says (Edges: connected_at); it tells
    # "our invitation was accepted" from "connected before we asked"
    since: datetime | None = None


@dataclass(frozen=True)
class IdentityInfo:
    """One identity as its provider reports it (``seqrun identities``).

    ``health`` is the provider's word: ``active`` or ``auth_expired`` (a pause is ours, kept
    in the store). ``limits`` and ``used_24h`` are the provider's own figures per canonical
    action where it reports them (empty where it does not)."""

    id: str
    provider: str
    name: str = ""
    tier: str = ""  # classic | sales_navigator (empty: the provider does not say)
    health: str = "active"
    limits: Mapping[str, int] = field(default_factory=dict)
    used_24h: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NewIdentity:
    """An identity made by :func:`add_identity`-capable providers (Edges): where its owner
    connects the LinkedIn account (``link``; None when the provider gives none)."""

    id: str
    name: str
    link: str | None = None


class Provider(Protocol):
    """One provider API, bound to one httpx.AsyncClient."""

    spec: ProviderSpec

    async def me(self, identity: str) -> str:
        """The identity's own LinkedIn profile id (used to tell our messages from theirs)."""
        ...

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        """Run one canonical action; raise ProviderError with a canonical label on failure."""
        ...

    async def sync_conversations(
        self, identity: str, *, force: bool | None = None
    ) -> list[ConversationSummary]:
        """One sync per identity per tick (sync-before-send). ``force``: a sequence's
        ``spec.sync.force`` (ConnectSafely's sync flag; lint refuses it elsewhere, where it
        is ignored); the runner passes it only when set."""
        ...

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        """Used to reconcile an intent whose outcome was lost, and for wait_for acceptance."""
        ...

    async def our_messages(
        self, identity: str, conversation: ConversationSummary, since: datetime
    ) -> list[SentMessage]:
        """Our messages in ``conversation`` (a summary from :meth:`sync_conversations`) sent
        at or after ``since``, read from the whole thread, not only its last message (a
        reply after ours hides it there): reconciles a message whose answer was lost."""
        ...

    async def identity_healthy(self, identity: str) -> bool: ...

    async def search_people(self, identity: str, search: PeopleSearch) -> list[dict[str, str]]:
        """People found by the provider's search, as leads CSV rows (``linkedin_profile_url``,
        ``full_name``, ``first_name``, ``company_name``...), at most ``search.max``."""
        ...

    async def identities(self) -> list[IdentityInfo]:
        """Every identity the credentials reach, with health, tier and the provider's limits
        and 24 h usage where it reports them (``seqrun identities``)."""
        ...

    async def identity_status(self, identity: str) -> str:
        """``active``, ``unknown`` (the provider has no such identity) or ``auth_expired``
        (it cannot act: session expired, disconnected); what plan's preflight reports."""
        ...


class ProviderFactory(Protocol):
    """Builds an adapter on a client carrying the base URL and credentials. ``clock`` is what
    an adapter that polls (LinkedAPI) sleeps on: under a virtual clock it must be the
    command's, which only moves when slept on."""

    def __call__(self, client: httpx.AsyncClient, *, clock: Clock | None = None) -> Provider: ...


@dataclass(frozen=True)
class ProviderSpec:
    """Static facts about a provider, read by lint and the compiler without instantiating it."""

    name: str
    capabilities: frozenset[str]  # canonical actions it can perform
    smart_limits: Mapping[str, int]  # canonical action -> default max per identity per 24 h
    max_note: int = 300
    max_message: int = 8000
    credentials: tuple[str, ...] = ()  # environment variable names
    # the people-search filters it applies (engine.model.SEARCH_FILTERS; empty: no search)
    search_filters: frozenset[str] = frozenset()
    default_base_url: str = ""
    factory: ProviderFactory | None = None
    # account tier (sales_navigator, recruiter) -> the documented limits that differ from
    # smart_limits (a classic account's); a tier not listed has the classic limits
    tier_limits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def limits_for(self, tier: str) -> Mapping[str, int]:
        """The provider's limits per identity per 24 h for an account of ``tier``."""
        return {**self.smart_limits, **self.tier_limits.get(tier, {})}

    def enforced_limits(self, limits: Mapping[str, int], tier: str) -> dict[str, int]:
        """The limits the runner enforces per identity per 24 h for a sequence whose
        ``limits`` (canonical actions) run on an account of ``tier``: the lower of the
        sequence's and the provider's for the tier, action by action."""
        out = dict(self.limits_for(tier))
        for action, value in limits.items():
            out[action] = min(value, out.get(action, value))
        return out


REGISTRY: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec) -> ProviderSpec:
    REGISTRY[spec.name] = spec
    return spec
