"""Exactly once: an intent row (key ``enrollment:step:attempt``) is committed before each
call, its outcome with the transition after it. An intent left without outcome (a crash, a
lost answer) is reconciled against the provider before anything is resent: the provider is
asked whether the action happened, never asked to do it again."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from engine import vocab
from engine.errors import ProviderError
from engine.providers.base import ConversationSummary, Lead, Provider
from engine.run.locks import RUN_LOCK
from engine.run.moves import Move, Moves
from engine.run.results import TickResult
from engine.run.state import MESSAGES, OUTREACH, IdentityTick, RunState, all_or_cancel
from engine.run.sync import Sync
from engine.store import ActionRow, EnrollmentRow, IdentityRow, LeadRow

log = logging.getLogger(__name__)


class _Open(NamedTuple):
    """An open intent it is time to ask about, with what asking needs."""

    intent: ActionRow
    enr: EnrollmentRow
    lead: LeadRow
    provider: Provider


class Recovery:
    """Settles intents that have no outcome; remembers which "done" had no evidence."""

    def __init__(self, state: RunState, moves: Moves, sync: Sync) -> None:
        self.state = state
        self.store = state.store
        self.clock = state.clock
        self.moves = moves
        self.sync = sync
        # idempotency key -> why reconcile said "done" without evidence (popped when settled)
        self._unverified: dict[str, str] = {}
        # idempotency key -> when this process last asked the provider about it (see _ask_now)
        self._asked: dict[str, datetime] = {}

    async def recover(
        self, result: TickResult | None = None, pending: list[ActionRow] | None = None
    ) -> set[int]:
        """Reconcile intents that have no outcome. Returns the enrollments whose intent could
        not be settled yet (they must not act until it is).

        Only the intents it is time to ask about (:meth:`_ask_now`) reach the provider: the
        identities concurrently, each one's intents in turn, each settled intent committed
        as soon as it is settled (a crash in recovery keeps what was settled before it)."""
        result = result or TickResult(self.clock.now())
        unresolved: set[int] = set()
        if pending is None:
            pending = self.store.pending_intents()
        owned = self.state.owned
        if owned is not None:  # a worker: its own identities' intents only
            pending = [p for p in pending if p.identity in owned]
        if not pending:
            return unresolved
        statuses = {i.id: i for i in self.store.list_identities()}
        live = self.store.live_lock_holder(RUN_LOCK)
        now = self.clock.now()
        asks: dict[str, list[_Open]] = {}
        for intent in pending:
            if self.not_now(intent, statuses, live):
                unresolved.add(intent.enrollment_id)
                continue
            enr = self.store.get_enrollment(intent.enrollment_id)
            if enr is None:
                self.store.log_outcome(intent.idempotency_key, "unknown", at=now, label="ORPHAN")
                continue
            provider = self.state.provider_for(enr)
            lead = self.store.get_lead(enr.lead_id)
            if provider is None or lead is None or not self._ask_now(intent, enr, now):
                unresolved.add(enr.id)
                continue
            asks.setdefault(intent.identity, []).append(_Open(intent, enr, lead, provider))
        tasks = [
            asyncio.ensure_future(self._recover_identity(opened, result, unresolved))
            for opened in asks.values()
        ]
        if tasks:
            await all_or_cancel(tasks)
        return unresolved

    def _ask_now(self, intent: ActionRow, enr: EnrollmentRow, now: datetime) -> bool:
        """Is it time to ask the provider about ``intent``? Not while its lead waits out the
        settle window of the attempt (postponed after it: asked when the lead is due again,
        right before its next attempt), and not twice within one window in this process
        (a lead that moved on, a provider that did not answer)."""
        asked = self._asked.get(intent.idempotency_key)
        if asked is not None and now - asked < self.state.settings.settle_after:
            return False
        due = enr.next_due_at
        return not (due is not None and due > now and self._at_step(intent, enr))

    def _at_step(self, intent: ActionRow, enr: EnrollmentRow) -> bool:
        """The lead still waits at the intent's step (a next attempt of it may follow)."""
        return enr.state == intent.step and not self.state.compiled(enr.revision).is_terminal(
            enr.state
        )

    async def _recover_identity(
        self, opened: list[_Open], result: TickResult, unresolved: set[int]
    ) -> None:
        """One identity's intents, in turn (its calls stay serial)."""
        convs: dict[str, list[ConversationSummary] | None] = {}
        for i, (intent, enr, lead, provider) in enumerate(opened):
            self._asked[intent.idempotency_key] = self.clock.now()
            try:
                label = await self.reconcile(intent, provider, lead, convs)
            except ProviderError as exc:
                unresolved.add(enr.id)
                if exc.label == vocab.AUTH_EXPIRED:  # the rest would get the same answer
                    ctx = IdentityTick(intent.identity, self.state.provider_name(enr), provider)
                    self.sync.pause_identity(ctx, "AUTH_EXPIRED while reconciling", result)
                    unresolved.update(o.enr.id for o in opened[i + 1 :])
                    return
                self._unanswered(intent, enr, lead, exc, result)
                continue
            if label is None and self.keep_open(intent, enr, lead, result):
                unresolved.add(enr.id)
                continue
            self._settle(intent, enr, lead, label, result)
            self._asked.pop(intent.idempotency_key, None)
            result.recovered += 1

    def _unanswered(
        self,
        intent: ActionRow,
        enr: EnrollmentRow,
        lead: LeadRow,
        exc: ProviderError,
        result: TickResult,
    ) -> None:
        """The provider did not say: a lead still at the step waits (at least a settle
        window) before it is asked again, so it is not asked on every tick."""
        if not self._at_step(intent, enr):
            return
        now = self.clock.now()
        wait = max(self.state.settings.settle_after.total_seconds(), exc.retry_after or 0.0)
        until = now + timedelta(seconds=wait)
        reason = f"outcome unknown: the provider did not answer ({exc.label})"
        self.moves.postpone(enr, lead, until, reason, result)

    def not_now(
        self, intent: ActionRow, statuses: dict[str, IdentityRow], live: str | None
    ) -> bool:
        """Another runner, alive, still has this call in flight (not ours to settle), or its
        identity is paused (the provider would not answer)."""
        holder = intent.response.get("holder") if isinstance(intent.response, dict) else None
        if holder is not None and holder != self.state.holder and holder == live:
            return True
        ident = statuses.get(intent.identity)
        return ident is not None and ident.status != "active"

    def keep_open(
        self, intent: ActionRow, enr: EnrollmentRow, lead: LeadRow, result: TickResult
    ) -> bool:
        """An attempt the provider does not show (yet). It may still be executing: the intent
        stays open, and its lead waits, until `settle_after` has passed since the attempt's
        outcome became unknown (a TIMEOUT postpones the lead that long; after a crash the
        window starts at this first look). Asked again when the lead is due, right before its
        next attempt; False: settle it as not done now."""
        if intent.action not in OUTREACH:
            return False  # nothing to duplicate (a connection check): simply ask again
        if not self._at_step(intent, enr):
            return False  # the lead moved on: no next attempt of this step follows
        now = self.clock.now()
        due = enr.next_due_at
        if due is not None and due > intent.created_at:
            return due > now  # postponed after the attempt: wait for the end of that window
        until = now + self.state.settings.settle_after
        self.moves.postpone(enr, lead, until, "outcome unknown: settling", result)
        return True

    async def reconcile(
        self,
        intent: ActionRow,
        provider: Provider,
        lead: LeadRow,
        convs: dict[str, list[ConversationSummary] | None],
    ) -> str | None:
        """What became of the action of ``intent``: ``"ok"`` (it happened), the label the
        provider would have answered (a connect to someone connected before it was asked:
        ALREADY_CONNECTED), or None (it did not happen). Asks the provider, never resends."""
        action = intent.action
        target = Lead(lead.profile_url)
        if action in ("visit_profile", "follow"):
            # Nothing to look at, and harmless to repeat (a second view of a profile, a
            # follow the provider dedupes): not done, so the next attempt makes the call and
            # the provider answers (PROFILE_NOT_ACCESSIBLE routes the lead as it would have).
            # Counting it done unseen sent inaccessible profiles on as visited.
            return None
        if action == "connect":
            rel = await provider.relationship(intent.identity, target)
            if rel.status == "connected" and rel.since is not None and rel.since < (
                intent.created_at
            ) and not self._seen_gone(intent, lead, rel.since):
                return vocab.ALREADY_CONNECTED  # connected before: no invitation went out
            return "ok" if rel.status in ("pending", "connected") else None
        if action == "withdraw_invitation":
            rel = await provider.relationship(intent.identity, target)
            if rel.status == "none" and not rel.verified:
                self._unverified[intent.idempotency_key] = (
                    "no pending invitation seen, but the provider cannot list sent invitations"
                )
            return "ok" if rel.status == "none" else None
        if action in MESSAGES:
            summaries = convs.get(intent.identity)
            if summaries is None:
                summaries = convs[intent.identity] = await provider.sync_conversations(
                    intent.identity
                )
            return "ok" if await _message_seen(intent, lead, summaries, provider) else None
        return None  # check_connection and the like: no side effect, simply ask again

    def _seen_gone(self, intent: ActionRow, lead: LeadRow, since: datetime) -> bool:
        """Did this runner see that connection gone after ``since`` (a message refused
        NOT_CONNECTED)? Then the provider's date is of the old connection, and the invitation
        of ``intent`` may well have gone out: it is not settled as ALREADY_CONNECTED."""
        cached = self.store.connection(intent.identity, lead.profile_url)
        return cached is not None and cached[0] == "not_connected" and cached[1] >= since

    def _settle(
        self,
        intent: ActionRow,
        enr: EnrollmentRow,
        lead: LeadRow,
        label: str | None,
        result: TickResult,
    ) -> None:
        now = self.clock.now()
        unverified = self.unverified_event(intent.idempotency_key, intent.action, enr, lead)
        with self.store.transaction() as conn:
            if label == "ok":
                self._settle_done(intent, enr, lead, unverified, now, result, conn)
            elif label is not None:
                self._settle_refused(intent, enr, lead, label, now, result, conn)
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

    def _settle_done(
        self,
        intent: ActionRow,
        enr: EnrollmentRow,
        lead: LeadRow,
        unverified: dict[str, Any] | None,
        now: datetime,
        result: TickResult,
        conn: Connection,
    ) -> None:
        """The action happened: its outcome, and its transition unless the lead moved on."""
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
        if enr.state != intent.step or self.state.compiled(enr.revision).is_terminal(enr.state):
            return
        if intent.action in MESSAGES:
            self.store.put_conversation(
                enr.identity,
                lead.profile_url,
                last_sender_is_us=True,
                last_activity_at=now,
                conn=conn,
            )
        move = Move("ok", action=intent.action, label="ok", detail="reconciled after a lost answer")
        self.moves.transition(enr, lead, move, result, conn=conn)

    def _settle_refused(
        self,
        intent: ActionRow,
        enr: EnrollmentRow,
        lead: LeadRow,
        label: str,
        now: datetime,
        result: TickResult,
        conn: Connection,
    ) -> None:
        """The provider would have refused the call (it had no effect): recorded as the error
        it would have answered, and routed by that label, as a live answer would be."""
        detail = "reconciled: connected before the invitation, none was sent"
        self.store.log_outcome(
            intent.idempotency_key,
            "failed",
            at=now,
            label=label,
            response={"reconciled": True, "label": label, "message": detail},
            conn=conn,
        )
        if enr.state != intent.step or self.state.compiled(enr.revision).is_terminal(enr.state):
            return
        move = Move(label, action=intent.action, label=label, detail=detail)
        self.moves.transition(enr, lead, move, result, conn=conn)

    def unverified_event(
        self, key: str, action: str, enr: EnrollmentRow, lead: LeadRow
    ) -> dict[str, Any] | None:
        """The ``reconciled-unverified`` event (shown by `seqrun why`) when reconcile counted
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


async def _message_seen(
    intent: ActionRow, lead: LeadRow, summaries: list[ConversationSummary], provider: Provider
) -> bool:
    """Is the message of ``intent`` in the lead's conversation? The summary shows the last
    message only; when something happened in the thread since the intent (a reply after ours
    hides ours), the thread itself is read back to the intent."""
    request = (intent.response or {}).get("request") or {}
    text = request.get("text") if isinstance(request, dict) else None
    wanted = text.strip() if isinstance(text, str) and text.strip() else None
    for s in summaries:
        if s.profile_url != lead.profile_url:
            continue
        if wanted is not None and wanted in {t.strip() for t in s.our_texts}:
            return True
        if s.last_activity_at < intent.created_at:
            return False  # nothing happened in the thread since the intent
        # No text to compare (or a provider that reformats it): a message of ours came
        # after the intent. Erring this way can lose a step, never send it twice.
        if s.last_sender_is_us:
            return True
        return bool(await provider.our_messages(intent.identity, s, intent.created_at))
    return False
