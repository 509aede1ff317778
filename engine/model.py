"""Frozen domain objects, built by the loader after validation; nothing downstream reads dicts.

Every manifest carries a :class:`SourceMap` so lint and the compiler can point at
``file:line:col`` of any JSON path (``$.spec.steps[2].with.note``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
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


SEARCH_FILTERS: tuple[str, ...] = ("keywords", "title", "company", "location", "network")
NETWORK_DEGREES: tuple[str, ...] = ("1st", "2nd", "3rd")


@dataclass(frozen=True)
class PeopleSearch:
    """``leads: {search: ...}``: people found by the provider's search, imported as CSV rows
    are. One shape for every provider; which filters a provider applies is in its spec
    (``ProviderSpec.search_filters``, checked by lint)."""

    keywords: str | None = None
    title: str | None = None
    company: str | None = None
    location: str | None = None
    network: tuple[str, ...] = ()  # connection degrees: 1st | 2nd | 3rd
    max: int = 25
    identity: str | None = None  # who searches (default: the sequence's first identity)

    def filters(self) -> tuple[str, ...]:
        """The filters given (the names of SEARCH_FILTERS that are set)."""
        return tuple(f for f in SEARCH_FILTERS if getattr(self, f))


@dataclass(frozen=True)
class LeadsSource:
    csv: Path | None = None  # resolved against the manifest's directory
    search: PeopleSearch | None = None


NOTICE_KINDS: tuple[str, ...] = ("auth_expired", "sequence_paused", "run_error")


@dataclass(frozen=True)
class Notify:
    """Where a sequence's notices go: a webhook (``url``, the secret header's value read from
    the environment variable ``secret_env`` when sent) or a ``command`` (JSON on stdin)."""

    url: str | None = None
    secret_env: str | None = None
    header: str = "X-Seqrun-Secret"
    command: tuple[str, ...] = ()
    events: frozenset[str] = frozenset(NOTICE_KINDS)


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
    normalized: Mapping[str, Any] = field(default_factory=dict)  # for the revision hash
    source: SourceMap = field(default_factory=lambda: SourceMap("<memory>"))
    kind: Literal["Sequence"] = "Sequence"
    notify: Notify | None = None

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
class ForEach:
    """Where a fan-out Workflow's leads come from: a CSV, or an applied sequence's leads (at
    one of its steps or terminals when ``state`` is given)."""

    csv: Path | None = None
    sequence: str | None = None
    state: str | None = None


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
    # fan-out: one run per lead, `with` values rendered as templates over the lead's row
    for_each: ForEach | None = None

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


Manifest = Sequence | Workflow | Schedule
