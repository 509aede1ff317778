"""Guardrails the runner enforces, after the window and before an identity's limit: a
sequence's canary rollout, the organisation's quiet days, the frequency cap per lead across
sequences, the organisation's budgets (across every identity) and a sequence's send cap
(across its identities); plus the Policy's do-not-contact URLs and domains (a lead on them
ends ``stopped``, like one on the ``seqrun dnc`` list).

Counts are kept like the identities' limits: read from the action log once per tick, an
action counted the moment it is planned (identities run concurrently on one event loop, and
the check and the count happen with no ``await`` between them, so no identity overshoots a
budget another is using), given back when the call did not happen.

The rollout of a sequence with ``rollout:`` lives in kv (:data:`ROLLOUT_NS`, by name):
``{stage, started_at, canary: [enrollment ids], reason}``; ``stage`` is ``canary``,
``promoted``, ``held`` (the canary failed ``promote_if``: the sequence is paused with the
reason) or ``rolled_back`` (by hand).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import Connection

from engine.apply import APPLY_LOCK, META_NS
from engine.apply.rollout import REVISION_NS, promote_rest, revision_rollout, roll_back
from engine.errors import LockError, UsageError
from engine.manifest.policy import blocked_reason, policy_from_json
from engine.model import Policy, Rollout, Sequence
from engine.run.state import DAY, RunState
from engine.store import EnrollmentRow, LeadRow, SequenceRow, Store
from engine.vocab import POLICY_KEY, SENDS

ROLLOUT_NS = "rollout"
LIMIT_KEY = "limit:"  # the waiting key of a lead in line for an identity's action limit
_RUNNER_STAGES = ("canary", "promoting", "rolling_back")  # what a tick decides or finishes
_UNREAD = object()  # the Policy before the first tick read it
Hold = tuple[datetime, str, str]  # until, reason, waiting key


def rollout_state(store: Store, name: str) -> dict[str, Any] | None:
    """The rollout of sequence ``name`` (None: no rollout started)."""
    found = store.kv_get(ROLLOUT_NS, name)
    return found if isinstance(found, dict) else None


def verdict(store: Store, name: str, canary: Iterable[int], r: Rollout) -> str | None:
    """Why the canary's outcomes miss ``r.promote_if`` (None: they meet it)."""
    size, failed, replied = canary_health(store, name, canary)
    why = []
    if r.failed_rate_below is not None and not failed < r.failed_rate_below:
        why.append(f"failed rate {failed:.0%} is not below {r.failed_rate_below:.0%}")
    if r.reply_rate_above is not None and not replied > r.reply_rate_above:
        why.append(f"reply rate {replied:.0%} is not above {r.reply_rate_above:.0%}")
    return f"canary of {size}: " + "; ".join(why) if why else None


def canary_health(store: Store, name: str, canary: Iterable[int]) -> tuple[int, float, float]:
    """(canary size, failed rate, reply rate) of a rollout's canary enrollments."""
    ids = set(canary)
    rows = [e for e in store.enrollments(sequence=name) if e.id in ids]
    size = len(rows) or 1
    failed = sum(1 for e in rows if e.state == "failed")
    replied = sum(1 for e in rows if e.state == "replied")
    return len(rows), failed / size, replied / size


class GuardReads(NamedTuple):
    """The guardrails' reads of a tick (:meth:`Guards.read`)."""

    sequences: list[SequenceRow]
    policy: Any  # the stored Policy (None: none)
    metas: dict[str, Any]  # sequence -> its stored metadata (the caps)
    revisions: dict[str, dict[str, Any] | None]  # sequence -> its revision rollout


class Guards:
    """The guardrails of one runner (state per tick: :meth:`begin`)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.store = state.store
        self.policy: Policy | None = None
        self._org: dict[str, deque[datetime]] = {}
        self._seq: dict[str, deque[datetime]] = {}
        self._caps: dict[str, int | None] = {}
        self._touches: dict[int, list[datetime]] = {}
        self._rollouts: dict[str, dict[str, Any]] = {}
        # sequence -> the highest enrollment in flight when a revision rollout started: those
        # are the revision rollout's, never held by the new-lead canary
        self._bounds: dict[str, int] = {}
        self._zone = ZoneInfo("UTC")
        self._raw: Any = _UNREAD  # the stored Policy self.policy was built from
        self.generation = 0  # counts the Policies read: a new one may change a tier

    # ---- per tick -----------------------------------------------------------------------------

    def read(self, sequences: Iterable[SequenceRow], conn: Connection) -> GuardReads:
        """What :meth:`begin` reads, on the caller's connection (the tick's reads, Store.read): the
        Policy, each sequence's caps and revision rollout."""
        sequences = list(sequences)
        return GuardReads(
            sequences,
            self.store.kv_get(*POLICY_KEY, conn=conn),
            {row.name: self.store.kv_get(META_NS, row.name, conn=conn) for row in sequences},
            {row.name: revision_rollout(self.store, row.name, conn)
             for row in sequences if row.kind == "Sequence"},
        )

    def begin(self, now: datetime, reads: GuardReads) -> list[str]:
        """Take the Policy and the caps :meth:`read` found, advance the rollouts; returns the
        sequences a failed canary paused (the reason is in their rollout state and in
        ``status``)."""
        sequences, data, metas, revisions = reads
        if data != self._raw:  # rebuilt only when another Policy was applied
            first, self._raw = self.generation == 0, data
            before = self.policy
            self.policy = policy_from_json(data) if isinstance(data, dict) else None
            self.generation += 1  # the limits per identity tier are read again (Rules)
            if not first:  # nothing was promised under another Policy before the first read
                self._retier(before, now)
            self._zone = ZoneInfo("UTC")
            if self.policy is not None:
                # lint checked the zone; one missing from this machine's tz database: UTC
                with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                    self._zone = ZoneInfo(self.policy.timezone)
        self._org.clear()
        self._seq.clear()
        self._touches.clear()
        self._caps.clear()
        self._rollouts.clear()
        self._bounds.clear()
        paused: list[str] = []
        for row in sequences:
            meta = metas[row.name]
            caps = meta.get("caps") if isinstance(meta, dict) else None
            self._caps[row.name] = caps.get("max_sends_per_day") if isinstance(caps, dict) else None
            if row.kind != "Sequence":
                continue
            if row.paused:  # a rollback by hand goes on (its leads left for this tick)
                self._advance_revision(row.name, revisions[row.name], now, paused=True)
                continue
            if self._advance_revision(row.name, revisions[row.name], now):
                paused.append(row.name)
                continue
            seq = self.state.sequence(row.current_revision)
            if seq.rollout is not None and self._advance_rollout(seq, now):
                paused.append(row.name)
        return paused

    def _retier(self, before: Policy | None, now: datetime) -> None:
        """A Policy applied while running that changes an identity's tier: its leads in line
        for a limit are due now, to meet the new limit at once (not at the instant the old
        one promised them)."""
        tiers_before = before.tiers if before is not None else {}
        tiers_after = self.policy.tiers if self.policy is not None else {}
        changed = {i for i in set(tiers_before) | set(tiers_after)
                   if tiers_before.get(i, "classic") != tiers_after.get(i, "classic")}
        if changed:
            self.store.release_limit_waits(changed, LIMIT_KEY, now)

    def _advance_rollout(self, seq: Sequence, now: datetime) -> bool:
        """Start a rollout at its first enrollments; at the end of the hold, promote it or
        pause the sequence. True when it paused the sequence."""
        assert seq.rollout is not None
        r = seq.rollout
        found = rollout_state(self.store, seq.name)
        if found is None or (found["stage"] == "canary" and len(found["canary"]) < r.canary):
            # the canary is the first `canary` enrollments: leads enrolled later (an import)
            # join it until it is full
            bound, kept = self._bounds.get(seq.name, 0), set(found["canary"] if found else ())
            ids = [e.id for e in self.store.enrollments(sequence=seq.name)
                   if e.id > bound or e.id in kept][: r.canary]
            if not ids or (found is not None and len(ids) == len(found["canary"])):
                if found is not None:
                    self._rollouts[seq.name] = found
                return False
            if found is None:
                self.store.record_event("rollout", seq.name, {"stage": "canary"}, at=now,
                                        trigger="rollout")
            found = {"stage": "canary", "started_at": now.isoformat(), "reason": None,
                     **(found or {}), "canary": ids}
            self.store.kv_put(ROLLOUT_NS, seq.name, found)
        self._rollouts[seq.name] = found
        if found["stage"] != "canary":
            return False
        started = datetime.fromisoformat(found["started_at"])
        if now < started + r.hold:
            return False
        reason = verdict(self.store, seq.name, found["canary"], r)
        stage = "held" if reason else "promoted"
        found = {**found, "stage": stage, "reason": reason, "decided_at": now.isoformat()}
        self._rollouts[seq.name] = found
        with self.store.transaction() as conn:
            self.store.kv_put(ROLLOUT_NS, seq.name, found, conn=conn)
            if reason:
                self.store.set_sequence_paused(seq.name, True, conn=conn)
            self.store.record_event("rollout", seq.name, {"stage": stage, "reason": reason},
                                    at=now, trigger="rollout", conn=conn)
        return bool(reason)

    def _advance_revision(self, name: str, found: dict[str, Any] | None, now: datetime, *,
                          paused: bool = False) -> bool:
        """A revision rollout (engine.apply.rollout; ``found``: its state as the tick read
        it): at the end of the hold, migrate the rest of the in-flight leads when the canary
        meets ``promote_if``, else pause the sequence with the reason; a promotion left with
        calls in flight goes on. True when it paused."""
        self._bounds[name] = int(found.get("bound") or 0) if found else 0
        if found is None or found["stage"] not in _RUNNER_STAGES:
            return False
        if paused and found["stage"] != "rolling_back":
            return False
        new = self.state.sequence(found["to_revision"])
        r = new.rollout
        if found["stage"] == "canary" and (
                r is None or now < datetime.fromisoformat(found["started_at"]) + r.hold):
            return False
        try:  # apply, `seqrun promote` and the other workers decide under the same lock
            with self.store.lock(APPLY_LOCK, ttl=timedelta(minutes=2)):
                return self._decide_revision(name, new, now)
        except LockError:
            return False  # someone else is deciding or applying: the next tick looks again

    def _decide_revision(self, name: str, new: Sequence, now: datetime) -> bool:
        """Under the apply lock, on the state read again: hold or promote (go on promoting)."""
        found = revision_rollout(self.store, name)
        if found is None or found["stage"] not in _RUNNER_STAGES:
            return False
        if found["stage"] == "rolling_back":
            olds = {rev: self.state.sequence(rev) for rev in found["from_revisions"]}
            try:
                with self.store.transaction() as conn:  # the moves and the stage: one commit
                    _, left = roll_back(self.store, name, found, new, olds.__getitem__,
                                        now=now, conn=conn)
                    if not left:
                        self.store.kv_put(REVISION_NS, name, {**found, "stage": "rolled_back"},
                                          conn=conn)
            except UsageError as exc:  # checked by hand; a lead moved on meanwhile: say so
                self.store.kv_put(REVISION_NS, name, {**found, "reason": str(exc)})
            return False
        r = new.rollout
        if found["stage"] == "canary" and r is not None:
            reason = verdict(self.store, name, found["canary"], r)
            if reason is not None:
                with self.store.transaction() as conn:
                    self.store.kv_put(REVISION_NS, name, {
                        **found, "stage": "held", "reason": reason,
                        "decided_at": now.isoformat()}, conn=conn)
                    self.store.set_sequence_paused(name, True, conn=conn)
                    self.store.record_event("rollout", name, {
                        "stage": "held", "reason": reason, "revision": found["to_revision"]},
                        at=now, revision=found["to_revision"], trigger="rollout", conn=conn)
                return True
        owned = self.state.owned  # a worker among others: theirs due now wait for them
        with self.store.transaction() as conn:  # the moves and the stage: one commit
            promote_rest(self.store, name, found, new, now=now, conn=conn, trigger="rollout",
                         due_by=None if owned is None else now, owned=owned or ())
        return False

    def batch(self, leads: Mapping[int, LeadRow], now: datetime) -> set[str]:
        """Before a due batch: the leads' past touches read in one query (the frequency cap),
        and the URLs the Policy's do-not-contact list (URLs, domains) holds among them."""
        policy = self.policy
        if policy is None:
            return set()
        if policy.max_touches is not None and policy.touch_window is not None:
            todo = [i for i in leads if i not in self._touches]
            found = self.store.touches(todo, SENDS, now - policy.touch_window)
            for lead_id in todo:
                self._touches[lead_id] = [at for at, _, _ in found.get(lead_id, ())]
        return {
            lead.profile_url
            for lead in leads.values()
            if blocked_reason(policy, lead.profile_url, lead.data) is not None
        }

    # ---- per action ---------------------------------------------------------------------------

    def hold(self, seq: Sequence, enr: EnrollmentRow, action: str, now: datetime) -> Hold | None:
        """When the action may go, why not now and the waiting key; None: now."""
        found = self._rollout_hold(seq, enr, now)
        if found is not None:
            return found
        policy = self.policy
        if policy is not None:
            quiet = self._quiet_until(policy, now)
            if quiet is not None:
                return quiet, "a quiet day of the Policy", "quiet_day"
            if action in SENDS:
                found = self._frequency_hold(policy, enr, now)
                if found is not None:
                    return found
            budget = policy.budgets.get(action)
            if budget is not None:
                usage = self._usage(self._org, action, (action,), None, now)
                if len(usage) >= budget:
                    until = usage[len(usage) - budget] + DAY if budget else now + DAY
                    return until, f"organisation budget {action} {budget}/24h reached", "budget"
        cap = self._caps.get(enr.sequence)
        if cap is not None and action in SENDS:
            usage = self._usage(self._seq, enr.sequence, SENDS, enr.sequence, now)
            if len(usage) >= cap:
                until = usage[len(usage) - cap] + DAY if cap else now + DAY
                return until, f"max sends per day {cap} reached", "send_cap"
        return None

    def count(self, enr: EnrollmentRow, action: str, now: datetime) -> None:
        """Count a planned action in every ledger that holds it."""
        for ledger in self._ledgers(enr, action):
            ledger.append(now)

    def release(self, enr: EnrollmentRow, action: str, at: datetime) -> None:
        """Give back what :meth:`count` took (the call did not happen)."""
        for ledger in self._ledgers(enr, action):
            with contextlib.suppress(ValueError):
                ledger.remove(at)

    def _ledgers(self, enr: EnrollmentRow, action: str) -> list[deque[datetime] | list[datetime]]:
        """The ledgers read this tick that count ``action`` of ``enr``."""
        out: list[deque[datetime] | list[datetime]] = []
        if action in self._org:
            out.append(self._org[action])
        if action in SENDS:
            if enr.sequence in self._seq:
                out.append(self._seq[enr.sequence])
            if enr.lead_id in self._touches:
                out.append(self._touches[enr.lead_id])
        return out

    def _usage(
        self,
        ledgers: dict[str, deque[datetime]],
        key: str,
        actions: tuple[str, ...],
        sequence: str | None,
        now: datetime,
    ) -> deque[datetime]:
        """The ledger of ``key`` over the last 24 h (read once a tick, then kept)."""
        usage = ledgers.get(key)
        if usage is None:
            times = self.store.action_times_across(actions, now - DAY, sequence=sequence)
            usage = ledgers[key] = deque(times)
        while usage and usage[0] <= now - DAY:
            usage.popleft()
        return usage

    def _rollout_hold(self, seq: Sequence, enr: EnrollmentRow, now: datetime) -> Hold | None:
        found = self._rollouts.get(seq.name) if seq.rollout is not None else None
        if found is None or found["stage"] == "promoted" or enr.id in found["canary"] \
                or enr.id <= self._bounds.get(seq.name, 0):
            return None
        if found["stage"] == "canary":
            assert seq.rollout is not None
            until = datetime.fromisoformat(found["started_at"]) + seq.rollout.hold
            # due at the end of the hold, when begin() promotes or pauses the sequence
            return max(until, now + timedelta(minutes=1)), "rollout: waits for the canary", \
                "rollout"
        return now + DAY, f"rollout {found['stage']}: {found.get('reason') or ''}", "rollout"

    def _quiet_until(self, policy: Policy, now: datetime) -> datetime | None:
        if not policy.quiet_days:
            return None
        day = now.astimezone(self._zone).date()
        if day not in policy.quiet_days:
            return None
        while day in policy.quiet_days:
            day += timedelta(days=1)
        return datetime.combine(day, time(0, 0), tzinfo=self._zone)

    def _frequency_hold(self, policy: Policy, enr: EnrollmentRow, now: datetime) -> Hold | None:
        if policy.max_touches is None or policy.touch_window is None:
            return None
        touches = self._touches.get(enr.lead_id)
        if touches is None:
            found = self.store.touches([enr.lead_id], SENDS, now - policy.touch_window)
            touches = self._touches[enr.lead_id] = [at for at, _, _ in found.get(enr.lead_id, [])]
        recent = sorted(t for t in touches if t > now - policy.touch_window)
        if len(recent) < policy.max_touches:
            return None
        until = recent[len(recent) - policy.max_touches] + policy.touch_window
        reason = f"{policy.max_touches} touch(es) per lead per {policy.touch_window} reached"
        return until, reason, "frequency"
