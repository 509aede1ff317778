"""The Schedule plan: one row per schedule (create, unchanged, replace, delete), what it was
computed against, and what applying it did. Plans are saved as JSON (``-out FILE``) and read
back with :meth:`SchedulePlan.from_json`.

    >>> SchedulePlan(rows=(), live_fingerprint="0", names=(), uids=()).counts()
    {'create': 0, 'replace': 0, 'delete': 0, 'unchanged': 0}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import PlanError
from engine.providers.edges.schedule_config import FieldChange, redact

PLAN_FORMAT = "seqrun-schedule-plan/1"


RowAction = Literal["create", "unchanged", "replace", "delete"]


@dataclass(frozen=True)
class PlanRow:
    """One line of the plan. ``config`` is the desired config (create/replace)."""

    action: RowAction
    name: str
    old_uid: str | None = None
    config: Mapping[str, Any] | None = None
    fingerprint: str | None = None
    changes: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    drift: bool = False
    mode: str = "schedule"  # schedule (a live Edges schedule) | async (registered for the runner)

    def to_json(self, *, redacted: bool = False) -> dict[str, Any]:
        config: dict[str, Any] | None = None
        if self.config is not None:
            config = redact(self.config) if redacted else dict(self.config)
        return {
            "action": self.action,
            "name": self.name,
            "old_uid": self.old_uid,
            "config": config,
            "fingerprint": self.fingerprint,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes],
            "notes": list(self.notes),
            "drift": self.drift,
            "mode": self.mode,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanRow:
        action = data["action"]
        if action not in ("create", "unchanged", "replace", "delete"):
            raise PlanError(f"not a schedule plan: unknown row action {action!r}")
        return cls(
            action=action,
            name=str(data["name"]),
            old_uid=data.get("old_uid"),
            config=data.get("config"),
            fingerprint=data.get("fingerprint"),
            changes=tuple(
                FieldChange(c["field"], c.get("old"), c.get("new")) for c in data.get("changes", [])
            ),
            notes=tuple(data.get("notes", [])),
            drift=bool(data.get("drift", False)),
            mode=str(data.get("mode", "schedule")),
        )


@dataclass(frozen=True)
class SchedulePlan:
    """The diff between manifests and live schedules, and what it was computed against.

    ``live_fingerprint`` hashes the live state of every tracked schedule plus the local state
    and intents for ``names``; applying re-computes it and refuses a stale plan.
    """

    rows: tuple[PlanRow, ...]
    live_fingerprint: str
    names: tuple[str, ...]
    uids: tuple[str, ...]
    prune: bool = False
    created_at: str = ""

    @property
    def has_changes(self) -> bool:
        return any(r.action != "unchanged" for r in self.rows)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "replace": 0, "delete": 0, "unchanged": 0}
        for r in self.rows:
            out[r.action] += 1
        return out

    def to_json(self, *, redacted: bool = False) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_json` reads back. It contains callback header
        values (a saved plan must be able to recreate them): keep the file private. For display,
        ``redacted=True`` replaces them by digests (such a dict cannot be applied)."""
        return {
            "format": PLAN_FORMAT,
            "created_at": self.created_at,
            "prune": self.prune,
            "live_fingerprint": self.live_fingerprint,
            "names": list(self.names),
            "uids": list(self.uids),
            "summary": self.counts(),
            "has_changes": self.has_changes,
            "redacted": redacted,
            "rows": [r.to_json(redacted=redacted) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SchedulePlan:
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f"not a schedule plan (expected format {PLAN_FORMAT!r})")
        if data.get("redacted"):
            raise PlanError("this plan was saved redacted (for display); save it with -out")
        return cls(
            rows=tuple(PlanRow.from_json(r) for r in data["rows"]),
            live_fingerprint=str(data["live_fingerprint"]),
            names=tuple(data.get("names", [])),
            uids=tuple(data.get("uids", [])),
            prune=bool(data.get("prune", False)),
            created_at=str(data.get("created_at", "")),
        )


@dataclass
class ScheduleApplyResult:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)  # name -> scheduled_run_uid now
    steps: list[str] = field(default_factory=list)  # what was done, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "replaced": self.replaced,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "uids": self.uids,
            "steps": self.steps,
        }
