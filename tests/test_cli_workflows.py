"""Workflows from the command line: `seqrun apply` a Workflow prints its completion tree,
`seqrun status` lists workflows, `seqrun why` shows a workflow's node results, and the shared
LinkedAPI examples run against the embedded sandbox as the README shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from engine.vocab import TERMINALS
from tests.conftest import SHARED_EXAMPLES, invoke

CHECK = SHARED_EXAMPLES / "check-then-message.yaml"
FOUNDERS = SHARED_EXAMPLES / "founders-on-linkedapi.yaml"
ADA = "https://www.linkedin.com/in/ada-lovelace-0001"


@pytest.fixture
def work(cli_dir: Path) -> Path:
    return cli_dir


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = invoke(capsys, *argv, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def apply_check(capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = invoke(capsys, "apply", str(CHECK), "--sandbox", "--virtual-clock",
                         "--auto-approve")
    assert code == 0, err
    return out


def test_apply_prints_the_completion_tree_not_json(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = apply_check(capsys)
    lines = out.splitlines()
    head = next(line for line in lines if line.startswith("Workflow check-then-message:"))
    assert "completed (wf-" in head
    assert "  n0 open st.openPersonPage: ok name=Ada Lovelace" in out
    assert "    n0.0 check st.checkConnectionStatus: ok connectionStatus=notConnected" in lines
    assert "    n0.1 invite st.sendConnectionRequest: ok" in lines
    assert '"completion"' not in out  # the raw result JSON is for -o json only
    # the ground truth: one invitation to Ada on LinkedIn, nothing else sent
    world = Sandbox.open(work / ".seqrun").world
    assert [d.kind for d in world.deliveries(url=ADA) if d.kind != "visit"] == ["invite"]


def test_apply_json_keeps_the_machine_result(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = as_json(capsys, "apply", str(CHECK), "--sandbox", "--virtual-clock", "--auto-approve")
    result = data["workflows"]["check-then-message"]
    assert result["state"] == "completed" and result["workflowId"].startswith("wf-")
    assert [(n["id"], n["status"]) for n in result["nodes"]] == [
        ("n0", "ok"), ("n0.0", "ok"), ("n0.1", "ok")]


def test_status_lists_workflows(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    apply_check(capsys)
    code, out, _ = invoke(capsys, "status")
    assert code == 0
    header, row = out.splitlines()[-2:]
    assert header.split()[:3] == ["WORKFLOW", "PROVIDER", "STATE"]
    cells = row.split()
    assert cells[:3] == ["check-then-message", "linkedapi", "completed"]
    assert cells[3].startswith("wf-") and cells[4] == "3/3"
    # submitted and finished on the sandbox's virtual clock (2026-01-05 08:00 UTC start)
    assert cells[5:7] == ["2026-01-05", "08:00:00"] and cells[7] == "2026-01-05"
    data = as_json(capsys, "status")
    (wf,) = data["workflows"]
    assert {k: wf[k] for k in ("name", "provider", "state", "nodes_ok", "nodes_total")} == {
        "name": "check-then-message", "provider": "linkedapi", "state": "completed",
        "nodes_ok": 3, "nodes_total": 3}
    assert wf["workflow_id"] == cells[3]
    assert wf["submitted_at"].startswith("2026-01-05T08:00")
    assert wf["finished_at"] >= wf["submitted_at"]
    # NAME narrows to the workflow, kubectl-style kind/NAME too
    assert as_json(capsys, "status", "workflow/check-then-message")["workflows"] == [wf]
    assert as_json(capsys, "status", "check-then-message")["sequences"] == []
    code, _, err = invoke(capsys, "status", "nope")
    assert code != 0 and "nope" in err


def test_status_without_anything_applied(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "status")
    assert code == 0 and "No sequences, workflows or schedules applied yet." in out
    assert as_json(capsys, "status")["workflows"] == []


def test_why_shows_a_workflows_history_and_node_results(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    apply_check(capsys)
    for argv in (["--workflow", "check-then-message"], ["workflow/check-then-message"],
                 ["check-then-message"]):  # a bare NAME that is not a profile URL
        code, out, err = invoke(capsys, "why", *argv)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("workflow check-then-message (provider linkedapi")
        assert [line.split("  ", 1)[1] for line in lines[1:4]] == [
            "· -> pending", "pending -> running", "running -> completed"]
        assert "    n0.1 invite st.sendConnectionRequest: ok" in lines
    data = as_json(capsys, "why", "--workflow", "check-then-message")
    assert data["state"] == "completed"
    assert [h["to"] for h in data["history"]] == ["pending", "running", "completed"]
    assert [(n["label"], n["status"]) for n in data["nodes"]] == [
        ("open", "ok"), ("check", "ok"), ("invite", "ok")]
    assert data["nodes"][1]["data"] == {"connectionStatus": "notConnected"}


def test_why_errors(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "why", "--workflow", "nope")
    assert code != 0 and "no applied workflow named 'nope'" in err
    code, _, err = invoke(capsys, "why", ADA, "--workflow", "x")
    assert code == 2 and "not both" in err
    code, _, err = invoke(capsys, "why")
    assert code == 2
    code, _, err = invoke(capsys, "why", ADA)  # a profile URL is still read as a lead
    assert code != 0 and "no lead" in err


def test_a_failed_workflow_shows_its_node_errors(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    apply_check(capsys)  # Ada now has a pending invitation from acct-alice
    again = work / "again.yaml"
    again.write_text(CHECK.read_text(encoding="utf-8").replace(
        "name: check-then-message", "name: invite-again"), encoding="utf-8")
    code, out, err = invoke(capsys, "apply", str(again), "--sandbox", "--virtual-clock",
                         "--auto-approve")
    assert code == 0, err
    invite = next(line for line in out.splitlines() if " invite " in line)
    assert "n0.1 invite st.sendConnectionRequest: error" in invite
    data = as_json(capsys, "why", "invite-again")
    assert data["nodes"][2]["status"] == "error" and data["nodes"][2]["error"]["label"]
    world = Sandbox.open(work / ".seqrun").world
    assert [d.kind for d in world.deliveries(url=ADA)].count("invite") == 1


def test_founders_on_linkedapi_from_the_readme(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(capsys, "apply", str(FOUNDERS), "--sandbox", "--virtual-clock",
                         "--auto-approve")
    assert code == 0, err
    assert "Sequence founders-on-linkedapi: new revision" in out
    code, out, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+30d")
    assert code == 0, err
    assert out.startswith("ran ") and "founders-on-linkedapi (linkedapi" in out
    data = as_json(capsys, "status")
    (seq,) = data["sequences"]
    live = [f for f in seq["funnel"] if f["state"] not in TERMINALS and f["count"]]
    assert seq["total"] == 4 and live == []
    world = Sandbox.open(work / ".seqrun").world
    assert world.duplicates("message") == [] and world.duplicates("invite") == []
    assert world.count("acct-alice", "invite") + world.count("acct-alice", "message") > 0


def test_a_workflow_that_ends_failed_fails_apply(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = Sandbox.open(work / ".seqrun")
    box.world.set_auth("acct-alice", False)  # the LinkedIn session expired
    box.save()
    code, out, err = invoke(capsys, "apply", str(CHECK), "--sandbox", "--virtual-clock",
                            "--auto-approve")
    assert "failed" in out
    assert code == 1, out + err  # not "Workflow ...: failed" and exit 0
