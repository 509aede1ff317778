"""The statements both store paths bind (SQLAlchemy's and the SQLite fast path's): the
runner's batched UPDATEs (parameters by name, ``b_*``), the column order of its batched
intent insert, and the keys of the two cache upserts."""

from __future__ import annotations

import sqlalchemy as sa

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
