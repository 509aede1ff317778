"""apply: persisting a plan. Each sequence is written in one transaction (its revision,
the sequence row, migrations of in-flight leads, new enrollments, lead updates) under the
store's ``apply`` lock; Schedules and Workflows are applied through their modules.

``apply`` recomputes the plan under the lock, asks for approval through a callback (the
library never prompts), then persists.

Example::

    result = await apply(manifests, store=store, clock=clock, approve=lambda p: True)
    print([s.enrolled for s in result.sequences])
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.apply import APPLY_LOCK, META_NS, rollout
from engine.apply import schedules as schedule_plans
from engine.apply import workflows as workflow_apply
from engine.apply.fanout import Budget, window_wait
from engine.apply.leads import enroll_leads, update_leads
from engine.apply.plan import ClientFor, Plan, SequencePlan, WorkflowPlan, make_plan
from engine.apply.policy import persist_policy, stored_policy
from engine.apply.preflight import ProviderFor
from engine.clock import Clock
from engine.errors import PlanError, UsageError
from engine.model import Caps, Manifest, Workflow
from engine.store import Store
from engine.vocab import KILL_SWITCH


@dataclass
class SequenceApplyResult:
    name: str
    revision: str
    revision_created: bool = False
    enrolled: int = 0
    migrated: int = 0
    updated: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision,
                "revision_created": self.revision_created, "enrolled": self.enrolled,
                "migrated": self.migrated, "updated": self.updated}


@dataclass
class ApplyResult:
    plan: Plan
    applied: bool = False
    sequences: list[SequenceApplyResult] = field(default_factory=list)
    schedules: Any = None
    workflows: dict[str, Any] = field(default_factory=dict)
    # fan-out leads left for a later apply: workflow name -> why (a limit reached)
    deferred: dict[str, str] = field(default_factory=dict)
    run: Any = None  # what the runner's tick returned, when apply ran due steps
    # providers whose host could not be reached: name -> {host, error} (engine.runtime)
    unreachable: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "plan": self.plan.to_json(),
            "sequences": [s.to_json() for s in self.sequences],
            "schedules": None if self.schedules is None else _jsonable(self.schedules),
            "workflows": {k: _jsonable(v) for k, v in self.workflows.items()},
            "deferred": dict(self.deferred),
            "run": None if self.run is None else _jsonable(self.run),
            "unreachable": self.unreachable,
        }


def _jsonable(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return json.loads(json.dumps(value, default=str))


def persist_sequence(sp: SequencePlan, store: Store, *, now: datetime) -> SequenceApplyResult:
    """Write one sequence plan in one transaction: revision, sequence, migrations, enrollments."""
    result = SequenceApplyResult(sp.name, sp.revision)
    with store.transaction() as conn:
        result.revision_created = store.put_revision(
            sp.revision, sp.name, "Sequence", sp.manifest, at=now, conn=conn
        )
        store.put_sequence(sp.name, "Sequence", sp.provider, sp.revision, conn=conn)
        if sp.previous_revision is None and store.kv_get(*KILL_SWITCH, conn=conn):
            store.set_sequence_paused(sp.name, True, conn=conn)
        store.kv_put(
            META_NS,
            sp.name,
            {"revision": sp.revision, "provider": sp.provider,
             "identities": list(sp.identities), "initial": sp.initial, "steps": list(sp.steps),
             "caps": {"max_enroll": sp.caps.max_enroll,
                      "max_sends_per_day": sp.caps.max_sends_per_day}},
            conn=conn,
        )
        for identity in sp.identities:
            store.put_identity(identity, sp.provider, conn=conn)
        if sp.action != "unchanged":
            store.record_event(
                "revision", sp.name, {"previous": sp.previous_revision}, at=now,
                revision=sp.revision, trigger="apply", conn=conn,
            )
        if sp.action == "update":  # a revision rollout of an older revision stops here
            rollout.supersede(store, sp.name, sp.revision, now=now, conn=conn)
        if sp.migrations:
            result.migrated = _migrate(sp, store, now=now, conn=conn)
        result.enrolled = enroll_leads(
            store, conn, sequence=sp.name, revision=sp.revision, initial=sp.initial,
            plans=sp.enroll, now=now, trigger="apply",
        )
        result.updated = update_leads(store, conn, sp.update, now=now, trigger="apply")
    return result


def _migrate(sp: SequencePlan, store: Store, *, now: datetime, conn: sa.Connection) -> int:
    """The in-flight leads ``sp`` moves: all of them, or only a revision rollout's canary
    (engine.apply.rollout; the rest when the canary is promoted)."""
    groups = {(g.revision, g.state): (g.to_revision, g.to_state) for g in sp.migrations}
    if sp.revision_canary is not None and sp.rollout is not None:
        return rollout.start(store, sp.name, sp.revision, sp.rollout, groups, sp.entry_delay,
                             now=now, conn=conn)
    rows = store.enrollments(sequence=sp.name, conn=conn)
    return rollout.move(store, sp.name, rows, lambda r: groups.get((r.revision, r.state)),
                        sp.entry_delay, now=now, conn=conn)


Approve = Callable[[Plan], bool | Awaitable[bool]]


async def apply(
    manifests: Iterable[Manifest],
    *,
    store: Store,
    clock: Clock,
    approve: Approve,
    client_for: ClientFor | None = None,
    prune: bool = False,
    caps: Caps | None = None,
    skip_bad_rows: bool = False,
    provider_for: ProviderFor | None = None,
) -> ApplyResult:
    """Plan under the ``apply`` lock, ask ``approve(plan)``, then persist and run Schedules and
    Workflows. Raises LockError when another apply holds the lock, PlanError when refused
    (lead rows that would fail, unless ``skip_bad_rows``: then they are not enrolled).
    ``prune`` also deletes managed Schedules no manifest declares any more; ``caps``
    (``--max-enroll``, ``--max-sends-per-day``) tightens every Sequence's ``caps:``."""
    manifests = list(manifests)
    with store.lock(APPLY_LOCK) as held:
        plan = await make_plan(manifests, store=store, client_for=client_for, now=clock.now(),
                               prune=prune, caps=caps, clock=clock,
                               skip_bad_rows=skip_bad_rows, provider_for=provider_for)
        if plan.failed:
            raise plan.failure()
        result = ApplyResult(plan)
        if not plan.has_changes:
            return result
        verdict = approve(plan)
        if not isinstance(verdict, bool):
            verdict = await verdict
        if not verdict:
            raise PlanError("apply cancelled: the plan was not approved")
        held.refresh()  # a long prompt must not have let another apply in (LockError if so)
        now = clock.now()
        if plan.policy is not None and plan.policy.has_changes:
            persist_policy(plan.policy, store, now=now)
        for sp in plan.sequences:
            result.sequences.append(persist_sequence(sp, store, now=now))
        if plan.schedules is not None and plan.schedules.has_changes:
            assert client_for is not None
            result.schedules = await schedule_plans.apply_schedule_plan(
                plan.schedules, client=client_for("edges"), store=store
            )
        budget = Budget(store, clock.now(), stored_policy(store))
        zones = {name: z for fan in plan.fan_outs for name, z in fan.zones.items()}
        for wp in plan.workflows:
            if not wp.has_changes:
                continue
            assert wp.workflow is not None  # the plan was made here, with its Workflow
            if wp.action == "run":  # a resume went out before: its window and count too
                wait = window_wait(wp.workflow, zones.get(wp.name), clock.now())
                if wait is None and wp.parent is not None:
                    wait = budget.take(wp.workflow, wp.body, _attempt_key(wp))
                if wait is not None:
                    result.deferred[wp.name] = wait
                    continue
            result.workflows[wp.name] = await _run_workflow(
                wp.workflow, store, clock, client_for
            )
        result.applied = True
    return result


async def apply_saved_schedule_plan(
    saved: Any, *, store: Store, clock: Clock, client_for: ClientFor
) -> ApplyResult:
    """Apply a Schedule plan saved by ``seqrun plan -out FILE`` (an
    engine.apply.schedules.SchedulePlan) under the ``apply`` lock, as it was approved: no new plan,
    no prompt. engine.apply.schedules refuses it (``PlanError("stale plan: ...")``) when the live
    schedules or the local state moved since it was made."""
    with store.lock(APPLY_LOCK):
        result = ApplyResult(Plan(schedules=saved, created_at=clock.now()))
        if not saved.has_changes:
            return result
        result.schedules = await schedule_plans.apply_schedule_plan(
            saved, client=client_for("edges"), store=store
        )
        result.applied = True
    return result


def _attempt_key(wp: WorkflowPlan) -> str:
    """The run about to start: the body's revision and the record's next attempt (as
    engine.apply.workflows numbers it), so a crash before its record is written counts it
    once."""
    last = wp.last_run if isinstance(wp.last_run, Mapping) else {}
    return f"{wp.revision}:{int(last.get('attempt', 0)) + 1}"


async def _run_workflow(
    wf: Workflow, store: Store, clock: Clock, client_for: ClientFor | None
) -> Any:
    if client_for is None:
        raise UsageError("running a Workflow needs a provider client")
    return await workflow_apply.run_workflow(
        wf, client=client_for(wf.provider), store=store, clock=clock
    )


