"""The Policy in a plan and in the store, a sequence's caps, and the guardrails a plan states.

The applied Policy is kept resolved (its do-not-contact files read) in the ``kv`` table at
:data:`POLICY_KEY`: the runner enforces it from there (budgets, quiet days, frequency caps, the
do-not-contact domains), and a plan of Sequences alone still skips by it. A plan shows the
drift between the database's do-not-contact list (``seqrun dnc``) and the Policy's: both are
enforced; the drift says what is not in git yet.

Example::

    pp = plan_policy([policy], store)
    print(pp.action, pp.db_only, pp.policy_only)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.apply import META_NS
from engine.apply.leads import SkipPlan, enroll_room
from engine.manifest.policy import policy_from_json, policy_to_json
from engine.model import Caps, Policy, Sequence
from engine.store import Store
from engine.vocab import POLICY_KEY


@dataclass(frozen=True)
class PolicyPlan:
    """The Policy a plan holds leads back with: from the manifests (``create``, ``update``,
    ``unchanged`` against the applied one) or the applied one (``applied``)."""

    policy: Policy
    action: str
    db_only: tuple[str, ...] = ()  # on `seqrun dnc`'s list, not in the Policy
    policy_only: tuple[str, ...] = ()  # in the Policy, not on `seqrun dnc`'s list
    stored: Mapping[str, Any] = field(default_factory=dict)  # what apply writes

    @property
    def has_changes(self) -> bool:
        return self.action in ("create", "update")

    def to_json(self) -> dict[str, Any]:
        p = self.policy
        return {
            "kind": "Policy",
            "name": p.name,
            "action": self.action,
            "do_not_contact": {"urls": len(p.dnc_urls), "domains": sorted(p.dnc_domains)},
            "drift": {"db_only": list(self.db_only), "policy_only": list(self.policy_only)},
            "policy": dict(self.stored),
        }


def stored_policy(store: Store, conn: sa.Connection | None = None) -> Policy | None:
    """The Policy applied last, or None."""
    data = store.kv_get(*POLICY_KEY, conn=conn)
    return policy_from_json(data) if isinstance(data, dict) else None


def plan_policy(policies: list[Policy], store: Store) -> PolicyPlan | None:
    """The Policy of the manifests (the loader allows one) against the applied one; else
    the applied one; None when there is neither."""
    before = store.kv_get(*POLICY_KEY)
    if policies:
        policy = policies[0]
        stored = policy_to_json(policy)
        action = "create" if before is None else "unchanged" if before == stored else "update"
    elif isinstance(before, dict):
        policy, stored, action = policy_from_json(before), before, "applied"
    else:
        return None
    db = set(store.do_not_contact())
    return PolicyPlan(
        policy,
        action,
        db_only=tuple(sorted(db - policy.dnc_urls)),
        policy_only=tuple(sorted(policy.dnc_urls - db)),
        stored=stored,
    )


def persist_policy(pp: PolicyPlan, store: Store, *, now: datetime) -> None:
    """Keep the resolved Policy for the runner, with a ``policy`` event for ``why``."""
    with store.transaction() as conn:
        store.kv_put(*POLICY_KEY, dict(pp.stored), conn=conn)
        store.record_event("policy", pp.policy.name, {"action": pp.action}, at=now,
                           trigger="apply", conn=conn)


# ---- caps ---------------------------------------------------------------------------------------


def _lower(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def sequence_caps(
    seq: Sequence, override: Caps | None, store: Store, conn: sa.Connection
) -> tuple[Caps, int | None, str]:
    """The sequence's caps (the manifest's ``caps:``, tightened by apply's options), how many
    leads this plan may enroll (None: no cap) and the reason a lead over it is skipped.
    ``caps.max_enroll`` bounds the sequence's enrollments in all; ``--max-enroll`` this apply."""
    override = override or Caps()
    effective = Caps(
        max_enroll=seq.caps.max_enroll,
        max_sends_per_day=_lower(seq.caps.max_sends_per_day, override.max_sends_per_day),
    )
    max_new, reason = enroll_room(store, seq.name, seq.caps.max_enroll, override.max_enroll,
                                  conn, later="apply")
    return effective, max_new, reason


def stored_caps(store: Store, sequence: str, conn: sa.Connection | None = None) -> Caps:
    """The caps the runner enforces for an applied sequence (kept with its metadata)."""
    meta = store.kv_get(META_NS, sequence, conn=conn)
    caps = meta.get("caps") if isinstance(meta, dict) else None
    if not isinstance(caps, dict):
        return Caps()
    return Caps(caps.get("max_enroll"), caps.get("max_sends_per_day"))


# ---- what a plan states -------------------------------------------------------------------------


def _pct(rate: float) -> str:
    return f"{rate * 100:g}%"


def guardrail_lines(
    seq: Sequence, caps: Caps, policy: Policy | None, skipped: Iterable[SkipPlan],
    revision_canary: tuple[int, int] | None = None,
) -> list[str]:
    """Every guardrail that will hold this sequence's leads back, in words: the skips of this
    plan by reason, then what the runner holds (rollout, caps, budgets, quiet days...).
    ``revision_canary``: (moved now, in flight) of a revision rollout."""
    lines = []
    by_reason = Counter(s.reason for s in skipped)
    for reason, n in sorted(by_reason.items()):
        lines.append(f"{n} lead(s) skipped: {reason.replace('_', ' ')}")
    r = seq.rollout
    if r is not None:
        hold_days = r.hold.total_seconds() / 86400
        cond = []
        if r.failed_rate_below is not None:
            cond.append(f"failed rate below {_pct(r.failed_rate_below)}")
        if r.reply_rate_above is not None:
            cond.append(f"reply rate above {_pct(r.reply_rate_above)}")
        when = f" if {' and '.join(cond)}" if cond else ""
        if revision_canary is not None:
            now_n, of = revision_canary
            lines.append(
                f"canary: {now_n} of {of} in-flight lead(s) migrate now, the rest after "
                f"{hold_days:g}d{when} (else the sequence pauses)"
            )
        lines.append(
            f"rollout: the first {r.canary} lead(s) go; the rest wait {hold_days:g}d, then go"
            f"{when} (else the sequence pauses)"
        )
    if caps.max_enroll is not None:
        lines.append(f"caps.max_enroll: at most {caps.max_enroll} lead(s) in the sequence")
    if caps.max_sends_per_day is not None:
        lines.append(
            f"max sends per day: {caps.max_sends_per_day} (connect, message, InMail) per 24 h "
            "across its identities"
        )
    if policy is not None:
        lines.extend(_policy_lines(seq, policy))
    return lines


def _policy_lines(seq: Sequence, policy: Policy) -> list[str]:
    lines = []
    for action, n in sorted(policy.budgets.items()):
        lines.append(f"policy {policy.name}: organisation budget {action} {n} per 24 h "
                     "across every identity")
    if policy.max_touches is not None and policy.touch_window is not None:
        days = policy.touch_window.total_seconds() / 86400
        lines.append(f"policy {policy.name}: at most {policy.max_touches} touch(es) per lead "
                     f"per {days:g}d across sequences")
    if policy.quiet_days:
        days_text = ", ".join(sorted(d.isoformat() for d in policy.quiet_days))
        lines.append(f"policy {policy.name}: quiet days ({policy.timezone}): {days_text}")
    tiers = {i: policy.tier(i) for i in seq.identities if policy.tier(i) != "classic"}
    if tiers:
        lines.append("identity tiers: " + ", ".join(f"{i} {t}" for i, t in tiers.items()))
    return lines
