"""Pause and resume (``seqrun pause`` / ``seqrun resume``): the one part of the views that
writes the store. A sequence's or every sequence's ``paused`` flag (everything: the kill
switch too), or an identity's status and its enrollments, with an event for ``why``.

>>> set_paused(store, True, sequence="founders", now=clock.now())  # doctest: +SKIP
PauseResult(target='sequence founders', paused=True, changed=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.errors import UsageError
from engine.run.guards import ROLLOUT_NS, rollout_state
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

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "stage": self.stage, "released": self.released}


def _rollout(store: Store, name: str) -> dict[str, Any]:
    if store.get_sequence(name) is None:
        raise NotFoundError(f"no applied sequence named {name!r}")
    found = rollout_state(store, name)
    if found is None:
        raise UsageError(f"sequence {name!r} has no rollout under way (no `rollout:` in its "
                         "manifest, or nothing enrolled yet)")
    return found


def promote(store: Store, name: str, *, now: datetime) -> RolloutResult:
    """``seqrun promote NAME``: the rest of the leads go now, whatever the canary did; a
    sequence a held canary paused is resumed."""
    found = _rollout(store, name)
    with store.transaction() as conn:
        store.kv_put(ROLLOUT_NS, name, {**found, "stage": "promoted", "reason": "by hand",
                                        "decided_at": now.isoformat()}, conn=conn)
        store.set_sequence_paused(name, False, conn=conn)
        released = store.release_waiting(name, "rollout", now, conn=conn)
        store.record_event("rollout", name, {"stage": "promoted", "trigger": "user"}, at=now,
                           trigger="user", conn=conn)
    return RolloutResult(name, "promoted", released)


def rollback(store: Store, name: str, *, now: datetime) -> RolloutResult:
    """``seqrun rollback NAME``: the sequence is paused and the leads beyond the canary never
    go (``seqrun promote`` undoes it)."""
    found = _rollout(store, name)
    with store.transaction() as conn:
        store.kv_put(ROLLOUT_NS, name, {**found, "stage": "rolled_back", "reason": "by hand",
                                        "decided_at": now.isoformat()}, conn=conn)
        store.set_sequence_paused(name, True, conn=conn)
        store.record_event("rollout", name, {"stage": "rolled_back", "trigger": "user"}, at=now,
                           trigger="user", conn=conn)
    return RolloutResult(name, "rolled_back")
