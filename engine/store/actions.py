"""The action log: an intent row written before every provider call, its outcome after,
and the limit usage read from it (``done`` actions in a rolling window)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import StoreError
from engine.store import tables as t
from engine.store.codecs import dump_json, response_json
from engine.store.db import StoreBase
from engine.store.rows import ActionRow, action_row

ACTION_STATUSES = ("intent", "done", "failed", "unknown")
# a done outcome recovery settled without evidence carries {"unverified": true} (its JSON)
UNVERIFIED_LIKE = '%"unverified":true%'


def _pending_select() -> sa.Select[Any]:
    # a literal, not a parameter: the partial index only serves `status = 'intent'`
    a = t.action_log
    return sa.select(a).where(a.c.status == sa.literal_column("'intent'")).order_by(a.c.id)


class Actions(StoreBase):
    def log_intent(
        self,
        *,
        enrollment_id: int,
        sequence: str,
        revision: str,
        step: str,
        attempt: int | None,
        identity: str,
        action: str,
        at: datetime,
        request: Any = None,
        variant: str | None = None,
        conn: Connection | None = None,
    ) -> str:
        """Write (and, without ``conn``, commit) the intent row before a provider call.

        Returns the idempotency key ``"<enrollment>:<step>:<attempt>"`` (``attempt=None``: the
        next unused number, computed in the same transaction); a second intent with the same
        key raises :class:`StoreError`.
        """
        try:
            with self.tx(conn) as c:
                if attempt is None:
                    attempt = self.next_attempt(enrollment_id, step, conn=c)
                key = f"{enrollment_id}:{step}:{attempt}"
                c.execute(
                    t.action_log.insert().values(
                        idempotency_key=key,
                        enrollment_id=enrollment_id,
                        sequence=sequence,
                        revision=revision,
                        step=step,
                        attempt=attempt,
                        identity=identity,
                        action=action,
                        status="intent",
                        response_json=None if request is None else dump_json({"request": request}),
                        created_at=at,
                        variant=variant,
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise StoreError(
                f"action {enrollment_id}:{step}:{attempt} was already attempted"
            ) from exc
        return key

    def next_attempt(self, enrollment_id: int, step: str, *, conn: Connection | None = None) -> int:
        """The attempt number for the next call of ``step`` (keys are never reused, even when
        a step is entered again)."""
        q = sa.select(sa.func.max(t.action_log.c.attempt)).where(
            t.action_log.c.enrollment_id == enrollment_id, t.action_log.c.step == step
        )
        with self.read(conn) as c:
            last = c.execute(q).scalar()
        return 0 if last is None else int(last) + 1

    def log_outcome(
        self,
        key: str,
        status: str,
        *,
        at: datetime,
        label: str | None = None,
        response: Any = None,
        conn: Connection | None = None,
    ) -> None:
        if status not in ACTION_STATUSES[1:]:
            raise StoreError(f"bad action status {status!r}")
        with self.tx(conn) as c:
            c.execute(
                t.action_log.update()
                .where(t.action_log.c.idempotency_key == key)
                .values(
                    status=status,
                    label=label,
                    response_json=response_json(response),
                    finished_at=at,
                )
            )

    def log_workflow_actions(
        self,
        name: str,
        key: str,
        identity: str,
        actions: Mapping[str, int],
        *,
        at: datetime,
        conn: Connection | None = None,
    ) -> None:
        """Count the actions of a workflow run (a fan-out's child, taken at ``at``) in this log
        as done, beside the sequences': the runner's limits per identity and the fan-out's
        budget read one ledger. Once per ``key`` (the body's revision and attempt): a second
        call, after a crash, adds nothing. No enrollment: ``enrollment_id`` 0, ``sequence``
        ``workflow/NAME``."""
        rows = [
            {"idempotency_key": f"workflow:{name}:{key}:{action}:{i}", "enrollment_id": 0,
             "sequence": f"workflow/{name}", "revision": key[:64], "step": action,
             "attempt": 0, "identity": identity, "action": action, "status": "done",
             "label": "workflow", "created_at": at, "finished_at": at}
            for action, n in sorted(actions.items()) for i in range(n)
        ]
        if not rows:
            return
        keys = [r["idempotency_key"] for r in rows]
        with self.tx(conn) as c:
            taken = set(c.execute(sa.select(t.action_log.c.idempotency_key).where(
                t.action_log.c.idempotency_key.in_(keys))).scalars())
            fresh = [r for r in rows if r["idempotency_key"] not in taken]
            if fresh:
                c.execute(t.action_log.insert(), fresh)

    def pending_intents(self, *, conn: Connection | None = None) -> list[ActionRow]:
        """Intents with no recorded outcome (a crash or a lost answer after the intent)."""
        with self.read(conn) as c:
            return [action_row(r) for r in self._select(c, "pending", _pending_select)]

    def actions(
        self,
        *,
        enrollment_id: int | None = None,
        identity: str | None = None,
        conn: Connection | None = None,
    ) -> list[ActionRow]:
        q = sa.select(t.action_log).order_by(t.action_log.c.id)
        if enrollment_id is not None:
            q = q.where(t.action_log.c.enrollment_id == enrollment_id)
        if identity is not None:
            q = q.where(t.action_log.c.identity == identity)
        with self.read(conn) as c:
            return [action_row(r) for r in c.execute(q)]

    def action_times(
        self, identity: str, action: str, since: datetime, *, conn: Connection | None = None
    ) -> list[datetime]:
        """When each ``done`` action of this identity finished after ``since``, oldest first
        (the rolling-24-h limit usage). The scan runs on the index of the actions' start
        (written once, so outcomes do not rewrite it), from a day before ``since``: an
        action finishes within a day of its intent (recover settles older ones)."""
        start = since - timedelta(days=1)
        with self.read(conn) as c:
            return self.fast.action_times(c, identity, action, start, since)

    def action_times_across(
        self,
        actions: Iterable[str],
        since: datetime,
        *,
        sequence: str | None = None,
        conn: Connection | None = None,
    ) -> list[datetime]:
        """When each ``done`` action of ``actions`` finished after ``since``, oldest first,
        across every identity (the organisation's budgets) or of one ``sequence`` (its send
        cap). Read once per tick by the runner's guardrails, never per lead."""
        a = t.action_log
        q = sa.select(a.c.finished_at).where(
            a.c.action.in_(list(actions)),
            a.c.created_at > since - timedelta(days=1),
            a.c.finished_at > since,
            a.c.status == "done",
        )
        if sequence is not None:
            q = q.where(a.c.sequence == sequence)
        with self.read(conn) as c:
            return sorted(r[0] for r in c.execute(q))

    def touches(
        self,
        lead_ids: Iterable[int],
        actions: Iterable[str],
        since: datetime,
        *,
        conn: Connection | None = None,
    ) -> dict[int, list[tuple[datetime, str, str]]]:
        """lead id -> [(finished at, identity, sequence)] of its ``done`` actions of
        ``actions`` after ``since``, oldest first, whatever sequence or identity made them
        (one lead one voice, the frequency cap per lead)."""
        a, e = t.action_log, t.enrollments
        ids = sorted(set(lead_ids))
        out: dict[int, list[tuple[datetime, str, str]]] = {}
        with self.read(conn) as c:
            for i in range(0, len(ids), 500):
                q = (
                    sa.select(e.c.lead_id, a.c.finished_at, a.c.identity, a.c.sequence)
                    .join(e, e.c.id == a.c.enrollment_id)
                    .where(
                        e.c.lead_id.in_(ids[i : i + 500]),
                        a.c.action.in_(list(actions)),
                        a.c.status == "done",
                        a.c.finished_at > since,
                    )
                    .order_by(a.c.finished_at)
                )
                for lead_id, at, identity, seq in c.execute(q):
                    out.setdefault(int(lead_id), []).append((at, identity, seq))
        return out

    def count_unverified(
        self,
        *,
        sequence: str | None = None,
        identity: str | None = None,
        since: datetime | None = None,
        conn: Connection | None = None,
    ) -> dict[str, int]:
        """Actions counted done without evidence (settled after a crash where the provider
        keeps nothing to check, e.g. a visit), per action; of ``sequence`` or ``identity``,
        finished after ``since`` if given. Read by ``seqrun status``, not by the runner."""
        a = t.action_log
        q = sa.select(a.c.action, sa.func.count()).where(
            a.c.status == "done", a.c.response_json.like(UNVERIFIED_LIKE)
        )
        if sequence is not None:
            q = q.where(a.c.sequence == sequence)
        if identity is not None:
            q = q.where(a.c.identity == identity)
        if since is not None:  # on the index of the actions' start, as action_times
            q = q.where(a.c.created_at > since - timedelta(days=1), a.c.finished_at > since)
        with self.read(conn) as c:
            return {str(action): int(n) for action, n in c.execute(q.group_by(a.c.action))}
