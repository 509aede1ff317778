"""`seqrun dnc add|remove|list`: the do-not-contact list from the command line, honoured by
plan (skipped) and by the runner (an in-flight lead is stopped, nothing is sent to it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from engine.store import Store
from tests.conftest import invoke

SEQ = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: founders
spec:
  provider: edges
  identities: [ident-alice]
  leads:
    csv: leads.csv
  steps:
    - id: visit
      action: visit_profile
    - id: connect
      action: connect
      with: {note: "Hi"}
"""
ADA = "https://www.linkedin.com/in/ada-lead"
BOB = "https://www.linkedin.com/in/bob-lead"


@pytest.fixture
def work(cli_dir: Path) -> Path:
    (cli_dir / "leads.csv").write_text(
        f"linkedin_profile_url,full_name\n{ADA},Ada Lead\n{BOB},Bob Lead\n", encoding="utf-8"
    )
    (cli_dir / "seq.yaml").write_text(SEQ, encoding="utf-8")
    return cli_dir


def dnc_list(capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = invoke(capsys, "dnc", "list", "-o", "json")
    assert code == 0, err
    return json.loads(out)


def test_add_normalizes_list_and_remove(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(
        capsys, "dnc", "add", "HTTP://linkedin.com/in/Bob-Lead/?trk=x", "--reason", "unsubscribed"
    )
    assert code == 0 and f"added {BOB} (unsubscribed)" in out
    assert dnc_list(capsys) == [{"profile_url": BOB, "reason": "unsubscribed"}]
    code, out, _ = invoke(capsys, "dnc", "list")
    assert code == 0 and BOB in out and "unsubscribed" in out
    code, out, _ = invoke(capsys, "dnc", "add", BOB, "--reason", "asked twice")
    assert code == 0 and f"updated {BOB}" in out
    assert dnc_list(capsys) == [{"profile_url": BOB, "reason": "asked twice"}]
    code, out, _ = invoke(capsys, "dnc", "remove", "www.linkedin.com/in/bob-lead", ADA)
    assert code == 0 and f"removed {BOB}" in out and f"not on the list: {ADA}" in out
    assert dnc_list(capsys) == []
    code, out, _ = invoke(capsys, "dnc", "list")
    assert "empty" in out


def test_bad_urls_are_reported_and_nothing_is_added(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = invoke(capsys, "dnc", "add", ADA, "https://example.com/in/x", "not a url")
    assert code == 1
    assert "2 bad LinkedIn profile URL(s), nothing changed" in err
    assert "'https://example.com/in/x'" in err and "'not a url'" in err
    assert dnc_list(capsys) == []


def test_plan_skips_a_lead_on_the_list(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "dnc", "add", BOB, "--reason", "unsubscribed")[0] == 0
    code, out, err = invoke(capsys, "plan", "seq.yaml", "-o", "json")
    assert code == 0, err
    (seq,) = json.loads(out)["sequences"]
    assert seq["skipped"] == [
        {"profile_url": BOB, "reason": "do_not_contact", "detail": "unsubscribed"}
    ]
    assert [e["profile_url"] for e in seq["enroll"]] == [ADA]


def test_runner_stops_an_in_flight_lead_added_to_the_list(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_args = ("--sandbox", "--virtual-clock")
    code, _, err = invoke(capsys, "apply", "seq.yaml", *sandbox_args, "--auto-approve", "--no-run")
    assert code == 0, err
    assert invoke(capsys, "dnc", "add", BOB, "--reason", "asked us to stop")[0] == 0
    code, _, err = invoke(capsys, "run", *sandbox_args, "--until", "+3d")
    assert code == 0, err
    store = Store.open(None, work / ".seqrun")
    try:
        states = {}
        for enr in store.enrollments(sequence="founders"):
            lead = store.get_lead(enr.lead_id)
            assert lead is not None
            states[lead.profile_url] = enr.state
    finally:
        store.close()
    assert states[BOB] == "stopped"
    assert states[ADA] != "stopped"
    world = Sandbox.open(work / ".seqrun").world
    assert world.deliveries(url=BOB) == []
    assert world.deliveries(url=ADA, kind="invite")
