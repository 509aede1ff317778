"""Read-only views of the store for ``seqrun status`` and ``seqrun why``, and the pause switches.

Everything here returns plain result objects (``to_json()`` for ``-o json``); rendering lives in
:mod:`engine.cli.render`.

>>> report = status(store, now=clock.now())  # doctest: +SKIP
>>> report.sequences[0].funnel  # doctest: +SKIP
[('visit', 3), ('connect', 10), ('completed', 2)]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.apply.plan import META_NS
from engine.errors import SeqrunError, UsageError
from engine.store import Store
from engine.store import schedules as schedule_db
from engine.store import tables as t
from engine.urls import normalize_profile_url
from engine.vocab import KILL_SWITCH, LIMIT_ALIASES, TERMINALS

WINDOW = timedelta(hours=24)


class NotFoundError(SeqrunError):
    """A sequence, identity or lead the command names does not exist."""


# ---- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceStatus:
    name: str
    provider: str
    revision: str
    paused: bool
    funnel: list[tuple[str, int]]  # step order, then terminals, then unknown states
    by_identity: dict[str, dict[str, int]]
    revisions: dict[str, int]  # revision -> enrollments on it

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
        }


@dataclass(frozen=True)
class IdentityStatus:
    id: str
    provider: str
    status: str
    reason: str | None
    paused_enrollments: int
    usage: dict[str, tuple[int, int | None]]  # action -> (used in the last 24 h, limit)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.status,
            "reason": self.reason,
            "paused_enrollments": self.paused_enrollments,
            "limits_24h": {a: {"used": u, "limit": lim} for a, (u, lim) in self.usage.items()},
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

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "paused_all": self.paused_all,
            "sequences": [s.to_json() for s in self.sequences],
            "identities": [i.to_json() for i in self.identities],
            "workflows": [w.to_json() for w in self.workflows],
            "schedules": [s.to_json() for s in self.schedules],
        }


def _limits(manifest: Any, provider: str) -> dict[str, int]:
    from engine.providers import REGISTRY  # importing the package registers every adapter

    spec = REGISTRY.get(provider)
    out: dict[str, int] = dict(spec.smart_limits) if spec else {}
    raw = manifest.get("spec", {}).get("limits") if isinstance(manifest, dict) else None
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, int):
                out[LIMIT_ALIASES.get(key, key)] = value
    return out


def _workflow_status(record: Mapping[str, Any]) -> WorkflowStatus:
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
    from engine.apply.workflows import workflow_record, workflow_results

    if name is not None:
        record = workflow_record(store, name)
        return [] if record is None else [_workflow_status(record)]
    out: list[WorkflowStatus] = []
    for result in workflow_results(store):
        record = workflow_record(store, result.name)
        if record is not None:
            out.append(_workflow_status(record))
    return out


def status(store: Store, name: str | None = None, *, now: datetime) -> StatusReport:
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
    counts = store.count_enrollments()
    sequences: list[SequenceStatus] = []
    identity_limits: dict[str, dict[str, int]] = defaultdict(dict)
    identity_provider: dict[str, str] = {}
    for row in rows:
        meta = store.kv_get(META_NS, row.name) or {}
        steps = list(meta.get("steps") or [])
        states = Counter({s: n for (seq, s), n in counts.items() if seq == row.name})
        order = steps + [s for s in TERMINALS]
        funnel = [(s, states.get(s, 0)) for s in order]
        funnel += sorted((s, n) for s, n in states.items() if s not in order)
        by_identity: dict[str, dict[str, int]] = defaultdict(dict)
        revisions: Counter[str] = Counter()
        e = t.enrollments
        with store.transaction() as conn:
            for ident, state, rev, n in conn.execute(
                sa.select(e.c.identity, e.c.state, e.c.revision, sa.func.count())
                .where(e.c.sequence == row.name)
                .group_by(e.c.identity, e.c.state, e.c.revision)
            ):
                by_identity[ident][state] = by_identity[ident].get(state, 0) + int(n)
                revisions[rev] += int(n)
        sequences.append(
            SequenceStatus(row.name, row.provider, row.current_revision, row.paused, funnel,
                           dict(by_identity), dict(revisions))
        )
        revision = store.get_revision(row.current_revision)
        limits = _limits(revision.manifest if revision else None, row.provider)
        for identity in list(meta.get("identities") or []) + list(by_identity):
            identity_provider.setdefault(identity, row.provider)
            for action, value in limits.items():
                current = identity_limits[identity].get(action)
                identity_limits[identity][action] = value if current is None else min(
                    current, value)
    known = {i.id: i for i in store.list_identities()}
    identities: list[IdentityStatus] = []
    since = now - WINDOW
    for identity in sorted(set(identity_limits) | (set(known) if name is None else set())):
        info = known.get(identity)
        limits = identity_limits.get(identity, {})
        usage = {
            action: (len(store.action_times(identity, action, since)), limits.get(action))
            for action in sorted(set(limits) | {"visit_profile", "connect", "send_message"})
        }
        e = t.enrollments
        with store.transaction() as conn:
            paused = int(conn.execute(
                sa.select(sa.func.count()).where(
                    e.c.identity == identity, e.c.paused == sa.true(),
                    e.c.state.not_in(TERMINALS))
            ).scalar() or 0)
        identities.append(
            IdentityStatus(
                identity,
                info.provider if info and info.provider else identity_provider.get(identity, ""),
                info.status if info else "active",
                info.reason if info else None,
                paused,
                usage,
            )
        )
    return StatusReport(now, bool(store.kv_get(*KILL_SWITCH)), sequences, identities, workflows,
                        schedules)


# ---- why ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhyEntry:
    at: datetime
    source: str  # event | action
    sequence: str | None
    revision: str | None
    kind: str  # event kind, or the canonical action
    from_state: str | None = None
    to_state: str | None = None
    trigger: str | None = None
    status: str | None = None  # action: intent | done | failed | unknown
    label: str | None = None  # action: the response label
    detail: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "source": self.source,
            "sequence": self.sequence,
            "revision": self.revision,
            "kind": self.kind,
            "from": self.from_state,
            "to": self.to_state,
            "trigger": self.trigger,
            "status": self.status,
            "label": self.label,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class WhyReport:
    profile_url: str
    lead: Mapping[str, Any]
    enrollments: list[dict[str, Any]]
    entries: list[WhyEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "profile_url": self.profile_url,
            "lead": dict(self.lead),
            "enrollments": self.enrollments,
            "history": [e.to_json() for e in self.entries],
        }


def why(store: Store, lead_url: str) -> WhyReport:
    """Every transition of a lead with its time, revision, trigger and provider call."""
    try:
        url = normalize_profile_url(lead_url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    lead = store.lead_by_url(url)
    if lead is None:
        raise NotFoundError(f"no lead {url} in the store")
    enrollments = store.enrollments(lead_id=lead.id)
    by_id = {e.id: e for e in enrollments}
    seen: set[int] = set()
    rows = list(store.events(url, unlinked=True))  # the lead's other events come next
    for e in enrollments:
        rows.extend(store.events(enrollment_id=e.id))
    events: list[tuple[int, WhyEntry]] = []
    for ev in rows:
        if ev.id in seen:
            continue
        seen.add(ev.id)
        enrollment = by_id.get(ev.enrollment_id) if ev.enrollment_id is not None else None
        seq = enrollment.sequence if enrollment else (
            ev.data.get("sequence") if isinstance(ev.data, dict) else None)
        events.append((ev.id, WhyEntry(ev.at, "event", seq, ev.revision, ev.kind,
                                       ev.from_state, ev.to_state, ev.trigger, detail=ev.data)))
    events.sort(key=lambda pair: (pair[1].at, pair[0]))
    actions: dict[str, WhyEntry] = {}
    for e in enrollments:
        for a in store.actions(enrollment_id=e.id):
            actions[a.idempotency_key] = WhyEntry(
                a.created_at, "action", a.sequence, a.revision, a.action, a.step, None,
                f"attempt {a.attempt}", a.status, a.label,
                detail={"identity": a.identity, "key": a.idempotency_key,
                        "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                        "response": a.response},
            )
    # Each call goes right before the event it caused (the runner's events carry the action's
    # idempotency key); calls without one (an intent never settled) go in by time.
    entries: list[WhyEntry] = []
    for _, entry in events:
        key = entry.detail.get("key") if isinstance(entry.detail, dict) else None
        if isinstance(key, str) and key in actions:
            entries.append(actions.pop(key))
        entries.append(entry)
    for orphan in sorted(actions.values(), key=lambda x: x.at):
        at = next((i for i, x in enumerate(entries) if x.at > orphan.at), len(entries))
        entries.insert(at, orphan)
    return WhyReport(
        url,
        lead.data,
        [
            {"id": e.id, "sequence": e.sequence, "revision": e.revision, "identity": e.identity,
             "state": e.state, "next_due_at": e.next_due_at.isoformat() if e.next_due_at else None,
             "paused": e.paused, "last_error": e.last_error}
            for e in enrollments
        ],
        entries,
    )


@dataclass(frozen=True)
class WorkflowWhy:
    """``seqrun why --workflow NAME``: a workflow's state history and each node's result."""

    status: WorkflowStatus
    result: Any  # engine.apply.workflows.WorkflowResult (its lines() are the completion tree)
    history: list[dict[str, Any]]
    identity: str | None = None
    api: str | None = None
    revision: str | None = None
    attempt: int = 0

    def to_json(self) -> dict[str, Any]:
        data = self.result.to_json()
        return {
            **self.status.to_json(),
            "identity": self.identity,
            "api": self.api,
            "revision": self.revision,
            "attempt": self.attempt,
            "reconciled": data.get("reconciled"),
            "note": data.get("note"),
            "error": data.get("error"),
            "history": self.history,
            "nodes": data.get("nodes"),
            "completion": data.get("completion"),
        }


def why_workflow(store: Store, name: str) -> WorkflowWhy:
    """A workflow's transitions (pending -> running -> completed | failed) and node results."""
    from engine.apply.workflows import WorkflowResult, workflow_record

    record = workflow_record(store, name)
    if record is None:
        raise NotFoundError(f"no applied workflow named {name!r}")
    history = [
        {"at": h.get("at"), "from": h.get("from"), "to": h.get("to"), "note": h.get("note") or ""}
        for h in record.get("history") or []
        if isinstance(h, Mapping)
    ]
    return WorkflowWhy(
        _workflow_status(record),
        WorkflowResult.from_record(record),
        history,
        identity=record.get("identity"),
        api=record.get("api"),
        revision=record.get("revision"),
        attempt=int(record.get("attempt") or 0),
    )


def is_profile_url(text: str) -> bool:
    """Whether ``text`` names a LinkedIn profile (``seqrun why`` reads it as a lead)."""
    try:
        normalize_profile_url(text)
    except ValueError:
        return False
    return True


# ---- pause / resume -------------------------------------------------------------------------


@dataclass(frozen=True)
class PauseResult:
    target: str  # "all", "sequence <name>", "identity <id>"
    paused: bool
    changed: int

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "paused": self.paused, "changed": self.changed}


def set_paused(
    store: Store,
    paused: bool,
    *,
    sequence: str | None = None,
    identity: str | None = None,
    everything: bool = False,
    now: datetime,
) -> PauseResult:
    """Pause or resume one sequence, one identity, or everything (the kill switch)."""
    if sum(x is not None and x is not False for x in (sequence, identity, everything)) != 1:
        raise UsageError("name exactly one of: a sequence, --identity ID, --all")
    verb = "paused" if paused else "resumed"
    with store.transaction() as conn:
        if everything:
            if paused:
                store.kv_put(*KILL_SWITCH, {"at": now.isoformat()}, conn=conn)
            else:
                store.kv_delete(*KILL_SWITCH, conn=conn)
            changed = store.set_sequence_paused(None, paused, conn=conn)
            store.record_event(verb, "*", {"scope": "all"}, at=now, trigger="user", conn=conn)
            return PauseResult("all", paused, changed)
        if sequence is not None:
            if store.get_sequence(sequence, conn=conn) is None:
                raise NotFoundError(f"no applied sequence named {sequence!r}")
            changed = store.set_sequence_paused(sequence, paused, conn=conn)
            store.record_event(verb, sequence, {"scope": "sequence"}, at=now, trigger="user",
                               conn=conn)
            return PauseResult(f"sequence {sequence}", paused, changed)
        assert identity is not None
        info = store.get_identity(identity, conn=conn)
        if info is None:
            raise NotFoundError(f"no identity {identity!r} in the store")
        if paused:
            store.set_identity_status(identity, "paused", "paused by the user", conn=conn)
        elif info.status == "paused":
            store.set_identity_status(identity, "active", None, conn=conn)
        changed = store.set_enrollments_paused(paused, identity=identity, conn=conn)
        store.record_event(verb, identity, {"scope": "identity"}, at=now, trigger="user",
                           conn=conn)
        return PauseResult(f"identity {identity}", paused, changed)
