"""seqrun plan / apply / leads import / status / why / pause on a tmp state dir."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.store import Store
from tests.conftest import invoke

SEQ = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: founders
spec:
  provider: edges
  identities: [ident-alice, ident-bob]
  leads:
    csv: leads.csv
  steps:
{steps}
{extra}
"""
STEPS = """\
    - id: visit
      action: visit_profile
    - id: connect
      action: connect
      with: {note: "Hi"}
    - id: accepted
      wait_for: connection_accepted
      timeout: 14d
      on_timeout: removed
    - id: message
      action: send_message
      with: {text: "Thanks for connecting"}
"""
STEPS_CHANGED = STEPS.replace("Thanks for connecting", "Thanks a lot for connecting")
STEPS_RENAMED = STEPS.replace("id: connect", "id: invite")


@pytest.fixture
def work(cli_dir: Path) -> Path:
    leads(cli_dir, ["ada", "bob", "cy"])
    manifest(cli_dir, STEPS)
    return cli_dir


def leads(d: Path, handles: list[str]) -> None:
    rows = ["linkedin_profile_url,full_name"] + [
        f"https://www.linkedin.com/in/{h}-lead,{h.title()} Lead" for h in handles]
    (d / "leads.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def manifest(d: Path, steps: str, extra: str = "") -> Path:
    p = d / "seq.yaml"
    p.write_text(SEQ.format(steps=steps.rstrip("\n"), extra=extra), encoding="utf-8")
    return p


def plan_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = invoke(capsys, "plan", "seq.yaml", "-o", "json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def store(work: Path) -> Store:
    return Store.open(None, work / ".seqrun")


def test_plan_exit_codes_and_apply(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "plan", "seq.yaml", "--detailed-exitcode")
    assert code == 2 and "enroll 3 lead(s)" in out
    assert invoke(capsys, "plan", "seq.yaml")[0] == 0
    code, out, err = invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")
    assert code == 0, err
    assert "enrolled 3" in out
    s = store(work)
    rows = s.enrollments(sequence="founders")
    assert sorted(r.identity for r in rows) == ["ident-alice", "ident-alice", "ident-bob"]
    assert {r.state for r in rows} == {"visit"}
    s.close()
    code, out, _ = invoke(capsys, "plan", "seq.yaml", "--detailed-exitcode")
    assert code == 0 and "No changes" in out


def test_apply_without_approval_non_interactive_fails_cleanly(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = invoke(capsys, "apply", "seq.yaml", "--no-run")
    assert code == 1
    assert "--auto-approve" in err and "nothing was changed" in err
    s = store(work)
    assert s.enrollments() == [] and s.get_sequence("founders") is None
    s.close()


def test_changed_manifest_new_revision_in_flight_keep_theirs(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    old = plan_json(capsys)["sequences"][0]["revision"]
    manifest(work, STEPS_CHANGED)
    leads(work, ["ada", "bob", "cy", "dee"])
    data = plan_json(capsys)["sequences"][0]
    assert data["action"] == "update" and data["previous_revision"] == old
    assert data["in_flight"] == [{"revision": old, "state": "visit", "count": 3,
                                  "keeps_revision": True, "to_revision": old,
                                  "to_state": "visit"}]
    assert [e["profile_url"] for e in data["enroll"]] == ["https://www.linkedin.com/in/dee-lead"]
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    s = store(work)
    revs = sorted(r.revision for r in s.enrollments(sequence="founders"))
    assert revs == sorted([old, old, old, data["revision"]])
    s.close()


def test_migrate_mapping_and_refused_removed_step(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    s = store(work)
    for row in s.enrollments(sequence="founders"):
        s.update_enrollment(row.id, state="connect")
    s.close()
    # a mapping that forgets the removed step `connect`
    manifest(work, STEPS_RENAMED, "  migrate: {visit: visit}")
    code, _, err = invoke(capsys, "plan", "seq.yaml")
    assert code == 1 and "'connect'" in err and "migrate" in err
    manifest(work, STEPS_RENAMED, "  migrate: {connect: invite}")
    data = plan_json(capsys)["sequences"][0]
    assert data["migrate"] == {"connect": "invite"}
    assert [(g["state"], g["to_state"], g["keeps_revision"]) for g in data["in_flight"]] == [
        ("connect", "invite", False)]
    code, out, _ = invoke(capsys, "plan", "seq.yaml")
    assert "-> 'invite'" in out and "migrate: {connect: invite}" in out
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    s = store(work)
    assert {(r.state, r.revision) for r in s.enrollments(sequence="founders")} == {
        ("invite", data["revision"])}
    s.close()


def test_do_not_contact_is_skipped(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = store(work)
    s.add_do_not_contact("https://www.linkedin.com/in/bob-lead", "unsubscribed")
    s.close()
    data = plan_json(capsys)["sequences"][0]
    assert data["skipped"] == [{"profile_url": "https://www.linkedin.com/in/bob-lead",
                                "reason": "do_not_contact", "detail": "unsubscribed"}]
    assert len(data["enroll"]) == 2


def test_concurrent_apply_blocked_by_lock(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = store(work)
    with s.lock("apply"):
        code, _, err = invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")
    assert code == 1 and "lock" in err
    assert s.enrollments() == []
    s.close()


def test_apply_runs_on_sandbox_then_status_why_pause(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--sandbox",
                         "--virtual-clock", "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["applied"] and result["sequences"][0]["enrolled"] == 3
    assert result["run"]["due"] == 3 and result["run"]["actions"] >= 1
    assert (work / ".seqrun" / "sandbox.db").exists()

    code, out, _ = invoke(capsys, "status", "founders", "-o", "json", "--virtual-clock")
    status = json.loads(out)
    (seq,) = status["sequences"]
    assert seq["total"] == 3 and seq["funnel"][0]["state"] == "visit"
    used = {i["id"]: i["limits_24h"]["visit_profile"]["used"] for i in status["identities"]}
    assert set(used) == {"ident-alice", "ident-bob"} and sum(used.values()) >= 1
    limits = {i["id"]: i["limits_24h"]["connect"]["limit"] for i in status["identities"]}
    assert limits == {"ident-alice": 25, "ident-bob": 25}  # Edges smart limits by default
    code, out, _ = invoke(capsys, "status")
    assert code == 0 and "founders" in out and "ident-alice" in out

    code, out, _ = invoke(capsys, "why", "linkedin.com/in/ADA-lead/", "-o", "json")
    why = json.loads(out)
    kinds = [(h["source"], h["kind"]) for h in why["history"]]
    assert kinds[0] == ("event", "enrolled")
    assert ("action", "visit_profile") in kinds
    i = kinds.index(("action", "visit_profile"))
    call, caused = why["history"][i], why["history"][i + 1]
    assert caused["source"] == "event" and caused["detail"]["key"] == call["detail"]["key"]
    assert caused["from"] == "visit" and call["status"] == "done"
    assert invoke(capsys, "why", "linkedin.com/in/nobody")[0] == 1

    assert invoke(capsys, "pause", "founders")[0] == 0
    assert invoke(capsys, "pause", "--identity", "ident-bob")[0] == 0
    assert invoke(capsys, "pause", "--all")[0] == 0
    s = store(work)
    assert s.get_sequence("founders").paused  # type: ignore[union-attr]
    assert all(r.paused for r in s.enrollments(identity="ident-bob"))
    assert s.kv_get("runtime", "paused_all")
    s.close()
    assert invoke(capsys, "resume", "--all")[0] == 0
    assert invoke(capsys, "resume", "--identity", "ident-bob")[0] == 0
    s = store(work)
    assert not s.get_sequence("founders").paused  # type: ignore[union-attr]
    assert not any(r.paused for r in s.enrollments(identity="ident-bob"))
    assert s.kv_get("runtime", "paused_all") is None
    s.close()
    assert invoke(capsys, "pause", "ghost")[0] == 1
    assert invoke(capsys, "pause")[0] == 2


def test_leads_import(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "leads", "import", "leads.csv", "--sequence", "founders")[0] == 1
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    (work / "more.csv").write_text(
        "linkedin_profile_url,timezone\n"
        "https://www.linkedin.com/in/ada-lead,\n"
        "https://www.linkedin.com/in/new-lead,Europe/Paris\n"
        "not a url,\n",
        encoding="utf-8",
    )
    code, out, _ = invoke(capsys, "leads", "import", "more.csv", "--sequence", "founders")
    assert code == 0
    assert "2 row(s) taken, 1 refused" in out and "more.csv:4:1" in out
    assert "1 enrolled" in out
    (work / "bad.csv").write_bytes(b"linkedin_profile_url\n\xff\n")
    code, _, err = invoke(capsys, "leads", "import", "bad.csv", "--sequence", "founders")
    assert code == 1 and "UTF-8" in err


WORKFLOW = """\
apiVersion: seqrun/v1
kind: Workflow
metadata:
  name: check-grace
spec:
  provider: linkedapi
  steps:
    - action: st.checkConnectionStatus
      label: grace
      with:
        personUrl: https://www.linkedin.com/in/grace-hopper-0002
"""


def test_workflow_runs_once_per_body(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "wf.yaml").write_text(WORKFLOW, encoding="utf-8")
    code, out, _ = invoke(capsys, "plan", "wf.yaml", "--sandbox", "-o", "json")
    assert code == 0
    assert json.loads(out)["workflows"][0]["action"] == "run"
    code, out, err = invoke(capsys, "apply", "wf.yaml", "--sandbox", "--virtual-clock",
                         "--auto-approve", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["workflows"]["check-grace"]["state"] == "completed"
    code, out, _ = invoke(capsys, "plan", "wf.yaml", "--sandbox", "--detailed-exitcode")
    assert code == 0 and "No changes" in out
    (work / "wf.yaml").write_text(WORKFLOW.replace("grace-hopper-0002", "alan-turing-0003"),
                                  encoding="utf-8")
    assert invoke(capsys, "plan", "wf.yaml", "--sandbox", "--detailed-exitcode")[0] == 2


def test_finished_lead_stays_held(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    s = store(work)
    for row in s.enrollments(sequence="founders"):
        s.update_enrollment(row.id, state="replied", next_due_at=None)
    s.close()
    other = (work / "seq.yaml").read_text().replace("name: founders", "name: second")
    (work / "second.yaml").write_text(other, encoding="utf-8")
    code, out, _ = invoke(capsys, "plan", "second.yaml", "-o", "json")
    assert code == 0
    data = json.loads(out)["sequences"][0]
    assert data["enroll"] == [] and {s["reason"] for s in data["skipped"]} == {"held"}


def test_apply_does_not_act_for_identities_a_running_worker_holds(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply's run is one more worker: the identities a live `seqrun run` worker (here on
    another host) holds leases on are left to it; apply acts for the free one only."""
    s = store(work)
    other = "otherhost:1:feedbeef:1"
    s.heartbeat(other, timedelta(minutes=5), host="otherhost", pid=1, started_at=datetime.now(UTC))
    assert [c.identity for c in s.claim_identities(other, ["ident-alice"], 1,
                                                   timedelta(minutes=5))] == ["ident-alice"]
    s.close()
    code, out, err = invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--sandbox",
                            "--virtual-clock", "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["sequences"][0]["enrolled"] == 3
    s = store(work)
    acted = {a.identity for a in s.actions()}
    s.close()
    assert acted == {"ident-bob"}


SCHEDULE = """\
apiVersion: seqrun/v1
kind: Schedule
metadata:
  name: inbox-sync
spec:
  provider: edges
  action: linkedin-extract-messages
  identities: [ident-alice]
  cron: "0 8-18/2 * * 1-5"
  timezone: Europe/Paris
  parameters:
    sync_mode: incremental
    max_results: 500
  callback:
    url: https://hooks.example.com/seqrun/edges
"""


def test_schedules_go_through_plan_and_apply(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "sched.yaml").write_text(SCHEDULE, encoding="utf-8")
    code, out, _ = invoke(capsys, "plan", "sched.yaml", "seq.yaml", "--sandbox",
                       "--detailed-exitcode", "-o", "json")
    assert code == 2
    data = json.loads(out)
    assert [r["action"] for r in data["schedules"]["rows"]] == ["create"]
    assert data["sequences"][0]["action"] == "create"
    code, out, err = invoke(capsys, "apply", "sched.yaml", "seq.yaml", "--sandbox",
                         "--virtual-clock", "--auto-approve", "--no-run", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["schedules"]["created"] == ["inbox-sync"]
    code, out, _ = invoke(capsys, "plan", "sched.yaml", "seq.yaml", "--sandbox",
                       "--detailed-exitcode")
    assert code == 0, out


def test_apply_without_credentials_fails_before_persisting(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGES_API_KEY", raising=False)
    code, _, err = invoke(capsys, "apply", "seq.yaml", "--auto-approve")
    assert code == 1 and "EDGES_API_KEY" in err
    s = store(work)
    assert s.get_sequence("founders") is None and s.enrollments() == []
    s.close()
    # --no-run needs no provider: it persists
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0


def test_plan_shows_and_apply_makes_lead_data_updates(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")[0] == 0
    text = (work / "leads.csv").read_text(encoding="utf-8")
    (work / "leads.csv").write_text(text.replace("Ada Lead", "Adeline Lead"), encoding="utf-8")
    code, out, _ = invoke(capsys, "plan", "seq.yaml", "--detailed-exitcode")
    assert code == 2
    assert "~ update 1 enrolled lead(s)' data" in out
    assert "first_name: 'Ada' -> 'Adeline'" in out and "1 lead(s) to update" in out
    code, out, err = invoke(capsys, "apply", "seq.yaml", "--auto-approve", "--no-run")
    assert code == 0, err
    assert "updated 1" in out
    code, out, _ = invoke(capsys, "plan", "seq.yaml", "--detailed-exitcode")
    assert code == 0 and "No changes" in out
