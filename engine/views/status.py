"""Read-only views of the store for ``seqrun status``: the funnel of each sequence, the
limits each identity used in the last 24 h, the applied Workflows and the managed Schedules.

Everything here returns plain result objects (``to_json()`` for ``-o json``); rendering lives in
:mod:`engine.cli.render`. ``seqrun why`` is :mod:`engine.views.why`; pause and resume, which
write, are :mod:`engine.views.control`.

>>> report = status(store, now=clock.now())  # doctest: +SKIP
>>> report.sequences[0].funnel  # doctest: +SKIP
[('visit', 3), ('connect', 10), ('completed', 2)]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from engine.apply import META_NS
from engine.apply.rollout import revision_rollout
from engine.apply.workflows import workflow_record, workflow_results
from engine.errors import SeqrunError
from engine.experiments import StepExperiment, measure
from engine.manifest.loader import build
from engine.model import ActionStep, Sequence, SourceMap
from engine.providers import REGISTRY  # importing the package registers every adapter
from engine.run.guards import rollout_state
from engine.run.sync import SYNC_REPORTS
from engine.store import SequenceRow, Store
from engine.store import schedules as schedule_db
from engine.views.funnel import Funnel
from engine.views.funnel import funnel as conversion
from engine.vocab import KILL_SWITCH, LIMIT_ALIASES, POLICY_KEY, SENDS, TERMINALS

WINDOW = timedelta(hours=24)


class NotFoundError(SeqrunError):
    """A sequence, identity or lead the command names does not exist."""



@dataclass(frozen=True)
class SequenceStatus:
    name: str
    provider: str
    revision: str
    paused: bool
    funnel: list[tuple[str, int]]  # step order, then terminals, then unknown states
    by_identity: dict[str, dict[str, int]]
    revisions: dict[str, int]  # revision -> enrollments on it
    conversion: Funnel = field(default_factory=Funnel)  # rates, reach per step, end reasons
    in_flight: dict[str, int] = field(default_factory=dict)  # revision -> leads not yet ended
    # action -> done without evidence (settled after a crash, e.g. a visit): not counted sent
    unverified: dict[str, int] = field(default_factory=dict)
    # why leads wait to act ("limit:connect", "window", "cooldown") -> how many
    waiting: dict[str, int] = field(default_factory=dict)
    # each step with A/B variants: its per-variant funnel and verdict (engine.experiments)
    experiments: list[StepExperiment] = field(default_factory=list)
    # the canary rollout ({stage, reason, canary, started_at}) and the caps with their usage
    guardrails: dict[str, Any] = field(default_factory=dict)

    @property
    def rollout(self) -> bool:
        """Leads still in flight on another revision than the current one."""
        return any(rev != self.revision and n for rev, n in self.in_flight.items())

    @property
    def total(self) -> int:
        return sum(n for _, n in self.funnel)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "provider": self.provider,
            "revision": self.revision,
            "paused": self.paused,
            "total": self.total,
            "funnel": [{"state": s, "count": n, "terminal": s in TERMINALS}
                       for s, n in self.funnel],
            "by_identity": self.by_identity,
            "revisions": self.revisions,
            "unverified": self.unverified,
            "waiting": self.waiting,
            "conversion": self.conversion.to_json(),
            "in_flight_revisions": self.in_flight,
            "rollout": self.rollout,
            "experiments": [e.to_json() for e in self.experiments],
            "guardrails": self.guardrails,
        }


@dataclass(frozen=True)
class WorkerStatus:
    """A live `seqrun run` worker (its heartbeat not expired) and the identities it holds."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    identities: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid,
                "started_at": self.started_at.isoformat(),
                "last_heartbeat": self.heartbeat_at.isoformat(),
                "identities": list(self.identities)}


@dataclass(frozen=True)
class IdentityStatus:
    id: str
    provider: str
    status: str
    reason: str | None
    paused_enrollments: int
    usage: dict[str, tuple[int, int | None]]  # action -> (used in the last 24 h, limit)
    # action -> of the used, how many are done without evidence (the limit counts them, as
    # they may have happened; they are not counted as sent)
    unverified: dict[str, int] = field(default_factory=dict)
    last_action_at: datetime | None = None  # its latest action (the usage may all be older)
    # the provider's report of its last conversation sync (ConnectSafely: the counts of
    # POST /conversations/sync, the sync status's last sync time and status, the force flag)
    sync: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.status,
            "reason": self.reason,
            "paused_enrollments": self.paused_enrollments,
            "limits_24h": {
                a: {"used": u, "limit": lim, "unverified": self.unverified.get(a, 0)}
                for a, (u, lim) in self.usage.items()
            },
            "last_action_at": None if self.last_action_at is None
            else self.last_action_at.isoformat(),
            "sync": None if self.sync is None else dict(self.sync),
        }


@dataclass(frozen=True)
class WorkflowStatus:
    """One applied Workflow, as ``seqrun status`` lists it (from ``kv "workflows"``)."""

    name: str
    provider: str
    state: str  # pending | running | completed | failed
    workflow_id: str | None
    submitted_at: str | None
    finished_at: str | None
    nodes_ok: int = 0
    nodes: int = 0
    error: str | None = None  # the failure's label, for a failed workflow
    phase: str | None = None  # submitting | queued | unknown | submitted | hook | done

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "provider": self.provider,
            "state": self.state,
            "workflow_id": self.workflow_id,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "nodes_ok": self.nodes_ok,
            "nodes_total": self.nodes,
            "error": self.error,
            "phase": self.phase,
        }


@dataclass(frozen=True)
class ScheduleStatus:
    """One managed Schedule as last applied (the store; ``seqrun plan`` asks Edges for drift)."""

    name: str
    mode: str  # schedule (a live Edges schedule) | async (continued by `seqrun run`)
    action: str
    uid: str | None = None  # the Edges scheduled run (mode: schedule)
    cron: str | None = None
    applied_at: str | None = None
    run_uid: str | None = None  # mode: async: the current run
    run_status: str | None = None
    continues: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "action": self.action,
            "uid": self.uid,
            "cron": self.cron,
            "applied_at": self.applied_at,
            "run_uid": self.run_uid,
            "run_status": self.run_status,
            "continues": self.continues,
        }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def schedule_statuses(store: Store, name: str | None = None) -> list[ScheduleStatus]:
    """Managed Schedules and registered async ones (with their current run), sorted by name."""
    out: list[ScheduleStatus] = []
    for key, entry in schedule_db.items(store, schedule_db.MANAGED).items():
        if isinstance(entry, Mapping) and name in (None, key):
            config = _mapping(entry.get("config"))
            out.append(ScheduleStatus(
                key, "schedule", str(entry.get("action") or config.get("action") or ""),
                uid=entry.get("uid"), cron=config.get("cron"),
                applied_at=entry.get("applied_at")))
    runs = schedule_db.items(store, schedule_db.RUNS)
    for key, entry in schedule_db.items(store, schedule_db.ASYNC).items():
        if isinstance(entry, Mapping) and name in (None, key):
            config, run = _mapping(entry.get("config")), _mapping(runs.get(key))
            out.append(ScheduleStatus(
                key, "async", str(config.get("action") or ""),
                applied_at=entry.get("applied_at"), run_uid=run.get("run_uid"),
                run_status=run.get("status"), continues=int(run.get("continues") or 0)))
    return sorted(out, key=lambda s: (s.name, s.mode))


@dataclass(frozen=True)
class StatusReport:
    at: datetime
    paused_all: bool
    sequences: list[SequenceStatus] = field(default_factory=list)
    identities: list[IdentityStatus] = field(default_factory=list)
    workflows: list[WorkflowStatus] = field(default_factory=list)
    schedules: list[ScheduleStatus] = field(default_factory=list)
    clock: str = "real"  # real | virtual: the clock `at` (and the 24 h of limits) is on
    # the Policy's organisation budgets: action -> {budget, used} over the last 24 h
    budgets: dict[str, dict[str, int]] = field(default_factory=dict)
    workers: list[WorkerStatus] = field(default_factory=list)  # live `seqrun run` workers

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "clock": self.clock,
            "budgets": self.budgets,
            "limits_window": {"from": (self.at - WINDOW).isoformat(), "to": self.at.isoformat()},
            "paused_all": self.paused_all,
            "sequences": [s.to_json() for s in self.sequences],
            "identities": [i.to_json() for i in self.identities],
            "workflows": [w.to_json() for w in self.workflows],
            "schedules": [s.to_json() for s in self.schedules],
            "workers": [w.to_json() for w in self.workers],
        }


def _limits(manifest: Any, provider: str, tier: str = "classic") -> dict[str, int]:
    """The limits the runner enforces for an identity of ``tier`` in a sequence: the lower
    of the manifest's and the provider's for the tier (ProviderSpec.enforced_limits)."""
    raw = manifest.get("spec", {}).get("limits") if isinstance(manifest, dict) else None
    mine = {LIMIT_ALIASES.get(k, k): v for k, v in (raw or {}).items() if isinstance(v, int)} \
        if isinstance(raw, dict) else {}
    spec = REGISTRY.get(provider)
    return spec.enforced_limits(mine, tier) if spec else mine


def workflow_status(record: Mapping[str, Any]) -> WorkflowStatus:
    nodes = [n for n in record.get("nodes") or [] if isinstance(n, Mapping)]
    error = record.get("error")
    submitted = record.get("submitted_at") or record.get("first_intent_at")
    finished = record.get("finished_at") if record.get("state") in ("completed", "failed") else None
    return WorkflowStatus(
        name=str(record.get("name")),
        provider=str(record.get("provider") or ""),
        state=str(record.get("state") or "pending"),
        workflow_id=record.get("workflow_id"),
        submitted_at=str(submitted) if submitted else None,
        finished_at=str(finished) if finished else None,
        nodes_ok=sum(1 for n in nodes if n.get("status") == "ok"),
        nodes=len(nodes),
        error=str(error.get("label")) if isinstance(error, Mapping) else None,
        phase=record.get("phase"),
    )


def workflow_statuses(store: Store, name: str | None = None) -> list[WorkflowStatus]:
    """Every applied Workflow (or the one named), sorted by name."""
    if name is not None:
        record = workflow_record(store, name)
        return [] if record is None else [workflow_status(record)]
    out: list[WorkflowStatus] = []
    for result in workflow_results(store):
        record = workflow_record(store, result.name)
        if record is not None:
            out.append(workflow_status(record))
    return out


def _step_actions(manifest: Any) -> dict[str, str]:
    """Each action step's action in a stored manifest (the funnel's wording)."""
    steps = manifest.get("spec", {}).get("steps") if isinstance(manifest, dict) else None
    return {str(s["id"]): str(s["action"]) for s in steps or []
            if isinstance(s, dict) and "id" in s and "action" in s}


def _sequence_status(
    store: Store, row: SequenceRow, meta: Mapping[str, Any], manifest: Any = None,
) -> SequenceStatus:
    """One sequence's funnel (its steps in order, then terminals, then unknown states), its
    enrollments by identity and state, and by revision: one pass over its enrollments."""
    by_identity: dict[str, dict[str, int]] = defaultdict(dict)
    revisions: Counter[str] = Counter()
    in_flight: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for ident, state, rev, n in store.count_by_identity_state(row.name):
        by_identity[ident][state] = by_identity[ident].get(state, 0) + int(n)
        revisions[rev] += int(n)
        states[state] += int(n)
        if state not in TERMINALS:
            in_flight[rev] += int(n)
    steps = list(meta.get("steps") or [])
    order = steps + [s for s in TERMINALS]
    funnel = [(s, states.get(s, 0)) for s in order]
    funnel += sorted((s, n) for s, n in states.items() if s not in order)
    enrolled = {i: sum(per.values()) for i, per in by_identity.items()}
    return SequenceStatus(row.name, row.provider, row.current_revision, row.paused, funnel,
                          dict(by_identity), dict(revisions),
                          conversion(store, row.name, enrolled, _step_actions(manifest)),
                          dict(in_flight), store.count_unverified(sequence=row.name),
                          store.count_waiting(row.name),
                          experiments_of(store, row.name, row.current_revision, manifest))


def experiments_of(
    store: Store, name: str, revision: str, manifest: Any
) -> list[StepExperiment]:
    """The steps with variants of a sequence's current revision, measured (none: [])."""
    steps = manifest.get("spec", {}).get("steps") if isinstance(manifest, dict) else None
    if not any(isinstance(s, dict) and "variants" in s for s in steps or []):
        return []  # most sequences: no model to build
    seq = build("Sequence", manifest, SourceMap(f"<revision {revision}>"), validate=False)
    if not isinstance(seq, Sequence):  # pragma: no cover - the kind is Sequence
        return []
    return measure(store, name, [s for s in seq.steps if isinstance(s, ActionStep)])


def _identity_statuses(
    store: Store,
    identity_limits: Mapping[str, Mapping[str, int]],
    identity_provider: Mapping[str, str],
    *,
    every: bool,
    now: datetime,
) -> list[IdentityStatus]:
    """The identities of the sequences shown (``every``: and every identity known), with
    their limit usage over the last :data:`WINDOW` and their paused enrollments."""
    known = {i.id: i for i in store.list_identities()}
    identities: list[IdentityStatus] = []
    since = now - WINDOW
    paused_of = store.count_paused()
    for identity in sorted(set(identity_limits) | (set(known) if every else set())):
        info = known.get(identity)
        limits = identity_limits.get(identity, {})
        usage = {
            action: (len(store.action_times(identity, action, since)), limits.get(action))
            for action in sorted(set(limits) | {"visit_profile", "connect", "send_message"})
        }
        paused = paused_of.get(identity, 0)
        identities.append(
            IdentityStatus(
                identity,
                info.provider if info and info.provider else identity_provider.get(identity, ""),
                info.status if info else "active",
                info.reason if info else None,
                paused,
                usage,
                store.count_unverified(identity=identity, since=since),
                store.last_action_at(identity),
                _mapping(store.kv_get(SYNC_REPORTS, identity)) or None,
            )
        )
    return identities


def status(
    store: Store, name: str | None = None, *, now: datetime, clock: str = "real"
) -> StatusReport:
    """The funnel per sequence (per step, terminal and identity), limits used per identity,
    every applied Workflow and every managed Schedule. ``name`` narrows to one sequence,
    workflow or schedule (kubectl's ``get NAME``); NotFoundError when none exists."""
    rows = store.list_sequences()
    workflows = workflow_statuses(store, name)
    schedules = schedule_statuses(store, name)
    if name is not None:
        rows = [r for r in rows if r.name == name]
        if not rows and not workflows and not schedules:
            raise NotFoundError(f"no applied sequence, workflow or schedule named {name!r}")
    sequences: list[SequenceStatus] = []
    identity_limits: dict[str, dict[str, int]] = defaultdict(dict)
    identity_provider: dict[str, str] = {}
    policy = store.kv_get(*POLICY_KEY)
    tiers = policy.get("tiers") if isinstance(policy, dict) else None
    tiers = tiers if isinstance(tiers, dict) else {}
    for row in rows:
        meta = store.kv_get(META_NS, row.name) or {}
        revision = store.get_revision(row.current_revision)
        sequences.append(_sequence_status(store, row, meta,
                                          revision.manifest if revision else None))
        for identity in list(meta.get("identities") or []) + list(sequences[-1].by_identity):
            identity_provider.setdefault(identity, row.provider)
            limits = _limits(revision.manifest if revision else None, row.provider,
                             str(tiers.get(identity, "classic")))
            for action, value in limits.items():
                current = identity_limits[identity].get(action)
                identity_limits[identity][action] = value if current is None else min(
                    current, value)
    identities = _identity_statuses(store, identity_limits, identity_provider,
                                    every=name is None, now=now)
    workers = [WorkerStatus(w.id, w.host, w.pid, w.started_at, w.heartbeat_at, w.identities)
               for w in store.live_workers()]
    sequences = [replace(s, guardrails=_guardrails(store, s.name, now)) for s in sequences]
    return StatusReport(now, bool(store.kv_get(*KILL_SWITCH)), sequences, identities, workflows,
                        schedules, clock, _budgets(store, now), workers)


def _guardrails(store: Store, name: str, now: datetime) -> dict[str, Any]:
    """A sequence's canary rollout (stage, reason) and its send cap with its 24-h usage."""
    out: dict[str, Any] = {}
    found = rollout_state(store, name)
    if found is not None:
        out["canary"] = {"stage": found["stage"], "reason": found.get("reason"),
                         "size": len(found.get("canary") or ()),
                         "started_at": found.get("started_at")}
    revision = revision_rollout(store, name)
    if revision is not None:
        out["revision"] = {k: revision.get(k) for k in (
            "stage", "reason", "to_revision", "from_revisions", "in_flight", "migrated",
            "started_at", "decided_at")}
        out["revision"]["canary"] = len(revision.get("canary") or ())
    meta = store.kv_get(META_NS, name)
    caps = meta.get("caps") if isinstance(meta, dict) else None
    if isinstance(caps, dict) and any(v is not None for v in caps.values()):
        sends = len(store.action_times_across(SENDS, now - WINDOW, sequence=name))
        out["caps"] = {**caps, "sends_24h": sends}
    return out


def _budgets(store: Store, now: datetime) -> dict[str, dict[str, int]]:
    data = store.kv_get(*POLICY_KEY)
    budgets = data.get("budgets") if isinstance(data, dict) else None
    if not isinstance(budgets, dict):
        return {}
    return {
        action: {"budget": int(n),
                 "used": len(store.action_times_across([action], now - WINDOW))}
        for action, n in sorted(budgets.items())
    }
