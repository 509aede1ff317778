"""engine.manifest.lint: one test (at least) per rule, on model objects built directly."""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Iterator
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Problem
from engine.manifest.lint import content, lint
from engine.model import (
    ActionStep,
    BranchCase,
    BranchStep,
    EndStep,
    LeadsSource,
    Metadata,
    Schedule,
    Sequence,
    SourceMap,
    Step,
    WaitForStep,
    WaitStep,
    Window,
    Workflow,
    WorkflowNode,
)
from tests._founders import P, founders_steps
from tests.conftest import SHARED_EXAMPLES

SHARED_LEADS = SHARED_EXAMPLES / "leads.csv"


def seq(steps: tuple[Step, ...] | None = None, **kw: Any) -> Sequence:
    base: dict[str, Any] = {
        "metadata": Metadata("founders"),
        "provider": "edges",
        "identities": ("ident-alice",),
        "steps": founders_steps() if steps is None else steps,
        "window": Window("lead", "Europe/Paris", start=time(9), end=time(18)),
        "limits": {"visit": 60, "connect": 20, "message": 40},
        "on": {"reply": "replied", "AUTH_EXPIRED": "pause", "PROFILE_NOT_ACCESSIBLE": "removed"},
        "source": SourceMap("founders.yaml", {"$": (1, 1), "$.spec.steps[1].next": (30, 13)}),
    }
    base.update(kw)
    return Sequence(**base)


def errors(problems: list[Problem]) -> list[str]:
    return [f"{p.path}: {p.message}" for p in problems if p.severity == "error"]


def warnings(problems: list[Problem]) -> list[str]:
    return [f"{p.path}: {p.message}" for p in problems if p.severity == "warning"]


def replace_step(s: Sequence, i: int, **changes: Any) -> Sequence:
    steps = list(s.steps)
    steps[i] = dataclasses.replace(steps[i], **changes)
    return dataclasses.replace(s, steps=tuple(steps))


@pytest.fixture
def fake_templates(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in for engine.manifest.templates honouring its contract (variables/check, and
    the branch-condition pair check_expression/expression_variables over the same)."""
    mod = types.ModuleType("engine.manifest.templates")

    def variables(text: str) -> set[str]:
        return set(re.findall(r"lead\.([a-z_]+)", text))

    def check(text: str) -> list[str]:
        out = []
        if "__" in text:
            out.append("access to '__' attributes is not allowed")
        if text.count("{") != text.count("}"):
            out.append("unbalanced spintax braces")
        return out

    mod.variables = variables  # type: ignore[attr-defined]
    mod.check = check  # type: ignore[attr-defined]
    mod.check_expression = lambda e: check("{{ " + e + " }}")  # type: ignore[attr-defined]
    mod.expression_variables = lambda e: variables("{{ " + e + " }}")  # type: ignore[attr-defined]
    monkeypatch.setattr(content, "templates", mod)
    yield mod


# ---- clean input ----


def test_founders_flow_is_clean(fake_templates: types.ModuleType) -> None:
    assert lint(seq(leads=LeadsSource(SHARED_LEADS))) == []


def test_problem_is_positioned_from_the_source_map() -> None:
    s = replace_step(seq(), 1, on={}, next="mesage")
    found = [p for p in lint(s) if p.path == "$.spec.steps[1].next"]
    assert [str(p) for p in found] == [
        "founders.yaml:30:13: $.spec.steps[1].next: undefined step 'mesage'"
    ]


# ---- references ----


def test_undefined_next_with_did_you_mean() -> None:
    s = replace_step(seq(), 0, next="conect")
    assert "$.spec.steps[0].next: undefined step 'conect' (did you mean 'connect'?)" in errors(
        lint(s)
    )


@pytest.mark.parametrize(
    ("index", "change", "path"),
    [
        (1, {"on": {"ALREADY_CONNECTED": "intr"}}, "$.spec.steps[1].on.ALREADY_CONNECTED"),
        (2, {"on_timeout": "withdrw"}, "$.spec.steps[2].on_timeout"),
        (6, {"next": "remved"}, "$.spec.steps[6].next"),
    ],
)
def test_undefined_targets_everywhere(index: int, change: dict[str, Any], path: str) -> None:
    found = [e for e in errors(lint(replace_step(seq(), index, **change))) if e.startswith(path)]
    assert len(found) == 1
    assert "undefined step" in found[0] and "did you mean" in found[0]


def test_branch_goto_and_else_are_checked() -> None:
    steps = (
        BranchStep(
            "b", (BranchCase("lead.company_name", "nowhere"),), else_="elsewhere", path=P(0)
        ),
        EndStep("done", "completed", path=P(1)),
    )
    found = errors(lint(seq(steps)))
    assert "$.spec.steps[0].branch[0].goto: undefined step 'nowhere'" in found
    assert "$.spec.steps[0].else: undefined step 'elsewhere'" in found


def test_sequence_routes_and_migrate_targets_are_checked() -> None:
    s = seq(on={"reply": "replyed"}, migrate={"old": "folow_up"})
    found = errors(lint(s))
    assert "$.spec.on.reply: undefined step 'replyed' (did you mean 'replied'?)" in found
    assert "$.spec.migrate.old: undefined step 'folow_up' (did you mean 'follow_up'?)" in found


def test_terminals_and_pause_are_valid_targets() -> None:
    s = replace_step(seq(), 1, on={"AUTH_EXPIRED": "pause", "NOT_PENDING": "stopped"})
    assert not [e for e in errors(lint(s)) if "undefined" in e]


def test_unknown_end_terminal() -> None:
    steps = (EndStep("done", "complete", path=P(0)),)
    assert errors(lint(seq(steps, limits={}))) == [
        "$.spec.steps[0].end: unknown terminal 'complete' (did you mean 'completed'?) "
        "(terminals: completed, replied, removed, failed, stopped)"
    ]


def test_unknown_route_label() -> None:
    s = replace_step(seq(), 1, on={"ALREADY_CONECTED": "intro"})
    assert any(
        "unknown outcome label 'ALREADY_CONECTED'" in e and "ALREADY_CONNECTED" in e
        for e in errors(lint(s))
    )


def test_duplicate_step_ids() -> None:
    s = replace_step(seq(), 4, id="intro")
    assert "$.spec.steps[4].id: duplicate step id 'intro' (first used at $.spec.steps[3])" in (
        errors(lint(s))
    )


def test_duplicate_ids_do_not_fake_a_cycle() -> None:
    steps = (
        ActionStep("visit", "visit_profile", path=P(0)),
        ActionStep("visit", "connect", path=P(1)),
    )
    assert errors(lint(seq(steps, limits={}))) == [
        "$.spec.steps[1].id: duplicate step id 'visit' (first used at $.spec.steps[0])"
    ]


def test_reserved_step_id() -> None:
    s = replace_step(seq(), 6, id="completed")
    assert any(
        e.startswith("$.spec.steps[6].id: step id 'completed' is reserved") for e in errors(lint(s))
    )


# ---- graph rules ----


def test_unreachable_step() -> None:
    s = replace_step(seq(), 5, next="removed")  # withdraw then only reachable via on_timeout
    assert errors(lint(s)) == []
    steps = (*seq().steps, ActionStep("orphan", "visit_profile", path=P(7)))
    s = replace_step(seq(steps), 6, next="removed")
    assert errors(lint(s)) == [
        "$.spec.steps[7]: step 'orphan' is unreachable from the first step 'visit'"
    ]


def test_migrate_target_counts_as_reachable() -> None:
    steps = (
        ActionStep("visit", "visit_profile", next="completed", path=P(0)),
        ActionStep("legacy", "visit_profile", path=P(1)),
    )
    assert errors(lint(seq(steps, limits={}))) == [
        "$.spec.steps[1]: step 'legacy' is unreachable from the first step 'visit'"
    ]
    assert errors(lint(seq(steps, limits={}, migrate={"old": "legacy"}))) == []


def test_cycle_without_wait_is_an_error() -> None:
    steps = (
        ActionStep("a", "visit_profile", path=P(0)),
        BranchStep("b", (BranchCase("lead.company_name", "a"),), else_="c", path=P(1)),
        ActionStep("c", "visit_profile", next="a", path=P(2)),
    )
    assert errors(lint(seq(steps, limits={}))) == [
        "$.spec.steps[0]: cycle without a wait: a -> b -> a "
        "(put a wait or wait_for step on the loop)"
    ]


def test_self_loop_without_wait() -> None:
    steps = (ActionStep("a", "visit_profile", next="a", path=P(0)),)
    assert errors(lint(seq(steps, limits={}))) == [
        "$.spec.steps[0]: cycle without a wait: a -> a (put a wait or wait_for step on the loop)"
    ]


def test_cycle_through_a_wait_is_fine() -> None:
    steps = (
        ActionStep("a", "visit_profile", path=P(0)),
        WaitStep("pause-a-bit", timedelta(days=1), next="a", path=P(1)),
    )
    assert errors(lint(seq(steps, limits={}))) == []


def test_cycle_closed_by_an_error_route_is_allowed() -> None:
    # connect --ALREADY_CONNECTED--> intro --NOT_CONNECTED--> connect (the founders example)
    assert errors(lint(seq())) == []


def test_send_message_without_acceptance_gate() -> None:
    steps = (
        ActionStep("connect", "connect", path=P(0)),
        ActionStep("hello", "send_message", with_={"text": "hi"}, path=P(1)),
    )
    assert errors(lint(seq(steps, limits={}))) == [
        "$.spec.steps[1]: step 'hello' sends a message but is reachable without an acceptance "
        "gate (from step 'connect'): add a wait_for: connection_accepted, a check_connection step, "
        "or route ALREADY_CONNECTED to it"
    ]


def test_send_message_first_step_is_ungated() -> None:
    steps = (ActionStep("hello", "send_message", with_={"text": "hi"}, path=P(0)),)
    assert "(it is the first step)" in errors(lint(seq(steps, limits={})))[0]


def test_check_connection_is_a_gate() -> None:
    steps = (
        ActionStep("check", "check_connection", path=P(0)),
        ActionStep("hello", "send_message", with_={"text": "hi"}, path=P(1)),
    )
    assert errors(lint(seq(steps, limits={}))) == []


def test_check_connection_needs_a_not_connected_route() -> None:
    """A connected lead takes the ok path; without a NOT_CONNECTED route a lead who is not
    connected ends in `failed`, and an ALREADY_CONNECTED route on the check is never taken."""
    steps = (
        ActionStep("check", "check_connection", on={"ALREADY_CONNECTED": "hello"}, path=P(0)),
        ActionStep("connect", "connect", on={"ALREADY_CONNECTED": "hello"}, path=P(1)),
        WaitForStep("accepted", "connection_accepted", timedelta(days=7), "removed", path=P(2)),
        ActionStep("hello", "send_message", with_={"text": "hi"}, path=P(3)),
    )
    found = warnings(lint(seq(steps, limits={})))
    assert [f.split(":")[0] for f in found] == [
        "$.spec.steps[0].action", "$.spec.steps[0].on.ALREADY_CONNECTED"]
    assert "not connected has no route and ends in 'failed'" in found[0]
    assert "never taken" in found[1]
    routed = (
        ActionStep("check", "check_connection", next="hello",
                   on={"NOT_CONNECTED": "connect"}, path=P(0)),
        *steps[1:],
    )
    assert warnings(lint(seq(routed, limits={}))) == []
    # a sequence-wide route counts too
    everywhere = seq((dataclasses.replace(routed[0], on={}), *steps[1:]), limits={},
                     on={"NOT_CONNECTED": "connect"})
    assert warnings(lint(everywhere)) == []


def test_connect_needs_an_already_connected_route() -> None:
    steps = (
        ActionStep("connect", "connect", path=P(0)),
        WaitForStep("accepted", "connection_accepted", timedelta(days=7), "removed", path=P(1)),
        ActionStep("hello", "send_message", with_={"text": "hi"}, path=P(2)),
    )
    (found,) = warnings(lint(seq(steps, limits={})))
    assert found.startswith("$.spec.steps[0].action: in step 'connect': a lead who is already "
                            "connected has no route and ends in 'failed'")
    everywhere = seq(steps, limits={}, on={"ALREADY_CONNECTED": "hello"})
    assert warnings(lint(everywhere)) == []


def test_already_connected_route_is_a_gate_and_timeout_is_not() -> None:
    steps = (
        ActionStep("connect", "connect", on={"ALREADY_CONNECTED": "hello"}, path=P(0)),
        WaitForStep("accepted", "connection_accepted", timedelta(days=7), "nudge", path=P(1)),
        ActionStep("hello", "send_message", with_={"text": "hi"}, next="completed", path=P(2)),
        ActionStep("nudge", "send_message", with_={"text": "hi"}, path=P(3)),
    )
    found = errors(lint(seq(steps, limits={})))
    assert len(found) == 1
    assert found[0].startswith("$.spec.steps[3]: step 'nudge' sends a message") and (
        "from step 'accepted'" in found[0]
    )


def test_not_connected_route_clears_the_gate() -> None:
    steps = (
        ActionStep("check", "check_connection", path=P(0)),
        ActionStep(
            "hello",
            "send_message",
            with_={"text": "hi"},
            on={"NOT_CONNECTED": "retry"},
            next="completed",
            path=P(1),
        ),
        ActionStep("retry", "send_message", with_={"text": "hi again"}, path=P(2)),
    )
    found = errors(lint(seq(steps, limits={})))
    assert [f.split(":")[0] for f in found] == ["$.spec.steps[2]"]


def test_wait_for_without_timeout_does_not_crash() -> None:
    s = replace_step(seq(), 2, timeout=timedelta(0), on_timeout="")
    found = errors(lint(s))
    assert (
        "$.spec.steps[2].timeout: wait_for step 'accepted' needs a positive timeout "
        "(e.g. timeout: 14d)" in found
    )
    assert (
        "$.spec.steps[2].on_timeout: wait_for step 'accepted' needs on_timeout "
        "(the step or terminal to go to)" in found
    )


# ---- templates and leads ----


def test_template_variable_missing_from_csv(
    fake_templates: types.ModuleType, tmp_path: Path
) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url,first_name,title\nhttps://x,Ada,CEO\n")
    s = replace_step(seq(leads=LeadsSource(csv)), 1, with_={"note": "Hi {{ lead.titel }}"})
    assert errors(lint(s)) == [
        "$.spec.steps[1].with.note: in step 'connect': lead.titel is not a column of leads.csv "
        "(did you mean 'title'?)"
    ]


def test_defaulted_variable_is_a_warning(fake_templates: types.ModuleType, tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url\n")
    s = replace_step(
        seq(leads=LeadsSource(csv)), 1, with_={"note": "Hi {{ lead.nickname | default('there') }}"}
    )
    assert errors(lint(s)) == []
    assert warnings(lint(s)) == [
        "$.spec.steps[1].with.note: in step 'connect': lead.nickname is not a column of "
        "leads.csv; it always renders its default"
    ]


def test_builtin_fields_need_no_column(fake_templates: types.ModuleType, tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url\n")
    s = replace_step(
        seq(leads=LeadsSource(csv)),
        1,
        with_={"note": "{{ lead.first_name }} {{ lead.last_name }} {{ lead.timezone }}"},
    )
    assert errors(lint(s)) == []


def test_missing_csv_file(tmp_path: Path) -> None:
    source = SourceMap(str(tmp_path / "seq.yaml"))
    s = seq(leads=LeadsSource(tmp_path / "data" / "nope.csv"), source=source)
    assert errors(lint(s)) == ["$.spec.leads.csv: leads file 'data/nope.csv' does not exist"]


def test_csv_without_profile_url_column(tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_url,name\n")
    assert errors(lint(seq(leads=LeadsSource(csv)))) == [
        "$.spec.leads.csv: leads file 'leads.csv' has no linkedin_profile_url column "
        "(did you mean 'linkedin_url'?) (columns may be separated by a comma, a semicolon, a "
        "tab or a pipe)"
    ]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_exported_with_another_delimiter_is_read(
    fake_templates: types.ModuleType, tmp_path: Path, delimiter: str
) -> None:
    """An Excel export in a comma-decimal locale is semicolon-separated: the header is
    sniffed, not reported as one column named 'first_name;linkedin_profile_url'."""
    csv = tmp_path / "leads.csv"
    csv.write_text(delimiter.join(["first_name", "linkedin_profile_url", "plan"]) + "\n")
    s = replace_step(seq(leads=LeadsSource(csv)), 1, with_={"note": "Hi {{ lead.plan }}"})
    assert errors(lint(s)) == [] and warnings(lint(s)) == []


def test_template_errors_are_reported_at_the_field(fake_templates: types.ModuleType) -> None:
    s = replace_step(seq(), 3, with_={"text": "{{ lead.__class__ }} {a|b"})
    found = [e for e in errors(lint(s)) if e.startswith("$.spec.steps[3].with.text")]
    assert found == [
        "$.spec.steps[3].with.text: in step 'intro': access to '__' attributes is not allowed",
        "$.spec.steps[3].with.text: in step 'intro': unbalanced spintax braces",
    ]


def test_real_templates_module_when_present(tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url,first_name\n")
    s = replace_step(seq(leads=LeadsSource(csv)), 1, with_={"note": "Hi {{ lead.titel }}"})
    assert any("lead.titel is not a column of leads.csv" in e for e in errors(lint(s)))


# ---- provider rules ----


def test_connection_note_too_long() -> None:
    s = replace_step(seq(), 1, with_={"note": "x" * 301 + "{{ lead.first_name }}"})
    assert (
        "$.spec.steps[1].with.note: in step 'connect': connection note is 301 characters "
        "(template variables not counted), over the 300 that edges accepts" in errors(lint(s))
    )


def test_spintax_counts_its_shortest_alternative() -> None:
    s = replace_step(seq(), 1, with_={"note": "x" * 295 + "{ab|abcdefghijkl}"})
    assert errors(lint(s)) == []


def test_message_too_long_names_the_provider() -> None:
    s = replace_step(seq(provider="linkedapi", limits={}), 3, with_={"text": "y" * 1901})
    assert (
        "$.spec.steps[3].with.text: in step 'intro': message is 1901 characters "
        "(template variables not counted), over the 1900 that linkedapi accepts" in errors(lint(s))
    )
    s = replace_step(seq(), 3, with_={"text": "y" * 1901})
    assert errors(lint(s)) == []


def test_limits_above_smart_limits() -> None:
    s = seq(limits={"visit": 81, "connect": 25, "send_message": 51})
    assert sorted(errors(lint(s))) == [
        "$.spec.limits.send_message: limit send_message: 51 per 24 h is above the edges smart "
        "limit of 50 for send_message",
        "$.spec.limits.visit: limit visit: 81 per 24 h is above the edges smart limit of 80 "
        "for visit_profile",
    ]


def test_limit_path_follows_the_alias_in_the_file() -> None:
    source = SourceMap("f.yaml", {"$.spec.limits.connect": (20, 5), "$.spec.limits.visit": (19, 5)})
    s = seq(provider="linkedapi", limits={"visit_profile": 81}, source=source)
    found = [p for p in lint(s) if "smart limit" in p.message]
    assert [(p.path, p.line) for p in found] == [("$.spec.limits.visit", 19)]


def test_action_the_provider_cannot_do_lists_alternatives() -> None:
    s = replace_step(seq(limits={}), 0, action="follow")
    assert errors(lint(s)) == [
        "$.spec.steps[0].action: in step 'visit': provider 'edges' cannot follow "
        "(providers that can: connectsafely)"
    ]


def test_inmail_on_linkedapi() -> None:
    s = replace_step(seq(provider="linkedapi", limits={}), 0, action="send_inmail")
    assert errors(lint(s)) == [
        "$.spec.steps[0].action: in step 'visit': provider 'linkedapi' cannot send_inmail "
        "(providers that can: connectsafely, edges)"
    ]


def test_unknown_timezones_and_hours() -> None:
    s = seq(window=Window("Europe/Pariss", "Mars/Olympus", start=time(18), end=time(9)))
    found = errors(lint(s))
    assert (
        "$.spec.window.timezone: unknown IANA timezone 'Europe/Pariss' "
        "(did you mean 'Europe/Paris'?)" in found
    )
    assert any(
        e.startswith("$.spec.window.fallback_timezone: unknown IANA timezone 'Mars/Olympus'")
        for e in found
    )
    assert "$.spec.window.hours: hours start 18:00 is not before end 09:00" in found


# ---- style warnings ----


def test_style_warnings_do_not_count_as_errors() -> None:
    s = replace_step(seq(on={"reply": "completed"}), 6, id="Withdraw_Now")
    s = replace_step(s, 2, on_timeout="Withdraw_Now")
    assert errors(lint(s)) == []
    assert sorted(warnings(lint(s))) == [
        "$.spec.on.reply: replies end in 'completed'; 'replied' keeps them visible as replies "
        "in status",
        "$.spec.steps[6].id: step id 'Withdraw_Now' is not DNS-label style (lowercase letters, "
        "digits, '-', '_')",
    ]


# ---- Schedule ----


def schedule(**kw: Any) -> Schedule:
    base: dict[str, Any] = {
        "metadata": Metadata("inbox-sync"),
        "provider": "edges",
        "action": "linkedin-extract-messages",
        "identities": ("ident-alice",),
        "cron": "0 8-18/2 * * 1-5",
        "timezone": "Europe/Paris",
        "parameters": {"sync_mode": "incremental"},
    }
    base.update(kw)
    return Schedule(**base)


def test_schedule_clean() -> None:
    assert lint(schedule()) == []


def test_schedule_rules() -> None:
    found = errors(
        lint(
            schedule(
                cron="0 25 * * *",
                timezone="Europe/Pari",
                action="linkedin-visit-profile",
                schedule_at="next tuesday",
            )
        )
    )
    assert found == [
        "$.spec.cron: invalid cron expression '0 25 * * *'",
        "$.spec.timezone: unknown IANA timezone 'Europe/Pari' (did you mean 'Europe/Paris'?)",
        "$.spec.schedule_at: not an ISO 8601 date-time: 'next tuesday'",
        "$.spec.parameters.sync_mode: linkedin-visit-profile has no incremental mode (only "
        "linkedin-extract-connections, linkedin-extract-conversations, linkedin-extract-messages)",
    ]


def test_schedule_problems_are_reported_once() -> None:
    """engine.apply.schedules owns the rules: each schedule problem comes once, from there."""
    found = errors(lint(schedule(cron="not a cron", timezone="Mars/Base", provider="edgs")))
    assert sorted(found) == [
        "$.spec.cron: invalid cron expression 'not a cron'",
        "$.spec.provider: unknown provider 'edgs' (did you mean 'edges'?)",
        "$.spec.timezone: unknown IANA timezone 'Mars/Base'",
    ]


def test_schedule_on_a_provider_other_than_edges() -> None:
    assert errors(lint(schedule(provider="linkedapi"))) == [
        "$.spec.provider: schedules run on Edges only (provider: edges)"
    ]


def test_schedule_at_in_the_past() -> None:
    found = errors(lint(schedule(mode="async", cron=None, schedule_at="2001-01-01T09:00:00Z")))
    assert found == ["$.spec.schedule_at: schedule_at 2001-01-01T09:00:00Z is in the past"]


def test_schedule_at_accepts_z_suffix() -> None:
    assert lint(schedule(mode="async", cron=None, schedule_at="2099-01-05T09:00:00Z")) == []


# ---- Workflow ----


def workflow(root: tuple[WorkflowNode, ...], provider: str = "linkedapi") -> Workflow:
    return Workflow(Metadata("wf"), provider, root)


def test_workflow_clean() -> None:
    root = WorkflowNode(
        "st.openPersonPage",
        {"personUrl": "https://www.linkedin.com/in/ada", "basicInfo": True},
        then=(
            WorkflowNode("st.checkConnectionStatus", path="$.spec.steps.then[0]"),
            WorkflowNode(
                "st.sendConnectionRequest", {"note": "Hello"}, path="$.spec.steps.then[1]"
            ),
        ),
        path="$.spec.steps",
    )
    assert lint(workflow((root,))) == []


def test_workflow_rules() -> None:
    root = WorkflowNode(
        "st.openPersonPage",
        {},
        then=(
            WorkflowNode("st.sendMesage", path="$.spec.steps.then[0]"),
            WorkflowNode(
                "st.sendMessage",
                {"personUrl": "u", "text": "z" * 1901},
                path="$.spec.steps.then[1]",
            ),
            WorkflowNode(
                "st.sendConnectionRequest", {"note": "n" * 301}, path="$.spec.steps.then[2]"
            ),
        ),
        path="$.spec.steps",
    )
    assert errors(lint(workflow((root,)))) == [
        "$.spec.steps.with: 'st.openPersonPage' at the root of a workflow needs with.personUrl",
        "$.spec.steps.then[0].action: unknown LinkedAPI action type 'st.sendMesage' "
        "(did you mean 'st.sendMessage'?)",
        "$.spec.steps.then[1].with.personUrl: personUrl is only allowed on a root action; "
        "'st.sendMessage' acts on the person its parent opened",
        "$.spec.steps.then[1].with.text: message is 1901 characters, over the 1900 that "
        "linkedapi accepts",
        "$.spec.steps.then[2].with.note: connection note is 301 characters, over the 300 that "
        "linkedapi accepts",
    ]


def test_workflow_array_roots_each_need_person_url() -> None:
    roots = (
        WorkflowNode("st.searchPeople", {"term": "founder"}, path="$.spec.steps[0]"),
        WorkflowNode("check_connection", {}, path="$.spec.steps[1]"),
    )
    assert errors(lint(workflow(roots))) == [
        "$.spec.steps[1].with: 'check_connection' at the root of a workflow needs with.personUrl"
    ]


def test_workflow_on_other_provider_needs_canonical_actions() -> None:
    roots = (
        WorkflowNode("st.openPersonPage", {"personUrl": "u"}, path="$.spec.steps[0]"),
        WorkflowNode("follow", path="$.spec.steps[1]"),
        WorkflowNode("visit_profile", path="$.spec.steps[2]"),
    )
    found = errors(lint(workflow(roots, provider="edges")))
    assert len(found) == 2
    assert found[0].startswith(
        "$.spec.steps[0].action: 'st.openPersonPage' is a LinkedAPI action type"
    )
    assert found[1] == (
        "$.spec.steps[1].action: provider 'edges' cannot follow (providers that can: connectsafely)"
    )


def test_branch_conditions_with_real_templates(tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url,seniority\n")
    steps = (
        BranchStep(
            "route",
            (
                BranchCase("lead.seniority == 'cxo'", "done"),
                BranchCase("lead.senority == 'vp'", "done"),
                BranchCase("lead.__class__", "done"),
            ),
            path=P(0),
        ),
        EndStep("done", "completed", path=P(1)),
    )
    problems = lint(seq(steps, limits={}, leads=LeadsSource(csv)))
    assert warnings(problems) == [
        "$.spec.steps[0].branch[1].if: in step 'route': lead.senority is not a column of "
        "leads.csv; the condition is always false (did you mean 'seniority'?)"
    ]
    found = errors(problems)
    assert len(found) == 1 and found[0].startswith("$.spec.steps[0].branch[2].if: in step 'route'")
    assert "__class__" in found[0]


def test_real_template_errors() -> None:
    s = replace_step(seq(), 3, with_={"text": "{{ lead.first_name "})
    found = [e for e in errors(lint(s)) if e.startswith("$.spec.steps[3].with.text")]
    assert len(found) == 1 and "syntax" in found[0]


def test_reply_route_opens_the_gate() -> None:
    steps = (
        ActionStep("visit", "visit_profile", next="completed", path=P(0)),
        ActionStep("answer", "send_message", with_={"text": "Thanks for writing"}, path=P(1)),
    )
    assert errors(lint(seq(steps, limits={}, on={"reply": "answer"}))) == []
