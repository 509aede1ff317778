"""The runner: walks every due enrollment through its compiled machine by calling providers.

One :meth:`Runner.tick` takes the due enrollments (``next_due_at <= now``, by index), groups
them by identity and runs the identities in parallel; one identity's actions run serially.
Before its first action in a tick an identity syncs its conversations once (sync-before-send,
the ``last_message`` optimization: a conversation whose last sender is not us is a reply;
:mod:`engine.run.sync`), then each due lead goes through the seed guide's rules in order
(:mod:`engine.run.rules`), then the call, whose outcome routes the lead
(:mod:`engine.run.outcomes`).

Exactly once: the intent row (key ``enrollment:step:attempt``) is committed before the call;
the outcome and the transition are committed together as it returns (with the next call's
intent, so one commit a call). :meth:`Runner.recover` (run at
the start of every tick) reconciles intents without outcome against the provider before
anything is resent; a ``TIMEOUT`` is reconciled the same way (:mod:`engine.run.recovery`).

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from engine import vocab
from engine.clock import Clock
from engine.compile.machine import CompiledSequence
from engine.errors import ProviderError, SeqrunError
from engine.providers.base import Provider
from engine.run.async_runs import ASYNC, AsyncRuns
from engine.run.commits import GroupCommit
from engine.run.experiments import Experiments
from engine.run.guards import Guards
from engine.run.inbound import Inbound
from engine.run.leases import IdentityLeases, LeaseLost, lease_ttl
from engine.run.locks import RUN_LOCK, RunLock
from engine.run.moves import Moves
from engine.run.outcomes import Outcomes
from engine.run.recovery import Recovery
from engine.run.results import RunSummary, StepRecord, TickResult
from engine.run.rules import Rules, window_opening
from engine.run.state import (
    DAY,
    MAX_CHAIN,
    IdentityTick,
    Planned,
    Resolver,
    RunState,
    Settings,
    Stop,
    Writes,
    all_or_cancel,
    compiled_from_store,
)
from engine.run.steps import Steps
from engine.run.sync import Sync, sync_force
from engine.store import ActionRow, EnrollmentRow, IdentityRow, LeadRow, LockHandle, Store
from engine.vocab import KILL_SWITCH

__all__ = [
    "DAY",
    "MAX_CHAIN",
    "RUN_LOCK",
    "RunSummary",
    "Runner",
    "StepRecord",
    "TickHook",
    "TickResult",
    "compiled_from_store",
    "window_opening",
]

log = logging.getLogger(__name__)

TickHook = Callable[[TickResult], Awaitable[bool]]

_Pair = tuple[EnrollmentRow, LeadRow]


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
        async_callback: Mapping[str, Any] | None = None,
        async_poll: timedelta = timedelta(minutes=5),
        async_wait: timedelta = timedelta(hours=1),
    ) -> None:
        self.store = store
        # run after every tick that the kill switch did not stop (async Schedules); a hook
        # returning True has work in flight, so run_until steps through time instead of jumping
        self.tick_hooks = tuple(tick_hooks)
        self.providers = providers
        self.clock = clock
        self.settings = Settings(
            retry_cap,
            backoff_base,
            backoff_max,
            accept_poll,
            visit_sync_age,
            due_batch,
            settle_after,
            async_poll,
            async_wait,
            async_callback,
        )
        self._state = state = RunState(store, providers, clock, self.settings, compiled)
        self._commits = GroupCommit(store)
        self._lock = RunLock(state)
        self._moves = moves = Moves(state)
        self._sync = sync = Sync(state, moves)
        self._guards = guards = Guards(state)
        rules = Rules(state, moves, sync, guards)
        self._recovery = Recovery(state, moves, sync)
        self._outcomes = Outcomes(
            state, moves, sync, rules, self._recovery, random.Random(seed)
        )
        self._steps = Steps(state, moves, sync, rules)
        self._async = AsyncRuns(state, moves, self._outcomes, self._recovery)
        self._inbound = Inbound(state, moves)  # what `seqrun serve` received
        self._experiments = Experiments(state)  # declared A/B tests: looks, promotions
        self._known_identities: set[str] = set()
        self._blocked = False  # something waits on the provider (see run_until)
        self._leases: IdentityLeases | None = None  # a worker among others (hold_leases)
        self._cut = False  # this tick ended early with leads due (a lease to claim)

    @property
    def holder(self) -> str | None:
        """The `run` lock holder while hold_run_lock() is on."""
        return self._state.holder

    @property
    def _lock_lost(self) -> str | None:
        return self._lock.lost

    def compiled(self, revision: str) -> CompiledSequence:
        return self._state.compiled(revision)

    def hold_run_lock(
        self, ttl: timedelta = timedelta(minutes=2)
    ) -> contextlib.AbstractAsyncContextManager[LockHandle]:
        """Hold the ``run`` lock (:class:`LockError` if another runner has it) while the block
        runs: refreshed in the background every ``ttl / 4`` so a long tick never outlives it.
        The intents written meanwhile carry its holder, so another runner's recover() leaves
        them alone while this lock lives; a lost lock (expired and taken over) stops this
        runner before its next provider call (the tick raises :class:`LockError`)."""
        return self._lock.hold(ttl)

    @contextlib.asynccontextmanager
    async def hold_leases(self, ttl: timedelta | None = None) -> AsyncIterator[IdentityLeases]:
        """Run as one worker among any number on this store (``seqrun run`` processes):
        every tick first keeps a fair share of the identities leased (:mod:`engine.run.leases`)
        and acts only for those; the leases are renewed in the background every ``ttl / 4``
        and released at the end. A worker that dies frees its identities after ``ttl`` (at
        once when it was a process of this host), and the next holder reconciles their open
        intents before anything of theirs is sent."""
        leases = IdentityLeases(self._state, ttl or lease_ttl())
        async with leases.hold():
            self._leases = leases
            try:
                yield leases
            finally:
                self._leases = None

    async def recover(
        self, result: TickResult | None = None, pending: list[ActionRow] | None = None
    ) -> set[int]:
        """Reconcile intents that have no outcome. Returns the enrollments whose intent could
        not be settled yet (they must not act until it is)."""
        return await self._recovery.recover(result, pending)

    # ---- the tick ---------------------------------------------------------------------------

    async def tick(self) -> TickResult:
        """Recover, resume healthy identities, then run every due enrollment once."""
        self._lock.check()
        self._cut = False
        result = TickResult(self.clock.now())
        # first the received webhooks: an AUTH_EXPIRED pauses its identity before it acts
        self._inbound.drain(result)
        if self._leases is not None:
            self._take_over(self._leases, result)
        with self.store.read() as conn:  # the tick's reads
            killed = self.store.kv_get(*KILL_SWITCH, conn=conn)
            pending = self.store.pending_intents(conn=conn)
            identities = self._mine(self.store.list_identities(conn=conn))
            guarded = self._guards.read(self.store.list_sequences(conn=conn), conn)
        if killed:
            result.killed = True
            return result
        if self._state.owned is not None:  # a worker: its own identities' intents only
            pending = [p for p in pending if p.identity in self._state.owned]
        # the guardrails: the Policy, the caps, the rollouts (a failed canary pauses)
        self._guards.begin(result.at, guarded)
        in_flight: set[int] = set()
        self._state.in_flight = {}
        if pending:  # async runs first: settled by their callback or a poll, never resent
            in_flight, pending = await self._async.settle(pending, result)
        unresolved = await self.recover(result, pending) if pending else set()
        unresolved |= in_flight
        if pending:  # recovery writes conversations behind the kept caches
            self._state.conversations.clear()
        if any(i.status == "auth_expired" for i in identities):
            await self._sync.resume_healthy(result, identities)
        if pending or result.paused_identities or result.resumed_identities:
            identities = self._mine(self.store.list_identities())
        self._blocked = bool(unresolved) or any(i.status == "auth_expired" for i in identities)
        self._state.identity_rows = {i.id: i for i in identities}
        self._experiments.check()  # a promoted winner is what this tick sends
        await self._run_batches(unresolved, {i.id: i.status for i in identities}, result)
        if result.paused_identities or result.submitted:  # async runs wait on the provider
            self._blocked = True
        for hook in self.tick_hooks:
            if await hook(result):
                self._blocked = True
        self._lock.check()
        return result

    def _mine(self, identities: list[IdentityRow]) -> list[IdentityRow]:
        """The identities this runner acts for (a worker: those it holds leases on)."""
        owned = self._state.owned
        return identities if owned is None else [i for i in identities if i.id in owned]

    def _take_over(self, leases: IdentityLeases, result: TickResult) -> None:
        """Keep this worker's fair share of the identities; forget what was cached about the
        ones just claimed (another worker acted for them meanwhile). Their open intents are
        reconciled by this tick's recovery before anything of theirs is sent."""
        leases.tick_started = time.monotonic()
        for claimed in leases.balance():
            identity = claimed.identity
            state = self._state
            state.conversations.pop(identity, None)
            state.last_sync.pop(identity, None)
            state.sync_failures.pop(identity, None)
            if claimed.previous is not None and claimed.previous != leases.id:
                result.taken_over.append(identity)
                log.info("took over identity %s from %s", identity, claimed.previous)

    async def _run_batches(
        self, unresolved: set[int], statuses: Mapping[str, str], result: TickResult
    ) -> None:
        """The due enrollments in batches of `due_batch`, so memory stays flat however many
        are due."""
        now = self.clock.now()
        due_batch = self.settings.due_batch
        seen: set[int] = set()
        while True:
            with self.store.read() as conn:
                due = self.store.due_enrollments(now, limit=due_batch,
                                                 identities=self._state.owned, conn=conn)
                fresh = [e for e in due if e.id not in seen]
                if not fresh:
                    break
                leads = self.store.leads_by_ids({e.lead_id for e in fresh}, conn=conn)
                urls = (lead.profile_url for lead in leads.values())
                dnc = set(self.store.do_not_contact(urls, conn=conn))
            dnc |= self._guards.batch(leads, now)  # the Policy's URLs and domains
            seen.update(e.id for e in fresh)
            await self._run_due(fresh, leads, dnc, unresolved, statuses, result)
            if len(due) < due_batch:
                break
            statuses = {i.id: i.status for i in self.store.list_identities()}

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
        provider_name = self._state.provider_name
        groups: dict[tuple[str, str], list[EnrollmentRow]] = {}
        for enr in due:
            if enr.id in unresolved or statuses.get(enr.identity, "active") != "active":
                continue
            groups.setdefault((provider_name(enr), enr.identity), []).append(enr)
        result.due += sum(len(v) for v in groups.values())
        tasks: list[asyncio.Future[None]] = []
        for (pname, identity), batch in groups.items():
            provider = self.providers.get(pname)
            if provider is None:
                log.error("no provider %r for identity %s", pname, identity)
                continue
            if identity not in self._known_identities:
                if identity not in self._state.identity_rows:  # registered: nothing to write
                    self.store.put_identity(identity, pname)
                self._known_identities.add(identity)
            ctx = IdentityTick(identity, pname, provider, sync_force=sync_force(
                self._state.sequence(e.revision) for e in batch))
            tasks.append(asyncio.ensure_future(self._run_identity(ctx, batch, leads, result, dnc)))
        if tasks:
            await all_or_cancel(tasks)

    async def _run_identity(
        self,
        ctx: IdentityTick,
        batch: list[EnrollmentRow],
        leads: Mapping[int, LeadRow],
        result: TickResult,
        dnc: set[str],
    ) -> None:
        try:
            await self._run_waves(ctx, batch, leads, result, dnc)
        except LeaseLost as exc:  # another worker holds it now: not an error of this run
            log.warning("%s: stopped acting for it", exc)
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
        await self._commit(ctx)  # not on a BaseException (a kill): open intents stay for recover()

    async def _commit(self, ctx: IdentityTick, intents: tuple[Mapping[str, Any], ...] = (),
                      ) -> list[str]:
        """Commit the identity's buffered writes, with ``intents`` after them (their keys),
        together with the other identities' commits asked for meanwhile (GroupCommit)."""
        owned = self._state.owned
        if ctx.w and owned is not None and ctx.identity not in owned:
            # the lease was lost: the identity's new holder reconciles the open intents with
            # the provider; writing these now could overwrite what it has done since
            log.warning("identity %s: lease lost, its last outcomes are left to its new "
                        "holder's recovery", ctx.identity)
            ctx.w = Writes()
        taken, ctx.w = ctx.w, Writes()
        if not intents and not taken:
            return []
        return await self._commits.commit(taken, intents)

    # ---- waves ------------------------------------------------------------------------------

    async def _run_waves(
        self,
        ctx: IdentityTick,
        batch: list[EnrollmentRow],
        leads: Mapping[int, LeadRow],
        result: TickResult,
        dnc: set[str],
    ) -> None:
        """Waves: walk every due lead up to its next action (rules applied), then call them one
        by one, each call's intent committed before it, in the transaction that commits the
        previous call's outcome and transition (one commit a call: a kill orphans at most the
        call in flight); leads whose next step is due at once go on in the next wave."""
        current = [(enr, leads[enr.lead_id]) for enr in batch if enr.lead_id in leads]
        skip, call, submit = self._outcomes.skip, self._outcomes.call, self._async.submit
        called = False  # made a call this tick (a spent tick stops it only after one)
        for _ in range(MAX_CHAIN):
            planned = await self._plan_wave(ctx, current, result, dnc)
            if ctx.stopped or not planned:
                return
            moved: list[tuple[datetime, _Pair]] = []
            for p in planned:
                if skip(ctx, p, result):  # not called (paused, saturated, replied): no intent
                    continue
                self._lock.check()  # a lost lock: no intent, no call
                if self._leases is not None:
                    if self._leases.yielding(ctx.identity):  # a worker joined: its share
                        await self._commit(ctx)  # nothing in flight: its leads stay due
                        self._leases.give_up(ctx.identity)
                        return
                    if called and self._leases.tick_spent():  # the next balance is due
                        self._cut = True  # the daemon ticks again at once
                        return  # its leads stay due (the buffered writes: flushed below)
                    self._leases.check(ctx.identity)  # a lost lease: no intent, no call
                if p.compiled.sequence is not None and p.compiled.sequence.is_async(p.step):
                    new = await submit(ctx, p, await self._log_intent(ctx, p, ASYNC), result)
                else:
                    new = await call(ctx, p, await self._log_intent(ctx, p), result)
                called = True  # then a spent tick may stop it: each tick moves it on
                if new is not None and new.next_due_at is not None:
                    moved.append((new.next_due_at, (new, p.lead)))
            await self._commit(ctx)
            now = self.clock.now()  # the leads whose next step is due by now go on at once
            current = [pair for due, pair in moved if due <= now]

    async def _plan_wave(
        self, ctx: IdentityTick, current: list[_Pair], result: TickResult, dnc: set[str]
    ) -> list[Planned]:
        """Every lead of the wave up to its next action; the actions that may go now."""
        advance = self._steps.advance
        planned: list[Planned] = []
        for i, (enr, lead) in enumerate(current):
            if ctx.stopped:
                break
            try:
                p = await advance(ctx, enr, lead, result, dnc)
            except Stop:
                break
            except ProviderError as exc:
                self._sync_failed(ctx, exc, current[i:], result)  # nothing is sent blind
                break
            if p is not None:
                planned.append(p)
        return planned

    def _sync_failed(
        self, ctx: IdentityTick, exc: ProviderError, rest: list[_Pair], result: TickResult
    ) -> None:
        """The sync failed: the identity is paused when retrying cannot help; after an
        outage the leads not yet looked at retry later."""
        if exc.label not in vocab.TRANSIENT_LABELS and exc.label != vocab.LIMIT_REACHED:
            # not an outage (an identity the provider does not know, refused parameters):
            # retrying cannot help, a human has to look
            self._sync.sync_refused(ctx, exc, result)
            return
        # an outage: a backoff that grows with the identity's failed syncs in a row
        failures = self._state.sync_failures.get(ctx.identity, 0) + 1
        self._state.sync_failures[ctx.identity] = failures
        until = self.clock.now() + self._outcomes.backoff(failures, exc.retry_after)
        postpone = self._moves.postpone
        for other, other_lead in rest:
            postpone(other, other_lead, until, f"sync failed: {exc.label}", result, ctx=ctx)

    async def _log_intent(
        self, ctx: IdentityTick, p: Planned, execution: str | None = None
    ) -> str:
        """Commit the buffered writes (the previous call's outcome and transition, the wave's
        moves so far) with the intent of ``p``'s call, before that call (``execution``:
        ``async`` marks a run/async submission, looked up by key if its answer is lost)."""
        request = {k: v for k, v in p.params.items() if isinstance(v, str | int | float | bool)}
        if execution is not None:
            request["execution"] = execution
        row = {
            "enrollment_id": p.enr.id,
            "sequence": p.enr.sequence,
            "revision": p.enr.revision,
            "step": p.step.id,
            "identity": ctx.identity,
            "action": p.step.action,
            "at": p.at,
            "holder": self._state.holder,
            "request": request,
            "variant": p.variant,
        }
        (key,) = await self._commit(ctx, (row,))  # on PostgreSQL one round trip
        return key

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
            nxt = self.store.next_due_at(identities=self._state.owned)
            if nxt is not None and nxt < target:
                target = max(nxt, now + timedelta(seconds=1))
            await self.clock.sleep((target - now).total_seconds())

    async def run_forever(
        self,
        poll_interval: float = 30.0,
        *,
        stop: asyncio.Event | None = None,
        on_tick: Callable[[TickResult], None] | None = None,
        ttl: timedelta | None = None,
    ) -> RunSummary:
        """The daemon: tick, sleep until the next due time (at most ``poll_interval``), until
        SIGINT/SIGTERM (or ``stop``). A worker among any number on the store (hold_leases):
        it wakes at least every half lease time to keep its fair share of the identities."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        summary = RunSummary(self.clock.now(), self.clock.now())
        try:
            async with self.hold_leases(ttl) as leases:
                leases.tick_budget = leases.rebalance_every
                longest = min(poll_interval, leases.ttl.total_seconds() / 2)
                while not stop.is_set():
                    tick = await self.tick()
                    summary.add(tick)
                    if on_tick is not None:
                        on_tick(tick)
                    wait = self.next_wait(tick, longest)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.05))
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        return summary

    def next_wait(self, tick: TickResult, longest: float) -> float:
        """Seconds the daemon sleeps after ``tick``: until the next due instant, at most
        ``longest``. A lead already due when the tick started and still due after it is one
        the tick could not act for (the kill switch, a paused identity, an intent not yet
        settled): its due instant is not a reason to tick again at once (the daemon spun at
        20 ticks a second redoing the tick's reads for nothing), only a later one is, or a
        tick cut short with leads due (a lease to claim: see IdentityLeases.tick_spent)."""
        after = None if self._cut else tick.at
        nxt = self.store.next_due_at(identities=self._state.owned, after=after)
        if nxt is None:
            return longest
        return min(longest, max(0.0, (nxt - self.clock.now()).total_seconds()))
