"""The rows the store returns: immutable values, never ORM objects, and how a result row
of a query becomes one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from engine.store.codecs import load_json


@dataclass(frozen=True)
class Columns:
    """Rows to insert in bulk, given by column: the values every row shares (``same``) and
    the per-row columns (``each``, sequences of one length). An import writes a million rows
    a table, where a dict a row, then a tuple from it, cost more than the database's insert:
    by columns, the driver's parameter tuples are zipped at C speed."""

    same: Mapping[str, Any]
    each: Mapping[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.each.values()), ()))


@dataclass(frozen=True)
class RevisionRow:
    hash: str
    sequence: str
    kind: str
    manifest: Any
    created_at: datetime


@dataclass(frozen=True)
class SequenceRow:
    name: str
    kind: str
    provider: str
    current_revision: str
    paused: bool


# The two rows the runner reads (and makes) for every step are NamedTuples: as immutable as
# a frozen dataclass, and four times cheaper to build (no object.__setattr__ per field).
class LeadRow(NamedTuple):
    id: int
    profile_url: str
    data: Mapping[str, Any]


class EnrollmentRow(NamedTuple):
    id: int
    lead_id: int
    sequence: str
    revision: str
    identity: str
    state: str
    next_due_at: datetime | None
    attempts: int
    step_entered_at: datetime | None
    paused: bool
    last_error: str | None
    waiting: str | None = None  # why it waits to act (None: not waiting)


@dataclass(frozen=True)
class ActionRow:
    id: int
    idempotency_key: str
    enrollment_id: int
    sequence: str
    revision: str
    step: str
    attempt: int
    identity: str
    action: str
    status: str  # intent | done | failed | unknown
    label: str | None
    response: Any
    created_at: datetime
    finished_at: datetime | None
    variant: str | None = None  # the A/B variant sent (a step with `variants:`)


@dataclass(frozen=True)
class EventRow:
    id: int
    at: datetime
    enrollment_id: int | None
    subject: str
    kind: str
    from_state: str | None
    to_state: str | None
    trigger: str | None
    revision: str | None
    data: Any


@dataclass(frozen=True)
class ConversationRow:
    identity: str
    profile_url: str
    last_sender_is_us: bool
    last_activity_at: datetime
    first_sender_is_us: bool | None


@dataclass(frozen=True)
class IdentityRow:
    id: str
    provider: str
    profile_id: str | None
    status: str  # active | paused | auth_expired
    reason: str | None
    updated_at: datetime | None


def revision_row(r: Any) -> RevisionRow:
    return RevisionRow(r.hash, r.sequence, r.kind, load_json(r.manifest_json), r.created_at)


def sequence_row(r: Any) -> SequenceRow:
    return SequenceRow(r.name, r.kind, r.provider, r.current_revision, bool(r.paused))


def enrollment_row(r: Any) -> EnrollmentRow:
    return EnrollmentRow(
        id=r.id,
        lead_id=r.lead_id,
        sequence=r.sequence,
        revision=r.revision,
        identity=r.identity,
        state=r.state,
        next_due_at=r.next_due_at,
        attempts=r.attempts,
        step_entered_at=r.step_entered_at,
        paused=bool(r.paused),
        last_error=r.last_error,
        waiting=r.waiting,
    )


def action_row(r: Any) -> ActionRow:
    return ActionRow(
        id=r.id,
        idempotency_key=r.idempotency_key,
        enrollment_id=r.enrollment_id,
        sequence=r.sequence,
        revision=r.revision,
        step=r.step,
        attempt=r.attempt,
        identity=r.identity,
        action=r.action,
        status=r.status,
        label=r.label,
        response=load_json(r.response_json),
        created_at=r.created_at,
        finished_at=r.finished_at,
        variant=r.variant,
    )


def event_row(r: Any) -> EventRow:
    return EventRow(
        id=r.id,
        at=r.at,
        enrollment_id=r.enrollment_id,
        subject=r.subject,
        kind=r.kind,
        from_state=r.from_state,
        to_state=r.to_state,
        trigger=r.trigger,
        revision=r.revision,
        data=load_json(r.data_json),
    )


def identity_row(r: Any) -> IdentityRow:
    return IdentityRow(
        id=r.id,
        provider=r.provider,
        profile_id=r.profile_id,
        status=r.status,
        reason=r.reason,
        updated_at=r.updated_at,
    )
