"""The aggregates ``seqrun status`` turns into rates, ``seqrun leads list`` rows and the
clock note of the limits table: read-only, grouped in the database (one query each)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import tables as t
from engine.store.codecs import load_json
from engine.store.db import StoreBase

#: (identity, from_state, to_state, trigger, enrollments)
Edge = tuple[str, str | None, str | None, str | None, int]


class FunnelCounts(StoreBase):
    def reached_counts(
        self, sequence: str, *, conn: Connection | None = None
    ) -> list[tuple[str, str, int]]:
        """(identity, step or terminal, enrollments that ever entered it) of a sequence.

        The (enrollment, state) pairs are made distinct before the join, so the join and the
        grouping see each pair once and no per-group DISTINCT sort is needed (half the time
        of ``count(DISTINCT enrollment_id)`` on a 100,000-lead state)."""
        e, n = t.events, t.enrollments
        entered = (
            sa.select(e.c.enrollment_id, e.c.to_state)
            .where(e.c.to_state.is_not(None), e.c.enrollment_id.is_not(None))
            .distinct()
            .subquery("entered")
        )
        q = (
            sa.select(n.c.identity, entered.c.to_state, sa.func.count())
            .select_from(entered.join(n, n.c.id == entered.c.enrollment_id))
            .where(n.c.sequence == sequence)
            .group_by(n.c.identity, entered.c.to_state)
        )
        with self.read(conn) as c:
            return [(str(i), str(s), int(k)) for i, s, k in c.execute(q)]

    def edge_counts(self, sequence: str, *, conn: Connection | None = None) -> list[Edge]:
        """Every (identity, from, to, trigger) a sequence's leads took, with how many did."""
        e, n = t.events, t.enrollments
        q = (
            sa.select(n.c.identity, e.c.from_state, e.c.to_state, e.c.trigger,
                      sa.func.count(sa.distinct(e.c.enrollment_id)))
            .select_from(e.join(n, n.c.id == e.c.enrollment_id))
            .where(n.c.sequence == sequence, e.c.kind == "transition")
            .group_by(n.c.identity, e.c.from_state, e.c.to_state, e.c.trigger)
        )
        with self.read(conn) as c:
            return [(str(i), f, to, tr, int(k)) for i, f, to, tr, k in c.execute(q)]

    def done_action_counts(
        self, sequence: str, *, conn: Connection | None = None
    ) -> list[tuple[str, str, int]]:
        """(identity, action, enrollments with at least one such action done)."""
        a = t.action_log
        q = (
            sa.select(a.c.identity, a.c.action, sa.func.count(sa.distinct(a.c.enrollment_id)))
            .where(a.c.sequence == sequence, a.c.status == "done")
            .group_by(a.c.identity, a.c.action)
        )
        with self.read(conn) as c:
            return [(str(i), str(x), int(k)) for i, x, k in c.execute(q)]

    def variant_actions(
        self, sequence: str, *, conn: Connection | None = None
    ) -> list[tuple[str, str, int, bool, datetime]]:
        """(step, variant, enrollment, done, first attempt's start) of every lead a step with
        variants was attempted for: one row per (step, variant, enrollment)."""
        a = t.action_log
        done = sa.func.max(sa.case((a.c.status == "done", 1), else_=0))
        q = (
            sa.select(a.c.step, a.c.variant, a.c.enrollment_id, done, sa.func.min(a.c.created_at))
            .where(a.c.sequence == sequence, a.c.variant.is_not(None))
            .group_by(a.c.step, a.c.variant, a.c.enrollment_id)
        )
        with self.read(conn) as c:
            return [(str(s), str(v), int(eid), bool(d), at) for s, v, eid, d, at in c.execute(q)]

    def outcome_times(
        self, sequence: str, *, conn: Connection | None = None
    ) -> tuple[dict[int, datetime], dict[int, datetime]]:
        """When each of a sequence's enrollments was first seen to accept (``accepted``
        trigger) and to reply (entered ``replied``): two maps enrollment -> time."""
        e, n = t.events, t.enrollments
        q = (
            sa.select(e.c.enrollment_id, e.c.trigger, e.c.to_state, sa.func.min(e.c.at))
            .select_from(e.join(n, n.c.id == e.c.enrollment_id))
            .where(n.c.sequence == sequence,
                   sa.or_(e.c.trigger == "accepted", e.c.to_state == "replied"))
            .group_by(e.c.enrollment_id, e.c.trigger, e.c.to_state)
        )
        accepted: dict[int, datetime] = {}
        replied: dict[int, datetime] = {}
        with self.read(conn) as c:
            for eid, trigger, to_state, at in c.execute(q):
                if trigger == "accepted":
                    accepted[int(eid)] = min(at, accepted.get(int(eid), at))
                if to_state == "replied":
                    replied[int(eid)] = min(at, replied.get(int(eid), at))
        return accepted, replied

    def last_action_at(self, identity: str, *, conn: Connection | None = None) -> datetime | None:
        """When the identity's latest action started (None: it never acted)."""
        q = sa.select(sa.func.max(t.action_log.c.created_at)).where(
            t.action_log.c.identity == identity)
        with self.read(conn) as c:
            value = c.execute(q).scalar()  # MAX keeps the column's type: aware UTC
        return value if isinstance(value, datetime) else None

    def lead_rows(
        self,
        *,
        sequence: str | None = None,
        states: Iterable[str] | None = None,
        conn: Connection | None = None,
    ) -> list[dict[str, Any]]:
        """Enrollments joined with their lead (``seqrun leads list``), by sequence then id."""
        n, ld = t.enrollments, t.leads
        q = (
            sa.select(ld.c.profile_url, ld.c.data_json, n.c.sequence, n.c.identity, n.c.state,
                      n.c.revision, n.c.next_due_at, n.c.paused, n.c.last_error)
            .select_from(n.join(ld, ld.c.id == n.c.lead_id))
            .order_by(n.c.sequence, n.c.id)
        )
        if sequence is not None:
            q = q.where(n.c.sequence == sequence)
        if states is not None:
            q = q.where(n.c.state.in_(list(states)))
        with self.read(conn) as c:
            return [
                {"profile_url": r.profile_url, "data": load_json(r.data_json) or {},
                 "sequence": r.sequence, "identity": r.identity, "state": r.state,
                 "revision": r.revision, "next_due_at": r.next_due_at, "paused": bool(r.paused),
                 "last_error": r.last_error}
                for r in c.execute(q)
            ]
