"""The seed guide's rules before an action, in order: reply -> ``reply``; do-not-contact ->
``stopped``; already connected -> ``ALREADY_CONNECTED``; a conversation that moved within
``cooldown`` -> postponed; outside the business window (the lead's timezone) -> postponed to
the next opening; the identity's rolling-24-h limit (shared by every sequence on it) ->
postponed until the oldest counted action leaves the window; then the message is rendered."""

from __future__ import annotations

import contextlib
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import vocab
from engine.compile.machine import CompiledSequence
from engine.manifest.templates import render
from engine.model import ActionStep, Sequence, Window
from engine.run.guards import LIMIT_KEY, Guards
from engine.run.moves import Move, Moves
from engine.run.pushed import HOLD, IMMEDIATE
from engine.run.results import TickResult
from engine.run.state import DAY, MESSAGES, IdentityTick, Planned, RunState
from engine.run.sync import Sync
from engine.store import ConversationRow, EnrollmentRow, LeadRow
from engine.variants import chosen, texts
from engine.vocab import DAYS

INBOX_KEY = "inbox sync"  # a message waiting for the inbox schedule's next result
Promise = tuple[datetime, int]  # an instant promised to a lead in line, and its enrollment

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
    return _SHARED_WINDOWS.opening(window, tz, now)


class Windows:
    """Sending windows' openings, with each window's days and closing time worked out once
    per (window, zone) and the answer kept per local day (most leads of a tick share one)."""

    def __init__(self) -> None:
        self._shapes: dict[tuple[Window, str], tuple[frozenset[int], time]] = {}

    def opening(self, window: Window, tz: ZoneInfo, now: datetime) -> datetime | None:
        """None when ``now`` is inside ``window`` in ``tz``, else its next opening (UTC)."""
        shape = self._shapes.get((window, tz.key))
        if shape is None:
            days = frozenset(DAYS.index(d) for d in window.days if d in DAYS)
            end = window.end if window.end != time(0, 0) else time(23, 59, 59, 999999)
            shape = self._shapes[(window, tz.key)] = (days, end)
        days, end = shape
        if not days:
            return None
        local = now.astimezone(tz)
        today = local.date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if day.weekday() not in days:
                continue
            opens = datetime.combine(day, window.start, tzinfo=tz)
            if offset == 0 and opens <= local < datetime.combine(day, end, tzinfo=tz):
                return None
            if local < opens:
                return opens.astimezone(UTC)
        return None  # pragma: no cover - a non-empty day set always opens within 8 days


_SHARED_WINDOWS = Windows()


def _fits(usage: deque[datetime], line: deque[Promise], limit: int | None, now: datetime) -> bool:
    """Whether one more action now keeps every instant promised in ``line`` within ``limit``
    (then a lead arriving while others wait may use a slot nobody came for: a lead in line
    that moved without a call, or left)."""
    if not line:
        return True
    if limit is None:
        return False
    times = list(usage)
    for j, (instant, _) in enumerate(line):
        if instant >= now + DAY:
            break
        # the 24 h up to this instant: the ledger's times in it, this action, promises 0..j
        if len(times) - bisect_right(times, instant - DAY) + j + 2 > limit:
            return False
    return True


def _next_slot(
    usage: deque[datetime], line: deque[Promise], limit: int, now: datetime
) -> datetime:
    """The first instant after every promised one at which a ``limit``-per-24-h schedule
    (the ledger's times, then the promised ones) has room for one more."""
    last = line[-1][0] if line else (usage[-1] if usage else now)
    k = limit  # the limit-th time from the end of ledger + line must have left the window
    if k <= len(line):
        edge: datetime | None = line[-k][0]
    else:
        k -= len(line)
        edge = usage[-k] if k <= len(usage) else None
    slot = max(now, last)
    if edge is not None:
        slot = max(slot, edge + DAY)
    return slot


class Rules:
    """Decides whether a due action goes out now; keeps the identities' 24-h usage."""

    def __init__(self, state: RunState, moves: Moves, sync: Sync, guards: Guards) -> None:
        self.state = state
        self.guards = guards
        self.store = state.store
        self.clock = state.clock
        self.moves = moves
        self.sync = sync
        self._limits: dict[tuple[str, str, str], int | None] = {}
        self._generation = 0  # the Guards' Policy generation _limits was read under
        # (identity, action, limit) -> instants promised to the leads waiting on that limit,
        # in order; kept by this process (after a restart the ledger alone orders them)
        self._lines: dict[tuple[str, str, int | None], deque[Promise]] = {}
        self._windows = Windows()
        self._pulled: set[int] = set()  # leads due early with a slot another handed them

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
        # 1. sync before send; a lead who wrote (first or back) is a human's now. A message
        # needs a sync immediately before it (seed 001: a reply minutes before the send must
        # stop it): a live one in its tick, or the inbox schedule's pushed result no older
        # than `pushed.IMMEDIATE`; with that result due soon, the message waits for it (see
        # _inbox_hold) instead of syncing. Every other action sends no message: a sync
        # younger than `visit_sync_age` will do, live or pushed. So will it for an async
        # submission: its run executes later anyway, so a sync at the submission cannot
        # promise more than that age (a reply found later stops the lead before its next step)
        live_send = action in MESSAGES and not seq.is_async(step)
        hold: datetime | None = None
        if not ctx.synced:
            if live_send:
                fresh = self._inbox_immediate(ctx, now)
                hold = None if fresh else self._inbox_hold(ctx, now)
                need = not fresh and hold is None
            else:
                need = self._sync_too_old(ctx, now)
            if need:
                await self.sync.ensure_synced(ctx, result)
                now = self.clock.now()  # the sync took its time
        if enr.id in ctx.replied:
            return None  # the sync moved it (reply)
        if ctx.conv is None:
            ctx.conv = self.state.conversation_cache(ctx.identity)
        conv = ctx.conv.get(lead.profile_url)
        if conv is not None or action == "connect" or lead.profile_url in dnc:
            # rules 1 to 3 can apply (most leads meet none: they skip the call)
            moved = self._no_call(ctx, enr, lead, action, conv, compiled, result, dnc)
            if moved is not None:
                return moved
        held = self._held_until(ctx, seq, enr, lead, action, conv, now)
        if held is not None:
            until, reason, key = held
            self.moves.postpone(enr, lead, until, reason, result, ctx=ctx, waiting=key)
            return None
        if hold is not None and not ctx.synced:  # a sync earlier in the wave will do
            keep = enr.waiting if enr.waiting and enr.waiting.startswith(LIMIT_KEY) else None
            self.moves.postpone(enr, lead, hold, "the inbox schedule's next result (sync "
                                "before send)", result, ctx=ctx, waiting=keep or INBOX_KEY)
            return None
        # 7. render, with the lead's variant (the promoted winner, else the one its row names,
        # else its hash's) of a step with variants
        promoted = self.state.promoted.get((enr.sequence, step.id)) if step.variants else None
        variant = chosen(step, enr.sequence, lead.profile_url, promoted, lead.data)
        try:
            params = _render_params(texts(step, variant), enr, lead)
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
        self.guards.count(enr, action, now)
        return Planned(enr, lead, step, params, now, compiled,
                       None if variant is None else variant.name)

    def _inbox_immediate(self, ctx: IdentityTick, now: datetime) -> bool:
        """Whether the inbox schedule's pushed result is as good as a sync of this tick."""
        note = self.state.pushed.inbox(ctx.identity, now)
        return note is not None and now - note <= IMMEDIATE

    def _inbox_hold(self, ctx: IdentityTick, now: datetime) -> datetime | None:
        """When a message whose last inbox result is not immediate should wait for the inbox
        schedule's next result instead of a live sync: that result's expected arrival (its
        run plus half of ``IMMEDIATE``) when it comes within ``HOLD``; None when none is due
        soon (the schedule is overdue, slow or absent: the message syncs live)."""
        nxt = self.state.pushed.inbox_next(ctx.identity, now)
        if nxt is None:
            return None
        until = nxt + IMMEDIATE / 2
        return until if now < until <= now + HOLD else None

    def _sync_too_old(self, ctx: IdentityTick, now: datetime) -> bool:
        """Whether the identity's newest sync, live or pushed, is older than
        ``visit_sync_age`` (or there is none)."""
        last = self.state.last_sync.get(ctx.identity)
        pushed = self.state.pushed.inbox(ctx.identity, now)
        if pushed is not None and (last is None or pushed > last):
            last = pushed
        return last is None or now - last > self.state.settings.visit_sync_age

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
    ) -> tuple[datetime, str, str] | None:
        """Rules 4 to 6: when the action may go, why not now and the waiting key; None: now.
        A lead that holds a place in a limit's queue keeps it while a window or a cooldown
        holds it too (it is still in line)."""
        queued = enr.waiting if enr.waiting and enr.waiting.startswith(LIMIT_KEY) else None
        pulled = enr.id in self._pulled  # given another's slot: held again, it does not swap
        self._pulled.discard(enr.id)
        # 4. cooldown: the conversation moved recently
        if action in MESSAGES and seq.cooldown and conv is not None:
            until = conv.last_activity_at + seq.cooldown
            if now < until:
                if queued:
                    if not pulled:
                        until = self._swap(ctx, enr, action, until, now)
                    return until, "cooldown", queued
                return until, "cooldown", "cooldown"
        # 5. business window in the lead's timezone
        if seq.window is not None:
            opening = self._windows.opening(seq.window, self._lead_zone(seq, lead), now)
            if opening is not None:
                if queued:
                    if not pulled:
                        opening = self._swap(ctx, enr, action, opening, now)
                    return opening, "outside the sending window", queued
                return opening, "outside the sending window", "window"
        # 5b. the guardrails: rollout, quiet days, frequency per lead, budgets, send caps
        # (a lead in a limit's line too: a budget binds whatever the line promised)
        guarded = self.guards.hold(seq, enr, action, now)
        if guarded is not None:
            return guarded
        # 6. limits per identity per rolling 24 h, shared by every sequence
        return self._limit_hold(ctx, enr, action, now, queued is not None)

    def _limit_hold(
        self, ctx: IdentityTick, enr: EnrollmentRow, action: str, now: datetime, queued: bool
    ) -> tuple[datetime, str, str] | None:
        """Rule 6. A lead held by the limit is given the instant a slot frees for it, in line
        behind the leads already waiting on this identity's action (the ledger's times plus
        the instants promised to them): it is touched again then, not polled. A lead coming
        back at its promised instant takes the ledger's capacity; a lead arriving while
        others wait joins the end of the line (first come, first served) unless a slot is
        free that no promised instant needs."""
        limit = self._limit(enr.revision, ctx, action)
        saturated = ctx.saturated.get(action)
        if saturated is not None and saturated <= now:
            saturated = None
        usage = self.usage(ctx, action, now)  # read even without a limit: it is counted
        if limit is None and saturated is None:
            return None
        line = self._line((ctx.identity, action, limit), now)
        key = f"{LIMIT_KEY}{action}"
        free = limit is not None and len(usage) < limit
        if saturated is None and free and (queued or _fits(usage, line, limit, now)):
            return None
        if limit is None:
            assert saturated is not None
            return saturated, "LIMIT_REACHED (provider)", key
        if limit <= 0:
            return now + DAY, f"{action} limit {limit}/24h reached", key
        until = None
        if queued and saturated is None:  # back at its instant, the ledger still full
            n = ctx.short[action] = ctx.short.get(action, 0) + 1
            idx = len(usage) - limit + n - 1
            if 0 <= idx < len(usage):
                until = usage[idx] + DAY
        if until is None:
            until = _next_slot(usage, line, limit, now)
            line.append((until, enr.id))
        if saturated is not None and saturated > until:
            return saturated, "LIMIT_REACHED (provider)", key
        return until, f"{action} limit {limit}/24h reached", key

    def _line(self, key: tuple[str, str, int | None], now: datetime) -> deque[Promise]:
        """The instants promised to the leads waiting on an identity's action under one
        limit (sequences with another limit on the same identity form their own line),
        later than ``now``, in order."""
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = deque()
        while line and line[0][0] <= now:
            line.popleft()
        return line

    def _swap(
        self, ctx: IdentityTick, enr: EnrollmentRow, action: str, until: datetime, now: datetime
    ) -> datetime:
        """A lead in line, at its instant, that its window or a cooldown holds until
        ``until``: its slot goes to the next lead in line (due now instead of at its own
        instant), which hands it its later instant, so the slot is not lost. Returns when
        the held lead is due (``until`` when nobody later in line can take its slot)."""
        line = self._line((ctx.identity, action, self._limit(enr.revision, ctx, action)), now)
        key = enr.waiting or ""
        while line and line[0][0] < until:
            instant, other = line.popleft()
            if other != enr.id and self.store.pull_forward(other, key, instant, now):
                line.appendleft((instant, enr.id))
                self._pulled.add(other)
                return instant
        return until

    def usage(self, ctx: IdentityTick, action: str, now: datetime) -> deque[datetime]:
        """The identity's ``action`` times of the last 24 h (read once, then kept)."""
        usage = ctx.usage.get(action)
        if usage is None:
            times = self.store.action_times(ctx.identity, action, now - DAY)
            flying = self.state.in_flight.get((ctx.identity, action))
            if flying:  # async runs without outcome yet: they may happen any moment
                times = sorted([*times, *(t for t in flying if t > now - DAY)])
            usage = ctx.usage[action] = deque(times)
        while usage and usage[0] <= now - DAY:
            usage.popleft()
        return usage

    def release(self, ctx: IdentityTick, p: Planned) -> None:
        """Give back the limit slot a planned action took (it did not happen)."""
        usage = ctx.usage.get(p.step.action)
        if usage is not None and p.step.action != "check_connection":
            with contextlib.suppress(ValueError):
                usage.remove(p.at)
        self.guards.release(p.enr, p.step.action, p.at)

    def _limit(self, revision: str, ctx: IdentityTick, action: str) -> int | None:
        """The lower of the sequence's limit and the provider's smart limit for the identity's
        tier (the Policy's; classic when none) (None: neither)."""
        key = (revision, ctx.identity, action)
        if self._generation != self.guards.generation:  # another Policy: tiers may differ
            self._generation = self.guards.generation
            self._limits.clear()
            self._lines.clear()
        if key not in self._limits:
            seq = self.state.sequence(revision)
            policy = self.guards.policy
            tier = policy.tier(ctx.identity) if policy is not None else "classic"
            self._limits[key] = ctx.provider.spec.enforced_limits(seq.limits, tier).get(action)
        return self._limits[key]

    def _lead_zone(self, seq: Sequence, lead: LeadRow) -> ZoneInfo:
        return window_zone(seq.window, lead.data)


@lru_cache(maxsize=1024)
def _zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a directory
            continue
    return ZoneInfo("UTC")  # pragma: no cover


def window_zone(window: Window | None, lead: Mapping[str, Any]) -> ZoneInfo:
    """The zone ``window`` is read in for a lead (its data): the window's, or with
    ``timezone: lead`` the lead's ``timezone`` column, else the window's fallback (a sequence's
    leads and a fan-out's alike)."""
    if window is None:
        return _zone("UTC", "UTC")
    if window.timezone == "lead":
        tz = lead.get("timezone")
        return _zone(str(tz) if tz else None, window.fallback_timezone)
    return _zone(window.timezone, window.fallback_timezone)


def _render_params(
    with_: Mapping[str, Any], enr: EnrollmentRow, lead: LeadRow
) -> dict[str, Any]:
    """The step's ``with`` parameters (its variant's texts in place), strings rendered for
    the lead (seeded by enrollment); each template gets its own copy of the lead's data."""
    return {
        k: render(v, {**lead.data, "linkedin_profile_url": lead.profile_url}, str(enr.id))
        if isinstance(v, str)
        else v
        for k, v in with_.items()
    }
