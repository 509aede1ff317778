"""What the runner returns: one record a step, one result a tick, a summary over many ticks.

Nothing here prints; the CLI renders these (``to_json`` for machines)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

MAX_RECORDS = 1000  # StepRecords kept per TickResult (memory stays flat on huge ticks)


class StepRecord(NamedTuple):  # one a step: a NamedTuple is cheaper than a frozen dataclass
    """One thing that happened to one enrollment in a tick."""

    enrollment_id: int
    profile_url: str
    sequence: str
    from_state: str
    to_state: str | None  # None: postponed or paused in place
    trigger: str | None
    action: str | None = None
    label: str | None = None
    detail: str | None = None
    until: datetime | None = None


@dataclass
class TickResult:
    """What one tick did (the CLI renders it; nothing is printed here)."""

    at: datetime
    due: int = 0
    actions: int = 0  # provider actions that succeeded (delivered)
    transitions: int = 0
    postponed: int = 0
    failed: int = 0
    recovered: int = 0
    submitted: int = 0  # async runs submitted (`execution: async`)
    async_settled: int = 0  # async runs whose outcome was routed
    paused_identities: list[str] = field(default_factory=list)
    resumed_identities: list[str] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    killed: bool = False  # the kill switch (`pause --all`) is on
    errors: list[str] = field(default_factory=list)  # identities whose batch failed (logged)
    records_dropped: int = 0  # beyond MAX_RECORDS (the counters above stay exact)
    # providers that could not be reached: name -> {host, error} (filled by engine.runtime)
    unreachable: dict[str, dict[str, str]] = field(default_factory=dict)
    # identities this worker claimed from another worker (lease expired or released)
    taken_over: list[str] = field(default_factory=list)

    def record(self, rec: StepRecord) -> None:
        if len(self.records) < MAX_RECORDS:
            self.records.append(rec)
        else:
            self.records_dropped += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "due": self.due,
            "actions": self.actions,
            "transitions": self.transitions,
            "postponed": self.postponed,
            "failed": self.failed,
            "recovered": self.recovered,
            "paused_identities": self.paused_identities,
            "resumed_identities": self.resumed_identities,
            "kill_switch": self.killed,
            "errors": self.errors,
            "unreachable": self.unreachable,
            **_async_counts(self.submitted, self.async_settled),
            "taken_over": self.taken_over,
        }


@dataclass
class RunSummary:
    """Totals over many ticks (``run_until`` / ``run_forever``)."""

    started_at: datetime
    ended_at: datetime
    ticks: int = 0
    actions: int = 0
    transitions: int = 0
    postponed: int = 0
    failed: int = 0
    recovered: int = 0
    submitted: int = 0
    async_settled: int = 0
    paused_identities: list[str] = field(default_factory=list)
    resumed_identities: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreachable: dict[str, dict[str, str]] = field(default_factory=dict)  # as in TickResult
    taken_over: list[str] = field(default_factory=list)  # as in TickResult

    def add(self, tick: TickResult) -> None:
        self.ticks += 1
        self.actions += tick.actions
        self.transitions += tick.transitions
        self.postponed += tick.postponed
        self.failed += tick.failed
        self.recovered += tick.recovered
        self.submitted += tick.submitted
        self.async_settled += tick.async_settled
        self.paused_identities += tick.paused_identities
        self.resumed_identities += tick.resumed_identities
        self.errors += tick.errors
        self.taken_over += tick.taken_over
        self.ended_at = tick.at

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "ticks": self.ticks,
            "actions": self.actions,
            "transitions": self.transitions,
            "postponed": self.postponed,
            "failed": self.failed,
            "recovered": self.recovered,
            "paused_identities": self.paused_identities,
            "resumed_identities": self.resumed_identities,
            "errors": self.errors,
            "unreachable": self.unreachable,
            **_async_counts(self.submitted, self.async_settled),
            "taken_over": self.taken_over,
        }


def _async_counts(submitted: int, settled: int) -> dict[str, int]:
    """The async counters, shown once a run used ``execution: async`` (other runs' JSON is
    unchanged)."""
    if not submitted and not settled:
        return {}
    return {"async_submitted": submitted, "async_settled": settled}
