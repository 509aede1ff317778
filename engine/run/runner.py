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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from engine import vocab
from engine.clock import Clock
from engine.compile.machine import CompiledSequence
from engine.errors import ProviderError, SeqrunError
from engine.providers.base import Provider
from engine.run.inbound import Inbound
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
from engine.run.sync import Sync
from engine.store import ActionRow, EnrollmentRow, LeadRow, LockHandle, Store
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
        )
        self._state = state = RunState(store, providers, clock, self.settings, compiled)
        self._lock = RunLock(state)
        self._moves = moves = Moves(state)
        self._sync = sync = Sync(state, moves)
        rules = Rules(state, moves, sync)
        self._recovery = Recovery(state, moves, sync)
        self._outcomes = Outcomes(
            state, moves, sync, rules, self._recovery, random.Random(seed)
        )
        self._steps = Steps(state, moves, sync, rules)
        self._inbound = Inbound(state, moves)  # what `seqrun serve` received
        self._known_identities: set[str] = set()
        self._blocked = False  # something waits on the provider (see run_until)

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
        result = TickResult(self.clock.now())
        # first the received webhooks: an AUTH_EXPIRED pauses its identity before it acts
        self._inbound.drain(result)
        with self.store.transaction() as conn:  # the tick's reads, one short transaction
            killed = self.store.kv_get(*KILL_SWITCH, conn=conn)
            pending = self.store.pending_intents(conn=conn)
            identities = self.store.list_identities(conn=conn)
        if killed:
            result.killed = True
            return result
        unresolved = await self.recover(result, pending) if pending else set()
        if pending:  # recovery writes conversations behind the kept caches
            self._state.conversations.clear()
        if any(i.status == "auth_expired" for i in identities):
            await self._sync.resume_healthy(result, identities)
        if pending or result.paused_identities or result.resumed_identities:
            identities = self.store.list_identities()
        self._blocked = bool(unresolved) or any(i.status == "auth_expired" for i in identities)
        self._state.identity_rows = {i.id: i for i in identities}
        await self._run_batches(unresolved, {i.id: i.status for i in identities}, result)
        if result.paused_identities:
            self._blocked = True
        for hook in self.tick_hooks:
            if await hook(result):
                self._blocked = True
        self._lock.check()
        return result

    async def _run_batches(
        self, unresolved: set[int], statuses: Mapping[str, str], result: TickResult
    ) -> None:
        """The due enrollments in batches of `due_batch`, so memory stays flat however many
        are due."""
        now = self.clock.now()
        due_batch = self.settings.due_batch
        seen: set[int] = set()
        while True:
            with self.store.transaction() as conn:
                due = self.store.due_enrollments(now, limit=due_batch, conn=conn)
                fresh = [e for e in due if e.id not in seen]
                if not fresh:
                    break
                leads = self.store.leads_by_ids({e.lead_id for e in fresh}, conn=conn)
                urls = (lead.profile_url for lead in leads.values())
                dnc = set(self.store.do_not_contact(urls, conn=conn))
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
            ctx = IdentityTick(identity, pname, provider)
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

    def _flush(self, ctx: IdentityTick, conn: Connection | None = None) -> None:
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
            notes=w.notes,
            conn=conn,
        )
        ctx.w = Writes()

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
        skip, call = self._outcomes.skip, self._outcomes.call
        for _ in range(MAX_CHAIN):
            planned = await self._plan_wave(ctx, current, result, dnc)
            if ctx.stopped or not planned:
                return
            moved: list[tuple[datetime, _Pair]] = []
            for p in planned:
                if skip(ctx, p, result):  # not called (paused, saturated, replied): no intent
                    continue
                self._lock.check()  # a lost lock: no intent, no call
                new = await call(ctx, p, self._log_intent(ctx, p), result)
                if new is not None and new.next_due_at is not None:
                    moved.append((new.next_due_at, (new, p.lead)))
            self._flush(ctx)
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

    def _log_intent(self, ctx: IdentityTick, p: Planned) -> str:
        """Commit the buffered writes (the previous call's outcome and transition, the wave's
        moves so far) with the intent of ``p``'s call, before that call."""
        request = {k: v for k, v in p.params.items() if isinstance(v, str | int | float | bool)}
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
        }
        with self.store.transaction() as conn:
            self._flush(ctx, conn)
            (key,) = self.store.log_intents((row,), conn=conn)
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

