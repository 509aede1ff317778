"""The store's tables (SQLAlchemy Core). Alembic migrations in ``engine/store/migrations``
must produce exactly this metadata (a test compares them).

Times are stored as naive UTC and read back as aware UTC (:class:`UTCDateTime`), the same on
SQLite and PostgreSQL. JSON payloads are plain text columns so the Core code stays portable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite raw text, e.g. from a hand-written query
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("sequence", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("current_revision", sa.String(64), nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("profile_url", sa.String(500), nullable=False, unique=True),
    sa.Column("data_json", sa.Text, nullable=False, default="{}"),
)

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.Integer, sa.ForeignKey("leads.id"), nullable=False),
    sa.Column("sequence", sa.String(200), nullable=False),
    sa.Column("revision", sa.String(64), nullable=False),
    sa.Column("identity", sa.String(200), nullable=False),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("next_due_at", UTCDateTime, nullable=True, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("step_entered_at", UTCDateTime, nullable=True),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("last_error", sa.Text, nullable=True),
    # Why a lead waits to act (a limit, the window, a cooldown...): set when it starts
    # waiting (its one "postponed" event), kept while it waits, cleared when it moves.
    sa.Column("waiting", sa.String(80), nullable=True),
    sa.UniqueConstraint("lead_id", "sequence"),
    sa.Index(None, "identity", "lead_id"),
    # Only the paused enrollments (what `status` counts per identity): a lead that is not
    # paused is not in it, so the runner's writes do not touch it.
    sa.Index(
        "ix_enrollments_paused",
        "identity",
        "state",
        sqlite_where=sa.text("paused = 1"),
        postgresql_where=sa.text("paused"),
    ),
)

action_log = sa.Table(
    "action_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(300), nullable=False, unique=True),
    sa.Column("enrollment_id", sa.Integer, nullable=False, index=True),
    sa.Column("sequence", sa.String(200), nullable=False),
    sa.Column("revision", sa.String(64), nullable=False),
    sa.Column("step", sa.String(100), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("identity", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # intent | done | failed | unknown
    sa.Column("label", sa.String(60), nullable=True),
    sa.Column("response_json", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    # The A/B variant the call sent (a step with `variants:`), written with the intent.
    sa.Column("variant", sa.String(40), nullable=True),
    # The rolling-24-h limit usage scans actions by their start (the intent's time): a column
    # written once, so an outcome does not move the row in this index (see action_times).
    sa.Index(None, "identity", "action", "created_at"),
    # Only the open intents (what recover reads): an intent leaves the index when its outcome
    # is written, so the index stays as small as the work in flight.
    sa.Index(
        "ix_action_log_open_intents",
        "status",
        sqlite_where=sa.text("status = 'intent'"),
        postgresql_where=sa.text("status = 'intent'"),
    ),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("enrollment_id", sa.Integer, nullable=True, index=True),
    sa.Column("subject", sa.String(500), nullable=False),
    sa.Column("kind", sa.String(60), nullable=False),
    sa.Column("from_state", sa.String(100), nullable=True),
    sa.Column("to_state", sa.String(100), nullable=True),
    sa.Column("trigger", sa.String(60), nullable=True),
    sa.Column("revision", sa.String(64), nullable=True),
    sa.Column("data_json", sa.Text, nullable=True),
    # Events of an enrollment are found through it (ix_events_enrollment_id); the subject
    # index holds only the others (identities, workflows, webhooks), not a row per step.
    sa.Index(
        "ix_events_unlinked_subject",
        "subject",
        sqlite_where=sa.text("enrollment_id IS NULL"),
        postgresql_where=sa.text("enrollment_id IS NULL"),
    ),
)

conversation_cache = sa.Table(
    "conversation_cache",
    metadata,
    sa.Column("identity", sa.String(200), primary_key=True),
    sa.Column("profile_url", sa.String(500), primary_key=True),
    sa.Column("last_sender_is_us", sa.Boolean, nullable=False),
    sa.Column("last_activity_at", UTCDateTime, nullable=False),
    sa.Column("first_sender_is_us", sa.Boolean, nullable=True),
)

connection_cache = sa.Table(
    "connection_cache",
    metadata,
    sa.Column("identity", sa.String(200), primary_key=True),
    sa.Column("profile_url", sa.String(500), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # connected | pending | none
    sa.Column("checked_at", UTCDateTime, nullable=False),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("profile_id", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=False, default="active"),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=True),
)

do_not_contact = sa.Table(
    "do_not_contact",
    metadata,
    sa.Column("profile_url", sa.String(500), primary_key=True),
    sa.Column("reason", sa.Text, nullable=True),
)

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("ns", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("value_json", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# ---- Edges Schedules (engine.store.schedules reads and writes them) --------------------------

# A managed Edges schedule, by manifest name; ``config_json`` is the applied config with
# callback header values replaced by digests.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("uid", sa.String(200), nullable=False),
    sa.Column("action", sa.String(200), nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("origin", sa.String(20), nullable=False),  # created | imported
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

# An apply in progress for one schedule (create the new one, cancel the old one): what a crash
# leaves behind, so the next apply resumes instead of duplicating.
schedule_intents = sa.Table(
    "schedule_intents",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("op", sa.String(20), nullable=False),  # create | replace | delete
    sa.Column("old_uid", sa.String(200), nullable=True),
    sa.Column("new_uid", sa.String(200), nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("old_cancelled", sa.Boolean, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
)

# A ``mode: async`` Schedule registered by apply, for the runner.
async_schedules = sa.Table(
    "async_schedules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

# The current run of an async Schedule and how many times its chain was continued.
schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("run_uid", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("previous_status", sa.String(40), nullable=True),
    sa.Column("continues", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("continued_at", UTCDateTime, nullable=True),
)

# One row per applied Workflow: the record of its latest run (``record_json``, what runs and
# views read). The other columns copy fields of the record, for listing workflows and for
# finding the one a delivered result names by its provider's workflow id.
workflow_runs = sa.Table(
    "workflow_runs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # pending | running | completed | failed
    sa.Column("workflow_id", sa.String(200), nullable=True, index=True),
    sa.Column("revision", sa.String(64), nullable=True),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# What `seqrun serve` received (Edges run callbacks and integration webhooks, LinkedAPI
# workflow webhooks), once per ``dedupe_key`` so a provider's retries are harmless. The
# runner consumes a row once (``consumed_at``); the secret that authenticated it is never here.
inbound_events = sa.Table(
    "inbound_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String(300), nullable=False, unique=True),
    sa.Column("source", sa.String(40), nullable=False),  # edges | linkedapi
    sa.Column("kind", sa.String(40), nullable=False),  # callback | integration | event | hook
    sa.Column("subject", sa.String(500), nullable=True),  # an identity, a workflow, a run uid
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("consumed_at", UTCDateTime, nullable=True),
    sa.Column("outcome", sa.String(300), nullable=True),
    # only the rows the runner has not consumed yet (what each tick reads)
    sa.Index(
        "ix_inbound_events_pending",
        "id",
        sqlite_where=sa.text("consumed_at IS NULL"),
        postgresql_where=sa.text("consumed_at IS NULL"),
    ),
)

# ---- workers and identity leases (engine.store.leases) ---------------------------------------

# A `seqrun run` worker alive on this store: its heartbeat renews ``expires_at``; a row whose
# ``expires_at`` passed is a worker gone (its leases expire too).
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),  # HOST:PID:TOKEN:PIDNS
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# One row per identity once a worker claimed it: held by ``worker`` until ``expires_at``
# (renewed by its heartbeat); free when expired or released (``worker`` NULL).
identity_leases = sa.Table(
    "identity_leases",
    metadata,
    sa.Column("identity", sa.String(200), primary_key=True),
    sa.Column("worker", sa.String(200), nullable=True),
    sa.Column("acquired_at", UTCDateTime, nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)
