"""The two ways an enrollment moves: :meth:`Moves.transition` (to the state its machine
names for a trigger) and :meth:`Moves.postpone` (later, in the same state).

Inside a wave both go to the identity's buffered writes (committed with the wave); outside
one (recovery) they are written in a transaction, the caller's when it passes ``conn``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from engine import vocab
from engine.compile.machine import CompiledSequence
from engine.model import WaitForStep, WaitStep
from engine.run.results import StepRecord, TickResult
from engine.run.state import IdentityTick, RunState
from engine.store import EnrollmentRow, LeadRow


class Move(NamedTuple):
    """What happened to an enrollment, and what the transition records about it."""

    trigger: str
    action: str | None = None
    label: str | None = None
    detail: str | None = None
    data: Mapping[str, Any] | None = None  # event data; a None value removes the key
    dest: str | None = None  # the state to go to whatever the machine says (do-not-contact)
    now: datetime | None = None  # the caller's instant: its outcome and this entry share it
    compiled: CompiledSequence | None = None  # the caller's machine, looked up once


class Moves:
    """Transitions and postponements of enrollments (each counted in the tick's result)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.store = state.store
        self.clock = state.clock

    def entry_due(self, compiled: CompiledSequence, state: str, now: datetime) -> datetime | None:
        """When a state just entered becomes due (None for terminals)."""
        if compiled.is_terminal(state):
            return None
        step = compiled.step(state)
        if isinstance(step, WaitStep):
            return now + step.duration
        if isinstance(step, WaitForStep):
            deadline = now + step.timeout
            if step.event == "connection_accepted":
                return min(self.next_poll(now), deadline)
            return deadline
        return now

    def next_poll(self, now: datetime) -> datetime:
        # Aligned on the epoch so every waiting lead of an identity polls in the same tick.
        period = self.state.settings.accept_poll.total_seconds()
        ts = now.timestamp()
        return datetime.fromtimestamp((ts // period + 1) * period, UTC)

    def transition(
        self,
        enr: EnrollmentRow,
        lead: LeadRow,
        move: Move,
        result: TickResult,
        *,
        ctx: IdentityTick | None = None,
        conn: Connection | None = None,
    ) -> EnrollmentRow:
        """Fire ``move.trigger`` on ``enr`` (``failed`` when its state has no such trigger);
        returns the enrollment as it is now."""
        compiled = move.compiled
        if compiled is None:
            compiled = self.state.compiled(enr.revision)
        now = move.now
        if now is None:
            now = self.clock.now()
        dest, detail = _destination(compiled, enr, move, ctx)
        due = self.entry_due(compiled, dest, now)
        last_error = detail if dest == "failed" else None
        values: dict[str, Any] = {
            "state": dest,
            "next_due_at": due,
            "step_entered_at": now,
            "attempts": 0,
            "last_error": last_error,
            "waiting": None,
        }
        event = _transition_event(enr, lead, move, dest, detail, now)
        if ctx is not None and conn is None:
            values["id"] = enr.id  # the wave's writes own this dict (no copy)
            ctx.w.transition(values)
            ctx.w.events.append(event)
            ctx.w.entered[enr.id] = event
        else:
            with self.store.tx(conn) as c:
                self.store.update_enrollment(enr.id, conn=c, **values)
                self.store.record_events([event], conn=c)
        result.transitions += 1
        if dest == "failed":
            result.failed += 1
        result.record(_step_record(enr, lead, move, dest, detail))
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
            None,
        )

    def postpone(
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
        ctx: IdentityTick | None = None,
        waiting: str | None = None,
    ) -> None:
        """Make ``enr`` due again at ``until`` (``attempts``/``last_error``: None keeps them).

        ``waiting`` (a rule's hold: a limit, the window, a cooldown) is kept on the lead;
        its "postponed" event is written when it starts waiting, not at every
        re-postponement of a lead already waiting (the column says why it still waits).
        A lead that starts waiting at the step it entered in this tick has it recorded on
        that transition's event (``data.waiting``) instead of an event of its own; one that
        starts waiting at a step entered before (its enrolment, a transition committed with
        the next call's intent or in an earlier tick) has it noted on the event that put it
        there, rewritten in the next batch (``Writes.notes``; ``since`` when it is later)."""
        events: list[dict[str, Any]] = []
        data: dict[str, Any] = {"reason": reason, "until": until.isoformat()}
        now = self.clock.now()
        postponed = {
            "kind": "postponed",
            "subject": lead.profile_url,
            "data": data,
            "at": now,
            "enrollment_id": enr.id,
            "from_state": enr.state,
            "revision": enr.revision,
        }
        starts = ctx is not None and bool(waiting) and enr.waiting is None and conn is None
        entered = ctx.w.entered.get(enr.id) if ctx is not None and starts else None
        if entered is not None:
            # it waits from the step it just entered: its transition's event says so
            entered["data"] = {**(entered["data"] or {}), "waiting": data}
        elif ctx is not None and starts and enr.step_entered_at is not None:
            # the event that put it at this step (enrolled, or a transition committed
            # before) gets the wait in its data, rewritten in the next batch; the
            # "postponed" event is written only when that event is not found
            if enr.step_entered_at != now:
                data["since"] = now.isoformat()
            ctx.w.notes.append({"enrollment_id": enr.id, "at": enr.step_entered_at,
                                "to_state": enr.state, "waiting": data,
                                "fallback": postponed})
        elif waiting is None or enr.waiting is None:
            events.append(postponed)
        if ctx is not None and conn is None:
            ctx.w.reschedule(
                enr.id,
                until,
                enr.attempts if attempts is None else attempts,
                enr.last_error if last_error is None else last_error,
                waiting,
            )
            ctx.w.events.extend(events)
        else:
            values: dict[str, Any] = {"next_due_at": until, "waiting": waiting}
            if attempts is not None:
                values["attempts"] = attempts
            if last_error is not None:
                values["last_error"] = last_error
            with self.store.tx(conn) as c:
                self.store.update_enrollment(enr.id, conn=c, **values)
                self.store.record_events(events, conn=c)
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


def _transition_event(
    enr: EnrollmentRow, lead: LeadRow, move: Move, dest: str, detail: str | None, now: datetime
) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if move.action is not None:
        payload["action"] = move.action
    if move.label is not None:
        payload["label"] = move.label
    if detail is not None:
        payload["detail"] = detail
    if move.data:
        for k, v in move.data.items():
            if v is not None:
                payload[k] = v
            else:
                payload.pop(k, None)
    return {
        "kind": "transition",
        "subject": lead.profile_url,
        "data": payload or None,
        "at": now,
        "enrollment_id": enr.id,
        "from_state": enr.state,
        "to_state": dest,
        "trigger": move.trigger,
        "revision": enr.revision,
    }


def _step_record(
    enr: EnrollmentRow, lead: LeadRow, move: Move, dest: str, detail: str | None
) -> StepRecord:
    return StepRecord(
        enr.id,
        lead.profile_url,
        enr.sequence,
        enr.state,
        dest,
        move.trigger,
        move.action,
        move.label,
        detail,
    )


def _stop_loop(
    ctx: IdentityTick, enr: EnrollmentRow, trigger: str, dest: str, detail: str | None
) -> tuple[str, str | None]:
    """A lead routed by error labels along the same edge twice since its last progress (no
    call succeeded in between) would go round every tick for ever: it ends in ``failed``
    with the loop as the reason instead. Coming back once is allowed: what the first round
    learned (a connection found gone) may change the second."""
    if trigger not in vocab.ERROR_LABELS:
        ctx.routed.pop(enr.id, None)  # progress: an answer, a wait over, a reply...
        return dest, detail
    edge = f"{enr.state} -{trigger}->"
    path = ctx.routed.setdefault(enr.id, [])
    repeated = edge in path
    path.append(edge)
    if not repeated:
        return dest, detail
    ctx.routed.pop(enr.id, None)
    return "failed", "routing loop without progress: " + " ".join(path) + f" {dest}"


def _destination(
    compiled: CompiledSequence, enr: EnrollmentRow, move: Move, ctx: IdentityTick | None
) -> tuple[str, str | None]:
    """Where ``move`` takes ``enr`` and why: ``failed`` when its state has no such trigger or
    the move closes a loop without progress."""
    dest, detail = move.dest, move.detail
    if dest is None:
        try:
            dest = compiled.next_state(enr.state, move.trigger)
        except KeyError:
            dest = "failed"
            detail = detail or f"no transition for {move.trigger!r} from {enr.state!r}"
    if ctx is not None:
        dest, detail = _stop_loop(ctx, enr, move.trigger, dest, detail)
    return dest, detail

