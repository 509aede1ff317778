"""``seqrun leads list``: the enrolled leads, one row per enrollment (a lead in two sequences
shows twice), narrowed by sequence and state.

>>> [row.state for row in leads(store, sequence="founders")]  # doctest: +SKIP
['connect', 'replied']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.apply import META_NS
from engine.errors import UsageError
from engine.manifest.explain import did_you_mean
from engine.store import Store
from engine.views.status import NotFoundError
from engine.vocab import TERMINALS


@dataclass(frozen=True)
class LeadStatus:
    profile_url: str
    name: str  # full_name, else first and last name, else ""
    sequence: str
    identity: str
    state: str
    revision: str
    next_due_at: datetime | None
    paused: bool
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "profile_url": self.profile_url, "name": self.name, "sequence": self.sequence,
            "identity": self.identity, "state": self.state, "revision": self.revision,
            "next_due_at": None if self.next_due_at is None else self.next_due_at.isoformat(),
            "paused": self.paused, "last_error": self.last_error,
        }


def _name(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    full = str(data.get("full_name") or "").strip()
    return full or " ".join(str(data.get(k) or "").strip()
                            for k in ("first_name", "last_name")).strip()


def _check_states(store: Store, sequence: str | None, wanted: list[str]) -> None:
    """UsageError naming a state no applied sequence (or the one named) has: a typo would
    otherwise list nothing, as if no lead were there."""
    names = [sequence] if sequence is not None else [r.name for r in store.list_sequences()]
    known = set(TERMINALS)
    for name in names:
        meta = store.kv_get(META_NS, name) or {}
        known.update(str(step) for step in meta.get("steps") or [])
    for state in wanted:
        if state not in known:
            where = f"sequence {sequence!r}" if sequence is not None else "any applied sequence"
            raise UsageError(f"--state {state!r}: no such step or terminal in {where}"
                             f"{did_you_mean(state, sorted(known))}")


def leads(
    store: Store, *, sequence: str | None = None, states: Iterable[str] | None = None
) -> list[LeadStatus]:
    """The enrollments (with their lead's URL and name), by sequence then enrollment order.
    NotFoundError for a sequence never applied; UsageError for an empty state name."""
    wanted = None if states is None else [s.strip() for s in states]
    if wanted is not None and not all(wanted):
        raise UsageError("--state needs a step or terminal name")
    if sequence is not None and store.get_sequence(sequence) is None:
        raise NotFoundError(f"no applied sequence named {sequence!r}")
    if wanted:
        _check_states(store, sequence, wanted)
    return [
        LeadStatus(r["profile_url"], _name(r["data"]), r["sequence"], r["identity"], r["state"],
                   r["revision"], r["next_due_at"], r["paused"], r["last_error"])
        for r in store.lead_rows(sequence=sequence, states=wanted)
    ]
