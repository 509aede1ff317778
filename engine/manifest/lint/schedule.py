"""Schedule rules a schema cannot express: the action's schedule support, cron, timezone,
``schedule_at``, ``max_results`` and ``sync_mode``."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from croniter import croniter

from engine.errors import Problem
from engine.manifest.explain import did_you_mean
from engine.manifest.lint.common import Report, all_timezones
from engine.model import Schedule
from engine.providers import REGISTRY

MAX_RESULTS_BOUNDS = (1, 100_000)
SYNC_MODES = ("full", "incremental")


@dataclass(frozen=True)
class ActionSupport:
    """What an Edges action allows on the schedule and async paths."""

    schedule: bool
    incremental: bool = False
    reason: str = ""


# Edges actions by slug. Outreach actions (message, connect, ...) are refused on a schedule:
# every iteration would resend the same inputs.
ACTIONS: Mapping[str, ActionSupport] = {
    "linkedin-extract-messages": ActionSupport(schedule=True, incremental=True),
    "linkedin-extract-connections": ActionSupport(schedule=True, incremental=True),
    "linkedin-extract-conversations": ActionSupport(schedule=True, incremental=True),
    "linkedin-search-people": ActionSupport(schedule=True),
    "linkedin-visit-profile": ActionSupport(schedule=True),
    "linkedin-extract-people": ActionSupport(schedule=True),
    "linkedin-extract-contact": ActionSupport(schedule=True),
    "linkedin-extract-sent-invitations": ActionSupport(schedule=True),
    "linkedin-extract-received-invitations": ActionSupport(schedule=True),
    "linkedin-me": ActionSupport(schedule=True),
    "linkedin-message-profile": ActionSupport(
        schedule=False, reason="an outreach action would resend the same message every iteration"
    ),
    "linkedin-connect-profile": ActionSupport(
        schedule=False, reason="an outreach action would resend the same invitation every iteration"
    ),
    "linkedin-inmail-profile": ActionSupport(
        schedule=False, reason="an outreach action would resend the same InMail every iteration"
    ),
    "linkedin-withdraw-invitation": ActionSupport(
        schedule=False, reason="an outreach action; run it from a Sequence"
    ),
    "linkedin-accept-invitation": ActionSupport(
        schedule=False, reason="an outreach action; run it from a Sequence"
    ),
}


def _parse_when(value: str, tz: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        try:
            when = when.replace(tzinfo=zoneinfo.ZoneInfo(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a dir
            when = when.replace(tzinfo=UTC)
    return when


def _iter_problems(schedule: Schedule, now: datetime) -> Iterator[Problem]:
    support = ACTIONS.get(schedule.action)
    yield from _provider_and_action(schedule, support)
    yield from _mode(schedule)
    yield from _timing(schedule, now)
    yield from _parameters(schedule, support)
    src = schedule.source
    if not schedule.identities:
        yield src.problem("$.spec.identities", "a schedule needs at least one identity")
    if schedule.callback is not None and not schedule.callback.url.startswith("https://"):
        yield src.problem("$.spec.callback.url", "Edges sends callbacks to HTTPS URLs only")


def _provider_and_action(schedule: Schedule, support: ActionSupport | None) -> Iterator[Problem]:
    src = schedule.source
    if schedule.provider != "edges":
        yield src.problem("$.spec.provider", "schedules run on Edges only (provider: edges)")
    if support is None:
        yield src.problem(
            "$.spec.action",
            f"unknown Edges action {schedule.action!r} for a schedule; known: "
            + ", ".join(sorted(a for a, s in ACTIONS.items() if s.schedule)),
        )
    elif not support.schedule:
        yield src.problem(
            "$.spec.action",
            f"{schedule.action} does not support schedule mode: {support.reason}",
        )


def _mode(schedule: Schedule) -> Iterator[Problem]:
    src = schedule.source
    if schedule.mode == "async":
        if schedule.cron is not None:
            yield src.problem("$.spec.cron", "mode: async takes no cron (runs are continued)")
        if schedule.parameters.get("sync_mode") != "incremental":
            yield src.problem(
                "$.spec.parameters.sync_mode",
                "mode: async continues runs, which needs sync_mode: incremental",
            )
    elif schedule.mode == "schedule":
        if schedule.cron is None and schedule.schedule_at is None:
            yield src.problem("$.spec.cron", "a schedule needs cron (or mode: async)")
        elif schedule.cron is not None and not croniter.is_valid(schedule.cron):
            yield src.problem("$.spec.cron", f"invalid cron expression {schedule.cron!r}")
    else:
        yield src.problem("$.spec.mode", f"unknown mode {schedule.mode!r} (schedule | async)")


def _timing(schedule: Schedule, now: datetime) -> Iterator[Problem]:
    src = schedule.source
    try:
        zoneinfo.ZoneInfo(schedule.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a dir
        yield src.problem("$.spec.timezone", f"unknown IANA timezone {schedule.timezone!r}")
    if schedule.schedule_at is not None:
        when = _parse_when(schedule.schedule_at, schedule.timezone)
        if when is None:
            yield src.problem(
                "$.spec.schedule_at", f"not an ISO 8601 date-time: {schedule.schedule_at!r}"
            )
        elif when <= now:
            yield src.problem(
                "$.spec.schedule_at", f"schedule_at {schedule.schedule_at} is in the past"
            )


def _parameters(schedule: Schedule, support: ActionSupport | None) -> Iterator[Problem]:
    src = schedule.source
    max_results = schedule.parameters.get("max_results")
    if max_results is not None:
        lo, hi = MAX_RESULTS_BOUNDS
        if isinstance(max_results, bool) or not isinstance(max_results, int):
            yield src.problem("$.spec.parameters.max_results", "max_results must be an integer")
        elif not lo <= max_results <= hi:
            yield src.problem(
                "$.spec.parameters.max_results", f"max_results must be between {lo} and {hi}"
            )
    sync_mode = schedule.parameters.get("sync_mode")
    if sync_mode is not None:
        if sync_mode not in SYNC_MODES:
            yield src.problem(
                "$.spec.parameters.sync_mode", f"sync_mode must be one of {', '.join(SYNC_MODES)}"
            )
        elif sync_mode == "incremental" and support is not None and not support.incremental:
            yield src.problem(
                "$.spec.parameters.sync_mode",
                f"{schedule.action} has no incremental mode (only "
                + ", ".join(sorted(a for a, s in ACTIONS.items() if s.incremental))
                + ")",
            )


def schedule_problems(schedule: Schedule, now: datetime) -> list[Problem]:
    """Semantic checks of one Schedule for lint (``now`` is an aware datetime)."""
    return list(_iter_problems(schedule, now))


def lint_schedule(sch: Schedule, report: Report) -> None:
    """The schedule rules, reported once, with did-you-mean hints on an unknown provider or
    timezone."""
    unknown_provider = sch.provider not in REGISTRY
    if unknown_provider:
        report(
            "$.spec.provider",
            f"unknown provider {sch.provider!r}{did_you_mean(sch.provider, REGISTRY)}",
        )
    for problem in schedule_problems(sch, now=datetime.now(UTC)):
        if problem.path == "$.spec.provider" and unknown_provider:
            continue  # the same fault, already reported with its hint
        if problem.path == "$.spec.timezone" and "did you mean" not in problem.message:
            hint = did_you_mean(sch.timezone, all_timezones())
            problem = replace(problem, message=problem.message + hint)
        report.problems.append(problem)
