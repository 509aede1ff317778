"""Revision rollouts: a new revision of a Sequence with both ``migrate:`` and ``rollout:``
moves only ``rollout.canary`` of its in-flight leads at apply (the canary); the others stay
on their revision, which keeps running them, until the hold passes and ``promote_if`` holds
on the canary's outcomes (the runner then migrates the rest: :func:`promote_rest`), or until
``seqrun promote`` / ``seqrun rollback`` (the canary moved back: :func:`roll_back`).

One migration path for all of them (:func:`move`, also apply's without a rollout): a lead
whose call is in flight (an intent without outcome) is never moved mid-call: it waits for
the next tick (stage ``promoting`` until none is left). Each step is one transaction: the
moves and the stage are committed together, so a crash leaves either nothing done or all,
and the runner's next tick resumes; the exactly-once journal (the action log) is untouched.

The state lives in kv (:data:`REVISION_NS`, by sequence name)::

    {stage, to_revision, from_revisions, canary: [enrollment ids], canary_from: {id: rev},
     in_flight, bound, started_at, decided_at, reason, migrated}

``stage``: ``canary``, ``held`` (the canary failed ``promote_if``: the sequence is paused),
``promoting`` (promoted; leads left for the runner's next tick), ``promoted``,
``rolling_back`` (by hand; leads left for the runner), ``rolled_back`` or ``superseded``
(another revision was applied meanwhile). By hand (``seqrun promote``/``rollback``, maybe
while ``seqrun run`` runs), the leads due now are left to the runner too: it moves them at
the start of its next tick, before its waves read them, so no wave writes an old-revision
step onto a moved lead. ``bound`` is the highest enrollment
id at the start: those leads were in flight, so the new-lead canary never holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.errors import UsageError
from engine.model import Rollout, Sequence, WaitStep
from engine.store import EnrollmentRow, Store
from engine.vocab import TERMINALS

REVISION_NS = "revision_rollout"
ACTIVE = frozenset({"canary", "held", "promoting", "rolling_back"})  # not decided, or not done
PENDING = ACTIVE | {"rolled_back"}  # stages whose leads a re-apply must leave where they are

Target = Callable[[EnrollmentRow], tuple[str, str] | None]


def revision_rollout(store: Store, name: str, conn: sa.Connection | None = None
                     ) -> dict[str, Any] | None:
    """The revision rollout of sequence ``name`` (None: never one)."""
    found = store.kv_get(REVISION_NS, name, conn=conn)
    return found if isinstance(found, dict) else None


def target_state(state: str, migrate: Mapping[str, str], targets: Iterable[str]) -> str | None:
    """Where a lead at old step ``state`` goes in the new revision: ``migrate``'s mapping, else
    the step of the same id when it still exists (``targets``); None: nowhere."""
    if state in migrate:
        return migrate[state]
    return state if state in set(targets) else None


def entry_delays(seq: Sequence) -> dict[str, float | None]:
    """As the runner schedules a step it enters: a wait is due after its duration, a terminal
    never, anything else at once (a wait_for polls and times out from its entry time)."""
    out: dict[str, float | None] = {t: None for t in TERMINALS}
    for step in seq.steps:
        out[step.id] = step.duration.total_seconds() if isinstance(step, WaitStep) else 0.0
    return out


def busy(store: Store, conn: sa.Connection) -> set[int]:
    """Enrollments with a call in flight (an intent without outcome): never moved mid-call."""
    return {p.enrollment_id for p in store.pending_intents(conn=conn)}


def move(
    store: Store,
    sequence: str,
    rows: Iterable[EnrollmentRow],
    target: Target,
    entry_delay: Mapping[str, float | None],
    *,
    now: datetime,
    conn: sa.Connection,
) -> int:
    """Move each row to ``target(row)`` (revision, state; None: stays), with a ``migrated``
    event: the one way leads change revision. A lead moved to a step of another id enters it
    now (due as the runner would schedule it); one that keeps its step keeps its time."""
    moves = []
    for row in rows:
        found = target(row)
        if found is not None and found != (row.revision, row.state):
            moves.append((row, *found))
    leads = store.leads_by_ids({row.lead_id for row, _, _ in moves}, conn=conn)
    events = []
    for row, to_revision, to_state in moves:
        changes: dict[str, Any] = {"revision": to_revision, "state": to_state}
        if to_state != row.state:
            delay = entry_delay.get(to_state, 0.0)
            changes.update(
                step_entered_at=now, attempts=0, last_error=None, waiting=None,
                next_due_at=None if delay is None else now + timedelta(seconds=delay),
            )
        store.update_enrollment(row.id, conn=conn, **changes)
        lead = leads.get(row.lead_id)
        events.append({
            "kind": "migrated", "subject": lead.profile_url if lead else f"lead:{row.lead_id}",
            "data": {"sequence": sequence, "from_revision": row.revision}, "at": now,
            "enrollment_id": row.id, "from_state": row.state, "to_state": to_state,
            "trigger": "migrate", "revision": to_revision,
        })
    store.record_events(events, conn=conn)  # one insert for every move
    return len(moves)


# ---- the stages -------------------------------------------------------------------------------


def start(
    store: Store,
    name: str,
    revision: str,
    rollout: Rollout,
    groups: Mapping[tuple[str, str], tuple[str, str]],
    entry_delay: Mapping[str, float | None],
    *,
    now: datetime,
    conn: sa.Connection,
) -> int:
    """At apply: move the first ``rollout.canary`` in-flight leads (by enrollment, none with
    a call in flight) along ``groups`` ((revision, state) -> (revision, state)); the others
    wait. Returns how many moved."""
    rows = [r for r in store.enrollments(sequence=name, conn=conn) if (r.revision, r.state)
            in groups]
    flying = busy(store, conn)
    canary = [r for r in rows if r.id not in flying][: rollout.canary]
    moved = move(store, name, canary, lambda r: groups[(r.revision, r.state)], entry_delay,
                 now=now, conn=conn)
    bound = max((r.id for r in store.enrollments(sequence=name, conn=conn)), default=0)
    state = {
        "stage": "canary", "to_revision": revision,
        "from_revisions": sorted({r.revision for r in rows}),
        "canary": [r.id for r in canary], "canary_from": {str(r.id): r.revision for r in canary},
        "in_flight": len(rows), "bound": bound, "started_at": now.isoformat(),
        "decided_at": None, "reason": None, "migrated": moved,
    }
    store.kv_put(REVISION_NS, name, state, conn=conn)
    store.record_event("rollout", name, {"stage": "canary", "revision": revision,
                                         "canary": moved, "in_flight": len(rows)},
                       at=now, revision=revision, trigger="apply", conn=conn)
    return moved


def supersede(store: Store, name: str, revision: str, *, now: datetime,
              conn: sa.Connection) -> None:
    """Another revision applied while a revision rollout is under way: it stops (its leads
    stay where they are, or move with the new revision's ``migrate:``)."""
    found = revision_rollout(store, name, conn)
    if found is not None and found["stage"] in PENDING and found["to_revision"] != revision:
        store.kv_put(REVISION_NS, name, {**found, "stage": "superseded",
                                         "reason": f"revision {revision} applied",
                                         "decided_at": now.isoformat()}, conn=conn)


def _left(store: Store, rows: Iterable[EnrollmentRow], conn: sa.Connection,
          due_by: datetime | None, owned: Collection[str] = ()) -> set[int]:
    """The rows to leave for a runner's next tick: a call in flight, or (``due_by``: by hand,
    or a worker among others, while a runner may be acting on them) due by then, but those
    of the ``owned`` identities (the worker's own, whose waves have not started). A runner
    moves them at the start of its tick, before any of its waves reads them."""
    flying = busy(store, conn)
    return {r.id for r in rows if r.id in flying or (
        due_by is not None and r.next_due_at is not None and r.next_due_at <= due_by
        and r.identity not in owned)}


def promote_rest(
    store: Store, name: str, found: Mapping[str, Any], new: Sequence, *, now: datetime,
    conn: sa.Connection, trigger: str, due_by: datetime | None = None,
    owned: Collection[str] = (),
) -> dict[str, Any]:
    """Move every lead still on the old revision(s) to the new one (``new``'s ``migrate:``,
    else the step of the same id), but those :func:`_left` for the runner (stage
    ``promoting`` until none is) and those at a removed step ``migrate:`` does not map (they
    finish on their revision). Returns the new state (committed with the moves)."""
    targets = {s.id for s in new.steps} | set(TERMINALS)
    olds = set(found["from_revisions"])
    rows = [r for r in store.enrollments(sequence=name, conn=conn)
            if r.revision in olds and r.state not in TERMINALS]
    later = _left(store, rows, conn, due_by, owned)
    to = found["to_revision"]

    def target(row: EnrollmentRow) -> tuple[str, str] | None:
        state = target_state(row.state, new.migrate, targets)
        return None if state is None or row.id in later else (to, state)

    moved = move(store, name, rows, target, entry_delays(new), now=now, conn=conn)
    left = sorted({r.state for r in rows if target_state(r.state, new.migrate, targets) is None})
    stage = "promoting" if later else "promoted"
    state = {**found, "stage": stage, "decided_at": now.isoformat(),
             "reason": f"{len(rows) - moved} lead(s) at unmapped step(s) {', '.join(left)} "
                       "finish on their revision" if left else found.get("reason"),
             "migrated": int(found.get("migrated") or 0) + moved}
    store.kv_put(REVISION_NS, name, state, conn=conn)
    if found["stage"] != "promoting" or stage == "promoted":
        store.record_event("rollout", name, {"stage": stage, "revision": to, "migrated": moved},
                           at=now, revision=to, trigger=trigger, conn=conn)
    return state


def roll_back(
    store: Store, name: str, found: Mapping[str, Any], new: Sequence,
    old: Callable[[str], Sequence], *, now: datetime, conn: sa.Connection,
    due_by: datetime | None = None,
) -> tuple[int, int]:
    """Move the canary leads back to their old revision: a step that exists there keeps its
    id, else the inverse of ``new``'s ``migrate:`` (one old step mapped to it); UsageError
    naming the steps that have neither (nothing moved then). Leads that finished stay; those
    :func:`_left` for the runner move at its next tick (stage ``rolling_back``). Returns
    (moved, left)."""
    ids = set(found["canary"])
    rows = [r for r in store.enrollments(sequence=name, conn=conn)
            if r.id in ids and r.revision == found["to_revision"] and r.state not in TERMINALS]
    sources: dict[str, Sequence] = {}
    inverse: dict[str, list[str]] = {}
    for a, b in new.migrate.items():
        inverse.setdefault(b, []).append(a)
    moves: dict[int, tuple[str, str]] = {}
    missing: set[tuple[str, str]] = set()
    for r in rows:
        rev = found["canary_from"].get(str(r.id), found["from_revisions"][0])
        seq = sources.get(rev) or sources.setdefault(rev, old(rev))
        steps = {s.id for s in seq.steps}
        back = [s for s in inverse.get(r.state, ()) if s in steps]
        state = r.state if r.state in steps else back[0] if len(back) == 1 else None
        if state is None:
            missing.add((r.state, rev))
        else:
            moves[r.id] = (rev, state)
    if missing:
        where = ", ".join(f"'{s}' (no such step in revision {rev})" for s, rev in sorted(missing))
        raise UsageError(
            f"sequence {name!r}: cannot roll the canary back: lead(s) at step(s) {where}, and "
            "`migrate:` maps no single old step to them; `seqrun promote` instead, or apply a "
            "revision whose `migrate:` maps them")
    later = _left(store, rows, conn, due_by)
    delays: dict[str, float | None] = {}
    for seq in sources.values():
        delays.update(entry_delays(seq))
    moved = move(store, name, rows, lambda r: None if r.id in later else moves.get(r.id),
                 delays, now=now, conn=conn)
    return moved, len(later)
