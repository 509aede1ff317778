"""plan: what ``seqrun apply`` would change.

A plan compares the manifests with the store (and, for Schedules, with the provider):

* a Sequence gets a **revision** (the compiler's hash of the normalized manifest); a new hash
  is a new revision. New enrollments use the newest revision.
* **leads to enroll** come from the manifest's CSV (and ``seqrun leads import``); which are
  enrolled, skipped or updated is :mod:`engine.apply.leads`' rule (a plan stays stable after
  apply).
* **in-flight leads** (non-terminal enrollments on an older revision) keep their revision,
  unless the manifest carries ``migrate: {old_step: new_step}``. With a mapping, every
  in-flight lead moves to the new revision: mapped steps go to their target, steps that still
  exist keep their id, and a removed step that still holds leads and is not mapped refuses the
  plan (:class:`PlanError`).

Schedules are planned by :mod:`engine.apply.schedules`, Workflows by
:mod:`engine.apply.workflows`. Applying a plan is :mod:`engine.apply.sequences`.

Example::

    plan = await make_plan(load(["founders.yaml"]), store=store, now=clock.now())
    if plan.has_changes:
        result = await apply(manifests, store=store, clock=clock, approve=lambda p: True)
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from engine.apply import APPLY_LOCK, META_NS
from engine.apply import schedules as schedule_plans
from engine.apply import workflows as workflow_apply
from engine.apply.fanout import FanOut, expand, window_wait
from engine.apply.leads import (
    EnrollPlan,
    Guardrails,
    LeadUpdate,
    SkipPlan,
    identity_load,
    plan_enrollments,
    plan_lead_updates,
)
from engine.apply.policy import (
    PolicyPlan,
    guardrail_lines,
    plan_policy,
    sequence_caps,
    stored_caps,
)
from engine.apply.preflight import (
    ProviderFor,
    RowChecker,
    check_identities,
    refused_failures,
)
from engine.apply.rollout import PENDING, entry_delays, revision_rollout, target_state
from engine.apply.search import search_leads
from engine.clock import Clock
from engine.compile.machine import compile_sequence
from engine.errors import PlanError, Problem, UsageError
from engine.experiments import StepExperiment, measure
from engine.manifest.leads import LeadImport, bulk_collection, read_lead_chunks, read_leads
from engine.manifest.loader import load_with_warnings
from engine.model import (
    ActionStep,
    Caps,
    Manifest,
    Policy,
    Rollout,
    Schedule,
    Sequence,
    Workflow,
)
from engine.serve.config import receiver_warnings
from engine.store import Store
from engine.store import schedules as schedule_db
from engine.vocab import TERMINALS

__all__ = [
    "APPLY_LOCK",
    "META_NS",
    "ClientFor",
    "EnrollPlan",
    "InFlightGroup",
    "LeadUpdate",
    "Plan",
    "PolicyPlan",
    "SequencePlan",
    "SkipPlan",
    "WorkflowPlan",
    "load_manifests",
    "load_manifests_with_warnings",
    "make_plan",
    "plan_sequence",
]

ClientFor = Callable[[str], httpx.AsyncClient]


# ---- plan objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlightGroup:
    """Enrollments of one (revision, state): where they go on apply."""

    revision: str
    state: str
    count: int
    to_revision: str
    to_state: str

    @property
    def moves(self) -> bool:
        return (self.revision, self.state) != (self.to_revision, self.to_state)


@dataclass(frozen=True)
class SequencePlan:
    name: str
    provider: str
    revision: str
    previous_revision: str | None
    identities: tuple[str, ...]
    initial: str
    steps: tuple[str, ...]
    enroll: tuple[EnrollPlan, ...] = ()
    skipped: tuple[SkipPlan, ...] = ()
    already_enrolled: int = 0
    update: tuple[LeadUpdate, ...] = ()
    in_flight: tuple[InFlightGroup, ...] = ()
    migrate: Mapping[str, str] = field(default_factory=dict)
    leads_refused: tuple[Problem, ...] = ()
    # preflight: rows that would fail (a template, a length, a URL), never in `enroll`
    bad_rows: tuple[Problem, ...] = ()
    manifest: Any = None
    searched: int | None = None  # people the leads search returned (None: no search)
    # seconds from entering a step to its first due time (a wait's duration), None: terminal
    entry_delay: Mapping[str, float | None] = field(default_factory=dict)
    # each step with A/B variants: its funnel so far and its experiment's verdict
    experiments: tuple[StepExperiment, ...] = ()
    caps: Caps = field(default_factory=Caps)  # the manifest's, tightened by apply's options
    guardrails: tuple[str, ...] = ()  # every guardrail that will hold leads back, in words
    caps_changed: bool = False  # other caps than the runner enforces now
    # a revision rollout (`migrate:` and `rollout:`): the in-flight leads that move at apply
    # (the canary; the others move when it is promoted); None: every move happens at apply
    revision_canary: int | None = None
    rollout: Rollout | None = None

    @property
    def action(self) -> str:
        if self.previous_revision is None:
            return "create"
        return "update" if self.previous_revision != self.revision else "unchanged"

    @property
    def migrations(self) -> tuple[InFlightGroup, ...]:
        return tuple(g for g in self.in_flight if g.moves)

    @property
    def has_changes(self) -> bool:
        return (
            self.action != "unchanged"
            or bool(self.enroll)
            or bool(self.migrations)
            or bool(self.update)
            or self.caps_changed
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "Sequence",
            "name": self.name,
            "action": self.action,
            "provider": self.provider,
            "revision": self.revision,
            "previous_revision": self.previous_revision,
            "identities": list(self.identities),
            "enroll": [
                {"profile_url": e.profile_url, "identity": e.identity} for e in self.enroll
            ],
            "enroll_by_identity": dict(Counter(e.identity for e in self.enroll)),
            "skipped": [
                {"profile_url": s.profile_url, "reason": s.reason, "detail": s.detail}
                for s in self.skipped
            ],
            "already_enrolled": self.already_enrolled,
            "update": [
                {"profile_url": u.profile_url,
                 "changes": {k: list(v) for k, v in u.changes.items()}}
                for u in self.update
            ],
            "in_flight": [
                {
                    "revision": g.revision,
                    "state": g.state,
                    "count": g.count,
                    "keeps_revision": not g.moves,
                    "to_revision": g.to_revision,
                    "to_state": g.to_state,
                }
                for g in self.in_flight
            ],
            "migrate": dict(self.migrate),
            "experiments": [e.to_json() for e in self.experiments],
            "leads_refused": [str(p) for p in self.leads_refused],
            "caps": {"max_enroll": self.caps.max_enroll,
                     "max_sends_per_day": self.caps.max_sends_per_day},
            "guardrails": list(self.guardrails),
            "revision_canary": self.revision_canary,
            "searched": self.searched,
            "bad_rows": [
                {"file": p.file, "line": p.line, "where": p.path, "message": p.message}
                for p in self.bad_rows
            ],
            "changes": self.has_changes,
        }


@dataclass(frozen=True)
class WorkflowPlan:
    """A Workflow runs once per body: ``run`` (new or changed body, or the last run failed),
    ``resume`` (a run left unfinished), ``unchanged`` (this body already completed)."""

    name: str
    provider: str
    body: Any
    revision: str
    last_run: Any = None
    parent: str | None = None  # a fan-out child: its Workflow's name (engine.apply.fanout)
    workflow: Workflow | None = field(default=None, compare=False)  # what apply runs

    @property
    def action(self) -> str:
        last = self.last_run if isinstance(self.last_run, Mapping) else None
        if last is None:
            return "run"
        if last.get("state") in ("pending", "running"):
            return "resume"
        if last.get("state") == "completed" and last.get("revision") == self.revision:
            return "unchanged"
        return "run"

    @property
    def has_changes(self) -> bool:
        return self.action != "unchanged"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "Workflow", "name": self.name, "provider": self.provider,
                "action": self.action, "revision": self.revision, "body": self.body,
                **({"for_each_of": self.parent} if self.parent else {})}


@dataclass(frozen=True)
class Plan:
    sequences: tuple[SequencePlan, ...] = ()
    workflows: tuple[WorkflowPlan, ...] = ()
    schedules: Any = None  # engine.apply.schedules.SchedulePlan
    created_at: datetime | None = None
    warnings: tuple[str, ...] = ()  # a manifest needs `seqrun serve` and none is configured
    policy: PolicyPlan | None = None
    fan_outs: tuple[FanOut, ...] = ()  # Workflows with for_each (their children are above)
    skip_bad_rows: bool = False  # the bad rows are left out (else the plan fails)

    @property
    def bad_rows(self) -> tuple[Problem, ...]:
        return tuple(p for s in self.sequences for p in s.bad_rows)

    @property
    def failed(self) -> bool:
        """Rows would fail and were not to be skipped: `plan` exits 1, `apply` refuses."""
        return bool(self.bad_rows) and not self.skip_bad_rows

    def failure(self, *, listed: bool = False) -> PlanError:
        """The error of a failed plan: its first bad rows (unless the plan shown before
        ``listed`` them) and what to do."""
        rows = sorted(self.bad_rows)
        shown = "" if listed else "".join(f"{p}\n" for p in rows[:20])
        more = f"... and {len(rows) - 20} more\n" if len(rows) > 20 and not listed else ""
        lines = len({(p.file, p.line) for p in rows})
        return PlanError(f"{shown}{more}preflight: {lines} lead row(s) would fail; fix them, "
                         "or pass --skip-bad-rows to enroll the others (nothing was changed)")

    @property
    def has_changes(self) -> bool:
        return (
            bool(self.policy is not None and self.policy.has_changes)
            or any(s.has_changes for s in self.sequences)
            or any(w.has_changes for w in self.workflows)
            or bool(self.schedules is not None and self.schedules.has_changes)
        )

    def to_json(self, *, redacted: bool = True) -> dict[str, Any]:
        """For display (``-o json``): Schedule callback header values are replaced by digests
        unless ``redacted=False`` (a saved schedule plan is written by engine.apply.schedules)."""
        return {
            "changes": self.has_changes,
            "sequences": [s.to_json() for s in self.sequences],
            "workflows": [w.to_json() for w in self.workflows],
            "schedules": None if self.schedules is None
            else self.schedules.to_json(redacted=redacted),
            "warnings": list(self.warnings),
            "policy": None if self.policy is None else self.policy.to_json(),
            "fan_outs": [{"name": f.parent, "leads": len(f.children),
                          "refused": [str(p) for p in f.refused],
                          **({"outside_window": dict(Counter(f.waiting.values()))}
                             if f.waiting else {})} for f in self.fan_outs],
            "bad_rows": len({(p.file, p.line) for p in self.bad_rows}),
            "skip_bad_rows": self.skip_bad_rows,
        }


# ---- loading --------------------------------------------------------------------------------


def load_manifests(paths: Iterable[str | Path]) -> list[Manifest]:
    """engine.manifest.loader.load (validate + lint + model); raises ManifestError."""
    return load_manifests_with_warnings(paths)[0]


def load_manifests_with_warnings(
    paths: Iterable[str | Path],
) -> tuple[list[Manifest], list[Problem]]:
    """The manifests and the lint warnings (errors raise ManifestError)."""
    manifests, warnings = load_with_warnings(paths)
    return list(manifests), list(warnings)


def _compiled(seq: Sequence) -> tuple[str, str]:
    compiled = compile_sequence(seq)
    return compiled.revision, compiled.initial


def _manifest_json(m: Sequence | Workflow) -> Any:
    if m.normalized:
        return json.loads(json.dumps(m.normalized, default=str))
    return {"kind": m.kind, "name": m.name}


# ---- sequences ------------------------------------------------------------------------------


def plan_sequence(
    seq: Sequence,
    store: Store,
    *,
    leads: Iterable[LeadImport] | None = None,
    pending: Mapping[str, list[tuple[str, str, str]]] | None = None,
    policy: Policy | None = None,
    caps: Caps | None = None,
    now: datetime | None = None,
    searched: int | None = None,
) -> SequencePlan:
    """The plan of one sequence against the store (reads only). ``policy`` skips leads (its
    do-not-contact list, one lead one voice); ``caps`` (``apply --max-enroll``,
    ``--max-sends-per-day``) tightens the manifest's ``caps:``. The leads file is streamed
    in chunks (engine.manifest.leads.read_lead_chunks): only what the plan keeps of a row
    stays in memory."""
    revision, initial = _compiled(seq)
    chunks: Iterable[LeadImport] = (
        leads if leads is not None
        else read_lead_chunks(_shown(seq.leads.csv)) if seq.leads.csv is not None
        else [])
    steps = tuple(s.id for s in seq.steps)
    checker = RowChecker(seq)
    bad: list[Problem] = []
    refused: list[Problem] = []
    enroll: list[EnrollPlan] = []
    skipped: list[SkipPlan] = []
    update: list[LeadUpdate] = []
    already = 0
    with store.transaction() as conn, bulk_collection():
        current = store.get_sequence(seq.name, conn=conn)
        if current is not None and current.kind != "Sequence":
            raise PlanError(f"{seq.name!r} already exists as a {current.kind}")
        effective, max_new, cap_reason = sequence_caps(seq, caps, store, conn)
        caps_changed = current is not None and stored_caps(store, seq.name, conn) != effective
        guard = Guardrails(policy, max_new, now, cap_reason)
        dnc = store.do_not_contact(conn=conn)
        load = identity_load(store, seq.name, seq.identities, conn)
        for chunk in chunks:
            refused.extend(chunk.refused)
            bad.extend(refused_failures(chunk))
            e, s, a = plan_enrollments(
                store, sequence=seq.name, identities=seq.identities, rows=chunk.rows,
                conn=conn, pending=pending, admit=_preflight(checker, chunk, bad), dnc=dnc,
                load=load, guard=guard,
            )
            if guard.max_new is not None:  # the cap is the sequence's, over every chunk
                guard = replace(guard, max_new=guard.max_new - len(e))
            enroll.extend(e)
            skipped.extend(s)
            already += len(a)
            update.extend(plan_lead_updates(store, rows=chunk.rows, enrolled=a, conn=conn))
        in_flight = _in_flight(seq, store, revision, steps, conn)
    moving = sum(g.count for g in in_flight if g.moves)
    changed = current is not None and current.current_revision != revision
    canary = min(seq.rollout.canary, moving) if seq.rollout and moving and changed else None
    actions = [s for s in seq.steps if isinstance(s, ActionStep)]
    experiments = measure(store, seq.name, actions) if any(s.variants for s in actions) else []
    return SequencePlan(
        name=seq.name,
        provider=seq.provider,
        revision=revision,
        previous_revision=None if current is None else current.current_revision,
        identities=seq.identities,
        initial=initial,
        steps=steps,
        enroll=tuple(enroll),
        skipped=tuple(skipped),
        already_enrolled=already,
        update=tuple(update),
        in_flight=tuple(in_flight),
        migrate=dict(seq.migrate),
        leads_refused=tuple(refused),
        bad_rows=tuple(sorted(bad)),
        manifest=_manifest_json(seq),
        entry_delay=entry_delays(seq),
        experiments=tuple(experiments),
        caps=effective,
        caps_changed=caps_changed,
        guardrails=tuple(guardrail_lines(seq, effective, policy, skipped,
                                         None if canary is None else (canary, moving))),
        revision_canary=canary,
        rollout=seq.rollout,
        searched=searched,
    )


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it: problems name
    ``leads.csv:LINE`` as the user would type it."""
    try:
        return path.absolute().relative_to(Path.cwd())
    except ValueError:
        return path


def _preflight(
    checker: RowChecker, leads: LeadImport, bad: list[Problem]
) -> Callable[[int, Mapping[str, str]], bool]:
    """Whether a row to be enrolled passes preflight (engine.apply.preflight); the problems
    of one that does not go to ``bad``."""

    def admit(i: int, row: Mapping[str, str]) -> bool:
        problems = checker.check_row(row, leads.path, leads.lines[i],
                                     person=leads.people)
        bad.extend(problems)
        return not problems

    return admit


def _in_flight(
    seq: Sequence, store: Store, revision: str, steps: tuple[str, ...], conn: sa.Connection
) -> list[InFlightGroup]:
    rows = store.count_in_flight(seq.name, off_revision=revision, conn=conn)
    targets = set(steps) | set(TERMINALS)
    bad_targets = sorted(f"{k} -> {v}" for k, v in seq.migrate.items() if v not in targets)
    if bad_targets:
        raise PlanError(
            f"sequence {seq.name!r}: migrate maps to unknown steps: {', '.join(bad_targets)}"
        )
    # a revision rollout of this revision under way: its leads wait for the canary's verdict
    under_way = revision_rollout(store, seq.name, conn)
    waiting = under_way is not None and under_way["stage"] in PENDING \
        and under_way["to_revision"] == revision
    groups: list[InFlightGroup] = []
    refused: list[str] = []
    for old_rev, state, count in rows:
        target = target_state(state, seq.migrate, targets)
        if not seq.migrate or waiting:
            groups.append(InFlightGroup(old_rev, state, int(count), old_rev, state))
        elif target is not None:
            groups.append(InFlightGroup(old_rev, state, int(count), revision, target))
        else:
            refused.append(f"step {state!r} (revision {old_rev}) still has {count} lead(s)")
    if refused:
        raise PlanError(
            f"sequence {seq.name!r}: removed step(s) without a migrate mapping: "
            + "; ".join(refused)
            + ". Add `migrate: {<old step>: <new step>}` to the manifest."
        )
    return groups


# ---- workflows and schedules ------------------------------------------------------------------


def _plan_workflow(wf: Workflow, store: Store, parent: str | None = None) -> WorkflowPlan:
    body = workflow_apply.workflow_json(wf)
    digest = str(workflow_apply.body_revision(body))
    return WorkflowPlan(wf.name, wf.provider, body, digest,
                        workflow_apply.workflow_record(store, wf.name), parent, wf)


def _plan_workflows(manifests: list[Manifest], store: Store, now: datetime | None = None,
                    ) -> tuple[tuple[WorkflowPlan, ...], tuple[FanOut, ...]]:
    """A plan per Workflow; a fan-out's (``for_each``) one per lead, its rows refused kept,
    and those its sending window holds at ``now`` (apply defers them)."""
    plans: list[WorkflowPlan] = []
    fan_outs: list[FanOut] = []
    for m in manifests:
        if not isinstance(m, Workflow):
            continue
        if m.for_each is None:
            plans.append(_plan_workflow(m, store))
            continue
        fan = expand(m, store)
        children = [_plan_workflow(c, store, m.name) for c in fan.children]
        if now is not None and fan.window is not None:
            fan = replace(fan, waiting={
                wf.name: why for wf, c in zip(fan.children, children, strict=True)
                if c.action == "run" and (why := window_wait(wf, fan.zones.get(wf.name), now))})
        fan_outs.append(fan)
        plans += children
    return tuple(plans), tuple(fan_outs)


def _manages_schedules(store: Store) -> bool:
    return schedule_db.exists(store, schedule_db.MANAGED, schedule_db.INTENTS, schedule_db.ASYNC)


async def _plan_schedules(
    schedules: list[Schedule], store: Store, client_for: ClientFor | None, prune: bool = False
) -> Any:
    # With --prune and no Schedule manifest, the managed schedules are all undeclared: they are
    # planned for deletion (terraform semantics; the plan shows it before apply asks).
    if not schedules and not (prune and _manages_schedules(store)):
        return None
    if client_for is None:
        raise UsageError("planning Schedules needs a provider client")
    return await schedule_plans.plan_schedules(
        schedules, client=client_for("edges"), store=store, prune=prune
    )


async def _leads_of(seq: Sequence, client_for: ClientFor | None, clock: Clock | None,
                    ) -> tuple[tuple[LeadImport, ...] | None, int | None]:
    """Its CSV's rows, then the people the sequence's search finds (asked now, those of the
    CSV left out), each import naming its own source; None without a search (plan_sequence
    then streams the CSV itself)."""
    if seq.leads.search is None:
        return None, None
    csv = read_leads(_shown(seq.leads.csv)) if seq.leads.csv is not None else None
    if client_for is None:
        raise UsageError("planning a leads search needs a provider client")
    found, searched = await search_leads(seq, client_for=client_for, clock=clock, start=csv)
    return ((found,) if csv is None else (csv, found)), searched


async def make_plan(
    manifests: Iterable[Manifest],
    *,
    store: Store,
    client_for: ClientFor | None = None,
    now: datetime | None = None,
    prune: bool = False,
    caps: Caps | None = None,
    clock: Clock | None = None,
    skip_bad_rows: bool = False,
    provider_for: ProviderFor | None = None,
) -> Plan:
    """Plan every manifest: Sequences here, Workflows and Schedules through their modules.
    ``prune`` also plans deleting managed Schedules no manifest declares any more. The Policy
    among the manifests (else the one applied before) holds leads back; ``caps`` (apply's
    ``--max-enroll``, ``--max-sends-per-day``) tightens every Sequence's ``caps:``.

    Preflight (engine.apply.preflight): lead rows that would fail are left out of the
    enrollments and listed (``Plan.failed`` unless ``skip_bad_rows``); with ``provider_for``
    the identities are checked at the provider, and a bad one raises PlanError at its
    manifest line."""
    manifests = list(manifests)
    names = Counter((m.kind, m.name) for m in manifests)
    dupes = sorted(f"{k} {n}" for (k, n), c in names.items() if c > 1)
    if dupes:
        raise PlanError(f"defined more than once: {', '.join(dupes)}")
    warnings = list(receiver_warnings(manifests))
    if provider_for is not None:
        warnings.extend(await _check_identities(manifests, store, provider_for))
    pending: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    seq_plans: list[SequencePlan] = []
    policy_plan = plan_policy([m for m in manifests if isinstance(m, Policy)], store)
    policy = policy_plan.policy if policy_plan is not None else None
    to_plan = [m for m in manifests if isinstance(m, Sequence)]
    for n, m in enumerate(to_plan):
        leads, searched = await _leads_of(m, client_for, clock)
        sp = plan_sequence(m, store, pending=pending, leads=leads, searched=searched,
                           policy=policy, caps=caps, now=now)
        seq_plans.append(sp)
        if n + 1 < len(to_plan):  # the sequences after this one see its enrollments
            for e in sp.enroll:
                pending[e.profile_url].append((sp.name, e.identity, sp.initial))
    sequences = tuple(seq_plans)
    workflows, fan_outs = _plan_workflows(manifests, store, now)
    schedules = await _plan_schedules(
        [m for m in manifests if isinstance(m, Schedule)], store, client_for, prune
    )
    refused = [str(p) for f in fan_outs for p in f.refused]
    return Plan(sequences, workflows, schedules, now,
                (*warnings, *_notify_warnings(manifests), *refused),
                policy=policy_plan, fan_outs=fan_outs, skip_bad_rows=skip_bad_rows)


def _notify_warnings(manifests: Iterable[Manifest]) -> list[str]:
    """A ``notify:`` (a Sequence's or the Policy's) whose secret variable is not set here: its
    notices would not go out."""
    return [f"{m.kind} {m.name}: notify.secret_env {m.notify.secret_env} is not set; "
            "its notices will not be delivered until it is"
            for m in manifests
            if isinstance(m, Sequence | Policy) and m.notify is not None and m.notify.secret_env
            and not os.environ.get(m.notify.secret_env)]


async def _check_identities(
    manifests: list[Manifest], store: Store, provider_for: ProviderFor
) -> list[str]:
    """Warnings (a provider not checked); PlanError naming each bad identity's line."""
    stored = {i.id: i.status for i in store.list_identities()}
    problems, warnings = await check_identities(
        [m for m in manifests if isinstance(m, Sequence)], provider_for, stored)
    if problems:
        raise PlanError("\n".join(str(p) for p in sorted(problems)))
    return warnings

