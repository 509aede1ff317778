"""plan / apply: what ``seqrun apply`` would change, and changing it.

A plan compares the manifests with the store (and, for Schedules, with the provider):

* a Sequence gets a **revision** (the compiler's hash of the normalized manifest); a new hash
  is a new revision. New enrollments use the newest revision.
* **leads to enroll** come from the manifest's CSV (and ``seqrun leads import``). A lead is
  skipped when it is on the do-not-contact list, or when another sequence holds it on one of
  this sequence's identities: an enrollment there, in flight or finished (one conversation
  per lead and identity: a lead who replied, or was removed, elsewhere is never picked up
  again by the next plan; a plan stays stable after apply). New leads are spread over
  the identities deterministically: each goes to the identity with the fewest enrollments in
  this sequence, ties broken by the manifest's order (round-robin from an even start).
* **in-flight leads** (non-terminal enrollments on an older revision) keep their revision,
  unless the manifest carries ``migrate: {old_step: new_step}``. With a mapping, every
  in-flight lead moves to the new revision: mapped steps go to their target, steps that still
  exist keep their id, and a removed step that still holds leads and is not mapped refuses the
  plan (:class:`PlanError`).

Schedules are delegated to :mod:`engine.apply.schedules`, Workflows to :mod:`engine.apply.workflows`
(imported lazily). ``apply`` recomputes the plan under the store's ``apply`` lock, asks for
approval through a callback (the library never prompts), then persists everything of one
sequence in one transaction.

Example::

    plan = await make_plan(load(["founders.yaml"]), store=store, now=clock.now())
    if plan.has_changes:
        result = await apply(manifests, store=store, clock=clock, approve=lambda p: True)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from engine.clock import Clock
from engine.errors import PlanError, Problem, UsageError
from engine.manifest.leads import URL_COLUMN, LeadImport, read_leads
from engine.model import Manifest, Schedule, Sequence, WaitStep, Workflow
from engine.store import Store, dump_json
from engine.store import tables as t
from engine.vocab import KILL_SWITCH, TERMINALS

log = logging.getLogger(__name__)

APPLY_LOCK = "apply"
META_NS = "sequence_meta"  # kv: name -> {revision, provider, identities, initial, steps}

ClientFor = Callable[[str], httpx.AsyncClient]


# ---- plan objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollPlan:
    profile_url: str
    identity: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadUpdate:
    """A lead already enrolled whose CSV row changed: its data is updated in place (the
    steps still to come render with it; nothing sent is touched)."""

    profile_url: str
    changes: Mapping[str, tuple[Any, Any]]  # column -> (stored, from the file)


@dataclass(frozen=True)
class SkipPlan:
    profile_url: str
    reason: str  # do_not_contact | held
    detail: str = ""
    sequence: str | None = None  # the holder, for reason == held
    identity: str | None = None


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
    manifest: Any = None
    # seconds from entering a step to its first due time (a wait's duration), None: terminal
    entry_delay: Mapping[str, float | None] = field(default_factory=dict)

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
            "leads_refused": [str(p) for p in self.leads_refused],
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
                "action": self.action, "revision": self.revision, "body": self.body}


@dataclass(frozen=True)
class Plan:
    sequences: tuple[SequencePlan, ...] = ()
    workflows: tuple[WorkflowPlan, ...] = ()
    schedules: Any = None  # engine.apply.schedules.SchedulePlan
    created_at: datetime | None = None

    @property
    def has_changes(self) -> bool:
        return (
            any(s.has_changes for s in self.sequences)
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
        }


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
    run: Any = None  # what the runner's tick returned, when apply ran due steps

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "plan": self.plan.to_json(),
            "sequences": [s.to_json() for s in self.sequences],
            "schedules": None if self.schedules is None else _jsonable(self.schedules),
            "workflows": {k: _jsonable(v) for k, v in self.workflows.items()},
            "run": None if self.run is None else _jsonable(self.run),
        }


def _jsonable(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return json.loads(json.dumps(value, default=str))


# ---- loading --------------------------------------------------------------------------------


def load_manifests(paths: Iterable[str | Path]) -> list[Manifest]:
    """engine.manifest.loader.load (validate + lint + model); raises ManifestError."""
    return load_manifests_with_warnings(paths)[0]


def load_manifests_with_warnings(
    paths: Iterable[str | Path],
) -> tuple[list[Manifest], list[Problem]]:
    """The manifests and the lint warnings (errors raise ManifestError)."""
    from engine.manifest.loader import load_with_warnings

    manifests, warnings = load_with_warnings(paths)
    return list(manifests), list(warnings)


def _compiled(seq: Sequence) -> tuple[str, str]:
    from engine.compile.machine import compile_sequence

    compiled = compile_sequence(seq)
    return compiled.revision, compiled.initial


def _manifest_json(m: Sequence | Workflow) -> Any:
    if m.normalized:
        return json.loads(json.dumps(m.normalized, default=str))
    return {"kind": m.kind, "name": m.name}


# ---- sequences ------------------------------------------------------------------------------


def _lead_data(row: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in row.items() if k != URL_COLUMN}
    full = data.get("full_name", "")
    if full and "first_name" not in data:
        first, _, last = full.partition(" ")
        data["first_name"] = first
        if last and "last_name" not in data:
            data["last_name"] = last
    return data


def _lead_ids(store: Store, urls: list[str], conn: sa.Connection) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(urls), 500):
        chunk = urls[i : i + 500]
        for row in conn.execute(
            sa.select(t.leads.c.id, t.leads.c.profile_url).where(t.leads.c.profile_url.in_(chunk))
        ):
            out[row.profile_url] = int(row.id)
    return out


def _holders(
    store: Store, lead_ids: Iterable[int], conn: sa.Connection
) -> dict[int, list[tuple[str, str, str]]]:
    """lead id -> [(sequence, identity, state)] of its enrollments."""
    ids = list(set(lead_ids))
    out: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    e = t.enrollments
    for i in range(0, len(ids), 500):
        rows = conn.execute(
            sa.select(e.c.lead_id, e.c.sequence, e.c.identity, e.c.state).where(
                e.c.lead_id.in_(ids[i : i + 500])
            )
        )
        for r in rows:
            out[int(r.lead_id)].append((r.sequence, r.identity, r.state))
    return out


def plan_enrollments(
    store: Store,
    *,
    sequence: str,
    identities: tuple[str, ...],
    rows: Iterable[Mapping[str, str]],
    conn: sa.Connection,
    pending: Mapping[str, list[tuple[str, str, str]]] | None = None,
) -> tuple[list[EnrollPlan], list[SkipPlan], dict[str, int]]:
    """Which rows to enroll (and on which identity), skip, or leave: those already enrolled,
    by URL, with their lead id (for :func:`plan_lead_updates`).

    ``pending`` adds holders not yet in the store (url -> [(sequence, identity, state)]): the
    enrollments planned for the sequences before this one in the same plan.
    """
    rows = list(rows)
    urls = [r[URL_COLUMN] for r in rows]
    ids = _lead_ids(store, urls, conn)
    holders = _holders(store, ids.values(), conn)
    dnc = store.do_not_contact(conn=conn)
    load: Counter[str] = Counter({i: 0 for i in identities})
    e = t.enrollments
    for r in conn.execute(
        sa.select(e.c.identity, sa.func.count()).where(e.c.sequence == sequence).group_by(
            e.c.identity
        )
    ):
        if r[0] in load:
            load[r[0]] = int(r[1])
    order = {ident: n for n, ident in enumerate(identities)}
    enroll: list[EnrollPlan] = []
    skipped: list[SkipPlan] = []
    already: dict[str, int] = {}
    for row in rows:
        url = row[URL_COLUMN]
        lead_id = ids.get(url)
        held = list(holders.get(lead_id, [])) if lead_id is not None else []
        held.extend((pending or {}).get(url, ()))
        if any(seq == sequence for seq, _, _ in held):
            if lead_id is not None:
                already[url] = lead_id
            continue
        if url in dnc:
            reason = dnc[url] or "on the do-not-contact list"
            skipped.append(SkipPlan(url, "do_not_contact", reason))
            continue
        holder = next(((s, i, st) for s, i, st in held if i in order), None)
        if holder is not None:
            s, i, st = holder
            skipped.append(
                SkipPlan(url, "held", f"held by sequence {s!r} on identity {i!r} (state {st})",
                         sequence=s, identity=i)
            )
            continue
        if not identities:
            raise PlanError(f"sequence {sequence!r} has no identities to enroll leads on")
        identity = min(identities, key=lambda i: (load[i], order[i]))
        load[identity] += 1
        enroll.append(EnrollPlan(url, identity, _lead_data(row)))
    return enroll, skipped, already


def plan_lead_updates(
    store: Store, *, rows: Iterable[Mapping[str, str]], enrolled: Mapping[str, int],
    conn: sa.Connection,
) -> list[LeadUpdate]:
    """Leads of ``rows`` already enrolled (``enrolled``: URL -> lead id, as
    :func:`plan_enrollments` returns them) whose file data differs from the stored data (a
    column the file has and the store lacks, or another value)."""
    stored = store.leads_by_ids(enrolled.values(), conn=conn)
    out: list[LeadUpdate] = []
    for row in rows:
        url = row[URL_COLUMN]
        if url not in enrolled:
            continue
        lead = stored.get(enrolled[url])
        old = lead.data if lead is not None else {}
        new = _lead_data(row)
        changes = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if changes:
            out.append(LeadUpdate(url, changes))
    return out


def update_leads(
    store: Store, conn: sa.Connection, updates: Iterable[LeadUpdate], *, now: datetime,
    trigger: str,
) -> int:
    """Merge the changed columns into the stored leads, with one ``lead_updated`` event each
    (the columns, not their values: `why` tells that the data changed and when)."""
    n = 0
    for u in updates:
        store.upsert_lead(u.profile_url, {k: new for k, (_, new) in u.changes.items()}, conn=conn)
        store.record_event("lead_updated", u.profile_url, {"columns": sorted(u.changes)},
                           at=now, trigger=trigger, conn=conn)
        n += 1
    return n


def plan_sequence(
    seq: Sequence,
    store: Store,
    *,
    leads: LeadImport | None = None,
    pending: Mapping[str, list[tuple[str, str, str]]] | None = None,
) -> SequencePlan:
    """The plan of one sequence against the store (reads only)."""
    revision, initial = _compiled(seq)
    if leads is None and seq.leads.csv is not None:
        leads = read_leads(seq.leads.csv)
    steps = tuple(s.id for s in seq.steps)
    with store.transaction() as conn:
        current = store.get_sequence(seq.name, conn=conn)
        if current is not None and current.kind != "Sequence":
            raise PlanError(f"{seq.name!r} already exists as a {current.kind}")
        enroll, skipped, already = plan_enrollments(
            store,
            sequence=seq.name,
            identities=seq.identities,
            rows=leads.rows if leads else (),
            conn=conn,
            pending=pending,
        )
        update = plan_lead_updates(
            store, rows=leads.rows if leads else (), enrolled=already, conn=conn
        )
        in_flight = _in_flight(seq, store, revision, steps, conn)
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
        already_enrolled=len(already),
        update=tuple(update),
        in_flight=tuple(in_flight),
        migrate=dict(seq.migrate),
        leads_refused=tuple(leads.refused) if leads else (),
        manifest=_manifest_json(seq),
        entry_delay=_entry_delays(seq),
    )


def _entry_delays(seq: Sequence) -> dict[str, float | None]:
    """As the runner schedules a step it enters: a wait is due after its duration, a terminal
    never, anything else at once (a wait_for polls and times out from its entry time)."""
    out: dict[str, float | None] = {t: None for t in TERMINALS}
    for step in seq.steps:
        out[step.id] = step.duration.total_seconds() if isinstance(step, WaitStep) else 0.0
    return out


def _in_flight(
    seq: Sequence, store: Store, revision: str, steps: tuple[str, ...], conn: sa.Connection
) -> list[InFlightGroup]:
    e = t.enrollments
    rows = conn.execute(
        sa.select(e.c.revision, e.c.state, sa.func.count())
        .where(e.c.sequence == seq.name, e.c.revision != revision, e.c.state.not_in(TERMINALS))
        .group_by(e.c.revision, e.c.state)
        .order_by(e.c.revision, e.c.state)
    ).all()
    targets = set(steps) | set(TERMINALS)
    bad_targets = sorted(f"{k} -> {v}" for k, v in seq.migrate.items() if v not in targets)
    if bad_targets:
        raise PlanError(
            f"sequence {seq.name!r}: migrate maps to unknown steps: {', '.join(bad_targets)}"
        )
    groups: list[InFlightGroup] = []
    refused: list[str] = []
    for old_rev, state, count in rows:
        if not seq.migrate:
            groups.append(InFlightGroup(old_rev, state, int(count), old_rev, state))
        elif state in seq.migrate:
            groups.append(InFlightGroup(old_rev, state, int(count), revision, seq.migrate[state]))
        elif state in targets:
            groups.append(InFlightGroup(old_rev, state, int(count), revision, state))
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


def _plan_workflow(wf: Workflow, store: Store) -> WorkflowPlan:
    import engine.apply.workflows as workflows

    body = workflows.workflow_json(wf)
    revision_of_body = getattr(workflows, "body_revision", None)
    if callable(revision_of_body):
        digest = str(revision_of_body(body))
    else:
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, default=str).encode("utf-8")
        ).hexdigest()[:12]
    last_run = workflows.workflow_record(store, wf.name)
    return WorkflowPlan(wf.name, wf.provider, body, digest, last_run)


def _manages_schedules(store: Store) -> bool:
    from engine.store import schedules as schedule_db

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
    from engine.apply.schedules import plan_schedules

    return await plan_schedules(schedules, client=client_for("edges"), store=store, prune=prune)


async def make_plan(
    manifests: Iterable[Manifest],
    *,
    store: Store,
    client_for: ClientFor | None = None,
    now: datetime | None = None,
    prune: bool = False,
) -> Plan:
    """Plan every manifest: Sequences here, Workflows and Schedules through their modules.
    ``prune`` also plans deleting managed Schedules no manifest declares any more."""
    manifests = list(manifests)
    names = Counter((m.kind, m.name) for m in manifests)
    dupes = sorted(f"{k} {n}" for (k, n), c in names.items() if c > 1)
    if dupes:
        raise PlanError(f"defined more than once: {', '.join(dupes)}")
    pending: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    seq_plans: list[SequencePlan] = []
    for m in manifests:
        if isinstance(m, Sequence):
            sp = plan_sequence(m, store, pending=pending)
            seq_plans.append(sp)
            for e in sp.enroll:
                pending[e.profile_url].append((sp.name, e.identity, sp.initial))
    sequences = tuple(seq_plans)
    workflows = tuple(_plan_workflow(m, store) for m in manifests if isinstance(m, Workflow))
    schedules = await _plan_schedules(
        [m for m in manifests if isinstance(m, Schedule)], store, client_for, prune
    )
    return Plan(sequences, workflows, schedules, now)


# ---- apply ----------------------------------------------------------------------------------


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
             "identities": list(sp.identities), "initial": sp.initial, "steps": list(sp.steps)},
            conn=conn,
        )
        for identity in sp.identities:
            store.put_identity(identity, sp.provider, conn=conn)
        if sp.action != "unchanged":
            store.record_event(
                "revision", sp.name, {"previous": sp.previous_revision}, at=now,
                revision=sp.revision, trigger="apply", conn=conn,
            )
        if sp.migrations:
            result.migrated = _migrate(sp, store, now=now, conn=conn)
        result.enrolled = enroll_leads(
            store, conn, sequence=sp.name, revision=sp.revision, initial=sp.initial,
            plans=sp.enroll, now=now, trigger="apply",
        )
        result.updated = update_leads(store, conn, sp.update, now=now, trigger="apply")
    return result


def enroll_leads(
    store: Store,
    conn: sa.Connection,
    *,
    sequence: str,
    revision: str,
    initial: str,
    plans: Iterable[EnrollPlan],
    now: datetime,
    trigger: str,
    source: str | None = None,
) -> int:
    """Upsert the leads and enroll them (due now, at ``initial``), with one ``enrolled`` event
    each, in bulk statements on ``conn`` (the caller's transaction, under the apply lock).
    Leads already enrolled in ``sequence`` are left alone. Returns how many were enrolled."""
    plans = list(plans)
    if not plans:
        return 0
    held_back = _stopped_identities(store, conn)
    urls = [p.profile_url for p in plans]
    existing = _lead_ids(store, urls, conn)
    fresh = [p for p in plans if p.profile_url not in existing]
    if fresh:
        conn.execute(t.leads.insert(),
                     [{"profile_url": p.profile_url, "data_json": dump_json(dict(p.data))}
                      for p in fresh])
    for p in plans:
        if p.profile_url in existing and p.data:
            store.upsert_lead(p.profile_url, p.data, conn=conn)  # merges the new columns
    ids = _lead_ids(store, urls, conn)
    e = t.enrollments
    taken: set[int] = set()
    for i in range(0, len(urls), 500):
        chunk = [ids[u] for u in urls[i : i + 500]]
        taken.update(int(r[0]) for r in conn.execute(
            sa.select(e.c.lead_id).where(e.c.sequence == sequence, e.c.lead_id.in_(chunk))))
    todo = [p for p in plans if ids[p.profile_url] not in taken]
    if not todo:
        return 0
    conn.execute(e.insert(), [
        {"lead_id": ids[p.profile_url], "sequence": sequence, "revision": revision,
         "identity": p.identity, "state": initial, "next_due_at": now, "attempts": 0,
         "step_entered_at": now, "paused": p.identity in held_back, "last_error": None}
        for p in todo
    ])
    enrollment_of: dict[int, int] = {}
    lead_ids = [ids[p.profile_url] for p in todo]
    for i in range(0, len(lead_ids), 500):
        for r in conn.execute(sa.select(e.c.id, e.c.lead_id).where(
                e.c.sequence == sequence, e.c.lead_id.in_(lead_ids[i : i + 500]))):
            enrollment_of[int(r.lead_id)] = int(r.id)
    conn.execute(t.events.insert(), [
        {"at": now, "enrollment_id": enrollment_of[ids[p.profile_url]],
         "subject": p.profile_url, "kind": "enrolled", "from_state": None,
         "to_state": initial, "trigger": trigger, "revision": revision,
         "data_json": dump_json({"sequence": sequence, "identity": p.identity,
                              **({"source": source} if source else {})})}
        for p in todo
    ])
    return len(todo)


def _stopped_identities(store: Store, conn: sa.Connection) -> set[str]:
    """Identities paused by the user or by AUTH_EXPIRED: new enrollments on them start paused
    (resuming the identity resumes them with the others)."""
    return {i.id for i in store.list_identities(conn=conn) if i.status != "active"}


def _migrate(sp: SequencePlan, store: Store, *, now: datetime, conn: sa.Connection) -> int:
    moves = {(g.revision, g.state): g for g in sp.migrations}
    urls = {}
    moved = 0
    for row in store.enrollments(sequence=sp.name, conn=conn):
        group = moves.get((row.revision, row.state))
        if group is None:
            continue
        changes: dict[str, Any] = {"revision": group.to_revision, "state": group.to_state}
        if group.to_state != row.state:  # a new step: entered now, due as the runner would
            delay = sp.entry_delay.get(group.to_state, 0.0)
            changes.update(
                step_entered_at=now, attempts=0, last_error=None,
                next_due_at=None if delay is None else now + timedelta(seconds=delay),
            )
        store.update_enrollment(row.id, conn=conn, **changes)
        if row.lead_id not in urls:
            lead = store.get_lead(row.lead_id, conn=conn)
            urls[row.lead_id] = lead.profile_url if lead else f"lead:{row.lead_id}"
        store.record_event(
            "migrated", urls[row.lead_id], {"sequence": sp.name, "from_revision": row.revision},
            at=now, enrollment_id=row.id, from_state=row.state, to_state=group.to_state,
            trigger="migrate", revision=group.to_revision, conn=conn,
        )
        moved += 1
    return moved


Approve = Callable[[Plan], bool | Awaitable[bool]]


async def apply(
    manifests: Iterable[Manifest],
    *,
    store: Store,
    clock: Clock,
    approve: Approve,
    client_for: ClientFor | None = None,
    prune: bool = False,
) -> ApplyResult:
    """Plan under the ``apply`` lock, ask ``approve(plan)``, then persist and run Schedules and
    Workflows. Raises LockError when another apply holds the lock, PlanError when refused.
    ``prune`` also deletes managed Schedules no manifest declares any more."""
    manifests = list(manifests)
    with store.lock(APPLY_LOCK) as held:
        plan = await make_plan(manifests, store=store, client_for=client_for, now=clock.now(),
                               prune=prune)
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
        for sp in plan.sequences:
            result.sequences.append(persist_sequence(sp, store, now=now))
        if plan.schedules is not None and plan.schedules.has_changes:
            assert client_for is not None
            from engine.apply.schedules import apply_schedule_plan

            result.schedules = await apply_schedule_plan(
                plan.schedules, client=client_for("edges"), store=store
            )
        by_name = {m.name: m for m in manifests if isinstance(m, Workflow)}
        for wp in plan.workflows:
            if not wp.has_changes:
                continue
            result.workflows[wp.name] = await _run_workflow(
                by_name[wp.name], store, clock, client_for
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
    from engine.apply.schedules import apply_schedule_plan

    with store.lock(APPLY_LOCK):
        result = ApplyResult(Plan(schedules=saved, created_at=clock.now()))
        if not saved.has_changes:
            return result
        result.schedules = await apply_schedule_plan(
            saved, client=client_for("edges"), store=store
        )
        result.applied = True
    return result


async def _run_workflow(
    wf: Workflow, store: Store, clock: Clock, client_for: ClientFor | None
) -> Any:
    import engine.apply.workflows as workflows

    run = getattr(workflows, "run_workflow", None)
    if run is None:
        raise PlanError(f"workflow {wf.name!r}: this build cannot run workflows yet")
    if client_for is None:
        raise UsageError("running a Workflow needs a provider client")
    return await run(wf, client=client_for(wf.provider), store=store, clock=clock)


# ---- leads import ---------------------------------------------------------------------------


@dataclass
class LeadsImportResult:
    sequence: str
    path: str
    taken: int
    refused: list[Problem]
    enrolled: int = 0
    already_enrolled: int = 0
    updated: int = 0
    skipped: list[SkipPlan] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "file": self.path,
            "taken": self.taken,
            "refused": len(self.refused),
            "problems": [str(p) for p in self.refused],
            "enrolled": self.enrolled,
            "already_enrolled": self.already_enrolled,
            "updated": self.updated,
            "skipped": [
                {"profile_url": s.profile_url, "reason": s.reason, "detail": s.detail}
                for s in self.skipped
            ],
        }


def import_leads(
    path: str | Path, sequence: str, *, store: Store, now: datetime
) -> LeadsImportResult:
    """Read a leads CSV and enroll its rows into an applied sequence (same rules as plan).

    The file is read completely first (LeadsError: nothing written); the enrollments are
    written in one transaction under the ``apply`` lock.
    """
    leads = read_leads(path)
    meta = store.kv_get(META_NS, sequence)
    current = store.get_sequence(sequence)
    if current is None or not isinstance(meta, dict):
        raise PlanError(f"no applied sequence named {sequence!r}; run `seqrun apply` first")
    result = LeadsImportResult(sequence, str(path), leads.taken, list(leads.refused))
    identities = tuple(meta.get("identities") or ())
    with store.lock(APPLY_LOCK), store.transaction() as conn:
        enroll, skipped, already = plan_enrollments(
            store, sequence=sequence, identities=identities, rows=leads.rows, conn=conn
        )
        result.skipped, result.already_enrolled = skipped, len(already)
        updates = plan_lead_updates(store, rows=leads.rows, enrolled=already, conn=conn)
        result.updated = update_leads(store, conn, updates, now=now, trigger="import")
        result.enrolled = enroll_leads(
            store, conn, sequence=sequence, revision=current.current_revision,
            initial=str(meta["initial"]), plans=enroll, now=now, trigger="import",
            source=str(path),
        )
    return result
