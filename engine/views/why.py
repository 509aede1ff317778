"""``seqrun why``: the history of a lead (every transition with its time, revision,
trigger and provider call) or of a Workflow, read from the store.

>>> report = why(store, "https://www.linkedin.com/in/jane")  # doctest: +SKIP
>>> [e.kind for e in report.entries]  # doctest: +SKIP
['enrolled', 'visit_profile', 'transition']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.apply.workflows import WorkflowResult, workflow_record
from engine.errors import UsageError
from engine.store import EnrollmentRow, EventRow, Store
from engine.urls import normalize_profile_url
from engine.views.status import NotFoundError, WorkflowStatus, workflow_status


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


def _event_entries(
    store: Store, url: str, enrollments: list[EnrollmentRow]
) -> list[WhyEntry]:
    """The lead's events, each once, in time order (then by id)."""
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
    return [entry for _, entry in events]


def _action_entries(store: Store, enrollments: list[EnrollmentRow]) -> dict[str, WhyEntry]:
    """The lead's provider calls by idempotency key."""
    actions: dict[str, WhyEntry] = {}
    for e in enrollments:
        for a in store.actions(enrollment_id=e.id):
            actions[a.idempotency_key] = WhyEntry(
                a.created_at, "action", a.sequence, a.revision, a.action, a.step, None,
                f"attempt {a.attempt}", a.status, a.label,
                detail={"identity": a.identity, "key": a.idempotency_key,
                        **({"variant": a.variant} if a.variant else {}),
                        "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                        "response": a.response},
            )
    return actions


def _interleave(events: list[WhyEntry], actions: dict[str, WhyEntry]) -> list[WhyEntry]:
    # Each call goes right before the event it caused (the runner's events carry the action's
    # idempotency key); calls without one (an intent never settled, an answer routed without
    # the key) go before the event that left their step, else by time.
    entries: list[WhyEntry] = []
    for entry in events:
        key = entry.detail.get("key") if isinstance(entry.detail, dict) else None
        if isinstance(key, str) and key in actions:
            entries.append(actions.pop(key))
        entries.append(entry)
    for orphan in sorted(actions.values(), key=lambda x: x.at):
        # before the event that left its step (an answer routed without the call's key),
        # else before the first later entry
        at = next((i for i, x in enumerate(entries) if x.source == "event"
                   and x.from_state == orphan.from_state and x.at >= orphan.at), None)
        if at is None:
            at = next((i for i, x in enumerate(entries) if x.at > orphan.at), len(entries))
        entries.insert(at, orphan)
    return entries


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
    events = _event_entries(store, url, enrollments)
    entries = _interleave(events, _action_entries(store, enrollments))
    return WhyReport(
        url,
        lead.data,
        [
            {"id": e.id, "sequence": e.sequence, "revision": e.revision, "identity": e.identity,
             "state": e.state, "next_due_at": e.next_due_at.isoformat() if e.next_due_at else None,
             "paused": e.paused, "last_error": e.last_error, "waiting": e.waiting,
             "route": _route(store.events(enrollment_id=e.id))}
            for e in enrollments
        ],
        entries,
    )


def _route(events: list[EventRow]) -> list[dict[str, str | None]]:
    """The steps an enrollment went through, in order, each with the trigger that brought
    it there (``enrolled`` for the first): what ``why`` draws as ``visit -> connect ->``."""
    return [
        {"state": ev.to_state, "trigger": ev.trigger if ev.kind == "transition" else ev.kind}
        for ev in events
        if ev.to_state is not None and ev.kind in ("enrolled", "transition", "migrated")
    ]


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
    record = workflow_record(store, name)
    if record is None:
        raise NotFoundError(f"no applied workflow named {name!r}")
    history = [
        {"at": h.get("at"), "from": h.get("from"), "to": h.get("to"), "note": h.get("note") or ""}
        for h in record.get("history") or []
        if isinstance(h, Mapping)
    ]
    return WorkflowWhy(
        workflow_status(record),
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

