"""Frozen domain objects, built by the loader after validation; nothing downstream reads dicts.

Every manifest carries a :class:`SourceMap` so lint and the compiler can point at
``file:line:col`` of any JSON path (``$.spec.steps[2].with.note``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Literal

from engine.errors import Problem


@dataclass(frozen=True)
class SourceMap:
    """Line/column (1-based) of every node of one YAML document, keyed by JSON path."""

    file: str
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: str) -> tuple[int, int]:
        """Position of ``path`` or of its nearest ancestor that has one."""
        probe = path
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            if cut <= 0:
                break
            probe = probe[:cut]
        return self.positions.get("$", (1, 1))

    def problem(
        self, path: str, message: str, severity: Literal["error", "warning"] = "error"
    ) -> Problem:
        line, col = self.locate(path)
        return Problem(self.file, line, col, path, message, severity)


@dataclass(frozen=True)
class Metadata:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


# ---- Sequence steps -------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionStep:
    id: str
    action: str  # a canonical action (engine.model.CANONICAL_ACTIONS)
    with_: Mapping[str, Any] = field(default_factory=dict)
    on: Mapping[str, str] = field(default_factory=dict)  # outcome label -> step id or terminal
    next: str | None = None
    path: str = "$"  # JSON path of this step in its manifest


@dataclass(frozen=True)
class WaitStep:
    id: str
    duration: timedelta
    next: str | None = None
    path: str = "$"


@dataclass(frozen=True)
class WaitForStep:
    id: str
    event: str  # engine.model.WAIT_EVENTS
    timeout: timedelta
    on_timeout: str
    next: str | None = None
    path: str = "$"


@dataclass(frozen=True)
class BranchCase:
    condition: str  # a Jinja2 expression over `lead`
    goto: str


@dataclass(frozen=True)
class BranchStep:
    id: str
    cases: tuple[BranchCase, ...]
    else_: str | None = None
    path: str = "$"


@dataclass(frozen=True)
class EndStep:
    id: str
    terminal: str
    path: str = "$"


Step = ActionStep | WaitStep | WaitForStep | BranchStep | EndStep


@dataclass(frozen=True)
class Window:
    timezone: str = "UTC"  # an IANA name or "lead"
    fallback_timezone: str = "UTC"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: time = time(0, 0)
    end: time = time(23, 59, 59)


@dataclass(frozen=True)
class LeadsSource:
    csv: Path | None = None  # resolved against the manifest's directory


@dataclass(frozen=True)
class Caps:
    """Brakes on one sequence (``caps:``; ``apply --max-enroll/--max-sends-per-day`` too)."""

    max_enroll: int | None = None  # enrollments in the sequence, in all
    max_sends_per_day: int | None = None  # connect + message + InMail, rolling 24 h


@dataclass(frozen=True)
class Rollout:
    """A canary: the first ``canary`` enrollments go; the rest wait ``hold``, then go when
    the canary's outcomes meet ``promote_if`` (else the sequence pauses with the reason)."""

    canary: int
    hold: timedelta
    failed_rate_below: float | None = None
    reply_rate_above: float | None = None


@dataclass(frozen=True)
class Sequence:
    metadata: Metadata
    provider: str
    identities: tuple[str, ...]
    steps: tuple[Step, ...]
    leads: LeadsSource = field(default_factory=LeadsSource)
    window: Window | None = None
    limits: Mapping[str, int] = field(default_factory=dict)  # canonical action -> per 24 h
    cooldown: timedelta | None = None
    on: Mapping[str, str] = field(default_factory=dict)  # sequence-wide routing
    migrate: Mapping[str, str] = field(default_factory=dict)  # old step id -> new step id
    api: str = "current"  # linkedapi only: current | account
    caps: Caps = field(default_factory=Caps)
    rollout: Rollout | None = None
    normalized: Mapping[str, Any] = field(default_factory=dict)  # for the revision hash
    source: SourceMap = field(default_factory=lambda: SourceMap("<memory>"))
    kind: Literal["Sequence"] = "Sequence"

    @property
    def name(self) -> str:
        return self.metadata.name

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


# ---- Workflow (LinkedAPI-style tree) ----------------------------------------------------------


@dataclass(frozen=True)
class WorkflowNode:
    action: str  # a LinkedAPI action type (st.openPersonPage) or a canonical action
    with_: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None
    then: tuple[WorkflowNode, ...] = ()
    then_is_list: bool = False  # `then: [..]` vs `then: {..}`: kept to emit the same JSON
    path: str = "$"


@dataclass(frozen=True)
class Workflow:
    metadata: Metadata
    provider: str
    root: tuple[WorkflowNode, ...]
    root_is_list: bool = False
    result_handling: str = "long"  # long | reslink | hook
    api: str = "current"  # current | account
    identities: tuple[str, ...] = ()
    webhook: str | None = None
    normalized: Mapping[str, Any] = field(default_factory=dict)
    source: SourceMap = field(default_factory=lambda: SourceMap("<memory>"))
    kind: Literal["Workflow"] = "Workflow"

    @property
    def name(self) -> str:
        return self.metadata.name


# ---- Schedule (Edges recurring runs) ----------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    on: str = "all"


@dataclass(frozen=True)
class Schedule:
    metadata: Metadata
    provider: str
    action: str  # an Edges action slug, e.g. linkedin-extract-messages
    identities: tuple[str, ...]
    cron: str | None = None  # None with mode == "async"
    timezone: str = "UTC"
    mode: str = "schedule"  # schedule | async
    schedule_at: str | None = None
    inputs: tuple[Mapping[str, Any], ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    callback: Callback | None = None
    normalized: Mapping[str, Any] = field(default_factory=dict)
    source: SourceMap = field(default_factory=lambda: SourceMap("<memory>"))
    kind: Literal["Schedule"] = "Schedule"

    @property
    def name(self) -> str:
        return self.metadata.name


# ---- Policy (organisation-wide guardrails) ---------------------------------------------------

TIERS: tuple[str, ...] = ("classic", "sales_navigator", "recruiter")


@dataclass(frozen=True)
class Policy:
    """Organisation-wide guardrails (one per repository): read by plan (who is skipped and
    why), lint (identity tiers) and the runner (budgets, quiet days, frequency caps)."""

    metadata: Metadata
    dnc_urls: frozenset[str] = frozenset()  # normalized profile URLs (entries and files)
    dnc_domains: frozenset[str] = frozenset()  # company domains (entries and files)
    one_voice: timedelta | None = None  # lookback; None: one lead one voice is off
    max_touches: int | None = None  # outreach actions per lead per `touch_window`
    touch_window: timedelta | None = None
    budgets: Mapping[str, int] = field(default_factory=dict)  # canonical action -> per 24 h
    quiet_days: frozenset[date] = frozenset()
    timezone: str = "UTC"
    tiers: Mapping[str, str] = field(default_factory=dict)  # identity -> TIERS
    normalized: Mapping[str, Any] = field(default_factory=dict)
    source: SourceMap = field(default_factory=lambda: SourceMap("<memory>"))
    kind: Literal["Policy"] = "Policy"

    @property
    def name(self) -> str:
        return self.metadata.name

    def tier(self, identity: str) -> str:
        return self.tiers.get(identity, "classic")


Manifest = Sequence | Workflow | Schedule | Policy
