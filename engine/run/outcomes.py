"""One provider call of a wave and where its outcome sends the lead: a success fires the
step's trigger; an error label is routed by kind (an expired session pauses the identity, a
provider limit postpones until it lifts, a transient error retries with backoff up to
``retry_cap``, anything else fires the label as the step's trigger). A ``TIMEOUT`` is first
reconciled: the call may have happened, and it is never resent blind."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from engine import vocab
from engine.errors import ProviderError
from engine.providers.base import Lead
from engine.run.moves import Move, Moves
from engine.run.recovery import Recovery
from engine.run.results import TickResult
from engine.run.rules import Rules
from engine.run.state import MESSAGES, IdentityTick, Planned, RunState
from engine.run.sync import Sync
from engine.store import ActionRow, ConversationRow, EnrollmentRow, bounded

log = logging.getLogger(__name__)

#: the rendered parameters a lead reads, kept with the outcome (``seqrun why`` shows them)
SENT_TEXT = frozenset({"note", "text", "subject"})

# check_connection's answer -> its trigger (anything else: ok)
_CONNECTION_TRIGGERS = {
    "connected": "ok",
    "pending": vocab.INVITATION_PENDING,
    "not_connected": vocab.NOT_CONNECTED,
}


class Outcomes:
    """Calls the provider for a planned action and routes its outcome."""

    def __init__(
        self,
        state: RunState,
        moves: Moves,
        sync: Sync,
        rules: Rules,
        recovery: Recovery,
        rng: random.Random,
    ) -> None:
        self.state = state
        self.settings = state.settings
        self.clock = state.clock
        self.moves = moves
        self.sync = sync
        self.rules = rules
        self.recovery = recovery
        self._rng = rng

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        """Exponential from ``backoff_base`` (capped at ``backoff_max``), jittered, and never
        sooner than the provider's ``Retry-After``."""
        raw = self.settings.backoff_base.total_seconds() * (2 ** max(0, attempts - 1))
        delay = min(raw, self.settings.backoff_max.total_seconds()) * (0.5 + self._rng.random())
        if retry_after:
            delay = max(delay, retry_after)
        return timedelta(seconds=delay)

    def skip(self, ctx: IdentityTick, p: Planned, result: TickResult) -> bool:
        """True when the call of ``p`` must not be made now (a sync later in the wave found
        the lead's reply, the identity was paused, or the provider said its limit is reached):
        its rule usage is released and, under a limit, the lead postponed. No intent is
        written for it."""
        saturated = ctx.saturated.get(p.step.action)
        if p.enr.id in ctx.replied:
            self.rules.release(ctx, p)
            return True
        if not ctx.stopped and (saturated is None or saturated <= self.clock.now()):
            return False
        self.rules.release(ctx, p)
        if not ctx.stopped and saturated is not None:
            reason = "LIMIT_REACHED (provider)"
            self.moves.postpone(p.enr, p.lead, saturated, reason, result, ctx=ctx)
        return True

    async def call(
        self, ctx: IdentityTick, p: Planned, key: str, result: TickResult
    ) -> EnrollmentRow | None:
        """One provider call of a wave (its intent ``key`` committed); its outcome and
        transition go to the identity's buffered writes."""
        try:
            outcome = await ctx.provider.perform(
                ctx.identity, p.step.action, lead_for_provider(p, key), p.params
            )
        except ProviderError as exc:
            return await self.on_error(ctx, p, key, exc, result)
        except Exception as exc:  # not translated by the adapter: the call may have happened
            log.exception("provider %s failed on %s", ctx.provider_name, key)
            err = ProviderError(vocab.TIMEOUT, f"{type(exc).__name__}: {exc}")
            return await self.on_error(ctx, p, key, err, result)
        return self.succeeded(ctx, p, key, outcome.status, outcome.data, result)

    def succeeded(
        self,
        ctx: IdentityTick,
        p: Planned,
        key: str,
        status: str | None,
        data: Mapping[str, Any],
        result: TickResult,
        done_at: datetime | None = None,
    ) -> EnrollmentRow:
        """The action happened: its outcome, what it changed (a conversation, a pending
        invitation) and the step's trigger (``ok``, or check_connection's answer).
        ``done_at``: when it happened, if known to be before now (an async run's result
        read later); the limits count it from then."""
        now = self.clock.now()
        action, url = p.step.action, p.lead.profile_url
        trigger = "ok"
        if action == "check_connection":
            trigger = _CONNECTION_TRIGGERS.get(status or "", "ok")
        response = data if isinstance(data, dict) else dict(data)  # bounded by the store
        sent = {k: v for k, v in p.params.items() if isinstance(v, str) and k in SENT_TEXT}
        if sent:  # what the lead read, for `seqrun why` (the intent's request is overwritten)
            response = {**response, "sent": sent}
        ctx.w.outcomes.append(
            {
                "key": key,
                "status": "done",
                "label": status or "ok",
                "response": response,
                "finished_at": done_at or now,
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
            _note_connection(ctx, url, "pending", now)
        result.actions += 1
        move = Move(
            trigger,
            action=action,
            label=status or "ok",
            data={"key": key},
            now=now,
            compiled=p.compiled,
        )
        return self.moves.transition(p.enr, p.lead, move, result, ctx=ctx)

    async def on_error(
        self, ctx: IdentityTick, p: Planned, key: str, exc: ProviderError, result: TickResult
    ) -> EnrollmentRow | None:
        """Route a provider error by its label (see the module's docstring)."""
        enr, lead, step = p.enr, p.lead, p.step
        now = self.clock.now()
        label = exc.label
        compiled = self.state.compiled(enr.revision)
        if label == vocab.TIMEOUT:
            decided, moved = await self._timed_out(ctx, p, key, exc, now, result)
            if decided:
                return moved
            # Not there (yet): the provider may still be executing it. The intent stays open
            # (no outcome): recover() asks again before any next attempt, and the lead waits
            # at least `settle_after` (see Recovery.keep_open).
        self.rules.release(ctx, p)
        if label == vocab.AUTH_EXPIRED and compiled.pauses(enr.state, label):
            _failed(ctx, key, exc, now)
            self.sync.pause_identity(ctx, f"AUTH_EXPIRED on {step.action}", result)
            return None
        if label == vocab.LIMIT_REACHED:
            until = _parse_time(exc.params.get("postponed_until")) or now + timedelta(hours=1)
            if until <= now:
                until = now + timedelta(minutes=5)
            ctx.saturated[step.action] = until
            _failed(ctx, key, exc, now)
            self.moves.postpone(enr, lead, until, "LIMIT_REACHED", result, ctx=ctx)
            return None
        if label in vocab.TRANSIENT_LABELS:
            return self._retry(ctx, p, key, exc, now, result)
        _failed(ctx, key, exc, now)
        if label == vocab.ALREADY_CONNECTED:
            _note_connection(ctx, lead.profile_url, "connected", now)
        elif label == vocab.NOT_CONNECTED and step.action in MESSAGES:
            # the connection was removed: a cached "connected" would skip the next invitation
            if ctx.connections is not None:
                ctx.connections.discard(lead.profile_url)
            if ctx.links is not None:
                ctx.links[lead.profile_url] = "not_connected"
            _note_connection(ctx, lead.profile_url, "not_connected", now)
        move = Move(label, action=step.action, label=label, detail=exc.message or label)
        return self.moves.transition(enr, lead, move, result, ctx=ctx)

    async def _timed_out(
        self,
        ctx: IdentityTick,
        p: Planned,
        key: str,
        exc: ProviderError,
        now: datetime,
        result: TickResult,
    ) -> tuple[bool, EnrollmentRow | None]:
        """The call may have happened: ask before deciding (never resend blindly). Returns
        (True, the enrollment) when that settled it, (False, None) when it is not there."""
        enr, lead, step = p.enr, p.lead, p.step
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
            found = await self.recovery.reconcile(intent, ctx.provider, lead, {})
        except ProviderError as rexc:
            # Cannot tell yet: the intent stays open (recover() asks again next tick)
            # and the lead waits; resending now could duplicate.
            until = now + self.backoff(enr.attempts + 1, rexc.retry_after)
            until = max(until, now + self.settings.settle_after)
            self.moves.postpone(
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
                self.sync.pause_identity(ctx, "AUTH_EXPIRED while reconciling", result)
            return True, None
        unverified = self.recovery.unverified_event(key, step.action, enr, lead)
        if found is None:
            return False, None
        if found != "ok":  # the provider would have refused it: routed as that answer
            return True, self._refused(ctx, p, key, found, now, result)
        if unverified is not None:
            ctx.w.events.append(unverified)
        data = {"reconciled": True, "unverified": unverified is not None}
        return True, self.succeeded(ctx, p, key, None, data, result)

    def _refused(
        self, ctx: IdentityTick, p: Planned, key: str, label: str, now: datetime,
        result: TickResult,
    ) -> EnrollmentRow:
        """A timed-out connect that reconciliation shows had no effect (connected before)."""
        self.rules.release(ctx, p)
        refused = ProviderError(label, "reconciled: connected before the invitation")
        _failed(ctx, key, refused, now)
        _note_connection(ctx, p.lead.profile_url, "connected", now)
        move = Move(label, action=p.step.action, label=label, detail=refused.message)
        return self.moves.transition(p.enr, p.lead, move, result, ctx=ctx)

    def _retry(
        self,
        ctx: IdentityTick,
        p: Planned,
        key: str,
        exc: ProviderError,
        now: datetime,
        result: TickResult,
    ) -> EnrollmentRow | None:
        """A transient error: retry after a backoff, up to ``retry_cap``; then fire the label.
        A TIMEOUT gets no outcome (its intent stays open for recover())."""
        enr, label = p.enr, exc.label
        attempts = enr.attempts + 1
        if label != vocab.TIMEOUT:
            _failed(ctx, key, exc, now)
        cap = self.settings.retry_cap
        if attempts <= cap:
            until = now + self.backoff(attempts, exc.retry_after)
            if label == vocab.TIMEOUT:
                until = max(until, now + self.settings.settle_after)
            self.moves.postpone(
                enr,
                p.lead,
                until,
                f"{label}: retry {attempts}",
                result,
                attempts=attempts,
                last_error=str(exc),
                ctx=ctx,
            )
            return None
        detail = f"{label} after {cap} retries: {exc.message or label}"
        move = Move(label, action=p.step.action, label=label, detail=detail)
        return self.moves.transition(enr, p.lead, move, result, ctx=ctx)


def lead_for_provider(p: Planned, key: str | None) -> Lead:
    custom: dict[str, Any] = {"enrollment_id": p.enr.id, "sequence": p.enr.sequence}
    if key:
        custom["idempotency_key"] = key
    return Lead(p.lead.profile_url, custom)


def _failed(ctx: IdentityTick, key: str, exc: ProviderError, now: datetime) -> None:
    response = {
        "label": exc.label,
        "message": exc.message,
        "status": exc.status,
        "params": bounded(exc.params),
    }
    ctx.w.outcomes.append(
        {
            "key": key,
            "status": "failed",
            "label": exc.label,
            "response": response,
            "finished_at": now,
        }
    )


def _note_connection(ctx: IdentityTick, url: str, status: str, now: datetime) -> None:
    ctx.w.connections.append(
        {"identity": ctx.identity, "profile_url": url, "status": status, "checked_at": now}
    )


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
