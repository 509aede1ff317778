"""Walking one due enrollment through its machine: waits, waits for an event, branches and
ends move at once; an action stops the walk at its rules (see :mod:`engine.run.rules`)."""

from __future__ import annotations

import logging
from datetime import datetime

from engine.manifest.templates import TemplateRenderError, evaluate
from engine.model import ActionStep, BranchStep, EndStep, WaitForStep, WaitStep
from engine.run.moves import Move, Moves
from engine.run.results import TickResult
from engine.run.rules import Rules
from engine.run.state import MAX_CHAIN, IdentityTick, Planned, RunState
from engine.run.sync import Sync
from engine.store import EnrollmentRow, LeadRow

log = logging.getLogger(__name__)

_ACCEPTED = Move("accepted")
_TIMEOUT = Move("timeout")


class Steps:
    """Advances enrollments up to their next action."""

    def __init__(self, state: RunState, moves: Moves, sync: Sync, rules: Rules) -> None:
        self.state = state
        self.clock = state.clock
        self.moves = moves
        self.sync = sync
        self.rules = rules

    async def advance(
        self,
        ctx: IdentityTick,
        enr: EnrollmentRow,
        lead: LeadRow,
        result: TickResult,
        dnc: set[str],
    ) -> Planned | None:
        """Walk one enrollment through its due non-action steps; returns its next action when
        every rule lets it go now (None: waiting, postponed or finished)."""
        for _ in range(MAX_CHAIN):
            now = self.clock.now()
            if enr.id in ctx.replied or enr.next_due_at is None or enr.next_due_at > now:
                return None
            compiled = self.state.compiled(enr.revision)
            if compiled.is_terminal(enr.state):
                ctx.w.reschedule(enr.id, None, enr.attempts, enr.last_error)
                return None
            step = compiled.step(enr.state)
            entered = enr.step_entered_at or now
            if isinstance(step, ActionStep):  # the common case first
                planned = await self.rules.plan_action(
                    ctx, enr, lead, step, compiled, now, result, dnc
                )
                if not isinstance(planned, EnrollmentRow):
                    return planned
                enr = planned
            elif isinstance(step, WaitStep):
                if now < entered + step.duration:
                    ctx.w.reschedule(enr.id, entered + step.duration, enr.attempts, enr.last_error)
                    return None
                move = Move("elapsed", compiled=compiled)
                enr = self.moves.transition(enr, lead, move, result, ctx=ctx)
            elif isinstance(step, WaitForStep):
                nxt = await self._wait_for(ctx, enr, lead, step, entered, result)
                if nxt is None:
                    return None
                enr = nxt
            elif isinstance(step, BranchStep):
                move = Move(_branch(step, lead), compiled=compiled)
                enr = self.moves.transition(enr, lead, move, result, ctx=ctx)
            elif isinstance(step, EndStep):
                move = Move("ok", compiled=compiled)
                enr = self.moves.transition(enr, lead, move, result, ctx=ctx)
            else:  # pragma: no cover - the model has no other step kinds
                return None
        return None

    async def _wait_for(
        self,
        ctx: IdentityTick,
        enr: EnrollmentRow,
        lead: LeadRow,
        step: WaitForStep,
        entered: datetime,
        result: TickResult,
    ) -> EnrollmentRow | None:
        now = self.clock.now()
        deadline = entered + step.timeout
        if step.event == "connection_accepted":
            connected = await self.sync.is_connected(ctx, enr, lead, result,
                                                     decisive=now >= deadline)
            if connected:
                return self.moves.transition(enr, lead, _ACCEPTED, result, ctx=ctx)
            if now >= deadline:
                return self.moves.transition(enr, lead, _TIMEOUT, result, ctx=ctx)
            ctx.w.reschedule(
                enr.id, min(self.moves.next_poll(now), deadline), enr.attempts, enr.last_error
            )
            return None
        # wait_for reply: the sync detects replies (and fires `reply` itself)
        await self.sync.ensure_synced(ctx, result)
        if enr.id in ctx.replied:
            return None
        if now >= deadline:
            return self.moves.transition(enr, lead, _TIMEOUT, result, ctx=ctx)
        ctx.w.reschedule(enr.id, deadline, enr.attempts, enr.last_error)
        return None


def _branch(step: BranchStep, lead: LeadRow) -> str:
    """The trigger of the first case whose condition holds for the lead (else ``else``).
    Each condition is compiled once per process (templates' cache), not once per lead."""
    data = {**lead.data, "linkedin_profile_url": lead.profile_url}
    for n, case in enumerate(step.cases):
        try:
            if evaluate(case.condition, data):
                return f"case_{n}"
        except TemplateRenderError as exc:  # a bad expression is a manifest bug: take else
            log.warning("branch %s: %s", step.id, exc)
    return "else"
