"""The statements the store binds (through SQLAlchemy or compiled for the fast path): the
runner's batched UPDATEs (parameters by name, ``b_*``), the column order of its batched
intent insert, and the keys of the two cache upserts."""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from engine.store import tables as t

# The columns of an intent row, in the order the runner's batched insert binds them.
INTENT_COLS = (
    "idempotency_key",
    "enrollment_id",
    "sequence",
    "revision",
    "step",
    "attempt",
    "identity",
    "action",
    "status",
    "label",
    "response_json",
    "created_at",
    "finished_at",
    "variant",
)
INTENT_TAKEN = "an action was already attempted under one of these keys"

# (key columns, updated columns) of the conversation and connection caches' upserts
CONVERSATION_UPSERT = (
    ("identity", "profile_url"),
    ("last_sender_is_us", "last_activity_at", "first_sender_is_us"),
)
CONNECTION_UPSERT = (("identity", "profile_url"), ("status", "checked_at"))


@cache  # built once: SQLAlchemy's path then skips rebuilding and its cache key
def outcome_update() -> sa.Update:
    a = t.action_log
    return (
        a.update()
        .where(a.c.idempotency_key == sa.bindparam("k"))
        .values(
            status=sa.bindparam("b_status"),
            label=sa.bindparam("b_label"),
            response_json=sa.bindparam("b_response"),
            finished_at=sa.bindparam("b_finished"),
        )
    )


@cache
def transition_update() -> sa.Update:
    e = t.enrollments
    return (
        e.update()
        .where(e.c.id == sa.bindparam("eid"))
        .values(
            state=sa.bindparam("b_state"),
            next_due_at=sa.bindparam("b_due"),
            step_entered_at=sa.bindparam("b_entered"),
            attempts=sa.bindparam("b_attempts"),
            last_error=sa.bindparam("b_error"),
            waiting=sa.bindparam("b_waiting"),
        )
    )


@cache
def reschedule_update() -> sa.Update:
    e = t.enrollments
    return (
        e.update()
        .where(e.c.id == sa.bindparam("eid"))
        .values(
            next_due_at=sa.bindparam("b_due"),
            attempts=sa.bindparam("b_attempts"),
            last_error=sa.bindparam("b_error"),
            waiting=sa.bindparam("b_waiting"),
        )
    )


@cache
def event_data_by_id() -> sa.Update:
    """Rewrite the data of one event (a wait noted on the event that entered its step)."""
    e = t.events
    return e.update().where(e.c.id == sa.bindparam("b_id")).values(
        data_json=sa.bindparam("b_data"))


def entering_events_query(chunk: list[Any]) -> sa.Select[Any]:
    """The events that put enrollments at a step (enrolled, transition) of ``chunk``'s
    enrollments: id, enrollment, time, destination, data."""
    e = t.events
    return sa.select(e.c.id, e.c.enrollment_id, e.c.at, e.c.to_state, e.c.data_json).where(
        e.c.enrollment_id.in_(chunk), e.c.kind.in_(("enrolled", "transition")))


@cache
def cache_upsert(dialect: str, table: sa.Table, keys: tuple[str, ...],
                 update: tuple[str, ...]) -> sa.Insert:
    """The upsert of one cache row by name (``keys`` and ``update``'s columns bound by
    their names), for executemany on SQLite or PostgreSQL (``ON CONFLICT DO UPDATE``)."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    stmt = insert(table).values({k: sa.bindparam(k) for k in keys + update})
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={k: stmt.excluded[k] for k in update}
    )
