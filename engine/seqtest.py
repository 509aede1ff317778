"""``seqrun test``: run SequenceTest manifests, each case on its own embedded sandbox.

A case enrolls one lead into the sequence under test, in a throwaway state directory, on a
world scripted for that lead (it accepts after 2 days, replies after 3, its profile is gone,
the identity's session expires...), plays simulated time as ``seqrun simulate`` does (the
same apply, the same runner, the same virtual clock) and compares what happened (read back
from the store and the sandbox's deliveries) with the case's expectations.

>>> report = run_tests(load(["sequences/"]))  # doctest: +SKIP
>>> report.failed  # doctest: +SKIP
0
"""

from __future__ import annotations

import csv
import difflib
import re
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.apply import sequences as sequence_apply
from engine.compile.machine import compile_sequence
from engine.errors import ManifestError, SeqrunError
from engine.model import (
    ActionStep,
    CaseExpectation,
    LeadsSource,
    Manifest,
    Sequence,
    SequenceCase,
    SequenceTest,
)
from engine.run.rules import window_opening
from engine.sandbox.world.model import Delivery
from engine.variants import FORCE_PREFIX

__all__ = ["CaseResult", "Check", "TestReport", "junit_xml", "run_tests"]

#: the virtual clock's default start (a Monday, as the sandbox's own default)
DEFAULT_START = "2026-01-05T08:00:00+00:00"
#: canonical action -> the world's op its provider call performs (scripted errors)
_WORLD_OPS: Mapping[str, str] = {
    "visit_profile": "visit", "connect": "connect", "send_message": "message",
    "send_inmail": "inmail", "withdraw_invitation": "withdraw", "follow": "follow",
}
#: what a lead receives: invitations (their note), messages, InMails
_SENT_KINDS = frozenset({"invite", "message", "inmail"})


@dataclass(frozen=True)
class Check:
    """One expectation of a case, met or not."""

    name: str  # path | terminal | sent | within_window | within_limits | setup
    ok: bool
    message: str = ""
    diff: tuple[str, ...] = ()  # expected vs actual, unified-diff lines


@dataclass
class CaseResult:
    test: str
    case: str
    where: str  # file:line of the case
    path: list[str] = field(default_factory=list)
    terminal: str | None = None
    sent: list[dict[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "case": self.case, "where": self.where,
                "passed": self.passed, "path": self.path, "terminal": self.terminal,
                "sent": self.sent,
                "failures": [{"check": c.name, "message": c.message, "diff": list(c.diff)}
                             for c in self.failures]}


@dataclass
class TestReport:
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if not c.passed)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.failed == 0, "passed": len(self.cases) - self.failed,
                "failed": self.failed, "cases": [c.to_json() for c in self.cases]}


def junit_xml(report: TestReport) -> str:
    """The report as JUnit XML (what CI systems read): a ``testsuite`` per SequenceTest, a
    ``testcase`` per case, a ``failure`` with every failed check and its diff."""
    import xml.etree.ElementTree as ET  # deferred: only --junit needs it

    root = ET.Element("testsuites", name="seqrun test", tests=str(len(report.cases)),
                      failures=str(report.failed))
    suites: dict[str, ET.Element] = {}
    for case in report.cases:
        suite = suites.get(case.test)
        if suite is None:
            suite = suites[case.test] = ET.SubElement(root, "testsuite", name=case.test)
        element = ET.SubElement(suite, "testcase", name=case.case, classname=case.test,
                                file=case.where.rsplit(":", 1)[0])
        if not case.passed:
            failure = ET.SubElement(element, "failure",
                                    message="; ".join(c.message for c in case.failures))
            failure.text = _failure_text(case)
    for name, suite in suites.items():
        cases = [c for c in report.cases if c.test == name]
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if not c.passed)))
        suite.set("errors", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _failure_text(case: CaseResult) -> str:
    lines = [f"{case.where}: {case.case}"]
    for c in case.failures:
        lines.append(f"{c.name}: {c.message}")
        lines.extend(c.diff)
    return "\n".join(lines)


# ---- running ---------------------------------------------------------------------------------


def run_tests(manifests: Iterable[Manifest]) -> TestReport:
    """Run every case of every SequenceTest in ``manifests`` (the other kinds are ignored)."""
    from engine.manifest.loader import load  # deferred: the loader loads this module's callers
    from engine.store.db import throwaway_store

    report = TestReport()
    with throwaway_store():  # a case never writes into $SEQRUN_DATABASE_URL
        for test in (m for m in manifests if isinstance(m, SequenceTest)):
            try:
                (seq,) = [m for m in load([test.sequence]) if isinstance(m, Sequence)][:1]
            except (ManifestError, ValueError) as exc:
                why = "; ".join(str(p) for p in getattr(exc, "problems", [])) or "no Sequence"
                report.cases.extend(_broken(test, f"{test.sequence}: {why}"))
                continue
            for case in test.cases:
                report.cases.append(_run_case(test, seq, case))
    return report


def _where(test: SequenceTest, case: SequenceCase) -> str:
    line, _ = test.source.locate(case.path)
    return f"{test.source.file}:{line}"


def _broken(test: SequenceTest, message: str) -> list[CaseResult]:
    return [CaseResult(test.name, c.name, _where(test, c), checks=[Check("setup", False, message)])
            for c in test.cases]


def _run_case(test: SequenceTest, seq: Sequence, case: SequenceCase) -> CaseResult:
    from engine import runtime  # deferred: the store, the sandbox and the runner

    result = CaseResult(test.name, case.name, _where(test, case))
    unknown = _unknown_steps(seq, case)
    if unknown:
        result.checks.append(Check("setup", False, unknown))
        return result
    with tempfile.TemporaryDirectory(prefix="seqrun-test-") as scratch:
        state_dir = Path(scratch)
        base = case.lead.get("linkedin_profile_url") or _lead_url(case.name)
        urls = [base] + [f"{base.rstrip('/')}-{i}" for i in range(2, case.count + 1)]
        leads = state_dir / "leads.csv"
        # a forced variant is a lead column the runner's assignment honours (engine.variants)
        forced = {FORCE_PREFIX + step: name for step, name in case.variants.items()}
        _write_leads(leads, [{**case.lead, **forced, "linkedin_profile_url": u} for u in urls])
        under_test = replace(seq, leads=LeadsSource(csv=leads))
        runtime.new_sandbox(state_dir, scenario=_scenario(test, seq, case, urls), seed=0)

        async def work(rt: runtime.Runtime) -> None:
            await sequence_apply.apply([under_test], store=rt.store, clock=rt.clock,
                                       approve=lambda _plan: True, client_for=rt.client_for)
            await runtime.drive(rt, runtime.RunOptions(until=case.until, virtual_clock=True),
                                [])
            assert rt.sandbox is not None
            _check(case, under_test, _observe(rt, under_test), rt.sandbox.world.delivered,
                   result)

        try:
            runtime.with_runtime(state_dir, work, sandbox=True, virtual_clock=True)
        except SeqrunError as exc:
            result.checks.append(Check("setup", False, f"the case could not run: {exc}"))
    return result


def _lead_url(case: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-")[:60] or "lead"
    return f"https://www.linkedin.com/in/seqrun-test-{slug}"


def _write_leads(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _unknown_steps(seq: Sequence, case: SequenceCase) -> str:
    """Why a case cannot run on ``seq`` (the loader checked the step names it uses)."""
    for err in case.world.errors:
        step = seq.step(err.step)
        if not isinstance(step, ActionStep) or step.action not in _WORLD_OPS:
            return f"step {err.step!r} calls no provider action an error can be scripted on"
    return ""


def _hours(span: timedelta | None) -> list[float] | None:
    return None if span is None else [span.total_seconds() / 3600] * 2


def _scenario(test: SequenceTest, seq: Sequence, case: SequenceCase,
              urls: list[str]) -> dict[str, Any]:
    """The sandbox scenario (schemas/scenario.json) of one case: its leads and its script."""
    w = case.world
    start = datetime.fromisoformat((test.start or DEFAULT_START).replace("Z", "+00:00"))
    profile: dict[str, Any] = {
        "accessible": not w.inaccessible,
        "accepts": w.accepts_after is not None, "replies": w.replies_after is not None,
        "already_connected_with": list(seq.identities) if w.already_connected else [],
        "writes_first_to": list(seq.identities) if w.writes_first is not None else [],
    }
    for key, column in (("first_name", "first_name"), ("full_name", "full_name"),
                        ("company", "company_name")):
        if case.lead.get(column):
            profile[key] = case.lead[column]
    behaviour: dict[str, Any] = {"auto_create_profiles": False}
    for key, span in (("accept_delay_hours", w.accepts_after),
                      ("reply_delay_hours", w.replies_after),
                      ("writes_first_delay_hours", w.writes_first)):
        if span is not None:
            behaviour[key] = _hours(span)
    faults: dict[str, Any] = {}
    if w.auth_expired is not None:
        faults["auth_expire_at"] = {i: (start + w.auth_expired).isoformat()
                                    for i in seq.identities}
        if w.auth_restored is not None:
            faults["reauth_at"] = {i: (start + w.auth_restored).isoformat()
                                   for i in seq.identities}
    scripted: dict[str, list[str]] = {}
    for err in w.errors:
        step = seq.step(err.step)
        assert isinstance(step, ActionStep)
        scripted.setdefault(_WORLD_OPS[step.action], []).extend([err.error] * err.times)
    if scripted:
        faults["scripted"] = scripted
    items = [{"url": url, **profile} for url in urls]
    return {"seed": 0, "start": start.isoformat(), "profiles": {"items": items},
            "behaviour": behaviour, "faults": faults}


# ---- what happened -----------------------------------------------------------------------------


@dataclass
class _Lead:
    """What happened to one lead of a case."""

    url: str
    path: list[str]
    terminal: str | None
    sent: list[dict[str, str]]


def _observe(rt: Any, seq: Sequence) -> list[_Lead]:
    """Each lead's path, terminal and sent texts, read back from the store."""
    store = rt.store
    terminals = set(compile_sequence(seq).terminals)
    enrollments = store.enrollments(sequence=seq.name)
    urls = {i: lead.profile_url
            for i, lead in store.leads_by_ids(e.lead_id for e in enrollments).items()}
    out = []
    for enr in enrollments:
        states: list[str] = []
        for ev in store.events(enrollment_id=enr.id):
            if ev.to_state and ev.kind in ("enrolled", "transition") and (
                    not states or states[-1] != ev.to_state):
                states.append(ev.to_state)
        sent = []
        for row in store.actions(enrollment_id=enr.id):
            said = row.response.get("sent") if isinstance(row.response, dict) else None
            if row.status == "done" and isinstance(said, dict):
                text = said.get("text") or said.get("note") or ""
                sent.append({"step": row.step, "action": row.action, "text": str(text),
                             "at": _iso(row.finished_at or row.created_at),
                             **({"variant": row.variant} if row.variant else {})})
        out.append(_Lead(urls.get(enr.lead_id, "?"), [s for s in states if s not in terminals],
                         enr.state if enr.state in terminals else None, sent))
    return out


def _iso(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


# ---- checks ------------------------------------------------------------------------------------


def _check(case: SequenceCase, seq: Sequence, leads: list[_Lead],
           delivered: Iterable[Delivery], result: CaseResult) -> None:
    """Every lead against the expectations (a case's leads are alike: each must meet them);
    the result shows the first lead that does not, else the first lead."""
    if not leads:
        result.checks.append(Check("setup", False, "no lead was enrolled"))
        return
    per_lead = [(lead, _lead_checks(case.expect, lead)) for lead in leads]
    lead, checks = next(((ld, c) for ld, c in per_lead if not all(x.ok for x in c)),
                        per_lead[0])
    result.path, result.terminal, result.sent = lead.path, lead.terminal, lead.sent
    if len(leads) > 1:
        failing = sum(1 for _, c in per_lead if not all(x.ok for x in c))
        who = f"{failing} of {len(leads)} leads, the first {lead.url}: "
        checks = [x if x.ok else replace(x, message=who + x.message) for x in checks]
    result.checks.extend(checks)
    ours = [d for d in delivered if d.kind in _SENT_KINDS]
    if case.expect.within_window and seq.window is not None:
        result.checks.append(_check_window(seq, case, ours))
    if case.expect.within_limits:
        result.checks.append(_check_limits(seq, delivered))


def _lead_checks(exp: CaseExpectation, lead: _Lead) -> list[Check]:
    checks = []
    if exp.path is not None and list(exp.path) != lead.path:
        diff = tuple(difflib.unified_diff(list(exp.path), lead.path, "expected path",
                                          "actual path", lineterm="", n=len(lead.path)))
        checks.append(Check("path", False, "the lead took another path", diff))
    elif exp.path is not None:
        checks.append(Check("path", True))
    if exp.terminal is not None:
        ok = exp.terminal == lead.terminal
        actual = lead.terminal or f"still at {lead.path[-1] if lead.path else '?'}"
        checks.append(Check("terminal", ok, "" if ok else
                            f"expected terminal {exp.terminal!r}, got {actual!r}"))
    if exp.sent is not None:
        checks.append(_check_sent(exp.sent, lead.sent))
    return checks


def _check_sent(expected: Iterable[Any], sent: list[dict[str, str]]) -> Check:
    want = list(expected)
    # a variant shows beside its step on both sides where the case expects one (and on an
    # unexpected text), so a wrong variant is a line of the diff
    shown = [w.variant is not None for w in want]
    lines = [f"{_sent_step(s.step, s.variant)}: "
             f"{s.text if s.text is not None else '…' + (s.contains or '') + '…'}"
             for s in want]
    got = [f"{_sent_step(s['step'], s.get('variant') if i >= len(want) or shown[i] else None)}"
           f": {s['text']}" for i, s in enumerate(sent)]
    ok = len(want) == len(sent) and all(
        w.step == s["step"] and (w.text is None or w.text == s["text"])
        and (w.contains is None or w.contains in s["text"])
        and (w.variant is None or w.variant == s.get("variant"))
        for w, s in zip(want, sent, strict=False))
    if ok:
        return Check("sent", True)
    diff = tuple(difflib.unified_diff(lines, got, "expected sent", "actual sent", lineterm="",
                                      n=max(len(lines), len(got))))
    return Check("sent", False, "other notes or messages were sent", diff)


def _sent_step(step: str, variant: str | None) -> str:
    return step if variant is None else f"{step} [variant {variant}]"


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
    return ZoneInfo("UTC")  # pragma: no cover


def _check_window(seq: Sequence, case: SequenceCase, ours: list[Delivery]) -> Check:
    window = seq.window
    assert window is not None
    name = case.lead.get("timezone") if window.timezone == "lead" else window.timezone
    zone = _zone(name, window.fallback_timezone)
    outside = [d for d in ours if window_opening(window, zone, d.at) is not None]
    if not outside:
        return Check("within_window", True)
    first = outside[0]
    return Check("within_window", False,
                 f"{len(outside)} sent outside the window, first a {first.kind} at "
                 f"{first.at.astimezone(zone).isoformat()} ({zone.key})")


_DELIVERY_ACTION = {"visit": "visit_profile", "invite": "connect", "message": "send_message",
                    "inmail": "send_inmail", "withdraw": "withdraw_invitation",
                    "follow": "follow"}


def _check_limits(seq: Sequence, delivered: Iterable[Delivery]) -> Check:
    """No identity did more of an action than the sequence's limit in any 24 h."""
    recent: dict[tuple[str, str], deque[datetime]] = {}
    for d in sorted(delivered, key=lambda d: d.at):
        action = _DELIVERY_ACTION.get(d.kind, d.kind)
        limit = seq.limits.get(action)
        if limit is None:
            continue
        times = recent.setdefault((d.identity, action), deque())
        while times and times[0] <= d.at - timedelta(days=1):
            times.popleft()
        times.append(d.at)
        if len(times) > limit:
            return Check("within_limits", False,
                         f"{d.identity} did {len(times)} {action} in 24 h up to "
                         f"{d.at.isoformat()} (limit {limit})")
    return Check("within_limits", True)
