"""The seed guide's rules before an action, in order: reply -> ``reply``; do-not-contact ->
``stopped``; already connected -> ``ALREADY_CONNECTED``; a conversation that moved within
``cooldown`` -> postponed; outside the business window (the lead's timezone) -> postponed to
the next opening; the identity's rolling-24-h limit (shared by every sequence on it) ->
postponed until the oldest counted action leaves the window; then the message is rendered."""

from __future__ import annotations

import contextlib
from collections import deque
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import vocab
from engine.compile.machine import CompiledSequence
from engine.manifest.templates import render
from engine.model import ActionStep, Sequence, Window
from engine.run.moves import Move, Moves
from engine.run.results import TickResult
from engine.run.state import DAY, MESSAGES, OUTREACH, IdentityTick, Planned, RunState
from engine.run.sync import Sync
from engine.store import ConversationRow, EnrollmentRow, LeadRow
from engine.vocab import DAYS

_REPLY = Move("reply", detail="the lead wrote to us")
_DO_NOT_CONTACT = Move("do_not_contact", dest="stopped", detail="on the do-not-contact list")
_ALREADY_CONNECTED = Move(
    vocab.ALREADY_CONNECTED,
    action="connect",
    label=vocab.ALREADY_CONNECTED,
    detail="already connected (no call)",
)


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


class Rules:
    """Decides whether a due action goes out now; keeps the identities' 24-h usage."""

    def __init__(self, state: RunState, moves: Moves, sync: Sync) -> None:
        self.state = state
        self.store = state.store
        self.clock = state.clock
        self.moves = moves
        self.sync = sync
        self._zones: dict[str, ZoneInfo] = {}
        self._limits: dict[tuple[str, str, str], int | None] = {}

    async def plan_action(
        self,
        ctx: IdentityTick,
        enr: EnrollmentRow,
        lead: LeadRow,
        step: ActionStep,
        compiled: CompiledSequence,
        now: datetime,
        result: TickResult,
        dnc: set[str],
    ) -> Planned | EnrollmentRow | None:
        """The rules before an action, in order, at ``now`` (the caller's reading, read
        again after a sync). Returns the planned action, the enrollment moved without a call
        (reply, already connected...), or None (postponed)."""
        seq = self.state.sequence(enr.revision)
        action = step.action
        # 1. sync before send; a lead who wrote (first or back) is a human's now. A visit or
        # a connection check sends nothing: a sync younger than `visit_sync_age` will do.
        last = self.state.last_sync.get(ctx.identity)
        if not ctx.synced and (
            action in OUTREACH or last is None or now - last > self.state.settings.visit_sync_age
        ):
            await self.sync.ensure_synced(ctx, result)
            now = self.clock.now()  # the sync took its time
        if enr.id in ctx.replied:
            return None  # the sync moved it (reply)
        if ctx.conv is None:
            ctx.conv = self.store.conversations(ctx.identity)
        conv = ctx.conv.get(lead.profile_url)
        if conv is not None or action == "connect" or lead.profile_url in dnc:
            # rules 1 to 3 can apply (most leads meet none: they skip the call)
            moved = self._no_call(ctx, enr, lead, action, conv, compiled, result, dnc)
            if moved is not None:
                return moved
        held = self._held_until(ctx, seq, enr, lead, action, conv, now)
        if held is not None:
            self.moves.postpone(enr, lead, held[0], held[1], result, ctx=ctx)
            return None
        # 7. render
        try:
            params = _render_params(step, enr, lead)
        except Exception as exc:  # an undefined variable or a template error
            invalid = Move(
                vocab.INVALID_INPUT,
                action=action,
                label=vocab.INVALID_INPUT,
                detail=f"template: {exc}",
            )
            return self.moves.transition(enr, lead, invalid, result, ctx=ctx)
        if action != "check_connection":
            ctx.usage[action].append(now)  # counted at once; a failed one gives it back
        return Planned(enr, lead, step, params, now, compiled)

    def _no_call(
        self,
        ctx: IdentityTick,
        enr: EnrollmentRow,
        lead: LeadRow,
        action: str,
        conv: ConversationRow | None,
        compiled: CompiledSequence,
        result: TickResult,
        dnc: set[str],
    ) -> EnrollmentRow | None:
        """Rules 1 to 3: the lead's step is decided without a call (the enrollment moved)."""
        # 1. the lead wrote to us
        if (
            conv is not None
            and not conv.last_sender_is_us
            and "reply" in compiled.triggers(enr.state)
        ):
            return self.moves.transition(enr, lead, _REPLY, result, ctx=ctx)
        # 2. do-not-contact
        if lead.profile_url in dnc:
            return self.moves.transition(enr, lead, _DO_NOT_CONTACT, result, ctx=ctx)
        # 3. already connected: no invitation to send
        if action == "connect":
            if ctx.links is None:
                ctx.links = self.store.connection_statuses(ctx.identity)
            known = (ctx.connections is not None and lead.profile_url in ctx.connections) or (
                ctx.links.get(lead.profile_url) == "connected"
            )
            if known:
                return self.moves.transition(enr, lead, _ALREADY_CONNECTED, result, ctx=ctx)
        return None

    def _held_until(
        self,
        ctx: IdentityTick,
        seq: Sequence,
        enr: EnrollmentRow,
        lead: LeadRow,
        action: str,
        conv: ConversationRow | None,
        now: datetime,
    ) -> tuple[datetime, str] | None:
        """Rules 4 to 6: when the action may go (and why not now); None: now."""
        # 4. cooldown: the conversation moved recently
        if action in MESSAGES and seq.cooldown and conv is not None:
            until = conv.last_activity_at + seq.cooldown
            if now < until:
                return until, "cooldown"
        # 5. business window in the lead's timezone
        if seq.window is not None:
            opening = window_opening(seq.window, self._lead_zone(seq, lead), now)
            if opening is not None:
                return opening, "outside the sending window"
        # 6. limits per identity per rolling 24 h, shared by every sequence
        limit = self._limit(enr.revision, ctx, action)
        usage = self.usage(ctx, action, now)
        saturated = ctx.saturated.get(action)
        if saturated is not None and saturated > now:
            return saturated, "LIMIT_REACHED (provider)"
        if limit is not None and len(usage) >= limit:
            until = usage[0] + DAY if usage and limit > 0 else now + DAY
            return until, f"{action} limit {limit}/24h reached"
        return None

    def usage(self, ctx: IdentityTick, action: str, now: datetime) -> deque[datetime]:
        """The identity's ``action`` times of the last 24 h (read once, then kept)."""
        usage = ctx.usage.get(action)
        if usage is None:
            usage = ctx.usage[action] = deque(
                self.store.action_times(ctx.identity, action, now - DAY)
            )
        while usage and usage[0] <= now - DAY:
            usage.popleft()
        return usage

    def release(self, ctx: IdentityTick, p: Planned) -> None:
        """Give back the limit slot a planned action took (it did not happen)."""
        usage = ctx.usage.get(p.step.action)
        if usage is not None and p.step.action != "check_connection":
            with contextlib.suppress(ValueError):
                usage.remove(p.at)

    def _limit(self, revision: str, ctx: IdentityTick, action: str) -> int | None:
        """The lower of the sequence's limit and the provider's smart limit (None: neither)."""
        key = (revision, ctx.provider_name, action)
        if key not in self._limits:
            seq = self.state.sequence(revision)
            limits = [
                v
                for v in (seq.limits.get(action), ctx.provider.spec.smart_limits.get(action))
                if v is not None
            ]
            self._limits[key] = min(limits) if limits else None
        return self._limits[key]

    def _zone(self, name: str | None, fallback: str) -> ZoneInfo:
        for candidate in (name, fallback, "UTC"):
            if not candidate:
                continue
            zone = self._zones.get(candidate)
            if zone is None:
                try:
                    zone = ZoneInfo(candidate)
                except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a directory
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


def _render_params(step: ActionStep, enr: EnrollmentRow, lead: LeadRow) -> dict[str, Any]:
    """The step's ``with`` parameters, strings rendered for the lead (seeded by enrollment);
    each template gets its own copy of the lead's data."""
    return {
        k: render(v, {**lead.data, "linkedin_profile_url": lead.profile_url}, str(enr.id))
        if isinstance(v, str)
        else v
        for k, v in step.with_.items()
    }
