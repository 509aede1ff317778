"""``execution: async``: an action sent through Edges ``run/async``, its outcome learned later.

The intent is committed before the submission, as for a live call (one journal, one key).
Its run is then tracked in the ``kv`` table (namespace :data:`NS`, keyed by the intent's
idempotency key, which is also the run's ``custom_data``) and the lead waits at its step:

* with a callback URL (``SEQRUN_PUBLIC_URL`` and ``SEQRUN_EDGES_WEBHOOK_SECRET``), Edges
  POSTs the output to ``seqrun serve``; the runner's inbound drain notes it on the entry
  (:func:`note_callback`) and :meth:`AsyncRuns.settle` completes the intent at the start of
  the tick. A callback that has not come after ``async_wait`` is asked about once
  (``GET /runs/{uid}``) and, when the run is unknown, the intent goes to recovery like a
  lost live answer;
* without one, the run is polled (``GET /runs/{uid}``, then ``/outputs``) every
  ``async_poll`` while its lead waits.

A finished run goes through :class:`engine.run.outcomes.Outcomes` as a live answer would
(``succeeded`` or ``on_error`` with the error mapped by Edges' one mapping). A ``BLOCKED`` run
(a smart limit) waits until its ``postponed_until``: Edges retries it, seqrun never resends. An
async intent whose submission answer was lost (a kill, a timeout) is looked up by its key in
``GET /runs`` before recovery may call it not done.

Example::

    runs = AsyncRuns(state, moves, outcomes, recovery)
    in_flight, rest = await runs.settle(store.pending_intents(), result)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine import vocab
from engine.errors import ProviderError
from engine.model import ActionStep
from engine.providers.base import ActionResult, AsyncActions
from engine.run.moves import Moves
from engine.run.outcomes import Outcomes, lead_for_provider
from engine.run.recovery import Recovery
from engine.run.results import TickResult
from engine.run.state import IdentityTick, Planned, RunState, all_or_cancel, write_buffered
from engine.store import ActionRow, EnrollmentRow, LeadRow

log = logging.getLogger(__name__)

NS = "edges-async"  # kv: idempotency key -> {run_uid, identity, action, submitted_at, output?}
WAITING = "async run"  # the lead's `waiting` while its run is in flight
ASYNC = "async"  # an intent's request["execution"]


def is_async_intent(intent: ActionRow) -> bool:
    request = (intent.response or {}).get("request") if isinstance(intent.response, dict) else None
    return isinstance(request, dict) and request.get("execution") == ASYNC


def note_callback(store: Any, payload: Mapping[str, Any], conn: Any) -> str | None:
    """A run callback whose ``custom_data`` names an async run in flight: its output noted on
    the run's entry (completed by the next :meth:`AsyncRuns.settle`); None when it names none
    (a schedule's callback). A second delivery of the same result changes nothing."""
    custom = payload.get("custom_data")
    key = custom.get("idempotency_key") if isinstance(custom, Mapping) else None
    if not isinstance(key, str):
        return None
    entry = store.kv_get(NS, key, conn=conn)
    if not isinstance(entry, dict):
        return f"ignored: no async run in flight for {key} (settled already)"
    if entry.get("output") is not None:
        return f"duplicate: the result of {key} is noted already"
    error = payload.get("error")
    output = {"status": "FAILED" if error else "SUCCEEDED", "data": payload.get("data"),
              "error": error}
    store.kv_put(NS, key, {**entry, "output": output}, conn=conn)
    return f"async result noted for {key}"


class AsyncRuns:
    """Submits async actions and settles their runs (one instance per runner)."""

    def __init__(
        self, state: RunState, moves: Moves, outcomes: Outcomes, recovery: Recovery
    ) -> None:
        self.state = state
        self.store = state.store
        self.clock = state.clock
        self.settings = state.settings
        self.moves = moves
        self.outcomes = outcomes
        self.recovery = recovery

    # ---- submission -------------------------------------------------------------------------

    async def submit(
        self, ctx: IdentityTick, p: Planned, key: str, result: TickResult
    ) -> EnrollmentRow | None:
        """``run/async`` for the planned action (its intent ``key`` committed). An error
        answer is routed as a live one; an accepted run is tracked and its lead waits."""
        provider = ctx.provider
        if not isinstance(provider, AsyncActions):  # lint allows async on Edges only
            return await self.outcomes.call(ctx, p, key, result)
        try:
            uid = await provider.submit_async(
                ctx.identity, p.step.action, lead_for_provider(p, key), p.params,
                self.settings.async_callback,
            )
        except ProviderError as exc:
            return await self.outcomes.on_error(ctx, p, key, exc, result)
        except Exception as exc:  # not translated by the adapter: the run may exist
            log.exception("provider %s failed on %s", ctx.provider_name, key)
            err = ProviderError(vocab.TIMEOUT, f"{type(exc).__name__}: {exc}")
            return await self.outcomes.on_error(ctx, p, key, err, result)
        now = self.clock.now()
        entry = {"run_uid": uid, "identity": ctx.identity, "action": p.step.action,
                 "submitted_at": now.isoformat()}
        self.store.kv_put(NS, key, entry)  # tracked from now (a kill before: found by key)
        self._wait(ctx, p.enr, p.lead, now + self._patience(), f"async run {uid}", result)
        result.submitted += 1
        return None

    def _patience(self) -> timedelta:
        """How long a lead waits before its run is asked about."""
        if self.settings.async_callback is not None:
            return self.settings.async_wait
        return self.settings.async_poll

    def _wait(
        self, ctx: IdentityTick | None, enr: EnrollmentRow, lead: LeadRow, until: datetime,
        reason: str, result: TickResult,
    ) -> None:
        self.moves.postpone(enr, lead, until, reason, result, ctx=ctx, waiting=WAITING)

    # ---- settling ---------------------------------------------------------------------------

    async def settle(
        self, pending: list[ActionRow], result: TickResult
    ) -> tuple[set[int], list[ActionRow]]:
        """Settle the async intents among ``pending``: their enrollments still in flight
        (they must not act) and the intents left for recovery (live ones, and async ones
        whose run does not exist)."""
        entries = self.store.kv_items(NS)
        rest: list[ActionRow] = []
        mine: dict[str, list[tuple[ActionRow, dict[str, Any] | None]]] = {}
        for intent in pending:
            entry = entries.pop(intent.idempotency_key, None)
            if entry is None and not is_async_intent(intent):
                rest.append(intent)
                continue
            mine.setdefault(intent.identity, []).append(
                (intent, entry if isinstance(entry, dict) else None))
        old = (self.clock.now() - self.settings.settle_after).isoformat()
        owned = self.state.owned  # a worker: another's runs are its own to settle
        for stale, entry in entries.items():  # its intent was settled (by recovery, or
            # before a crash); a fresh one may be another process's submission in flight
            if (owned is not None and isinstance(entry, dict)
                    and entry.get("identity") not in owned):
                continue
            if not isinstance(entry, dict) or str(entry.get("submitted_at") or "") < old:
                self.store.kv_delete(NS, stale)
        in_flight: set[int] = set()
        self.state.in_flight = {}
        if not mine:
            return in_flight, rest
        statuses = {i.id: i for i in self.store.list_identities()}
        live = self.store.live_lock_holder("run")
        handed: list[ActionRow] = []
        tasks = [
            asyncio.ensure_future(
                self._identity(items, statuses, live, in_flight, handed, result))
            for items in mine.values()
        ]
        await all_or_cancel(tasks)
        return in_flight, rest + handed

    async def _identity(
        self,
        items: list[tuple[ActionRow, dict[str, Any] | None]],
        statuses: Mapping[str, Any],
        live: str | None,
        in_flight: set[int],
        handed: list[ActionRow],
        result: TickResult,
    ) -> None:
        """One identity's async intents, in turn (its calls stay serial)."""
        for intent, entry in items:
            state = await self._one(intent, entry, statuses, live, result)
            if state == "flying":
                in_flight.add(intent.enrollment_id)
                key = (intent.identity, intent.action)
                self.state.in_flight.setdefault(key, []).append(intent.created_at)
            elif state == "recover":
                handed.append(intent)

    async def _one(
        self,
        intent: ActionRow,
        entry: dict[str, Any] | None,
        statuses: Mapping[str, Any],
        live: str | None,
        result: TickResult,
    ) -> str:
        """``done``, ``flying`` (still in flight) or ``recover`` (no run: recovery's)."""
        key = intent.idempotency_key
        enr = self.store.get_enrollment(intent.enrollment_id)
        lead = self.store.get_lead(enr.lead_id) if enr is not None else None
        provider = self.state.provider_for(enr) if enr is not None else None
        if enr is None or lead is None or not isinstance(provider, AsyncActions):
            return "recover"  # recovery knows what to do with an orphan
        if entry is not None and entry.get("output") is not None:
            await self._complete(intent, enr, lead, provider, entry["output"], result)
            return "done"
        if self.recovery.not_now(intent, statuses, live):
            return "flying"
        now = self.clock.now()
        due = enr.next_due_at
        at_step = self._at_step(intent, enr)
        if at_step and due is not None and due > now:
            return "flying"  # its lead still waits: asked when it is due
        try:
            if entry is None:
                return await self._find(intent, enr, lead, provider, result)
            run = await provider.async_run(str(entry["run_uid"]))
        except ProviderError as exc:
            if entry is not None and exc.status == 404:
                self.store.kv_delete(NS, key)  # Edges does not know the run: recovery's
                return "recover"
            if at_step:
                wait = max(self.settings.settle_after.total_seconds(), exc.retry_after or 0.0)
                self._wait_now(enr, lead, now + timedelta(seconds=wait),
                               f"async run not answered ({exc.label})", result)
            return "flying"
        if run.state == "finished" and run.output is not None:
            await self._complete(intent, enr, lead, provider, run.output, result)
            return "done"
        if at_step:
            until = now + self._patience()
            reason = f"async run {entry['run_uid']} {run.state}"
            if run.state == "blocked":  # Edges retries it then: tracked, never resent
                until = max(run.postponed_until or until, now + timedelta(minutes=1))
                reason += f" until {until.isoformat()}"
            self._wait_now(enr, lead, until, reason, result)
        return "flying"

    async def _find(
        self, intent: ActionRow, enr: EnrollmentRow, lead: LeadRow, provider: AsyncActions,
        result: TickResult,
    ) -> str:
        """An async intent without a known run (its submission's answer was lost): tracked
        if Edges has a run with its key, else recovery's (nothing was submitted)."""
        key = intent.idempotency_key
        since = intent.created_at
        uid = await provider.find_async_run(intent.identity, intent.action, key, since)
        if uid is None:
            return "recover"
        entry = {"run_uid": uid, "identity": intent.identity, "action": intent.action,
                 "submitted_at": since.isoformat()}
        self.store.kv_put(NS, key, entry)
        if self._at_step(intent, enr):
            self._wait_now(enr, lead, self.clock.now() + self.settings.async_poll,
                           f"async run {uid} found after a lost answer", result)
        return "flying"

    def _wait_now(
        self, enr: EnrollmentRow, lead: LeadRow, until: datetime, reason: str,
        result: TickResult,
    ) -> None:
        with self.store.transaction() as conn:
            self.moves.postpone(enr, lead, until, reason, result, conn=conn, waiting=WAITING)

    def _at_step(self, intent: ActionRow, enr: EnrollmentRow) -> bool:
        return enr.state == intent.step and not self.state.compiled(enr.revision).is_terminal(
            enr.state)

    async def _complete(
        self,
        intent: ActionRow,
        enr: EnrollmentRow,
        lead: LeadRow,
        provider: AsyncActions,
        output: Mapping[str, Any],
        result: TickResult,
    ) -> None:
        """The run's output, routed like a live answer (Outcomes), committed with the end of
        its tracking."""
        key = intent.idempotency_key
        name = self.state.provider_name(enr)
        ctx = IdentityTick(intent.identity, name, self.state.providers[name])
        compiled = self.state.compiled(enr.revision)
        request = (intent.response or {}).get("request") if isinstance(intent.response,
                                                                         dict) else None
        params = {k: v for k, v in (request or {}).items() if k != "execution"}
        try:
            answer: ActionResult | ProviderError = provider.output_result(intent.action, output)
        except ProviderError as exc:
            answer = exc
        step = compiled.sequence.step(intent.step) if compiled.sequence else None
        if not isinstance(step, ActionStep) or not self._at_step(intent, enr):
            self._outcome_only(ctx, key, answer)  # the lead moved on: nothing to route
        else:
            p = Planned(enr, lead, step, params, intent.created_at, compiled)
            if isinstance(answer, ProviderError):
                await self.outcomes.on_error(ctx, p, key, answer, result)
            else:
                self.outcomes.succeeded(ctx, p, key, answer.status, answer.data, result,
                                        done_at=self._done_at(intent))
        with self.store.transaction() as conn:
            write_buffered(self.store, ctx.w, conn)
            self.store.kv_delete(NS, key, conn=conn)
        result.async_settled += 1

    def _done_at(self, intent: ActionRow) -> datetime | None:
        """When the run happened, as far as the limits go: at its submission when its result
        came within ``async_wait`` (Edges runs a run at once unless a limit BLOCKs it), else
        when the result came (None)."""
        if self.clock.now() - intent.created_at <= self.settings.async_wait:
            return intent.created_at
        return None

    def _outcome_only(
        self, ctx: IdentityTick, key: str, answer: ActionResult | ProviderError
    ) -> None:
        now = self.clock.now()
        if isinstance(answer, ProviderError):
            ctx.w.outcomes.append({"key": key, "status": "failed", "label": answer.label,
                                   "response": {"label": answer.label,
                                                "message": answer.message},
                                   "finished_at": now})
        else:
            ctx.w.outcomes.append({"key": key, "status": "done", "label": answer.status or "ok",
                                   "response": dict(answer.data), "finished_at": now})

