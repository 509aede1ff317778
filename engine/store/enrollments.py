"""Enrollments: a lead in a sequence, on one identity, at one state (a plain row the runner
moves; terminal states carry ``next_due_at = NULL``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import StoreError
from engine.store import tables as t
from engine.store.codecs import load_json
from engine.store.db import StoreBase
from engine.store.rows import Columns, EnrollmentRow, LeadRow, enrollment_row
from engine.vocab import TERMINALS


class Enrollments(StoreBase):
    def enroll(
        self,
        lead_id: int,
        sequence: str,
        revision: str,
        identity: str,
        state: str,
        next_due_at: datetime | None,
        *,
        conn: Connection | None = None,
    ) -> int | None:
        """Enroll a lead; None when it is already enrolled in that sequence."""
        with self.tx(conn) as c:
            exists = c.execute(
                sa.select(t.enrollments.c.id).where(
                    t.enrollments.c.lead_id == lead_id, t.enrollments.c.sequence == sequence
                )
            ).first()
            if exists:
                return None
            res = c.execute(
                t.enrollments.insert().values(
                    lead_id=lead_id,
                    sequence=sequence,
                    revision=revision,
                    identity=identity,
                    state=state,
                    next_due_at=next_due_at,
                    attempts=0,
                    step_entered_at=next_due_at,
                    paused=False,
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def insert_enrollments(
        self, rows: Columns, *, conn: Connection | None = None
    ) -> Sequence[int]:
        """Insert many enrollments (by column: the table's columns but ``id``) in one bulk
        statement; their ids, in order."""
        with self.tx(conn) as c:
            ids = self.fast.new_ids(c, t.enrollments, len(rows))
            self.fast.insert_columns(c, t.enrollments, Columns(rows.same, {**rows.each, "id": ids}))
        return ids

    def get_enrollment(
        self, enrollment_id: int, *, conn: Connection | None = None
    ) -> EnrollmentRow | None:
        with self.read(conn) as c:
            r = c.execute(
                sa.select(t.enrollments).where(t.enrollments.c.id == enrollment_id)
            ).first()
        return None if r is None else enrollment_row(r)

    def enrollments(
        self,
        *,
        sequence: str | None = None,
        identity: str | None = None,
        lead_id: int | None = None,
        states: Iterable[str] | None = None,
        conn: Connection | None = None,
    ) -> list[EnrollmentRow]:
        q = sa.select(t.enrollments).order_by(t.enrollments.c.id)
        if sequence is not None:
            q = q.where(t.enrollments.c.sequence == sequence)
        if identity is not None:
            q = q.where(t.enrollments.c.identity == identity)
        if lead_id is not None:
            q = q.where(t.enrollments.c.lead_id == lead_id)
        if states is not None:
            q = q.where(t.enrollments.c.state.in_(list(states)))
        with self.read(conn) as c:
            return [enrollment_row(r) for r in c.execute(q)]

    def release_waiting(
        self, sequence: str, waiting: str, now: datetime, *, conn: Connection | None = None
    ) -> int:
        """Make the enrollments of ``sequence`` held for ``waiting`` (a promoted rollout's)
        due now; returns how many."""
        e = t.enrollments
        q = (
            e.update()
            .where(e.c.sequence == sequence, e.c.waiting == waiting, e.c.next_due_at > now)
            .values(next_due_at=now)
        )
        with self.tx(conn) as c:
            return int(c.execute(q).rowcount or 0)

    def release_limit_waits(
        self, identities: Iterable[str], prefix: str, now: datetime, *,
        conn: Connection | None = None,
    ) -> int:
        """Make the enrollments of ``identities`` waiting on a key that starts with ``prefix``
        (the runner's limit lines) due now; returns how many."""
        e = t.enrollments
        q = (
            e.update()
            .where(e.c.identity.in_(list(identities)), e.c.waiting.startswith(prefix),
                   e.c.next_due_at > now)
            .values(next_due_at=now)
        )
        with self.tx(conn) as c:
            return int(c.execute(q).rowcount or 0)

    def enrollment_ids(
        self, sequence: str, lead_ids: Iterable[int], *, conn: Connection | None = None
    ) -> dict[int, int]:
        """lead id -> enrollment id of those of ``lead_ids`` enrolled in ``sequence``. Many
        ids (an import): one pass over the sequence's enrollments, not an IN query per 500."""
        ids = list(lead_ids)
        out: dict[int, int] = {}
        with self.read(conn) as c:
            if len(ids) > 5000:
                wanted = set(ids)
                rows = self._select(c, "sequence_enrollment_ids", _sequence_ids, seq=sequence)
                return {int(r.lead_id): int(r.id) for r in rows if r.lead_id in wanted}
            out = {int(lead_id): int(enrollment_id)
                   for lead_id, enrollment_id, seq, _, _ in self._of_leads(c, ids)
                   if seq == sequence}
        return out

    def _of_leads(self, c: Connection, ids: list[int]) -> Iterator[Any]:
        """(lead id, enrollment id, sequence, identity, state) of the leads' enrollments."""
        return self._rows_in(c, "enrollments_of_leads", ids)

    def enrollments_of_leads(
        self, lead_ids: Iterable[int], *, conn: Connection | None = None
    ) -> dict[int, list[tuple[str, str, str]]]:
        """lead id -> [(sequence, identity, state)] of its enrollments."""
        ids = list(set(lead_ids))
        out: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
        with self.read(conn) as c:
            for lead_id, _, sequence, identity, state in self._of_leads(c, ids):
                out[int(lead_id)].append((sequence, identity, state))
        return out

    def due_enrollments(
        self,
        now: datetime,
        *,
        limit: int | None = None,
        identities: Collection[str] | None = None,
        conn: Connection | None = None,
    ) -> list[EnrollmentRow]:
        """Enrollments due at ``now`` (by the ``next_due_at`` index): not paused, sequence not
        paused; only those of ``identities`` when given (a worker's leases). Terminal
        enrollments carry ``next_due_at = NULL`` so they never show up."""
        if identities is not None and not identities:
            return []
        with self.read(conn) as c:
            return self.fast.due_enrollments(c, now, limit, identities)

    def next_due_at(
        self,
        *,
        identities: Collection[str] | None = None,
        after: datetime | None = None,
        conn: Connection | None = None,
    ) -> datetime | None:
        """The earliest ``next_due_at`` among runnable enrollments (of ``identities``; later
        than ``after`` when given)."""
        paused_seqs = sa.select(t.sequences.c.name).where(t.sequences.c.paused == sa.true())
        q = sa.select(sa.func.min(t.enrollments.c.next_due_at)).where(
            t.enrollments.c.next_due_at.is_not(None),
            t.enrollments.c.paused == sa.false(),
            t.enrollments.c.sequence.not_in(paused_seqs),
        )
        if after is not None:
            q = q.where(t.enrollments.c.next_due_at > after)
        if identities is not None:
            q = q.where(t.enrollments.c.identity.in_(sorted(identities)))
        with self.read(conn) as c:
            value = c.execute(q).scalar()
        if value is None:
            return None
        return t.UTCDateTime().process_result_value(value, self.engine.dialect)

    def update_enrollment(
        self, enrollment_id: int, *, conn: Connection | None = None, **values: Any
    ) -> None:
        """Set columns of one enrollment (state, next_due_at, attempts, ...)."""
        unknown = set(values) - set(t.enrollments.c.keys())
        if unknown:
            raise StoreError(f"unknown enrollment columns: {sorted(unknown)}")
        with self.tx(conn) as c:
            c.execute(
                t.enrollments.update().where(t.enrollments.c.id == enrollment_id).values(**values)
            )

    def reschedule(
        self, items: Iterable[tuple[int, datetime | None]], *, conn: Connection | None = None
    ) -> None:
        """Set ``next_due_at`` of many enrollments in one statement (executemany)."""
        rows = [{"eid": eid, "due": due} for eid, due in items]
        if not rows:
            return
        stmt = (
            t.enrollments.update()
            .where(t.enrollments.c.id == sa.bindparam("eid"))
            .values(next_due_at=sa.bindparam("due"))
        )
        with self.tx(conn) as c:
            c.execute(stmt, rows)

    def pull_forward(
        self,
        enrollment_id: int,
        waiting: str,
        due: datetime,
        now: datetime,
        *,
        conn: Connection | None = None,
    ) -> bool:
        """Make an enrollment that waits (``waiting``) until ``due`` due at ``now`` instead;
        False when it no longer waits so (it moved, or waits for something else).

        A hint, not a record (the runner hands a held lead's limit slot to the next in
        line, hundreds of times a tick): on its own its commit is one round trip on
        PostgreSQL and does not wait for the disk (lost in a crash, the lead is due at
        its own instant: a slot unused, nothing sent twice)."""
        if conn is not None:
            return bool(self.fast.pull_forward(conn, enrollment_id, waiting, due, now).rowcount)
        with self.transaction(pipelined=True, durable=False) as c:
            moved = self.fast.pull_forward(c, enrollment_id, waiting, due, now)
        return bool(moved.rowcount)

    def set_enrollments_paused(
        self,
        paused: bool,
        *,
        identity: str | None = None,
        sequence: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Pause or resume the non-terminal enrollments of an identity and/or sequence
        (both None: every enrollment). Their state and due time are kept."""
        q = t.enrollments.update().values(paused=paused)
        if identity is not None:
            q = q.where(t.enrollments.c.identity == identity)
        if sequence is not None:
            q = q.where(t.enrollments.c.sequence == sequence)
        with self.tx(conn) as c:
            return c.execute(q).rowcount

    def live_enrollments_for_profiles(
        self, identity: str, profile_urls: Iterable[str], *, conn: Connection | None = None
    ) -> list[tuple[EnrollmentRow, LeadRow]]:
        """Non-terminal enrollments (``next_due_at`` set, paused or not) of these leads on
        this identity, with their leads."""
        q = (
            sa.select(t.enrollments, t.leads.c.profile_url, t.leads.c.data_json)
            .join(t.leads, t.leads.c.id == t.enrollments.c.lead_id)
            .where(
                t.enrollments.c.identity == identity,
                t.leads.c.profile_url.in_(list(profile_urls)),
                t.enrollments.c.next_due_at.is_not(None),
            )
            .order_by(t.enrollments.c.id)
        )
        with self.read(conn) as c:
            return [
                (enrollment_row(r), LeadRow(r.lead_id, r.profile_url, load_json(r.data_json)))
                for r in c.execute(q)
            ]


class EnrollmentCounts(StoreBase):
    """How many enrollments, grouped the ways the plan and ``seqrun status`` show them."""

    def count_enrollments(self, *, conn: Connection | None = None) -> dict[tuple[str, str], int]:
        """(sequence, state) -> number of enrollments, for the funnel."""
        q = sa.select(t.enrollments.c.sequence, t.enrollments.c.state, sa.func.count()).group_by(
            t.enrollments.c.sequence, t.enrollments.c.state
        )
        with self.read(conn) as c:
            return {(r[0], r[1]): int(r[2]) for r in c.execute(q)}

    def count_by_identity(self, sequence: str, *, conn: Connection | None = None) -> dict[str, int]:
        """identity -> number of enrollments in ``sequence``."""
        e = t.enrollments
        q = (
            sa.select(e.c.identity, sa.func.count())
            .where(e.c.sequence == sequence)
            .group_by(e.c.identity)
        )
        with self.read(conn) as c:
            return {r[0]: int(r[1]) for r in c.execute(q)}

    def count_in_flight(
        self, sequence: str, *, off_revision: str, conn: Connection | None = None
    ) -> list[tuple[str, str, int]]:
        """(revision, state, count) of the non-terminal enrollments of ``sequence`` on
        revisions other than ``off_revision``, in order."""
        e = t.enrollments
        q = (
            sa.select(e.c.revision, e.c.state, sa.func.count())
            .where(
                e.c.sequence == sequence, e.c.revision != off_revision, e.c.state.not_in(TERMINALS)
            )
            .group_by(e.c.revision, e.c.state)
            .order_by(e.c.revision, e.c.state)
        )
        with self.read(conn) as c:
            return [(rev, state, int(n)) for rev, state, n in c.execute(q).all()]

    def count_by_identity_state(
        self, sequence: str, *, conn: Connection | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(identity, state, revision, count) of the enrollments of ``sequence``."""
        e = t.enrollments
        q = (
            sa.select(e.c.identity, e.c.state, e.c.revision, sa.func.count())
            .where(e.c.sequence == sequence)
            .group_by(e.c.identity, e.c.state, e.c.revision)
        )
        with self.read(conn) as c:
            return [(ident, state, rev, int(n)) for ident, state, rev, n in c.execute(q)]

    def count_waiting(self, sequence: str, *, conn: Connection | None = None) -> dict[str, int]:
        """Why the enrollments of ``sequence`` that wait to act wait (a limit, the window, a
        cooldown) -> how many."""
        e = t.enrollments
        q = (
            sa.select(e.c.waiting, sa.func.count())
            .where(e.c.sequence == sequence, e.c.waiting.is_not(None))
            .group_by(e.c.waiting)
        )
        with self.read(conn) as c:
            return {str(key): int(n) for key, n in c.execute(q)}

    def count_paused(self, *, conn: Connection | None = None) -> dict[str, int]:
        """identity -> how many of its non-terminal enrollments are paused (one pass for
        every identity: ``seqrun status`` shows them all)."""
        e = t.enrollments
        q = (
            sa.select(e.c.identity, sa.func.count())
            .where(e.c.paused == sa.true(), e.c.state.not_in(TERMINALS))
            .group_by(e.c.identity)
        )
        with self.read(conn) as c:
            return {str(identity): int(n) for identity, n in c.execute(q)}


def _sequence_ids() -> sa.Select[Any]:
    e = t.enrollments
    return sa.select(e.c.id, e.c.lead_id).where(e.c.sequence == sa.bindparam("seq"))
