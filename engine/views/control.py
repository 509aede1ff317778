"""Pause and resume (``seqrun pause`` / ``seqrun resume``): the one part of the views that
writes the store. A sequence's or every sequence's ``paused`` flag (everything: the kill
switch too), or an identity's status and its enrollments, with an event for ``why``.

>>> set_paused(store, True, sequence="founders", now=clock.now())  # doctest: +SKIP
PauseResult(target='sequence founders', paused=True, changed=1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.apply import APPLY_LOCK
from engine.apply.rollout import (
    PENDING,
    REVISION_NS,
    promote_rest,
    revision_rollout,
    roll_back,
)
from engine.errors import UsageError
from engine.model import Sequence
from engine.run.guards import ROLLOUT_NS, rollout_state
from engine.run.state import sequence_from_store
from engine.store import Store
from engine.views.status import NotFoundError
from engine.vocab import KILL_SWITCH


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


# ---- rollouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutResult:
    sequence: str
    stage: str  # promoted | rolled_back
    released: int = 0  # leads that waited for the canary and are due now
    # a revision rollout's: leads moved to the new revision (promote) or back (rollback)
    migrated: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "stage": self.stage, "released": self.released,
                "migrated": self.migrated}


def _rollouts(store: Store, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the new-lead rollout, the revision rollout under way) of ``name``; UsageError when
    neither is."""
    if store.get_sequence(name) is None:
        raise NotFoundError(f"no applied sequence named {name!r}")
    found = rollout_state(store, name)
    revision = revision_rollout(store, name)
    if revision is not None and revision["stage"] not in PENDING:
        revision = None
    if found is None and revision is None:
        raise UsageError(f"sequence {name!r} has no rollout under way (no `rollout:` in its "
                         "manifest, or nothing enrolled yet)")
    return found, revision


def promote(store: Store, name: str, *, now: datetime,
            sequence_of: Callable[[str], Sequence] | None = None) -> RolloutResult:
    """``seqrun promote NAME``: the rest of the leads go now, whatever the canary did (a
    revision rollout's rest of in-flight leads move to the new revision); a sequence a held
    canary paused is resumed. Under the apply lock (LockError while an apply or the runner
    decides)."""
    with store.lock(APPLY_LOCK):
        return _promote(store, name, now, sequence_of)


def _promote(store: Store, name: str, now: datetime,
             sequence_of: Callable[[str], Sequence] | None) -> RolloutResult:
    found, revision = _rollouts(store, name)
    migrated = None
    resolve = sequence_of or _sequence(store)  # read before the transaction (SQLite: one writer)
    new = resolve(revision["to_revision"]) if revision is not None else None
    with store.transaction() as conn:
        if revision is not None and new is not None:
            state = promote_rest(store, name, {**revision, "reason": "by hand"}, new, now=now,
                                 conn=conn, trigger="user", due_by=now)
            migrated = int(state["migrated"]) - int(revision.get("migrated") or 0)
        released = 0
        if found is not None:
            store.kv_put(ROLLOUT_NS, name, {**found, "stage": "promoted", "reason": "by hand",
                                            "decided_at": now.isoformat()}, conn=conn)
            released = store.release_waiting(name, "rollout", now, conn=conn)
            store.record_event("rollout", name, {"stage": "promoted", "trigger": "user"},
                               at=now, trigger="user", conn=conn)
        store.set_sequence_paused(name, False, conn=conn)
    return RolloutResult(name, "promoted", released, migrated)


def rollback(store: Store, name: str, *, now: datetime,
             sequence_of: Callable[[str], Sequence] | None = None) -> RolloutResult:
    """``seqrun rollback NAME``: the sequence is paused and the leads beyond the canary never
    go (``seqrun promote`` undoes it); a revision rollout's canary leads move back to their
    old revision (UsageError naming the steps that cannot). Under the apply lock."""
    with store.lock(APPLY_LOCK):
        return _rollback(store, name, now, sequence_of)


def _rollback(store: Store, name: str, now: datetime,
              sequence_of: Callable[[str], Sequence] | None) -> RolloutResult:
    found, revision = _rollouts(store, name)
    migrated = None
    resolve = sequence_of or _sequence(store)  # read before the transaction (SQLite: one writer)
    back = revision is not None and revision["stage"] in ("canary", "held", "rolling_back")
    revisions = {rev: resolve(rev) for rev in (
        [revision["to_revision"], *revision["from_revisions"]] if back and revision else [])}
    with store.transaction() as conn:
        if back and revision is not None:
            migrated, left = roll_back(store, name, revision, revisions[revision["to_revision"]],
                                       revisions.__getitem__, now=now, conn=conn, due_by=now)
            store.kv_put(REVISION_NS, name, {**revision,
                                             "stage": "rolling_back" if left else "rolled_back",
                                             "reason": "by hand",
                                             "decided_at": now.isoformat()}, conn=conn)
        elif found is None:
            raise UsageError(f"sequence {name!r}: its revision rollout is "
                             f"{revision['stage'] if revision else 'over'}; nothing to roll back")
        if found is not None:
            store.kv_put(ROLLOUT_NS, name, {**found, "stage": "rolled_back",
                                            "reason": "by hand",
                                            "decided_at": now.isoformat()}, conn=conn)
        store.set_sequence_paused(name, True, conn=conn)
        store.record_event("rollout", name, {"stage": "rolled_back", "trigger": "user",
                                             "migrated": migrated},
                           at=now, trigger="user", conn=conn)
    return RolloutResult(name, "rolled_back", 0, migrated)


def _sequence(store: Store) -> Callable[[str], Sequence]:
    """A stored revision's Sequence (the runner's way: rebuilt from its manifest)."""
    return lambda revision: sequence_from_store(store, revision)
