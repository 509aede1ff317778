"""engine.compile.machine: transition tables, revisions, the machine's shape, graphs."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.compile.graph import graph
from engine.compile.machine import (
    CompiledSequence,
    compile_schedule,
    compile_sequence,
    compile_workflow,
    revision_of,
)
from engine.errors import ManifestError, UsageError
from engine.manifest.lint import ROUTE_LABELS as _ROUTE_LABELS
from engine.manifest.loader import load
from engine.model import (
    ActionStep,
    BranchCase,
    BranchStep,
    EndStep,
    Metadata,
    Schedule,
    Sequence,
    Step,
    WaitForStep,
    WaitStep,
    Workflow,
    WorkflowNode,
)
from engine.vocab import TERMINALS
from tests._founders import P, founders_steps
from tests.conftest import SHARED_EXAMPLES

FOUNDERS: tuple[Step, ...] = founders_steps()
# state -> "trigger>dest ... | pausing labels | default labels" per case of table_cases(),
# captured from the compiler that still made every label a transition of the machine
EXPECTED_TABLES: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "compiler_tables.json").read_text(encoding="utf-8")
)


def seq(steps: tuple[Step, ...] = FOUNDERS, **kw: Any) -> Sequence:
    base: dict[str, Any] = {
        "metadata": Metadata("founders-outreach"),
        "provider": "edges",
        "identities": ("ident-alice",),
        "steps": steps,
        "on": {"reply": "replied", "AUTH_EXPIRED": "pause", "PROFILE_NOT_ACCESSIBLE": "removed"},
        "normalized": {"kind": "Sequence", "spec": {"provider": "edges", "steps": ["visit"]}},
    }
    base.update(kw)
    return Sequence(**base)


@pytest.mark.parametrize(
    ("state", "trigger", "dest"),
    [
        ("visit", "ok", "connect"),
        ("connect", "ok", "accepted"),
        ("connect", "ALREADY_CONNECTED", "intro"),
        ("connect", "INVITATION_PENDING", "accepted"),
        ("accepted", "accepted", "intro"),
        ("accepted", "timeout", "withdraw"),
        ("intro", "ok", "breather"),
        ("intro", "NOT_CONNECTED", "connect"),
        ("breather", "elapsed", "follow_up"),
        ("follow_up", "ok", "completed"),
        ("withdraw", "ok", "removed"),
        ("breather", "reply", "replied"),
        ("accepted", "reply", "replied"),
        ("intro", "PROFILE_NOT_ACCESSIBLE", "removed"),
        ("intro", "LIMIT_REACHED", "failed"),
        ("connect", "MESSAGING_NOT_ALLOWED", "failed"),
    ],
)
def test_founders_transition_table(state: str, trigger: str, dest: str) -> None:
    compiled = compile_sequence(seq())
    assert compiled.next_state(state, trigger) == dest
    assert trigger in compiled.triggers(state)
    # an explicit edge is a transition of the machine; a label that only follows the
    # sequence-wide routing resolves from the shared table and has none
    in_machine = [t.dest for t in compiled.machine.get_transitions(trigger, state)]
    if compiled.sequence_route(state, trigger) is None:
        assert in_machine == [dest]
    else:
        assert in_machine == [] and compiled.sequence_route(state, trigger) == dest


def test_pause_is_not_a_state() -> None:
    compiled = compile_sequence(seq())
    assert "pause" not in compiled.states
    assert compiled.sequence_routes["AUTH_EXPIRED"] == "pause"
    assert compiled.pauses("connect", "AUTH_EXPIRED")
    assert not compiled.pauses("connect", "LIMIT_REACHED")
    with pytest.raises(KeyError):
        compiled.next_state("connect", "AUTH_EXPIRED")


def test_defaults_apply_without_sequence_routes() -> None:
    compiled = compile_sequence(seq(on={}))
    assert compiled.next_state("visit", "reply") == "replied"
    assert compiled.next_state("visit", "PROFILE_NOT_ACCESSIBLE") == "removed"
    assert compiled.pauses("visit", "AUTH_EXPIRED")  # AUTH_EXPIRED: pause is a default
    assert compiled.is_default("visit", "SERVER_ERROR")
    assert not compiled.is_default("connect", "ALREADY_CONNECTED")


def test_step_route_beats_sequence_route() -> None:
    steps = (
        ActionStep("a", "visit_profile", on={"reply": "b", "AUTH_EXPIRED": "stopped"}, path=P(0)),
        ActionStep("b", "visit_profile", path=P(1)),
    )
    compiled = compile_sequence(seq(steps, on={"reply": "removed"}))
    assert compiled.next_state("a", "reply") == "b"
    assert compiled.next_state("a", "AUTH_EXPIRED") == "stopped"
    assert compiled.next_state("b", "reply") == "removed"
    assert compiled.next_state("b", "ok") == "completed"


def test_states_initial_terminals_and_steps() -> None:
    compiled = compile_sequence(seq())
    assert compiled.states == tuple(s.id for s in FOUNDERS) + TERMINALS
    assert compiled.initial == "visit"
    assert compiled.machine.initial == "visit"
    assert compiled.step("connect") is FOUNDERS[1]
    assert compiled.step("replied") is None
    assert compiled.is_terminal("replied") and not compiled.is_terminal("intro")
    assert compiled.triggers("completed") == []
    assert compiled.triggers("breather") == ["elapsed", "ok", "reply"]
    with pytest.raises(KeyError):
        compiled.step("nope")
    with pytest.raises(KeyError):
        compiled.next_state("completed", "ok")


def test_auto_transitions_off_no_model_no_callbacks() -> None:
    compiled = compile_sequence(seq())
    machine = compiled.machine
    assert not any(name.startswith("to_") for name in machine.events)
    assert machine.models == []  # enrollments are rows, not transitions models
    for state in machine.states.values():
        assert not state.on_enter and not state.on_exit
        with pytest.raises(AttributeError):
            state.add_callback("enter", "os.system")
    for event in machine.events.values():
        for transitions in event.transitions.values():
            for t in transitions:
                assert not (t.before or t.after or t.prepare or t.conditions)


def test_branch_wait_for_reply_and_end() -> None:
    steps = (
        BranchStep(
            "route",
            (BranchCase("lead.company_name", "vip"), BranchCase("lead.timezone", "done")),
            path=P(0),
        ),
        WaitForStep("listen", "reply", timedelta(days=2), "completed", next="vip", path=P(1)),
        EndStep("vip", "stopped", path=P(2)),
        EndStep("done", "completed", path=P(3)),
    )
    compiled = compile_sequence(seq(steps))
    assert compiled.next_state("route", "case_0") == "vip"
    assert compiled.next_state("route", "case_1") == "done"
    assert compiled.next_state("route", "else") == "listen"  # falls through
    assert compiled.next_state("listen", "reply") == "vip"
    assert compiled.next_state("listen", "timeout") == "completed"
    assert compiled.next_state("vip", "ok") == "stopped"
    assert compiled.triggers("route") == ["case_0", "case_1", "else"]


def test_undefined_target_is_a_manifest_error() -> None:
    steps = (ActionStep("a", "visit_profile", next="nowhere", path=P(0)),)
    with pytest.raises(ManifestError) as info:
        compile_sequence(seq(steps))
    assert "undefined state 'nowhere'" in str(info.value)


def test_revision_is_stable_across_key_order_and_changes_with_content() -> None:
    a = seq(normalized={"spec": {"provider": "edges", "limits": {"visit": 1, "connect": 2}}})
    b = seq(normalized={"spec": {"limits": {"connect": 2, "visit": 1}, "provider": "edges"}})
    c = seq(normalized={"spec": {"limits": {"connect": 3, "visit": 1}, "provider": "edges"}})
    ra, rb, rc = (compile_sequence(s).revision for s in (a, b, c))
    assert ra == rb != rc
    assert len(ra) == 12 and int(ra, 16) >= 0


def test_revision_without_normalized_ignores_positions() -> None:
    a = seq(normalized={})
    b = dataclasses.replace(a, steps=tuple(dataclasses.replace(s, path="$") for s in a.steps))
    changed = dataclasses.replace(a, provider="linkedapi")
    assert revision_of(a) == revision_of(b) != revision_of(changed)


def workflow() -> Workflow:
    root = WorkflowNode(
        "st.openPersonPage",
        {"personUrl": "https://www.linkedin.com/in/ada"},
        then=(
            WorkflowNode("st.checkConnectionStatus", path="$.spec.steps.then[0]"),
            WorkflowNode("st.sendConnectionRequest", path="$.spec.steps.then[1]"),
        ),
        path="$.spec.steps",
    )
    return Workflow(
        Metadata("check-then-message"), "linkedapi", (root,), normalized={"kind": "Workflow"}
    )


def test_workflow_states_and_transitions() -> None:
    compiled = compile_workflow(workflow())
    assert compiled.states == ("pending", "running", "n0", "n0.0", "n0.1", "completed", "failed")
    assert compiled.initial == "pending"
    assert compiled.next_state("pending", "submit") == "running"
    assert compiled.next_state("running", "ok") == "completed"
    assert compiled.next_state("running", "error") == "failed"
    assert compiled.next_state("pending", "start") == "n0"
    assert compiled.next_state("n0", "ok") == "n0.0"
    assert compiled.next_state("n0.0", "ok") == "n0.1"
    assert compiled.next_state("n0.1", "ok") == "completed"
    assert compiled.next_state("n0.0", "error") == "failed"
    node = compiled.node("n0.1")
    assert node is not None and node.action == "st.sendConnectionRequest"
    assert compiled.node("pending") is None
    assert compiled.is_terminal("failed") and not compiled.is_terminal("running")


def test_workflow_array_roots() -> None:
    roots = (
        WorkflowNode("st.searchPeople", path="$.spec.steps[0]"),
        WorkflowNode("st.retrieveSSI", path="$.spec.steps[1]"),
    )
    compiled = compile_workflow(Workflow(Metadata("w"), "linkedapi", roots, root_is_list=True))
    assert compiled.next_state("n0", "ok") == "n1"
    assert compiled.next_state("n1", "ok") == "completed"


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_contains_every_state(fmt: str) -> None:
    for compiled in (compile_sequence(seq()), compile_workflow(workflow())):
        text = graph(compiled, fmt)
        for state in compiled.states:
            assert f'"{state}"' in text
        if fmt == "mermaid":
            assert text.startswith("stateDiagram-v2\n")
            assert "[*] --> " in text
        else:
            assert text.startswith("digraph ") and text.rstrip().endswith("}")


def test_mermaid_edges_are_labelled() -> None:
    text = graph(compile_sequence(seq()), "mermaid")
    assert "    connect --> intro : ALREADY_CONNECTED\n" in text
    assert "    accepted --> withdraw : timeout\n" in text
    assert "    visit --> failed : other errors\n" in text
    assert "    n0_0 --> n0_1 : ok\n" in graph(compile_workflow(workflow()), "mermaid")


def test_dot_marks_terminals() -> None:
    text = graph(compile_sequence(seq()), "dot")
    assert '"replied" [label="replied", shape=doublecircle];' in text
    assert '"connect" -> "intro" [label="ALREADY_CONNECTED"];' in text


def test_unknown_graph_format() -> None:
    with pytest.raises(UsageError):
        graph(compile_sequence(seq()), "svg")


def test_shared_examples_compile() -> None:
    manifests = load([SHARED_EXAMPLES])
    compiled = {m.name: compile_sequence(m) for m in manifests if isinstance(m, Sequence)}
    founders = compiled["founders-outreach"]
    assert founders.next_state("connect", "ALREADY_CONNECTED") == "intro"
    assert founders.next_state("accepted", "timeout") == "withdraw"
    assert founders.next_state("intro", "NOT_CONNECTED") == "connect"
    assert founders.next_state("follow_up", "ok") == "completed"
    again = load([SHARED_EXAMPLES / "founders-outreach.yaml"])[0]
    assert compile_sequence(again).revision == founders.revision


# ---- seqrun graph ----


def test_cli_graph_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("founders-outreach", "founders-on-linkedapi", "check-then-message", "inbox-sync"):
        assert main(["graph", str(SHARED_EXAMPLES), "--name", name]) == 0
        out = capsys.readouterr().out
        assert out.startswith("stateDiagram-v2\n") and f"%% {name} revision" in out


def test_cli_graph_dot_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(SHARED_EXAMPLES / "founders-outreach.yaml"), "--format", "dot"]) == 0
    assert '"connect" -> "intro" [label="ALREADY_CONNECTED"];' in capsys.readouterr().out
    assert main(["graph", str(SHARED_EXAMPLES), "--name", "founders-outreac"]) == 2
    assert "did you mean 'founders-outreach'" in capsys.readouterr().err
    assert main(["graph", str(SHARED_EXAMPLES / "inbox-sync.yaml")]) == 0
    assert "running --> blocked : LIMIT_REACHED" in capsys.readouterr().out
    assert main(["graph", str(SHARED_EXAMPLES), "--format", "svg"]) == 2


def test_callbacks_cannot_be_attached() -> None:
    machine = compile_sequence(seq()).machine
    transition = machine.get_transitions("ok", "visit")[0]
    with pytest.raises(AttributeError):
        transition.add_callback("before", "os.system")
    assert isinstance(transition.before, tuple) and not transition.conditions


def test_wait_for_only_takes_sequence_routes() -> None:
    compiled = compile_sequence(seq())
    assert compiled.triggers("accepted") == [
        "accepted",
        "timeout",
        "reply",
        "PROFILE_NOT_ACCESSIBLE",
    ]
    assert compiled.pauses("accepted", "AUTH_EXPIRED")


def test_lookup_table_is_the_machines_table_plus_shared_routes() -> None:
    steps = (*FOUNDERS[:6], BranchStep("b", (BranchCase("x", "visit"),), path=P(6)), FOUNDERS[6])
    cases = (seq(steps), seq(generated_steps(), on=table_cases()["generated-200-on"].on))
    for compiled in (*map(compile_sequence, cases), compile_workflow(workflow())):
        machine = compiled.machine
        pairs = {
            (src, trigger): [t.dest for t in transitions]
            for trigger, event in machine.events.items()
            for src, transitions in event.transitions.items()
            if transitions
        }
        explicit = {(src, trigger): [dest] for src, trigger, dest in compiled.machine_edges()}
        assert pairs == explicit
        # every transition is either the machine's or a sequence-wide route, never both
        shared: dict[tuple[str, str], str] = {}
        for src, trigger, dest in compiled.edges():
            if (src, trigger) not in explicit:
                shared[(src, trigger)] = dest
                assert compiled.sequence_route(src, trigger) == dest
            else:
                assert compiled.sequence_route(src, trigger) is None
        assert len(explicit) + len(shared) == sum(1 for _ in compiled.edges())
        if isinstance(compiled, CompiledSequence):
            assert shared and len(explicit) < len(shared)


def test_default_routes_are_not_machine_transitions() -> None:
    compiled = compile_sequence(seq(on={}))
    assert compiled.machine.get_transitions("SERVER_ERROR", "visit") == []
    assert compiled.machine.get_transitions("reply", "breather") == []
    assert compiled.next_state("visit", "SERVER_ERROR") == "failed"
    assert compiled.next_state("breather", "reply") == "replied"
    # step `on:` routes stay explicit edges of the machine
    assert [t.dest for t in compiled.machine.get_transitions("ALREADY_CONNECTED", "connect")] == [
        "intro"
    ]
    assert compiled.sequence_route("connect", "ALREADY_CONNECTED") is None
    # a 200-step machine holds about 2 transitions a step, not 9
    big = compile_sequence(seq(generated_steps(), on={}))
    held = sum(1 for _ in big.machine_edges())
    assert held < 3 * len(big.states) < sum(1 for _ in big.edges())
    with pytest.raises(KeyError):
        big.next_state("completed", "SERVER_ERROR")  # terminals have no triggers
    with pytest.raises(KeyError):
        big.next_state("s8", "SERVER_ERROR")  # an end step: only ok


def test_undefined_sequence_route_is_named_per_state() -> None:
    with pytest.raises(ManifestError) as info:
        compile_sequence(seq(on={"SERVER_ERROR": "gone"}))
    text = str(info.value)
    assert "$.spec.steps[0]: 'visit' --SERVER_ERROR--> undefined state 'gone'" in text
    assert "'withdraw' --SERVER_ERROR--> undefined state 'gone'" in text
    assert "'breather' --SERVER_ERROR" not in text  # a wait only takes reply


def test_schedule_run_lifecycle() -> None:
    sch = Schedule(
        Metadata("inbox-sync"), "edges", "linkedin-extract-messages", ("a",), cron="0 * * * *"
    )
    compiled = compile_schedule(sch)
    assert compiled.initial == "scheduled"
    assert compiled.next_state("running", "LIMIT_REACHED") == "blocked"
    assert compiled.next_state("blocked", "resume") == "scheduled"
    assert compiled.is_terminal("partial_succeeded")
    assert all(f'"{state}"' in graph(compiled, "dot") for state in compiled.states)


# ---- the transition table, pinned to the one captured before default routes left the machine ----


def generated_steps(n: int = 200) -> tuple[Step, ...]:
    """``n`` steps of every kind: actions with and without step ``on:`` (routes to steps, to
    terminals, to ``pause``, a label routed where the default goes anyway, an unknown label),
    waits, both ``wait_for`` events, branches of 1-3 cases with and without ``else``, ends."""
    overrides: tuple[dict[str, str], ...] = (
        {},
        {"NOT_CONNECTED": "s0"},
        {"AUTH_EXPIRED": "stopped", "reply": "s3"},
        {"LIMIT_REACHED": "pause", "SERVER_ERROR": "s1"},
        {"TIMEOUT": "failed", "PROFILE_NOT_ACCESSIBLE": "s2", "CUSTOM_LABEL": "s4"},
    )
    steps: list[Step] = []
    for k in range(n):
        sid, kind = f"s{k}", k % 9
        after = f"s{min(k + 3, n - 1)}"
        if kind in (0, 2, 5):
            on = overrides[(k // 9 + kind) % len(overrides)]
            nxt = after if k % 4 == 0 else None
            steps.append(ActionStep(sid, "send_message", on=dict(on), next=nxt, path=P(k)))
        elif kind == 1:
            steps.append(WaitStep(sid, timedelta(days=1), next=after if k % 2 else None, path=P(k)))
        elif kind == 3:
            event = "connection_accepted" if k % 2 else "reply"
            timeout_to = ("removed", "failed", f"s{k // 2}")[k % 3]
            steps.append(WaitForStep(sid, event, timedelta(days=3), timeout_to, path=P(k)))
        elif kind in (4, 6):
            goto = (f"s{(k * 7 + j) % n}" for j in range(k % 3 + 1))
            cases = tuple(BranchCase(f"lead.x == {j}", to) for j, to in enumerate(goto))
            steps.append(BranchStep(sid, cases, else_=after if k % 2 else None, path=P(k)))
        elif kind == 7:
            steps.append(ActionStep(sid, "visit_profile", path=P(k)))
        else:
            steps.append(EndStep(sid, TERMINALS[k % len(TERMINALS)], path=P(k)))
    return tuple(steps)


def table_cases() -> dict[str, Sequence]:
    """The sequences whose full transition table tests/compiler_tables.json holds."""
    gen = generated_steps()
    overrides = {
        "reply": "s7",
        "AUTH_EXPIRED": "stopped",
        "LIMIT_REACHED": "pause",
        "SERVER_ERROR": "s1",
        "PROFILE_NOT_ACCESSIBLE": "removed",
        "SEQ_LABEL": "completed",
    }
    return {
        "founders": seq(),
        "founders-defaults": seq(on={}),
        "generated-200": seq(gen, on={}),
        "generated-200-on": seq(gen, on=overrides),
        "shared-founders-outreach": _shared_founders(),
    }


def _shared_founders() -> Sequence:
    found = load([SHARED_EXAMPLES / "founders-outreach.yaml"])[0]
    assert isinstance(found, Sequence)
    return found


def table_of(compiled: Any) -> dict[str, str]:
    """Per state, one line: its triggers in order with their destinations
    (``trigger>dest ...``), then ``|`` the labels that pause, then ``|`` the default ones."""
    universe = sorted({*_ROUTE_LABELS, "ok", "elapsed", "accepted", "timeout", "else", "case_0"})
    out: dict[str, str] = {}
    for state in compiled.states:
        triggers = compiled.triggers(state)
        rows = " ".join(f"{t}>{compiled.next_state(state, t)}" for t in triggers)
        pauses = " ".join(label for label in universe if compiled.pauses(state, label))
        defaults = " ".join(t for t in triggers if compiled.is_default(state, t))
        out[state] = f"{rows} | {pauses} | {defaults}"
    return out


@pytest.mark.parametrize("name", list(EXPECTED_TABLES))
def test_transition_table_is_unchanged(name: str) -> None:
    """next_state, triggers, pauses and is_default give, for every state and trigger, what
    they gave when every label was a transition of the machine (captured then)."""
    compiled = compile_sequence(table_cases()[name])
    expected = EXPECTED_TABLES[name]
    assert table_of(compiled) == expected
    universe = {*_ROUTE_LABELS, "ok", "elapsed", "accepted", "timeout", "else", "bogus"}
    universe |= {f"case_{n}" for n in range(4)}
    for state, line in expected.items():
        listed = {row.split(">")[0] for row in line.split(" | ")[0].split()}
        for trigger in universe - listed:
            with pytest.raises(KeyError):
                compiled.next_state(state, trigger)
