"""The forecast of a simulation: day by day, what the run did and what it ran into.

Read back from the store a ``seqrun simulate`` run filled (its action log and its events), not
from a second model of the campaign: the per-day totals are what the run did. Per UTC day and
identity, the actions done by type against each limit (the lower of the sequence's and the
provider's smart limit), the day each limit first binds (a lead postponed by it, or the day's
count reaching it), the backlog at the end of each day (leads postponed by a limit, by the
window or otherwise, and leads in a wait step), the funnel by step and terminal, and when the
campaign finishes.

>>> report = forecast(store, now=clock.now())  # doctest: +SKIP
>>> report.days[0].total  # doctest: +SKIP
98
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from engine.manifest.loader import build
from engine.model import Sequence, SourceMap, WaitForStep, WaitStep
from engine.providers import REGISTRY
from engine.store import Store
from engine.store.rows import EventRow
from engine.vocab import TERMINALS

__all__ = ["DayLoad", "Forecast", "forecast"]

_LIMIT_REASON = re.compile(r"^(\w+) limit (\d+)/24h")


@dataclass(frozen=True)
class DayLoad:
    """One UTC day of the run."""

    day: date
    #: identity -> canonical action -> actions done that day
    actions: dict[str, dict[str, int]]
    #: leads waiting at the end of the day: postponed by a limit, by the window, otherwise,
    #: or in a wait / wait_for step
    backlog: dict[str, int]
    #: step or terminal -> leads there at the end of the day
    funnel: dict[str, int]

    @property
    def total(self) -> int:
        return sum(n for per in self.actions.values() for n in per.values())

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "total": self.total, "actions": self.actions,
                "backlog": self.backlog, "funnel": self.funnel}


@dataclass
class Forecast:
    start: date
    end: date
    days: list[DayLoad] = field(default_factory=list)
    #: identity -> canonical action -> limit per 24 h (the lower of the sequence's and the
    #: provider's; actions with neither are not listed)
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    #: identity -> action -> the first day the limit held a lead back (or was reached)
    binds: dict[str, dict[str, date]] = field(default_factory=dict)
    #: the steps of the applied sequences in order, then the terminals (the funnel's rows)
    states: list[str] = field(default_factory=list)
    leads: int = 0
    active: int = 0  # leads not at a terminal at the end of the run
    finish: date | None = None  # the day the last lead reached a terminal (all did)

    @property
    def series(self) -> list[str]:
        """Every (identity, action) with a limit or an action, as ``identity/action``."""
        keys = {f"{i}/{a}" for i, per in self.limits.items() for a in per}
        keys |= {f"{i}/{a}" for d in self.days for i, per in d.actions.items() for a in per}
        return sorted(keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(),
            "leads": self.leads, "active_at_end": self.active,
            "finish": self.finish.isoformat() if self.finish else None,
            "limits": self.limits, "states": self.states,
            "binds": {i: {a: d.isoformat() for a, d in per.items()}
                      for i, per in self.binds.items()},
            "days": [d.to_json() for d in self.days],
        }


def _day(at: datetime) -> date:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()


def _sequences(store: Store) -> dict[str, Sequence]:
    """Every applied revision's Sequence, by revision hash (the steps a lead can be at)."""
    out: dict[str, Sequence] = {}
    for row in store.list_sequences():
        for rev in store.revisions(row.name):
            if rev.kind != "Sequence":
                continue
            seq = build("Sequence", rev.manifest, SourceMap(f"<revision {rev.hash}>"),
                        validate=False)
            assert isinstance(seq, Sequence)
            out[rev.hash] = seq
    return out


def _limits(store: Store, seqs: Iterable[Sequence]) -> dict[str, dict[str, int]]:
    """identity -> action -> the lower of the sequence's and the provider's limit (as the
    runner holds leads back, engine.run.rules)."""
    providers = {row.name: row.provider for row in store.list_sequences()}
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for seq in seqs:
        spec = REGISTRY.get(providers.get(seq.name, seq.provider))
        smart = dict(spec.smart_limits) if spec is not None else {}
        for action in {*seq.limits, *smart}:
            values = [v for v in (seq.limits.get(action), smart.get(action)) if v is not None]
            for ident in seq.identities:
                current = out[ident].get(action)
                out[ident][action] = min([*values, *([current] if current else [])])
    return {i: dict(sorted(per.items())) for i, per in sorted(out.items())}


def forecast(store: Store, *, now: datetime) -> Forecast:
    """The day-by-day forecast of what the store's run did, up to ``now`` (the run's end)."""
    seqs = _sequences(store)
    enrollments = store.enrollments()
    identity_of = {e.id: e.identity for e in enrollments}
    waits = {h: {s.id for s in seq.steps if isinstance(s, WaitStep | WaitForStep)}
             for h, seq in seqs.items()}
    events = [e for e in store.events() if e.enrollment_id is not None]
    done = [a for a in store.actions() if a.status == "done"]
    moments = [e.at for e in events] + [a.finished_at or a.created_at for a in done]
    if not moments:
        today = _day(now)
        return Forecast(today, today, leads=len(enrollments))
    start, end = _day(min(moments)), max(_day(now), _day(max(moments)))
    report = Forecast(start, end, limits=_limits(store, {s.name: s for s in seqs.values()}
                                                  .values()), leads=len(enrollments))
    per_day: dict[date, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for a in done:
        per_day[_day(a.finished_at or a.created_at)][a.identity][a.action] += 1
    revision_of = {e.id: e.revision for e in enrollments}
    report.days = _replay(events, per_day, waits, revision_of, (start, end))
    report.states = _state_order(seqs.values(), report.days)
    _binds(report, events, identity_of)
    report.active = sum(1 for e in enrollments if e.state not in TERMINALS)
    if report.active == 0 and enrollments:
        ends = [e.at for e in events if e.to_state in TERMINALS]
        report.finish = _day(max(ends)) if ends else start
    return report


def _replay(events: list[EventRow], per_day: dict[date, dict[str, Counter[str]]],
            waits: dict[str, set[str]], revision_of: dict[int, str],
            span: tuple[date, date]) -> list[DayLoad]:
    """Walk the events in time order, closing a day at each midnight: where every lead is
    and why it waits."""
    ordered = sorted(events, key=lambda e: (e.at if e.at.tzinfo else e.at.replace(tzinfo=UTC),
                                            e.id))
    state: dict[int, tuple[str, str]] = {}  # enrollment -> (state, revision)
    held: dict[int, str] = {}  # enrollment -> why it waits to act (limit | window | other)
    days: list[DayLoad] = []
    start, end = span
    i, day = 0, start
    while day <= end:
        close = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        while i < len(ordered) and _aware(ordered[i].at) < close:
            _apply(ordered[i], state, held, revision_of)
            i += 1
        backlog: Counter[str] = Counter(held.values())
        backlog["wait_step"] = sum(1 for s, rev in state.values() if s in waits.get(rev, ()))
        funnel = Counter(s for s, _ in state.values())
        actions = {ident: dict(sorted(c.items())) for ident, c in sorted(per_day[day].items())}
        days.append(DayLoad(day, actions, {k: backlog[k] for k in
                                           ("limit", "window", "other", "wait_step")},
                            dict(sorted(funnel.items()))))
        day += timedelta(days=1)
    return days


def _state_order(seqs: Iterable[Sequence], days: list[DayLoad]) -> list[str]:
    seen: dict[str, None] = {}
    for seq in seqs:
        for step in seq.steps:
            seen.setdefault(step.id)
    for terminal in TERMINALS:
        seen.setdefault(terminal)
    reached = {s for d in days for s in d.funnel}
    return [s for s in seen if s in reached] + sorted(reached - set(seen))


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _why(data: Any) -> str:
    reason = str(data.get("reason", "")) if isinstance(data, dict) else ""
    return "limit" if " limit " in reason else "window" if "window" in reason else "other"


def _apply(ev: EventRow, state: dict[int, tuple[str, str]], held: dict[int, str],
           revision_of: dict[int, str]) -> None:
    assert ev.enrollment_id is not None
    eid = ev.enrollment_id
    if ev.kind == "postponed":
        held[eid] = _why(ev.data)
        return
    if ev.kind in ("enrolled", "transition", "migrated") and ev.to_state:
        state[eid] = (ev.to_state, ev.revision or revision_of.get(eid, ""))
        waiting = ev.data.get("waiting") if isinstance(ev.data, dict) else None
        if waiting:
            held[eid] = _why(waiting)
        else:
            held.pop(eid, None)


def _binds(report: Forecast, events: list[EventRow], identity_of: dict[int, str]) -> None:
    """The first day each limit held a lead back, else the first day its count reached it."""
    for ev in sorted(events, key=lambda e: _aware(e.at)):
        data = ev.data if ev.kind == "postponed" else (
            ev.data.get("waiting") if isinstance(ev.data, dict) else None)
        match = _LIMIT_REASON.match(str(data.get("reason", ""))) if isinstance(
            data, dict) else None
        ident = identity_of.get(ev.enrollment_id or -1)
        if match and ident:
            _bind(report, ident, match.group(1), _day(ev.at))
    for d in report.days:
        for ident, per in d.actions.items():
            for action, n in per.items():
                limit = report.limits.get(ident, {}).get(action)
                if limit is not None and n >= limit:
                    _bind(report, ident, action, d.day)


def _bind(report: Forecast, identity: str, action: str, day: date) -> None:
    per = report.binds.setdefault(identity, {})
    per[action] = min(day, per.get(action, day))
