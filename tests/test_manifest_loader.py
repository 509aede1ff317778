"""engine.manifest.loader: files and directories in, frozen manifests or positioned problems out."""

from __future__ import annotations

import textwrap
from datetime import time, timedelta
from pathlib import Path

import pytest

from engine.errors import ManifestError, Problem
from engine.manifest import loader
from engine.manifest.loader import load, load_with_warnings, parse_duration, parse_hours
from engine.model import (
    ActionStep,
    BranchStep,
    EndStep,
    Schedule,
    Sequence,
    SourceMap,
    WaitForStep,
    WaitStep,
    Workflow,
)

SEQUENCE = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: {name}
spec:
  provider: edges
  identities: [ident-a]
  leads:
    csv: leads/people.csv
  window:
    timezone: lead
    days: [mon, wed]
    hours: "08:30-24:00"
  limits: {{visit: 10, send_message: 5}}
  cooldown: 1d12h
  on:
    reply: replied
  migrate:
    old: visit
  steps:
    - id: visit
      action: visit_profile
    - id: check
      action: check_connection
      on: {{ALREADY_CONNECTED: hello}}
    - id: accepted
      wait_for: connection_accepted
      timeout: 2w
      on_timeout: removed
    - id: route
      branch:
        - if: "lead.company_name"
          goto: hello
      else: done
    - id: hello
      action: send_message
      with: {{text: "Hi {{{{ lead.first_name }}}}"}}
    - id: pause
      wait: 30m
    - id: done
      end: completed
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(*paths: Path | str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load(paths)
    return [str(p) for p in info.value.problems]


@pytest.fixture(autouse=True)
def _no_lint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lint is another module's job (and tested there); these tests pin the loader alone.
    monkeypatch.setattr(loader, "lint", lambda manifest, policy=None: [])


def test_builds_a_frozen_sequence(tmp_path: Path) -> None:
    path = write(tmp_path, "seq.yaml", SEQUENCE.format(name="full"))
    (seq,) = load([path])
    assert isinstance(seq, Sequence)
    assert seq.name == "full" and seq.provider == "edges" and seq.identities == ("ident-a",)
    assert seq.leads.csv == tmp_path / "leads" / "people.csv"
    assert seq.window is not None
    assert (seq.window.start, seq.window.end) == (time(8, 30), time(23, 59, 59))
    assert seq.window.days == ("mon", "wed") and seq.window.timezone == "lead"
    assert seq.limits == {"visit_profile": 10, "send_message": 5}
    assert seq.cooldown == timedelta(days=1, hours=12)
    assert seq.migrate == {"old": "visit"} and seq.api == "current"
    kinds = [type(s) for s in seq.steps]
    assert kinds == [
        ActionStep,
        ActionStep,
        WaitForStep,
        BranchStep,
        ActionStep,
        WaitStep,
        EndStep,
    ]
    accepted = seq.step("accepted")
    assert isinstance(accepted, WaitForStep) and accepted.timeout == timedelta(weeks=2)
    route = seq.step("route")
    assert isinstance(route, BranchStep) and route.cases[0].goto == "hello"
    assert route.else_ == "done" and route.path == "$.spec.steps[3]"
    hello = seq.step("hello")
    assert isinstance(hello, ActionStep) and hello.with_ == {"text": "Hi {{ lead.first_name }}"}
    assert seq.source.locate(hello.path) == (35, 7)
    assert seq.normalized["metadata"]["name"] == "full"
    with pytest.raises(AttributeError):
        seq.provider = "linkedapi"  # type: ignore[misc]


def test_workflow_and_schedule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "multi.yaml",
        """\
        apiVersion: seqrun/v1
        kind: Workflow
        metadata: {name: wf}
        spec:
          provider: linkedapi
          api: account
          result_handling: reslink
          steps:
            - action: st.openPersonPage
              with: {personUrl: "https://www.linkedin.com/in/x"}
              then: {action: st.sendMessage, with: {text: hi}}
            - action: check_connection
              then:
                - action: st.checkConnectionStatus
        ---
        apiVersion: seqrun/v1
        kind: Schedule
        metadata: {name: sync}
        spec:
          provider: edges
          action: linkedin-extract-messages
          identities: [a]
          mode: async
          inputs: [{conversation_id: c1}]
          parameters: {sync_mode: full, max_results: 100000}
          callback: {url: "https://h.example/x", headers: {X-Token: t}, on: final}
        """,
    )
    wf, sched = load([path])
    assert isinstance(wf, Workflow) and isinstance(sched, Schedule)
    assert wf.root_is_list and len(wf.root) == 2 and wf.api == "account"
    assert wf.result_handling == "reslink"
    assert not wf.root[0].then_is_list and wf.root[0].then[0].action == "st.sendMessage"
    assert wf.root[0].then[0].path == "$.spec.steps[0].then"
    assert wf.root[1].then_is_list and wf.root[1].then[0].path == "$.spec.steps[1].then[0]"
    assert sched.mode == "async" and sched.cron is None and sched.timezone == "UTC"
    assert sched.callback is not None and sched.callback.on == "final"
    assert sched.inputs == ({"conversation_id": "c1"},)


def test_directories_are_walked_sorted_and_skip_dot_dirs(tmp_path: Path) -> None:
    write(tmp_path, "b/two.yml", SEQUENCE.format(name="two"))
    write(tmp_path, "a/one.yaml", SEQUENCE.format(name="one"))
    write(tmp_path, ".seqrun/ignored.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "ignored")
    names = [m.name for m in load([tmp_path])]
    assert names == ["one", "two"]


def test_names_are_unique_per_kind_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", SEQUENCE.format(name="same"))
    second = write(tmp_path, "b.yaml", SEQUENCE.format(name="same").replace("30m", "1 h"))
    assert errors_of(first, second) == [
        f"{second}:4:3: $.metadata.name: duplicate Sequence name 'same' "
        f"(first defined at {first}:4)",
        f"{second}:39:7: $.spec.steps[5].wait: in step 'pause': '1 h' is not a duration "
        "(a number and a unit: 30m, 2h, 3d, 1w)",
    ]


def test_an_identical_copy_loads_once_with_a_warning(tmp_path: Path) -> None:
    first = write(tmp_path, "a/x.yaml", SEQUENCE.format(name="same"))
    second = write(tmp_path, "b/x.yaml", SEQUENCE.format(name="same"))
    manifests, warnings = load_with_warnings([first, second])
    assert [m.source.file for m in manifests] == [str(first)]
    assert [str(w) for w in warnings] == [
        f"{second}:4:3: $.metadata.name: warning: identical copy of Sequence 'same' from "
        f"{first}:4, loaded once"
    ]


def test_every_error_of_every_file_is_reported_sorted(tmp_path: Path) -> None:
    bad_kind = write(tmp_path, "a.yaml", "apiVersion: seqrun/v1\nkind: Sequense\n")
    bad_api = write(tmp_path, "b.yaml", "apiVersion: v1\nkind: Schedule\n")
    typo = write(
        tmp_path, "c.yaml", SEQUENCE.format(name="c").replace("cooldown: 1d12h", "cooldwn: 1d")
    )
    missing = tmp_path / "missing.yaml"
    assert errors_of(missing, typo, bad_api, bad_kind) == [
        f"{bad_kind}:2:1: $.kind: unknown kind 'Sequense' (did you mean 'Sequence'?)",
        f"{bad_api}:1:1: $.apiVersion: unknown apiVersion 'v1' (expected seqrun/v1)",
        f"{typo}:15:3: $.spec.cooldwn: unknown key 'cooldwn' (did you mean 'cooldown'?)",
        f"{missing}:1:1: $: no such file or directory",
    ]


def test_step_errors_name_the_step(tmp_path: Path) -> None:
    text = SEQUENCE.format(name="x").replace("wait: 30m", "wait: 30 minutes")
    path = write(tmp_path, "x.yaml", text)
    assert errors_of(path) == [
        f"{path}:39:7: $.spec.steps[5].wait: in step 'pause': '30 minutes' is not a duration "
        "(a number and a unit: 30m, 2h, 3d, 1w)"
    ]


def test_zero_durations_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", SEQUENCE.format(name="x").replace("wait: 30m", "wait: 0m"))
    assert errors_of(path) == [
        f"{path}:39:7: $.spec.steps[5].wait: in step 'pause': a duration must be greater than zero"
    ]


def test_limit_given_twice_under_two_names(tmp_path: Path) -> None:
    text = SEQUENCE.format(name="x").replace("visit: 10,", "visit: 10, visit_profile: 3,")
    path = write(tmp_path, "x.yaml", text)
    assert errors_of(path) == [
        f"{path}:14:23: $.spec.limits.visit_profile: limit for 'visit_profile' given twice "
        "(as 'visit' and 'visit_profile')"
    ]


def test_warnings_ride_along_and_fail_only_when_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "x.yaml", SEQUENCE.format(name="x"))

    def fake_lint(manifest: Sequence, policy: object = None) -> list[Problem]:
        return [manifest.source.problem("$.spec.cooldown", "long cooldown", "warning")]

    monkeypatch.setattr(loader, "lint", fake_lint)
    manifests, warnings = load_with_warnings([path])
    assert len(manifests) == 1
    assert [str(w) for w in warnings] == [f"{path}:15:3: $.spec.cooldown: warning: long cooldown"]
    assert len(load([path])) == 1 and loader.last_warnings == warnings
    assert errors_of_strict(path) == [f"{path}:15:3: $.spec.cooldown: long cooldown"]


def errors_of_strict(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load([path], strict=True)
    return [str(p) for p in info.value.problems]


def test_lint_errors_fail_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "x.yaml", SEQUENCE.format(name="x"))
    monkeypatch.setattr(
        loader, "lint",
        lambda m, policy=None: [m.source.problem("$.spec.steps[4]", "no acceptance gate")],
    )
    assert errors_of(path) == [f"{path}:35:7: $.spec.steps[4]: no acceptance gate"]


def test_shared_examples_load() -> None:
    examples = Path(__file__).resolve().parents[2] / "shared" / "examples"
    if not examples.is_dir():
        pytest.skip("shared examples are not present")
    kinds = sorted(m.kind for m in load([examples]))
    assert kinds == ["Schedule", "Sequence", "Sequence", "Workflow"]


def test_parsers() -> None:
    assert parse_duration("1w2d3h4m5s") == timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)
    assert parse_duration("90m") == timedelta(minutes=90)
    with pytest.raises(ValueError):
        parse_duration("3 days")
    with pytest.raises(ValueError):
        parse_duration("")
    assert parse_hours("09:00-18:30") == (time(9, 0), time(18, 30))


def test_a_yaml_problem_does_not_hide_the_next_documents(tmp_path: Path) -> None:
    second = SEQUENCE.format(name="two").replace("provider: edges", "provider: edgs")
    path = write(tmp_path, "x.yaml", "a: 1\na: 2\n---\n" + second)
    assert errors_of(path) == [
        f"{path}:2:1: $.a: duplicate key 'a' (first defined on line 1)",
        f"{path}:9:3: $.spec.provider: unknown provider 'edgs' (did you mean 'edges'?)",
    ]


def test_build_makes_the_model_from_stored_data(tmp_path: Path) -> None:
    path = tmp_path / "seq.yaml"
    path.write_text(SEQUENCE.format(name="stored"))
    [loaded] = load([path])
    rebuilt = loader.build("Sequence", loaded.normalized, SourceMap("<revision r1>"))
    assert isinstance(rebuilt, Sequence) and isinstance(loaded, Sequence)
    assert rebuilt.steps == loaded.steps and rebuilt.limits == loaded.limits
    assert rebuilt.source.file == "<revision r1>"
    assert loader.build("Sequence", loaded.normalized, rebuilt.source, validate=False) == rebuilt


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("Campaign", {}, "$.kind: unknown kind 'Campaign'"),
        ("Sequence", {"apiVersion": "seqrun/v1", "kind": "Sequence"}, "missing required key"),
    ],
)
def test_build_raises_one_manifest_error(kind: str, data: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError) as info:
        loader.build(kind, data, SourceMap("<revision r1>"))
    assert message in str(info.value)
