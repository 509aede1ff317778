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
class Variant:
    """One named text of an A/B test on an action step: ``with_`` replaces the step's own
    ``with`` keys for the leads assigned to it; ``weight`` is its relative share."""

    name: str
    with_: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class Experiment:
    """A declared test between a step's variants (engine.views.experiments decides it)."""

    metric: str  # reply_rate | acceptance_rate
    min_sample: int = 100  # leads sent each variant before a winner may be called
    alpha: float = 0.05  # significance level of the two-proportion z-test
    auto_promote: bool = False  # once significant, only the winner is sent


@dataclass(frozen=True)
class ActionStep:
    id: str
    action: str  # a canonical action (engine.model.CANONICAL_ACTIONS)
    with_: Mapping[str, Any] = field(default_factory=dict)
    on: Mapping[str, str] = field(default_factory=dict)  # outcome label -> step id or terminal
    next: str | None = None
    path: str = "$"  # JSON path of this step in its manifest
    execution: str | None = None  # live | async (Edges); None: the sequence's
    variants: tuple[Variant, ...] = ()  # A/B texts; each lead gets one (engine.run.variants)
    experiment: Experiment | None = None

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


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


NOTICE_KINDS: tuple[str, ...] = ("auth_expired", "sequence_paused", "canary_held", "run_error")


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
    execution: str = "live"  # live | async (Edges run/async, results by callback or poll)
    notify: Notify | None = None
    # connectsafely only: `spec.sync.force`, the force flag of every conversation sync the
    # runner makes for this sequence's identities (None: not set, the adapter's default)
    sync_force: bool | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def is_async(self, step: ActionStep) -> bool:
        """Does ``step`` go through Edges ``run/async``? (check_connection never does: it
        only reads.)"""
        if step.action == "check_connection":
            return False
        return (step.execution or self.execution) == "async"


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
    # when its runs may go (a fan-out over a sequence without one: the sequence's)
    window: Window | None = None

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


# ---- SequenceTest (`seqrun test`) -------------------------------------------------------------


@dataclass(frozen=True)
class StepError:
    """A provider error scripted on a step: its action fails with ``error`` ``times`` times."""

    step: str
    error: str
    times: int = 1


@dataclass(frozen=True)
class CaseWorld:
    """How the simulated LinkedIn behaves for a case's lead (durations from the start of the
    case, or from the invitation / message they answer)."""

    accepts_after: timedelta | None = None  # None: never accepts
    replies_after: timedelta | None = None  # None: never replies
    already_connected: bool = False
    writes_first: timedelta | None = None
    inaccessible: bool = False
    auth_expired: timedelta | None = None
    auth_restored: timedelta | None = None
    errors: tuple[StepError, ...] = ()


@dataclass(frozen=True)
class SentExpectation:
    step: str
    text: str | None = None  # the exact text
    contains: str | None = None  # a part of it
    variant: str | None = None  # the A/B variant of the step the lead got


@dataclass(frozen=True)
class CaseExpectation:
    """What a case checks; None: not checked."""

    path: tuple[str, ...] | None = None
    terminal: str | None = None
    sent: tuple[SentExpectation, ...] | None = None
    within_window: bool = True
    within_limits: bool = True


@dataclass(frozen=True)
class SequenceCase:
    name: str
    lead: Mapping[str, str]
    world: CaseWorld
    expect: CaseExpectation
    until: timedelta
    path: str = "$"  # JSON path of this case in its manifest
    count: int = 1  # leads alike (the lead's URL numbered): each must meet the expectations
    # step -> the A/B variant its leads get (a `variant:<step>` lead column, engine.variants)
    variants: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SequenceTest:
    metadata: Metadata
    sequence: Path  # the Sequence manifest file, resolved against the test's directory
    cases: tuple[SequenceCase, ...]
    start: str | None = None  # ISO 8601: the virtual clock's start
    normalized: Mapping[str, Any] = field(default_factory=dict)
    source: SourceMap = field(default_factory=lambda: SourceMap("<memory>"))
    kind: Literal["SequenceTest"] = "SequenceTest"

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
    notify: Notify | None = None  # the organisation's notice target: every sequence's notices

    @property
    def name(self) -> str:
        return self.metadata.name

    def tier(self, identity: str) -> str:
        return self.tiers.get(identity, "classic")


Manifest = Sequence | Workflow | Schedule | SequenceTest | Policy
