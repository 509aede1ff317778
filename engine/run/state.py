"""What the runner's parts share: the settings, the store, the clock, the providers, the
compiled revisions, and the state of one identity during one tick (its buffered writes)."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from engine.clock import Clock
from engine.compile.machine import CompiledSequence, compile_sequence
from engine.errors import ConfigError, StoreError
from engine.manifest import loader
from engine.manifest.yamlio import Document
from engine.model import ActionStep, Sequence, SourceMap
from engine.providers.base import Provider
from engine.run.pushed import Pushed
from engine.store import ConversationRow, EnrollmentRow, IdentityRow, LeadRow, Store

DAY = timedelta(hours=24)
OUTREACH = frozenset({"connect", "send_message", "send_inmail", "withdraw_invitation"})
MESSAGES = frozenset({"send_message", "send_inmail"})
MAX_CHAIN = 25  # steps one enrollment may take in one tick (lint rejects cycles without waits)

Resolver = Callable[[str], CompiledSequence]


def sequence_from_store(store: Store, revision: str) -> Sequence:
    """A revision's Sequence, rebuilt from its stored manifest by the loader."""
    row = store.get_revision(revision)
    if row is None:
        raise StoreError(f"revision {revision} is not in the store")
    problems: list[Any] = []
    doc = Document(row.manifest, SourceMap(f"<revision {revision}>"))
    seq = loader._build("Sequence", doc, problems)
    if not isinstance(seq, Sequence):
        raise StoreError(f"revision {revision} is not a Sequence")
    return seq


def compiled_from_store(store: Store) -> Resolver:
    """A resolver that rebuilds a revision's Sequence from its stored manifest and compiles it."""

    def resolve(revision: str) -> CompiledSequence:
        return compile_sequence(sequence_from_store(store, revision))

    return resolve


@dataclass(frozen=True)
class Settings:
    """The runner's knobs (see :class:`engine.run.runner.Runner`)."""

    retry_cap: int
    backoff_base: timedelta
    backoff_max: timedelta
    accept_poll: timedelta
    visit_sync_age: timedelta
    due_batch: int
    # A provider's longest execution time: an attempt whose outcome is unknown (a TIMEOUT,
    # a crash) may still land that long after it; no next attempt goes out before.
    settle_after: timedelta
    # `execution: async`: how often a run is polled without a callback URL, and how long a
    # callback may take before the run is asked about (a callback that never comes)
    async_poll: timedelta = timedelta(minutes=5)
    async_wait: timedelta = timedelta(hours=1)
    # run/async's `callback` ({url, headers, on}); None: runs are polled
    async_callback: Mapping[str, Any] | None = None


class RunState:
    """The state every part of one runner reads (one object, shared, never copied)."""

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, Provider],
        clock: Clock,
        settings: Settings,
        compiled: Mapping[str, CompiledSequence] | Resolver | None,
    ) -> None:
        self.store = store
        self.providers = providers
        self.clock = clock
        self.settings = settings
        self._cache: dict[str, CompiledSequence] = {}
        if isinstance(compiled, Mapping):
            self._cache.update(compiled)
            self._resolve: Resolver | None = None
        else:
            self._resolve = compiled
        self.last_sync: dict[str, datetime] = {}
        self.sync_failures: dict[str, int] = {}  # identity -> syncs failed in a row (backoff)
        self.identity_rows: dict[str, IdentityRow] = {}  # as read at the start of the tick
        # identity -> its conversation cache, read once and then kept by the runner's own
        # writes (the sync's, the sent messages'); dropped when recovery wrote behind it
        self.conversations: dict[str, dict[str, ConversationRow]] = {}
        self.holder: str | None = None  # the `run` lock holder (or worker id) meanwhile
        # (sequence, step) -> the variant a decided experiment promoted (engine.run.experiments)
        self.promoted: dict[tuple[str, str], str] = {}
        # (identity, action) -> when its async runs still in flight were submitted: they
        # count against the identity's limits until their outcome does
        self.in_flight: dict[tuple[str, str], list[datetime]] = {}
        # the identities this worker holds leases on (engine.run.leases); None: every one
        self.owned: set[str] | None = None
        # the managed schedules' results received by `seqrun serve`, while fresh
        self.pushed = Pushed(store)

    def compiled(self, revision: str) -> CompiledSequence:
        found = self._cache.get(revision)
        if found is None:
            if self._resolve is None:
                self._resolve = compiled_from_store(self.store)
            found = self._cache[revision] = self._resolve(revision)
        return found

    def conversation_cache(self, identity: str) -> dict[str, ConversationRow]:
        """``identity``'s conversation cache (profile URL -> row), read from the store once."""
        found = self.conversations.get(identity)
        if found is None:
            found = self.conversations[identity] = self.store.conversations(identity)
        return found

    def sequence(self, revision: str) -> Sequence:
        seq = self.compiled(revision).sequence
        if seq is None:
            raise StoreError(f"revision {revision} has no sequence model")
        return seq

    def provider_name(self, enr: EnrollmentRow) -> str:
        return self.sequence(enr.revision).provider

    def provider_for(self, enr: EnrollmentRow) -> Provider | None:
        return self.providers.get(self.provider_name(enr))


@dataclass
class Writes:
    """Writes buffered by an identity between two commits: committed with the next call's
    intent, or at the end of the wave (an outcome lost in a crash leaves its intent open for
    recover())."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    transitions: dict[int, dict[str, Any]] = field(default_factory=dict)
    reschedules: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    # enrollment -> the event of its transition in this wave (a wait that starts at once
    # is noted on it)
    entered: dict[int, dict[str, Any]] = field(default_factory=dict)
    # waits to note on the (committed) event that put a lead at its step
    notes: list[dict[str, Any]] = field(default_factory=list)

    def transition(self, values: dict[str, Any]) -> None:
        self.reschedules.pop(values["id"], None)
        self.transitions[values["id"]] = values

    def reschedule(
        self,
        eid: int,
        due: datetime | None,
        attempts: int,
        last_error: str | None,
        waiting: str | None = None,
    ) -> None:
        values = {
            "id": eid,
            "next_due_at": due,
            "attempts": attempts,
            "last_error": last_error,
            "waiting": waiting,
        }
        if eid in self.transitions:
            self.transitions[eid].update(values)
        else:
            self.reschedules[eid] = values

    @classmethod
    def merged(cls, parts: Iterable[Writes]) -> Writes:
        """The writes of several identities as one batch (their enrollments are their own:
        nothing of one overwrites another's)."""
        out = cls()
        for w in parts:
            out.outcomes += w.outcomes
            out.transitions.update(w.transitions)
            out.reschedules.update(w.reschedules)
            out.events += w.events
            out.conversations += w.conversations
            out.connections += w.connections
            out.notes += w.notes
        return out

    def __bool__(self) -> bool:
        return bool(
            self.outcomes
            or self.transitions
            or self.reschedules
            or self.events
            or self.conversations
            or self.connections
            or self.notes
        )


def write_buffered(
    store: Store, w: Writes, conn: Any = None, intents: Iterable[Mapping[str, Any]] = ()
) -> list[str]:
    """Commit an identity's buffered writes, then ``intents`` (their keys), in one
    transaction (``conn``'s when given)."""
    return store.write_batch(
        outcomes=w.outcomes,
        transitions=list(w.transitions.values()),
        reschedules=list(w.reschedules.values()),
        events=w.events,
        conversations=w.conversations,
        connections=w.connections,
        notes=w.notes,
        intents=intents,
        conn=conn,
    )


class Planned(NamedTuple):
    """An action that passed every rule and waits for its intent and its call."""

    enr: EnrollmentRow
    lead: LeadRow
    step: ActionStep
    params: Mapping[str, Any]
    at: datetime
    compiled: CompiledSequence  # the enrollment's revision's machine
    variant: str | None = None  # the A/B variant rendered (a step with `variants:`)


@dataclass
class IdentityTick:
    """One identity during one tick: its provider, what it learned, what it will write."""

    identity: str
    provider_name: str
    provider: Provider
    conv: dict[str, ConversationRow] | None = None
    synced: bool = False
    connections: set[str] | None = None
    usage: dict[str, deque[datetime]] = field(default_factory=dict)
    saturated: dict[str, datetime] = field(default_factory=dict)
    # action -> leads found this tick at their promised instant with the limit still full
    short: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    replied: set[int] = field(default_factory=set)  # enrollments the sync moved to `reply`
    links: dict[str, str] | None = None  # connection cache of this identity
    # enrollment -> the edges it was routed along by error labels since its last progress
    routed: dict[int, list[str]] = field(default_factory=dict)
    w: Writes = field(default_factory=Writes)
    # the force flag of its conversation sync (`spec.sync.force` of its sequences; None: unset)
    sync_force: bool | None = None


class Stop(Exception):
    """The identity cannot go on this tick (auth expired)."""


SETTLE_ENV = "SEQRUN_SETTLE_AFTER"


def settle_after(env: Mapping[str, str] = os.environ) -> timedelta:
    """How long an attempt whose outcome is unknown may still land (the provider's longest
    execution time; 5 minutes unless ``SEQRUN_SETTLE_AFTER`` gives seconds): no next attempt
    of that step goes out before."""
    raw = env.get(SETTLE_ENV, "").strip()
    try:
        seconds = float(raw) if raw else 300.0
    except ValueError:
        raise ConfigError(f"{SETTLE_ENV} must be a number of seconds, not {raw!r}") from None
    if not 0 <= seconds < 86_400:
        raise ConfigError(f"{SETTLE_ENV} must be between 0 and 86400 seconds, not {raw!r}")
    return timedelta(seconds=seconds)


async def all_or_cancel(tasks: Iterable[asyncio.Future[None]]) -> None:
    """Wait for every identity's task; if one dies (a crash, a kill), cancel the others, wait
    for them to unwind, and re-raise. Pending intents are left for recovery."""
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failures = [t.exception() for t in done if not t.cancelled()]  # each one retrieved
    failure = next((f for f in failures if f is not None), None)
    if failure is None:
        return
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    raise failure
