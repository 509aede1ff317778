"""The runner: walks every due enrollment through its compiled machine by calling providers.

One :meth:`Runner.tick` takes the due enrollments (``next_due_at <= now``, by index), groups
them by identity and runs the identities in parallel; one identity's actions run serially.
Before its first action in a tick an identity syncs its conversations once (sync-before-send,
the ``last_message`` optimization: a conversation whose last sender is not us is a reply),
then each due lead goes through the seed guide's rules in order: reply -> ``reply``;
do-not-contact -> ``stopped``; already connected -> ``ALREADY_CONNECTED``; a conversation that
moved within ``cooldown`` -> postponed; outside the business window (the lead's timezone) ->
postponed to the next opening; the identity's rolling-24-h limit (shared by every sequence on
it) -> postponed until the oldest counted action leaves the window; then the call.

Exactly once: the intent row (key ``enrollment:step:attempt``) is committed before the call;
the outcome and the transition are committed together after it. :meth:`Runner.recover` (run at
the start of every tick) reconciles intents without outcome against the provider before
anything is resent; a ``TIMEOUT`` is reconciled the same way.

Example::

    runner = Runner(store, {"edges": provider}, VirtualClock())
    result = await runner.tick()
    summary = await runner.run_until(clock.now() + timedelta(days=30))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Connection

from engine import vocab
from engine.clock import Clock
from engine.compile.machine import CompiledSequence, compile_sequence
from engine.errors import LockError, ProviderError, SeqrunError, StoreError
from engine.manifest import loader
from engine.manifest.templates import render
from engine.manifest.yamlio import Document
from engine.model import (
    ActionStep,
    BranchStep,
    EndStep,
    Sequence,
    SourceMap,
    WaitForStep,
    WaitStep,
    Window,
)
from engine.providers.base import ConversationSummary, Lead, Provider
from engine.store import (
    ActionRow,
    ConversationRow,
    EnrollmentRow,
    IdentityRow,
    LeadRow,
    LockHandle,
    Store,
    bounded,
)
from engine.vocab import DAYS, KILL_SWITCH

log = logging.getLogger(__name__)

DAY = timedelta(hours=24)
OUTREACH = frozenset({"connect", "send_message", "send_inmail", "withdraw_invitation"})
MESSAGES = frozenset({"send_message", "send_inmail"})
MAX_CHAIN = 25  # steps one enrollment may take in one tick (lint rejects cycles without waits)
MAX_RECORDS = 1000  # StepRecords kept per TickResult (memory stays flat on huge ticks)
RUN_LOCK = "run"  # one runner at a time (hold_run_lock)

Resolver = Callable[[str], CompiledSequence]


# ---- results --------------------------------------------------------------------------------


class StepRecord(NamedTuple):  # one a step: a NamedTuple is cheaper than a frozen dataclass
    """One thing that happened to one enrollment in a tick."""

    enrollment_id: int
    profile_url: str
    sequence: str
    from_state: str
    to_state: str | None  # None: postponed or paused in place
    trigger: str | None
    action: str | None = None
    label: str | None = None
    detail: str | None = None
    until: datetime | None = None


@dataclass
class TickResult:
    """What one tick did (the CLI renders it; nothing is printed here)."""

    at: datetime
    due: int = 0
    actions: int = 0  # provider actions that succeeded (delivered)
    transitions: int = 0
    postponed: int = 0
    failed: int = 0
    recovered: int = 0
    paused_identities: list[str] = field(default_factory=list)
    resumed_identities: list[str] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    killed: bool = False  # the kill switch (`pause --all`) is on
    errors: list[str] = field(default_factory=list)  # identities whose batch failed (logged)
    records_dropped: int = 0  # beyond MAX_RECORDS (the counters above stay exact)

    def record(self, rec: StepRecord) -> None:
        if len(self.records) < MAX_RECORDS:
            self.records.append(rec)
        else:
            self.records_dropped += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "due": self.due,
            "actions": self.actions,
            "transitions": self.transitions,
            "postponed": self.postponed,
            "failed": self.failed,
            "recovered": self.recovered,
            "paused_identities": self.paused_identities,
            "resumed_identities": self.resumed_identities,
            "kill_switch": self.killed,
            "errors": self.errors,
        }


@dataclass
class RunSummary:
    """Totals over many ticks (``run_until`` / ``run_forever``)."""

    started_at: datetime
    ended_at: datetime
    ticks: int = 0
    actions: int = 0
    transitions: int = 0
    postponed: int = 0
    failed: int = 0
    recovered: int = 0
    paused_identities: list[str] = field(default_factory=list)
    resumed_identities: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, tick: TickResult) -> None:
        self.ticks += 1
        self.actions += tick.actions
        self.transitions += tick.transitions
        self.postponed += tick.postponed
        self.failed += tick.failed
        self.recovered += tick.recovered
        self.paused_identities += tick.paused_identities
        self.resumed_identities += tick.resumed_identities
        self.errors += tick.errors
        self.ended_at = tick.at

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "ticks": self.ticks,
            "actions": self.actions,
            "transitions": self.transitions,
            "postponed": self.postponed,
            "failed": self.failed,
            "recovered": self.recovered,
            "paused_identities": self.paused_identities,
            "resumed_identities": self.resumed_identities,
            "errors": self.errors,
        }


# ---- pure helpers ---------------------------------------------------------------------------


def window_opening(window: Window | None, tz: ZoneInfo, now: datetime) -> datetime | None:
    """None when ``now`` is inside the window, else the next opening (aware UTC)."""
    if window is None:
        return None
    local = now.astimezone(tz)
    days = {DAYS.index(d) for d in window.days if d in DAYS}
    if not days:
        return None
    end = window.end if window.end != time(0, 0) else time(23, 59, 59, 999999)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opens = datetime.combine(day, window.start, tzinfo=tz)
        closes = datetime.combine(day, end, tzinfo=tz)
        if offset == 0 and opens <= local < closes:
            return None
        if local < opens:
            return opens.astimezone(UTC)
    return None  # pragma: no cover - a non-empty day set always opens within 8 days


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def compiled_from_store(store: Store) -> Resolver:
    """A resolver that rebuilds a revision's Sequence from its stored manifest and compiles it."""

    def resolve(revision: str) -> CompiledSequence:
        row = store.get_revision(revision)
        if row is None:
            raise StoreError(f"revision {revision} is not in the store")
        problems: list[Any] = []
        doc = Document(row.manifest, SourceMap(f"<revision {revision}>"))
        seq = loader._build("Sequence", doc, problems)
        if not isinstance(seq, Sequence):
            raise StoreError(f"revision {revision} is not a Sequence")
        return compile_sequence(seq)

    return resolve


# ---- per identity state for one tick --------------------------------------------------------


@dataclass
class _Writes:
    """Writes buffered during one wave of an identity, committed in one transaction (after
    the calls: an outcome lost in a crash leaves its intent open for recover())."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    transitions: dict[int, dict[str, Any]] = field(default_factory=dict)
    reschedules: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)

    def transition(self, values: dict[str, Any]) -> None:
        self.reschedules.pop(values["id"], None)
        self.transitions[values["id"]] = values

    def reschedule(
        self, eid: int, due: datetime | None, attempts: int, last_error: str | None
    ) -> None:
        values = {"id": eid, "next_due_at": due, "attempts": attempts, "last_error": last_error}
        if eid in self.transitions:
            self.transitions[eid].update(values)
        else:
            self.reschedules[eid] = values

    def __bool__(self) -> bool:
        return bool(
            self.outcomes
            or self.transitions
            or self.reschedules
            or self.events
            or self.conversations
            or self.connections
        )


class _Planned(NamedTuple):
    """An action that passed every rule and waits for its intent and its call."""

    enr: EnrollmentRow
    lead: LeadRow
    step: ActionStep
    params: Mapping[str, Any]
    at: datetime
    compiled: CompiledSequence  # the enrollment's revision's machine


@dataclass
class _IdentityCtx:
    identity: str
    provider_name: str
    provider: Provider
    conv: dict[str, ConversationRow] | None = None
    synced: bool = False
    connections: set[str] | None = None
    usage: dict[str, deque[datetime]] = field(default_factory=dict)
    saturated: dict[str, datetime] = field(default_factory=dict)
    stopped: bool = False
    replied: set[int] = field(default_factory=set)  # enrollments the sync moved to `reply`
    links: dict[str, str] | None = None  # connection cache of this identity
    w: _Writes = field(default_factory=_Writes)


class _Stop(Exception):
    """The identity cannot go on this tick (auth expired)."""


TickHook = Callable[["TickResult"], Awaitable[bool]]


class Runner:
    """Drives enrollments. ``providers`` maps a provider name (``edges``) to a Provider;
    ``compiled`` maps a revision to its CompiledSequence (or resolves one); by default the
    revisions are rebuilt from the store."""

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, Provider],
        clock: Clock,
        *,
        compiled: Mapping[str, CompiledSequence] | Resolver | None = None,
        seed: int = 0,
        retry_cap: int = 6,
        backoff_base: timedelta = timedelta(minutes=1),
        backoff_max: timedelta = timedelta(hours=2),
        accept_poll: timedelta = timedelta(hours=8),
        visit_sync_age: timedelta = timedelta(hours=1),
        due_batch: int = 2000,
        settle_after: timedelta = timedelta(minutes=5),
        tick_hooks: Iterable[TickHook] = (),
    ) -> None:
        self.store = store
        # run after every tick that the kill switch did not stop (async Schedules); a hook
        # returning True has work in flight, so run_until steps through time instead of jumping
        self.tick_hooks = tuple(tick_hooks)
        self.providers = providers
        self.clock = clock
        self.retry_cap = retry_cap
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.accept_poll = accept_poll
        self._rng = random.Random(seed)
        self._cache: dict[str, CompiledSequence] = {}
        if isinstance(compiled, Mapping):
            self._cache.update(compiled)
            self._resolve: Resolver | None = None
        else:
            self._resolve = compiled
        self._zones: dict[str, ZoneInfo] = {}
        self._limits: dict[tuple[str, str, str], int | None] = {}
        self._known_identities: set[str] = set()
        self._last_sync: dict[str, datetime] = {}
        self._sync_failures: dict[str, int] = {}  # identity -> syncs failed in a row (backoff)
        self._identity_rows: dict[str, IdentityRow] = {}  # as read at the start of the tick
        self._blocked = False  # something waits on the provider (see run_until)
        self.visit_sync_age = visit_sync_age
        self.due_batch = due_batch
        # A provider's longest execution time: an attempt whose outcome is unknown (a TIMEOUT,
        # a crash) may still land that long after it; no next attempt goes out before.
        self.settle_after = settle_after
        # idempotency key -> why _reconcile said "done" without evidence (popped when settled)
        self._unverified: dict[str, str] = {}
        self.holder: str | None = None  # the `run` lock holder while hold_run_lock() is on
        self._lock_lost: str | None = None

    # ---- lookups --------------------------------------------------------------------------

    def compiled(self, revision: str) -> CompiledSequence:
        found = self._cache.get(revision)
        if found is None:
            if self._resolve is None:
                self._resolve = compiled_from_store(self.store)
            found = self._cache[revision] = self._resolve(revision)
        return found

    def _sequence(self, revision: str) -> Sequence:
        seq = self.compiled(revision).sequence
        if seq is None:
            raise StoreError(f"revision {revision} has no sequence model")
        return seq

    def _zone(self, name: str | None, fallback: str) -> ZoneInfo:
        for candidate in (name, fallback, "UTC"):
            if not candidate:
                continue
            zone = self._zones.get(candidate)
            if zone is None:
                try:
                    zone = ZoneInfo(candidate)
                except (ZoneInfoNotFoundError, ValueError):
                    continue
                self._zones[candidate] = zone
            return zone
        return ZoneInfo("UTC")  # pragma: no cover

    def _lead_zone(self, seq: Sequence, lead: LeadRow) -> ZoneInfo:
        window = seq.window
        if window is None:
            return self._zone("UTC", "UTC")
        if window.timezone == "lead":
            tz = lead.data.get("timezone")
            return self._zone(str(tz) if tz else None, window.fallback_timezone)
        return self._zone(window.timezone, window.fallback_timezone)

    def _limit(self, revision: str, ctx: _IdentityCtx, action: str) -> int | None:
        """The lower of the sequence's limit and the provider's smart limit (None: neither)."""
        key = (revision, ctx.provider_name, action)
        if key not in self._limits:
            seq = self._sequence(revision)
            limits = [
                v
                for v in (seq.limits.get(action), ctx.provider.spec.smart_limits.get(action))
                if v is not None
            ]
            self._limits[key] = min(limits) if limits else None
        return self._limits[key]

    def _entry_due(self, compiled: CompiledSequence, state: str, now: datetime) -> datetime | None:
        """When a state just entered becomes due (None for terminals)."""
        if compiled.is_terminal(state):
            return None
        step = compiled.step(state)
        if isinstance(step, WaitStep):
            return now + step.duration
        if isinstance(step, WaitForStep):
            deadline = now + step.timeout
            if step.event == "connection_accepted":
                return min(self._next_poll(now), deadline)
            return deadline
        return now

    def _next_poll(self, now: datetime) -> datetime:
        # Aligned on the epoch so every waiting lead of an identity polls in the same tick.
        period = self.accept_poll.total_seconds()
        ts = now.timestamp()
        return datetime.fromtimestamp((ts // period + 1) * period, UTC)

    def _backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        raw = self.backoff_base.total_seconds() * (2 ** max(0, attempts - 1))
        delay = min(raw, self.backoff_max.total_seconds()) * (0.5 + self._rng.random())
        if retry_after:
            delay = max(delay, retry_after)
        return timedelta(seconds=delay)

    # ---- transitions (each in one transaction) --------------------------------------------

    def _lead_for_provider(self, enr: EnrollmentRow, lead: LeadRow, key: str | None) -> Lead:
        custom: dict[str, Any] = {"enrollment_id": enr.id, "sequence": enr.sequence}
        if key:
            custom["idempotency_key"] = key
        return Lead(lead.profile_url, custom)

    def _transition(
        self,
        enr: EnrollmentRow,
        lead: LeadRow,
        trigger: str,
        result: TickResult,
        *,
        conn: Connection | None = None,
        action: str | None = None,
        label: str | None = None,
        detail: str | None = None,
        data: Mapping[str, Any] | None = None,
        dest: str | None = None,
        ctx: _IdentityCtx | None = None,
        now: datetime | None = None,
        compiled: CompiledSequence | None = None,
    ) -> EnrollmentRow:
        if compiled is None:  # else the caller's, looked up once for the enrollment
            compiled = self.compiled(enr.revision)
        if now is None:  # else the caller's instant: its outcome and this entry share it
            now = self.clock.now()
        if dest is None:
            try:
                dest = compiled.next_state(enr.state, trigger)
            except KeyError:
                dest = "failed"
                detail = detail or f"no transition for {trigger!r} from {enr.state!r}"
        due = self._entry_due(compiled, dest, now)
        last_error = detail if dest == "failed" else None
        values: dict[str, Any] = {
            "state": dest,
            "next_due_at": due,
            "step_entered_at": now,
            "attempts": 0,
            "last_error": last_error,
        }
        payload: dict[str, Any] = {}
        if action is not None:
            payload["action"] = action
        if label is not None:
            payload["label"] = label
        if detail is not None:
            payload["detail"] = detail
        if data:
            for k, v in data.items():
                if v is not None:
                    payload[k] = v
                else:
                    payload.pop(k, None)
        event = {
            "kind": "transition",
            "subject": lead.profile_url,
            "data": payload or None,
            "at": now,
            "enrollment_id": enr.id,
            "from_state": enr.state,
            "to_state": dest,
            "trigger": trigger,
            "revision": enr.revision,
        }
        if ctx is not None and conn is None:
            values["id"] = enr.id  # the wave's writes own this dict (no copy)
            ctx.w.transition(values)
            ctx.w.events.append(event)
        else:
            with self.store.tx(conn) as c:
                self.store.update_enrollment(enr.id, conn=c, **values)
                self.store.record_events([event], conn=c)
        result.transitions += 1
        if dest == "failed":
            result.failed += 1
        result.record(
            StepRecord(
                enr.id,
                lead.profile_url,
                enr.sequence,
                enr.state,
                dest,
                trigger,
                action,
                label,
                detail,
            )
        )
        return EnrollmentRow(
            enr.id,
            enr.lead_id,
            enr.sequence,
            enr.revision,
            enr.identity,
            dest,
            due,
            0,
            now,
            enr.paused,
            last_error,
        )

    def _postpone(
        self,
        enr: EnrollmentRow,
        lead: LeadRow,
        until: datetime,
        reason: str,
        result: TickResult,
        *,
        conn: Connection | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
        ctx: _IdentityCtx | None = None,
    ) -> None:
        event = {
            "kind": "postponed",
            "subject": lead.profile_url,
            "data": {"reason": reason, "until": until.isoformat()},
            "at": self.clock.now(),
            "enrollment_id": enr.id,
            "from_state": enr.state,
            "revision": enr.revision,
        }
        if ctx is not None and conn is None:
            ctx.w.reschedule(
                enr.id,
                until,
                enr.attempts if attempts is None else attempts,
                enr.last_error if last_error is None else last_error,
            )
            ctx.w.events.append(event)
        else:
            values: dict[str, Any] = {"next_due_at": until}
            if attempts is not None:
                values["attempts"] = attempts
            if last_error is not None:
                values["last_error"] = last_error
            with self.store.tx(conn) as c:
                self.store.update_enrollment(enr.id, conn=c, **values)
                self.store.record_events([event], conn=c)
        result.postponed += 1
        result.record(
            StepRecord(
                enr.id,
                lead.profile_url,
                enr.sequence,
                enr.state,
                None,
                None,
                detail=reason,
                until=until,
            )
        )

    def _sync_refused(self, ctx: _IdentityCtx, exc: ProviderError, result: TickResult) -> None:
        """The provider refused the identity's sync for good: the identity is paused (its
        leads stay where they are) until `seqrun resume --identity` after a fix."""
        reason = (
            f"{ctx.provider_name} refused the conversation sync: {exc.label}"
            f"{': ' + exc.message if exc.message else ''}"
        )
        self._pause_identity(ctx, reason, result, status="paused")
        result.errors.append(
            f"{ctx.identity}: {reason} (identity paused; `seqrun resume --identity "
            f"{ctx.identity}` once it is fixed)"
        )

    def _pause_identity(
        self, ctx: _IdentityCtx, reason: str, result: TickResult, status: str = "auth_expired"
    ) -> None:
        """Pause the identity and all its enrollments where they are. ``auth_expired``
        resumes by itself once the provider reports the identity healthy; ``paused`` waits
        for `seqrun resume --identity`."""
        now = self.clock.now()
        with self.store.transaction() as conn:
            self.store.set_identity_status(
                ctx.identity, status, reason, provider=ctx.provider_name, conn=conn
            )
            paused = self.store.set_enrollments_paused(True, identity=ctx.identity, conn=conn)
            self.store.record_event(
                "identity_paused",
                ctx.identity,
                {"reason": reason, "enrollments": paused},
                at=now,
                conn=conn,
            )
        ctx.stopped = True
        result.paused_identities.append(ctx.identity)
        log.warning("identity %s paused: %s", ctx.identity, reason)

    # ---- the run lock -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def hold_run_lock(
        self, ttl: timedelta = timedelta(minutes=2)
    ) -> AsyncIterator[LockHandle]:
        """Hold the ``run`` lock (:class:`LockError` if another runner has it) while the block
        runs: refreshed in the background every ``ttl / 4`` so a long tick never outlives it.
        The intents written meanwhile carry its holder, so another runner's recover() leaves
        them alone while this lock lives; a lost lock (expired and taken over) stops this
        runner before its next provider call (the tick raises :class:`LockError`)."""
        with self.store.lock(RUN_LOCK, ttl=ttl) as held:
            self.holder, self._lock_lost = held.holder, None
            keeper = asyncio.ensure_future(self._keep_lock(held))
            try:
                yield held
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                self.holder = None

    async def _keep_lock(self, held: LockHandle) -> None:
        period = max(held.ttl.total_seconds() / 4, 0.01)
        while True:
            await asyncio.sleep(period)  # wall time: the lock expires on the wall clock
            try:
                held.refresh()
            except LockError as exc:
                self._lock_lost = str(exc)
                log.error("stopping: %s", exc)
                return
            except Exception as exc:  # the store is briefly unreachable: try again soon
                log.warning("could not refresh the run lock: %s", exc)

    def _check_lock(self) -> None:
        if self._lock_lost is not None:
            raise LockError(self._lock_lost)

    # ---- recovery ---------------------------------------------------------------------------

    async def recover(
        self, result: TickResult | None = None, pending: list[ActionRow] | None = None
    ) -> set[int]:
        """Reconcile intents that have no outcome. Returns the enrollments whose intent could
        not be settled yet (they must not act until it is)."""
        result = result or TickResult(self.clock.now())
        unresolved: set[int] = set()
        if pending is None:
            pending = self.store.pending_intents()
        if not pending:
            return unresolved
        statuses = {i.id: i for i in self.store.list_identities()}
        convs: dict[str, list[ConversationSummary] | None] = {}
        live = self.store.live_lock_holder(RUN_LOCK)
        for intent in pending:
            holder = intent.response.get("holder") if isinstance(intent.response, dict) else None
            if holder is not None and holder != self.holder and holder == live:
                # another runner, alive, still has this call in flight: not ours to settle
                unresolved.add(intent.enrollment_id)
                continue
            ident = statuses.get(intent.identity)
            if ident is not None and ident.status != "active":
                unresolved.add(intent.enrollment_id)
                continue
            enr = self.store.get_enrollment(intent.enrollment_id)
            if enr is None:
                self.store.log_outcome(
                    intent.idempotency_key, "unknown", at=self.clock.now(), label="ORPHAN"
                )
                continue
            provider = self._provider_for(enr)
            lead = self.store.get_lead(enr.lead_id)
            if provider is None or lead is None:
                unresolved.add(enr.id)
                continue
            try:
                done = await self._reconcile(intent, provider, lead, convs)
            except ProviderError as exc:
                unresolved.add(enr.id)
                if exc.label == vocab.AUTH_EXPIRED:
                    ctx = _IdentityCtx(intent.identity, self._provider_name(enr), provider)
                    self._pause_identity(ctx, "AUTH_EXPIRED while reconciling", result)
                    statuses = {i.id: i for i in self.store.list_identities()}
                continue
            if not done and self._keep_open(intent, enr, lead, result):
                unresolved.add(enr.id)
                continue
            self._settle(intent, enr, lead, done, result)
            result.recovered += 1
        return unresolved

    def _keep_open(
        self, intent: ActionRow, enr: EnrollmentRow, lead: LeadRow, result: TickResult
    ) -> bool:
        """An attempt the provider does not show (yet). It may still be executing: the intent
        stays open, and its lead waits, until `settle_after` has passed since the attempt's
        outcome became unknown (a TIMEOUT postpones the lead that long; after a crash the
        window starts at this first look). Asked again when the lead is due, right before its
        next attempt; False: settle it as not done now."""
        if intent.action not in OUTREACH:
            return False  # nothing to duplicate (a connection check): simply ask again
        if enr.state != intent.step or self.compiled(enr.revision).is_terminal(enr.state):
            return False  # the lead moved on: no next attempt of this step follows
        now = self.clock.now()
        due = enr.next_due_at
        if due is not None and due > intent.created_at:
            return due > now  # postponed after the attempt: wait for the end of that window
        self._postpone(enr, lead, now + self.settle_after, "outcome unknown: settling", result)
        return True

    async def _reconcile(
        self,
        intent: ActionRow,
        provider: Provider,
        lead: LeadRow,
        convs: dict[str, list[ConversationSummary] | None],
    ) -> bool:
        """Did the action of ``intent`` happen? Asks the provider, never resends."""
        action = intent.action
        target = Lead(lead.profile_url)
        if action in ("visit_profile", "follow"):
            # harmless if repeated, and nothing to look at: counted done, and said so
            self._unverified[intent.idempotency_key] = f"{action} leaves nothing to check"
            return True
        if action == "connect":
            rel = await provider.relationship(intent.identity, target)
            return rel.status in ("pending", "connected")
        if action == "withdraw_invitation":
            rel = await provider.relationship(intent.identity, target)
            if rel.status == "none" and not rel.verified:
                self._unverified[intent.idempotency_key] = (
                    "no pending invitation seen, but the provider cannot list sent invitations"
                )
            return rel.status == "none"
        if action in MESSAGES:
            summaries = convs.get(intent.identity)
            if summaries is None:
                summaries = convs[intent.identity] = await provider.sync_conversations(
                    intent.identity
                )
            request = (intent.response or {}).get("request") or {}
            text = request.get("text") if isinstance(request, dict) else None
            for s in summaries:
                if s.profile_url != lead.profile_url:
                    continue
                if text and text.strip() in {t.strip() for t in s.our_texts}:
                    return True
                # No text to compare (or a provider that reformats it): our message is the
                # last one and came after the intent. Erring this way can lose a step, never
                # send it twice.
                return s.last_sender_is_us and s.last_activity_at >= intent.created_at
            return False
        return False  # check_connection and the like: no side effect, simply ask again

    def _settle(
        self, intent: ActionRow, enr: EnrollmentRow, lead: LeadRow, done: bool, result: TickResult
    ) -> None:
        now = self.clock.now()
        unverified = self._unverified_event(intent.idempotency_key, intent.action, enr, lead)
        with self.store.transaction() as conn:
            if done:
                self.store.log_outcome(
                    intent.idempotency_key,
                    "done",
                    at=now,
                    label="ok",
                    response={"reconciled": True, "unverified": unverified is not None},
                    conn=conn,
                )
                if unverified is not None:
                    self.store.record_events([unverified], conn=conn)
                if enr.state == intent.step and not self.compiled(enr.revision).is_terminal(
                    enr.state
                ):
                    if intent.action in MESSAGES:
                        self.store.put_conversation(
                            enr.identity,
                            lead.profile_url,
                            last_sender_is_us=True,
                            last_activity_at=now,
                            conn=conn,
                        )
                    self._transition(
                        enr,
                        lead,
                        "ok",
                        result,
                        conn=conn,
                        action=intent.action,
                        label="ok",
                        detail="reconciled after a lost answer",
                    )
            else:
                self.store.log_outcome(
                    intent.idempotency_key, "unknown", at=now, label="NOT_DONE", conn=conn
                )
                self.store.record_event(
                    "reconciled",
                    lead.profile_url,
                    {"action": intent.action, "done": False},
                    at=now,
                    enrollment_id=enr.id,
                    from_state=enr.state,
                    revision=enr.revision,
                    conn=conn,
                )

    def _unverified_event(
        self, key: str, action: str, enr: EnrollmentRow, lead: LeadRow
    ) -> dict[str, Any] | None:
        """The ``reconciled-unverified`` event (shown by `seqrun why`) when _reconcile counted
        ``key`` done without evidence; None when it looked."""
        reason = self._unverified.pop(key, None)
        if reason is None:
            return None
        return {
            "kind": "reconciled-unverified",
            "subject": lead.profile_url,
            "data": {"action": action, "key": key, "reason": reason},
            "at": self.clock.now(),
            "enrollment_id": enr.id,
            "from_state": enr.state,
            "revision": enr.revision,
        }

    def _provider_name(self, enr: EnrollmentRow) -> str:
        return self._sequence(enr.revision).provider

    def _provider_for(self, enr: EnrollmentRow) -> Provider | None:
        return self.providers.get(self._provider_name(enr))

    # ---- health of paused identities --------------------------------------------------------

    async def _check_paused_identities(
        self, result: TickResult, identities: list[IdentityRow] | None = None
    ) -> None:
        for ident in identities if identities is not None else self.store.list_identities():
            if ident.status != "auth_expired":
                continue
            provider = self.providers.get(ident.provider)
            if provider is None:
                continue
            try:
                healthy = await provider.identity_healthy(ident.id)
            except ProviderError as exc:
                log.info("health check of %s failed: %s", ident.id, exc.label)
                continue
            if not healthy:
                continue
            now = self.clock.now()
            with self.store.transaction() as conn:
                self.store.set_identity_status(ident.id, "active", None, conn=conn)
                resumed = self.store.set_enrollments_paused(False, identity=ident.id, conn=conn)
                self.store.record_event(
                    "identity_resumed", ident.id, {"enrollments": resumed}, at=now, conn=conn
                )
            result.resumed_identities.append(ident.id)
            log.warning("identity %s healthy again: %d enrollments resumed", ident.id, resumed)

    # ---- the tick ---------------------------------------------------------------------------

    async def tick(self) -> TickResult:
        """Recover, resume healthy identities, then run every due enrollment once."""
        self._check_lock()
        result = TickResult(self.clock.now())
        with self.store.transaction() as conn:  # the tick's reads, one short transaction
            killed = self.store.kv_get(*KILL_SWITCH, conn=conn)
            pending = self.store.pending_intents(conn=conn)
            identities = self.store.list_identities(conn=conn)
        if killed:
            result.killed = True
            return result
        unresolved = await self.recover(result, pending) if pending else set()
        if any(i.status == "auth_expired" for i in identities):
            await self._check_paused_identities(result, identities)
        if pending or result.paused_identities or result.resumed_identities:
            identities = self.store.list_identities()
        self._blocked = bool(unresolved) or any(i.status == "auth_expired" for i in identities)
        now = self.clock.now()
        statuses = {i.id: i.status for i in identities}
        self._identity_rows = {i.id: i for i in identities}
        seen: set[int] = set()
        while True:  # in batches of `due_batch`, so memory stays flat however many are due
            with self.store.transaction() as conn:
                due = self.store.due_enrollments(now, limit=self.due_batch, conn=conn)
                fresh = [e for e in due if e.id not in seen]
                if not fresh:
                    break
                leads = self.store.leads_by_ids({e.lead_id for e in fresh}, conn=conn)
                urls = (lead.profile_url for lead in leads.values())
                dnc = set(self.store.do_not_contact(urls, conn=conn))
            seen.update(e.id for e in fresh)
            await self._run_due(fresh, leads, dnc, unresolved, statuses, result)
            if len(due) < self.due_batch:
                break
            statuses = {i.id: i.status for i in self.store.list_identities()}
        if result.paused_identities:
            self._blocked = True
        for hook in self.tick_hooks:
            if await hook(result):
                self._blocked = True
        self._check_lock()
        return result

    async def _run_due(
        self,
        due: list[EnrollmentRow],
        leads: Mapping[int, LeadRow],
        dnc: set[str],
        unresolved: set[int],
        statuses: Mapping[str, str],
        result: TickResult,
    ) -> None:
        """Group by identity; identities in parallel, each one serially."""
        groups: dict[tuple[str, str], list[EnrollmentRow]] = {}
        for enr in due:
            if enr.id in unresolved or statuses.get(enr.identity, "active") != "active":
                continue
            groups.setdefault((self._provider_name(enr), enr.identity), []).append(enr)
        result.due += sum(len(v) for v in groups.values())
        tasks: list[asyncio.Future[None]] = []
        for (pname, identity), batch in groups.items():
            provider = self.providers.get(pname)
            if provider is None:
                log.error("no provider %r for identity %s", pname, identity)
                continue
            if identity not in self._known_identities:
                if identity not in self._identity_rows:  # registered already: nothing to write
                    self.store.put_identity(identity, pname)
                self._known_identities.add(identity)
            ctx = _IdentityCtx(identity, pname, provider)
            tasks.append(asyncio.ensure_future(self._run_identity(ctx, batch, leads, result, dnc)))
        if tasks:
            await _all_or_cancel(tasks)

    async def _run_identity(
        self,
        ctx: _IdentityCtx,
        batch: list[EnrollmentRow],
        leads: Mapping[int, LeadRow],
        result: TickResult,
        dnc: set[str],
    ) -> None:
        try:
            await self._run_waves(ctx, batch, leads, result, dnc)
        except SeqrunError as exc:  # a refused key, a lost lock...: one line, no traceback
            log.error(
                "identity %s: tick failed: %s",
                ctx.identity,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            result.errors.append(f"{ctx.identity}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not stop the other identities (nor the daemon)
            log.exception("identity %s: tick failed", ctx.identity)
            result.errors.append(f"{ctx.identity}: {type(exc).__name__}: {exc}")
        self._flush(ctx)  # not on a BaseException (a kill): open intents stay for recover()

    def _flush(self, ctx: _IdentityCtx, conn: Connection | None = None) -> None:
        w = ctx.w
        if not w:
            return
        self.store.write_batch(
            outcomes=w.outcomes,
            transitions=list(w.transitions.values()),
            reschedules=list(w.reschedules.values()),
            events=w.events,
            conversations=w.conversations,
            connections=w.connections,
            conn=conn,
        )
        ctx.w = _Writes()

    async def _run_waves(
        self,
        ctx: _IdentityCtx,
        batch: list[EnrollmentRow],
        leads: Mapping[int, LeadRow],
        result: TickResult,
        dnc: set[str],
    ) -> None:
        """Waves: walk every due lead up to its next action (rules applied), commit all the
        intents of the wave at once, call them one by one, commit their outcomes and
        transitions at once; leads whose next step is due at once go on in the next wave."""
        current = [(enr, leads[enr.lead_id]) for enr in batch if enr.lead_id in leads]
        for _ in range(MAX_CHAIN):
            planned: list[_Planned] = []
            for i, (enr, lead) in enumerate(current):
                if ctx.stopped:
                    break
                try:
                    p = await self._advance(ctx, enr, lead, result, dnc)
                except _Stop:
                    break
                except ProviderError as exc:
                    # The sync failed: nothing is sent blind.
                    if exc.label not in vocab.TRANSIENT_LABELS and exc.label != vocab.LIMIT_REACHED:
                        # not an outage (an identity the provider does not know, refused
                        # parameters): retrying cannot help, a human has to look
                        self._sync_refused(ctx, exc, result)
                        break
                    # an outage: the leads not yet looked at retry after a backoff that grows
                    # with the identity's failed syncs in a row
                    failures = self._sync_failures.get(ctx.identity, 0) + 1
                    self._sync_failures[ctx.identity] = failures
                    until = self.clock.now() + self._backoff(failures, exc.retry_after)
                    for other, other_lead in current[i:]:
                        self._postpone(
                            other, other_lead, until, f"sync failed: {exc.label}", result, ctx=ctx
                        )
                    break
                if p is not None:
                    planned.append(p)
            if ctx.stopped or not planned:
                return
            self._check_lock()
            with self.store.transaction() as conn:
                self._flush(ctx, conn)
                keys = self.store.log_intents(
                    (
                        {
                            "enrollment_id": p.enr.id,
                            "sequence": p.enr.sequence,
                            "revision": p.enr.revision,
                            "step": p.step.id,
                            "identity": ctx.identity,
                            "action": p.step.action,
                            "at": p.at,
                            "holder": self.holder,
                            "request": {
                                k: v
                                for k, v in p.params.items()
                                if isinstance(v, str | int | float | bool)
                            },
                        }
                        for p in planned
                    ),
                    conn=conn,
                )
            moved: list[tuple[datetime, tuple[EnrollmentRow, LeadRow]]] = []
            for p, key in zip(planned, keys, strict=True):
                new = await self._call(ctx, p, key, result)
                if new is not None and new.next_due_at is not None:
                    moved.append((new.next_due_at, (new, p.lead)))
            self._flush(ctx)
            now = self.clock.now()  # the leads whose next step is due by now go on at once
            current = [pair for due, pair in moved if due <= now]

    async def _ensure_synced(self, ctx: _IdentityCtx, result: TickResult) -> None:
        """Once per identity per tick: its own id (cached) and its conversations."""
        if ctx.synced:
            return
        cache = ctx.conv if ctx.conv is not None else self.store.conversations(ctx.identity)
        try:
            ident = self._identity_rows.get(ctx.identity)  # read at the start of the tick
            if ident is None or ident.profile_id is None:
                ident = self.store.get_identity(ctx.identity)
            if ident is None or ident.profile_id is None:
                me = await ctx.provider.me(ctx.identity)
                self.store.put_identity(ctx.identity, ctx.provider_name, profile_id=me)
            elif ident.provider == ctx.provider_name:
                # the id was read from this provider before: an adapter that can take it
                # skips its own `me` call (optional, not part of the Provider protocol)
                prime = getattr(ctx.provider, "prime_me", None)
                if prime is not None:
                    prime(ctx.identity, ident.profile_id)
            summaries = await ctx.provider.sync_conversations(ctx.identity)
        except ProviderError as exc:
            if exc.label == vocab.AUTH_EXPIRED:
                self._pause_identity(ctx, "AUTH_EXPIRED during the conversation sync", result)
                raise _Stop from exc
            raise
        changed: list[ConversationSummary] = []
        for s in summaries:
            old = cache.get(s.profile_url)
            if (
                old is None
                or old.last_sender_is_us != s.last_sender_is_us
                or old.last_activity_at != s.last_activity_at
            ):
                changed.append(s)
        now = self.clock.now()
        if changed:
            with self.store.transaction() as conn:
                for s in changed:
                    self.store.put_conversation(
                        ctx.identity,
                        s.profile_url,
                        last_sender_is_us=s.last_sender_is_us,
                        last_activity_at=s.last_activity_at,
                        first_sender_is_us=s.first_sender_is_us,
                        conn=conn,
                    )
                    cache[s.profile_url] = ConversationRow(
                        ctx.identity,
                        s.profile_url,
                        s.last_sender_is_us,
                        s.last_activity_at,
                        s.first_sender_is_us,
                    )
            replied = [s.profile_url for s in changed if not s.last_sender_is_us]
            if replied:
                self._replies(ctx, replied, now, result)
        ctx.conv = cache
        ctx.synced = True
        self._last_sync[ctx.identity] = now
        self._sync_failures.pop(ctx.identity, None)

    def _replies(
        self, ctx: _IdentityCtx, urls: Iterable[str], now: datetime, result: TickResult
    ) -> None:
        """The lead wrote: every live enrollment of that lead on this identity gets ``reply``."""
        urls = list(urls)
        for i in range(0, len(urls), 500):
            chunk = urls[i : i + 500]
            for enr, lead in self.store.live_enrollments_for_profiles(ctx.identity, chunk):
                compiled = self.compiled(enr.revision)
                if "reply" not in compiled.triggers(enr.state):
                    continue
                self._transition(enr, lead, "reply", result, detail="the lead wrote to us", ctx=ctx)
                ctx.replied.add(enr.id)

    async def _ensure_connections(self, ctx: _IdentityCtx) -> set[str] | None:
        """The identity's connections, once per tick, when the adapter can list them."""
        if ctx.connections is None:
            lister = getattr(ctx.provider, "connections", None)
            if lister is None:
                return None
            try:
                ctx.connections = set(await lister(ctx.identity))
            except ProviderError as exc:
                if exc.label == vocab.AUTH_EXPIRED:
                    raise
                return None
        return ctx.connections

    async def _advance(
        self,
        ctx: _IdentityCtx,
        enr: EnrollmentRow,
        lead: LeadRow,
        result: TickResult,
        dnc: set[str],
    ) -> _Planned | None:
        """Walk one enrollment through its due non-action steps; returns its next action when
        every rule lets it go now (None: waiting, postponed or finished)."""
        for _ in range(MAX_CHAIN):
            now = self.clock.now()
            if enr.id in ctx.replied or enr.next_due_at is None or enr.next_due_at > now:
                return None
            compiled = self.compiled(enr.revision)
            if compiled.is_terminal(enr.state):
                ctx.w.reschedule(enr.id, None, enr.attempts, enr.last_error)
                return None
            step = compiled.step(enr.state)
            entered = enr.step_entered_at or now
            if isinstance(step, ActionStep):  # the common case first
                planned = await self._plan_action(ctx, enr, lead, step, compiled, now, result, dnc)
                if not isinstance(planned, EnrollmentRow):
                    return planned
                enr = planned
            elif isinstance(step, WaitStep):
                if now < entered + step.duration:
                    ctx.w.reschedule(enr.id, entered + step.duration, enr.attempts, enr.last_error)
                    return None
                enr = self._transition(enr, lead, "elapsed", result, ctx=ctx, compiled=compiled)
            elif isinstance(step, WaitForStep):
                nxt = await self._wait_for(ctx, enr, lead, step, entered, result)
                if nxt is None:
                    return None
                enr = nxt
            elif isinstance(step, BranchStep):
                branch = self._branch(step, lead)
                enr = self._transition(enr, lead, branch, result, ctx=ctx, compiled=compiled)
            elif isinstance(step, EndStep):
                enr = self._transition(enr, lead, "ok", result, ctx=ctx, compiled=compiled)
            else:  # pragma: no cover - the model has no other step kinds
                return None
        return None

    def _branch(self, step: BranchStep, lead: LeadRow) -> str:
        env = SandboxedEnvironment()
        data = {**lead.data, "linkedin_profile_url": lead.profile_url}
        for n, case in enumerate(step.cases):
            try:
                if env.compile_expression(case.condition)(lead=data):
                    return f"case_{n}"
            except Exception as exc:  # a bad expression is a manifest bug: take else
                log.warning("branch %s: %s", step.id, exc)
        return "else"

    async def _wait_for(
        self,
        ctx: _IdentityCtx,
        enr: EnrollmentRow,
        lead: LeadRow,
        step: WaitForStep,
        entered: datetime,
        result: TickResult,
    ) -> EnrollmentRow | None:
        now = self.clock.now()
        deadline = entered + step.timeout
        if step.event == "connection_accepted":
            connected = await self._is_connected(ctx, enr, lead, result)
            if connected:
                return self._transition(enr, lead, "accepted", result, ctx=ctx)
            if now >= deadline:
                return self._transition(enr, lead, "timeout", result, ctx=ctx)
            ctx.w.reschedule(
                enr.id, min(self._next_poll(now), deadline), enr.attempts, enr.last_error
            )
            return None
        # wait_for reply: the sync detects replies (and fires `reply` itself)
        await self._ensure_synced(ctx, result)
        if enr.id in ctx.replied:
            return None
        if now >= deadline:
            return self._transition(enr, lead, "timeout", result, ctx=ctx)
        ctx.w.reschedule(enr.id, deadline, enr.attempts, enr.last_error)
        return None

    async def _is_connected(
        self, ctx: _IdentityCtx, enr: EnrollmentRow, lead: LeadRow, result: TickResult
    ) -> bool:
        try:
            conns = await self._ensure_connections(ctx)
            if conns is not None:
                status = "connected" if lead.profile_url in conns else "unknown"
            else:
                rel = await ctx.provider.relationship(ctx.identity, Lead(lead.profile_url))
                status = rel.status
        except ProviderError as exc:
            if exc.label == vocab.AUTH_EXPIRED:
                self._pause_identity(ctx, "AUTH_EXPIRED while checking a connection", result)
                raise _Stop from exc
            return False
        if status == "connected":
            ctx.w.connections.append(
                {
                    "identity": ctx.identity,
                    "profile_url": lead.profile_url,
                    "status": "connected",
                    "checked_at": self.clock.now(),
                }
            )
        return status == "connected"

    async def _plan_action(
        self,
        ctx: _IdentityCtx,
        enr: EnrollmentRow,
        lead: LeadRow,
        step: ActionStep,
        compiled: CompiledSequence,
        now: datetime,
        result: TickResult,
        dnc: set[str],
    ) -> _Planned | EnrollmentRow | None:
        """The seed guide's rules before an action, in order, at ``now`` (the caller's
        reading, read again after a sync). Returns the planned action, the enrollment moved
        without a call (reply, already connected...), or None (postponed)."""
        seq = self._sequence(enr.revision)
        action = step.action
        # 1. sync before send; a lead who wrote (first or back) is a human's now. A visit or
        # a connection check sends nothing: a sync younger than `visit_sync_age` will do.
        last = self._last_sync.get(ctx.identity)
        if not ctx.synced and (
            action in OUTREACH or last is None or now - last > self.visit_sync_age
        ):
            await self._ensure_synced(ctx, result)
            now = self.clock.now()  # the sync took its time
        if enr.id in ctx.replied:
            return None  # the sync moved it (reply)
        if ctx.conv is None:
            ctx.conv = self.store.conversations(ctx.identity)
        conv = ctx.conv.get(lead.profile_url)
        if (
            conv is not None
            and not conv.last_sender_is_us
            and "reply" in compiled.triggers(enr.state)
        ):
            return self._transition(
                enr, lead, "reply", result, detail="the lead wrote to us", ctx=ctx
            )
        # 2. do-not-contact
        if lead.profile_url in dnc:
            return self._transition(
                enr,
                lead,
                "do_not_contact",
                result,
                dest="stopped",
                detail="on the do-not-contact list",
                ctx=ctx,
            )
        # 3. already connected: no invitation to send
        if action == "connect":
            if ctx.links is None:
                ctx.links = self.store.connection_statuses(ctx.identity)
            known = (ctx.connections is not None and lead.profile_url in ctx.connections) or (
                ctx.links.get(lead.profile_url) == "connected"
            )
            if known:
                return self._transition(
                    enr,
                    lead,
                    vocab.ALREADY_CONNECTED,
                    result,
                    action=action,
                    label=vocab.ALREADY_CONNECTED,
                    detail="already connected (no call)",
                    ctx=ctx,
                )
        # 4. cooldown: the conversation moved recently
        if action in MESSAGES and seq.cooldown and conv is not None:
            until = conv.last_activity_at + seq.cooldown
            if now < until:
                self._postpone(enr, lead, until, "cooldown", result, ctx=ctx)
                return None
        # 5. business window in the lead's timezone
        opening = (
            None
            if seq.window is None
            else window_opening(seq.window, self._lead_zone(seq, lead), now)
        )
        if opening is not None:
            self._postpone(enr, lead, opening, "outside the sending window", result, ctx=ctx)
            return None
        # 6. limits per identity per rolling 24 h, shared by every sequence (a planned action
        # counts at once; a failed one gives its slot back)
        limit = self._limit(enr.revision, ctx, action)
        usage = self._usage(ctx, action, now)
        saturated = ctx.saturated.get(action)
        if saturated is not None and saturated > now:
            self._postpone(enr, lead, saturated, "LIMIT_REACHED (provider)", result, ctx=ctx)
            return None
        if limit is not None and len(usage) >= limit:
            until = usage[0] + DAY if usage and limit > 0 else now + DAY
            self._postpone(enr, lead, until, f"{action} limit {limit}/24h reached", result, ctx=ctx)
            return None
        # 7. render
        try:
            params = {
                k: render(v, {**lead.data, "linkedin_profile_url": lead.profile_url}, str(enr.id))
                if isinstance(v, str)
                else v
                for k, v in step.with_.items()
            }
        except Exception as exc:  # an undefined variable or a template error
            return self._transition(
                enr,
                lead,
                vocab.INVALID_INPUT,
                result,
                action=action,
                label=vocab.INVALID_INPUT,
                detail=f"template: {exc}",
                ctx=ctx,
            )
        if action != "check_connection":
            usage.append(now)
        return _Planned(enr, lead, step, params, now, compiled)

    def _release(self, ctx: _IdentityCtx, p: _Planned) -> None:
        """Give back the limit slot a planned action took (it did not happen)."""
        usage = ctx.usage.get(p.step.action)
        if usage is not None and p.step.action != "check_connection":
            with contextlib.suppress(ValueError):
                usage.remove(p.at)

    async def _call(
        self, ctx: _IdentityCtx, p: _Planned, key: str, result: TickResult
    ) -> EnrollmentRow | None:
        """One provider call of a wave; its outcome and transition go to the wave's writes."""
        now = self.clock.now()
        saturated = ctx.saturated.get(p.step.action)
        if p.enr.id in ctx.replied:  # a sync later in the wave found the lead's reply
            ctx.w.outcomes.append(
                {
                    "key": key,
                    "status": "failed",
                    "label": "NOT_CALLED",
                    "response": None,
                    "finished_at": now,
                }
            )
            self._release(ctx, p)
            return None
        if ctx.stopped or (saturated is not None and saturated > now):
            # Not called: the identity was paused, or the provider said its limit is reached.
            ctx.w.outcomes.append(
                {
                    "key": key,
                    "status": "failed",
                    "label": "NOT_CALLED",
                    "response": None,
                    "finished_at": now,
                }
            )
            self._release(ctx, p)
            if not ctx.stopped and saturated is not None:
                self._postpone(
                    p.enr, p.lead, saturated, "LIMIT_REACHED (provider)", result, ctx=ctx
                )
            return None
        self._check_lock()  # a lost lock: not one more call (its intent stays for recover)
        try:
            outcome = await ctx.provider.perform(
                ctx.identity, p.step.action, self._lead_for_provider(p.enr, p.lead, key), p.params
            )
        except ProviderError as exc:
            return await self._on_error(ctx, p, key, exc, result)
        except Exception as exc:  # not translated by the adapter: the call may have happened
            log.exception("provider %s failed on %s", ctx.provider_name, key)
            err = ProviderError(vocab.TIMEOUT, f"{type(exc).__name__}: {exc}")
            return await self._on_error(ctx, p, key, err, result)
        return self._succeeded(ctx, p, key, outcome.status, outcome.data, result)

    def _usage(self, ctx: _IdentityCtx, action: str, now: datetime) -> deque[datetime]:
        usage = ctx.usage.get(action)
        if usage is None:
            usage = ctx.usage[action] = deque(
                self.store.action_times(ctx.identity, action, now - DAY)
            )
        while usage and usage[0] <= now - DAY:
            usage.popleft()
        return usage

    def _succeeded(
        self,
        ctx: _IdentityCtx,
        p: _Planned,
        key: str,
        status: str | None,
        data: Mapping[str, Any],
        result: TickResult,
    ) -> EnrollmentRow:
        now = self.clock.now()
        action, url = p.step.action, p.lead.profile_url
        trigger = "ok"
        if action == "check_connection":
            trigger = {
                "connected": "ok",
                "pending": vocab.INVITATION_PENDING,
                "not_connected": vocab.NOT_CONNECTED,
            }.get(status or "", "ok")
        ctx.w.outcomes.append(
            {
                "key": key,
                "status": "done",
                "label": status or "ok",
                "response": data if isinstance(data, dict) else dict(data),  # bounded by the store
                "finished_at": now,
            }
        )
        if action in MESSAGES:
            ctx.w.conversations.append(
                {
                    "identity": ctx.identity,
                    "profile_url": url,
                    "last_sender_is_us": True,
                    "last_activity_at": now,
                    "first_sender_is_us": None,
                }
            )
            if ctx.conv is not None:
                ctx.conv[url] = ConversationRow(ctx.identity, url, True, now, None)
        elif action == "connect":
            ctx.w.connections.append(
                {
                    "identity": ctx.identity,
                    "profile_url": url,
                    "status": "pending",
                    "checked_at": now,
                }
            )
        result.actions += 1
        return self._transition(
            p.enr,
            p.lead,
            trigger,
            result,
            action=action,
            label=status or "ok",
            data={"key": key},
            ctx=ctx,
            now=now,
            compiled=p.compiled,
        )

    async def _on_error(
        self, ctx: _IdentityCtx, p: _Planned, key: str, exc: ProviderError, result: TickResult
    ) -> EnrollmentRow | None:
        enr, lead, step = p.enr, p.lead, p.step
        now = self.clock.now()
        label = exc.label
        compiled = self.compiled(enr.revision)
        response = {
            "label": label,
            "message": exc.message,
            "status": exc.status,
            "params": bounded(exc.params),
        }

        def outcome(status: str) -> None:
            ctx.w.outcomes.append(
                {
                    "key": key,
                    "status": status,
                    "label": label,
                    "response": response,
                    "finished_at": now,
                }
            )

        if label == vocab.TIMEOUT:
            # The call may have happened: ask before deciding (never resend blindly).
            request = {k: v for k, v in p.params.items() if isinstance(v, str)}
            intent = ActionRow(
                0,
                key,
                enr.id,
                enr.sequence,
                enr.revision,
                step.id,
                0,
                ctx.identity,
                step.action,
                "intent",
                None,
                {"request": request},
                p.at,
                None,
            )
            try:
                done = await self._reconcile(intent, ctx.provider, lead, {})
            except ProviderError as rexc:
                # Cannot tell yet: the intent stays open (recover() asks again next tick)
                # and the lead waits; resending now could duplicate.
                until = now + self._backoff(enr.attempts + 1, rexc.retry_after)
                until = max(until, now + self.settle_after)
                self._postpone(
                    enr,
                    lead,
                    until,
                    f"TIMEOUT, outcome unknown ({rexc.label})",
                    result,
                    attempts=enr.attempts + 1,
                    last_error=str(exc),
                    ctx=ctx,
                )
                if rexc.label == vocab.AUTH_EXPIRED:
                    self._pause_identity(ctx, "AUTH_EXPIRED while reconciling", result)
                return None
            unverified = self._unverified_event(key, step.action, enr, lead)
            if done:
                if unverified is not None:
                    ctx.w.events.append(unverified)
                data = {"reconciled": True, "unverified": unverified is not None}
                return self._succeeded(ctx, p, key, None, data, result)
            # Not there (yet): the provider may still be executing it. The intent stays open
            # (no outcome): recover() asks again before any next attempt, and the lead waits
            # at least `settle_after` (see _settle_open).
        self._release(ctx, p)
        if label == vocab.AUTH_EXPIRED and compiled.pauses(enr.state, label):
            outcome("failed")
            self._pause_identity(ctx, f"AUTH_EXPIRED on {step.action}", result)
            return None
        if label == vocab.LIMIT_REACHED:
            until = _parse_time(exc.params.get("postponed_until")) or now + timedelta(hours=1)
            if until <= now:
                until = now + timedelta(minutes=5)
            ctx.saturated[step.action] = until
            outcome("failed")
            self._postpone(enr, lead, until, "LIMIT_REACHED", result, ctx=ctx)
            return None
        if label in vocab.TRANSIENT_LABELS:
            attempts = enr.attempts + 1
            if label != vocab.TIMEOUT:
                outcome("failed")
            if attempts <= self.retry_cap:
                until = now + self._backoff(attempts, exc.retry_after)
                if label == vocab.TIMEOUT:
                    until = max(until, now + self.settle_after)
                self._postpone(
                    enr,
                    lead,
                    until,
                    f"{label}: retry {attempts}",
                    result,
                    attempts=attempts,
                    last_error=str(exc),
                    ctx=ctx,
                )
                return None
            detail = f"{label} after {self.retry_cap} retries: {exc.message or label}"
            return self._transition(
                enr, lead, label, result, action=step.action, label=label, detail=detail, ctx=ctx
            )
        outcome("failed")
        if label == vocab.ALREADY_CONNECTED:
            ctx.w.connections.append(
                {
                    "identity": ctx.identity,
                    "profile_url": lead.profile_url,
                    "status": "connected",
                    "checked_at": now,
                }
            )
        return self._transition(
            enr,
            lead,
            label,
            result,
            action=step.action,
            label=label,
            detail=exc.message or label,
            ctx=ctx,
        )

    # ---- loops ------------------------------------------------------------------------------

    async def run_until(
        self,
        until: datetime,
        step: timedelta = timedelta(hours=1),
        *,
        on_tick: Callable[[TickResult], None] | None = None,
    ) -> RunSummary:
        """Tick, then move the clock to min(next due, now + step, until); repeat until
        ``until``. On a VirtualClock a month takes seconds (its ``sleep`` is instant).
        ``on_tick`` sees every tick's result (the CLI draws progress with it)."""
        summary = RunSummary(self.clock.now(), self.clock.now())
        while True:
            tick = await self.tick()
            summary.add(tick)
            if on_tick is not None:
                on_tick(tick)
            now = self.clock.now()
            if now >= until:
                return summary
            # Jump to the next due time; step in `step`s only while something waits on the
            # provider (a paused identity's health, an intent not yet reconciled).
            target = min(now + step, until) if self._blocked else until
            nxt = self.store.next_due_at()
            if nxt is not None and nxt < target:
                target = max(nxt, now + timedelta(seconds=1))
            await self.clock.sleep((target - now).total_seconds())

    async def run_forever(
        self,
        poll_interval: float = 30.0,
        *,
        stop: asyncio.Event | None = None,
        on_tick: Callable[[TickResult], None] | None = None,
    ) -> RunSummary:
        """The daemon: tick, sleep until the next due time (at most ``poll_interval``), until
        SIGINT/SIGTERM (or ``stop``). Holds the ``run`` lock so two daemons never race."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        summary = RunSummary(self.clock.now(), self.clock.now())
        try:
            ttl = timedelta(seconds=max(120, poll_interval * 4))
            async with self.hold_run_lock(ttl) as held:
                while not stop.is_set():
                    tick = await self.tick()
                    summary.add(tick)
                    if on_tick is not None:
                        on_tick(tick)
                    held.refresh()
                    now = self.clock.now()
                    nxt = self.store.next_due_at()
                    wait = poll_interval
                    if nxt is not None:
                        wait = min(wait, max(0.0, (nxt - now).total_seconds()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.05))
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        return summary


async def _all_or_cancel(tasks: list[asyncio.Future[None]]) -> None:
    """Wait for every identity; if one dies (a crash, a kill), cancel the others, wait for
    them to unwind, and re-raise. Pending intents are left for :meth:`Runner.recover`."""
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failure: BaseException | None = None
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            failure = t.exception()
            break
    if failure is None:
        return
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    raise failure
