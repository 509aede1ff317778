"""Workflow fan-out (`for_each: {csv: ...}`) against the sandbox: 50 leads with one bad row run
49 workflows and name the bad row by line; a kill mid-run (the answer to a submission lost)
then a second apply sends nothing twice; results export as JSON and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.apply.plan import make_plan
from engine.clock import VirtualClock
from engine.manifest.loader import load
from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from engine.store import Store
from tests.conftest import ROOT, invoke

EXAMPLE = ROOT / "sequences" / "invite-each-lead.yaml"
BAD_LINE = 18  # the header is line 1


class KillAfter(httpx.AsyncBaseTransport):
    """The sandbox's transport; the ``n``-th workflow submission reaches the sandbox (it is
    performed) and then the process is interrupted before the answer is read."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int) -> None:
        self.inner = inner
        self.left = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/workflows"):
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt  # a kill: the submission happened, its answer is lost
        return response


def leads_file(tmp: Path) -> Path:
    """49 accessible people of the sandbox's world (those already connected to the identity
    last), and one bad row at line BAD_LINE."""
    world = Sandbox.open(None).world
    network = world.network.get("acct-alice", {})
    people = sorted((p for p in world.profiles.values() if p.accessible),
                    key=lambda p: p.url in network)[:49]
    assert len(people) == 49 and sum(p.url in network for p in people) == 1
    rows = [f"{p.url},{p.first_name},{p.company}" for p in people]
    rows.insert(BAD_LINE - 2, "https://example.com/not-a-profile,Nobody,Nowhere")
    path = tmp / "leads.csv"
    path.write_text("linkedin_profile_url,first_name,company_name\n" + "\n".join(rows) + "\n",
                    encoding="utf-8")
    return path


def manifest(tmp: Path) -> Path:
    leads_file(tmp)
    path = tmp / "fan.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")  # csv: leads.csv
    return path


def as_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    got, out, err = invoke(capsys, *argv, "-o", "json")
    assert got == code, err
    return json.loads(out)


def test_fifty_leads_one_bad_row_and_a_kill_run_each_once(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = manifest(cli_dir)
    plan = as_json(capsys, "plan", str(path), "--sandbox")
    (fan,) = plan["fan_outs"]
    assert fan["leads"] == 49 and len(plan["workflows"]) == 49
    (refused,) = fan["refused"]
    assert refused.startswith(f"{cli_dir / 'leads.csv'}:{BAD_LINE}:")
    assert {w["action"] for w in plan["workflows"]} == {"run"}

    # the 5th submission is performed by the sandbox, then the process is killed
    original = Sandbox.client

    def killing_client(self: Sandbox, provider: str, **kwargs: Any) -> httpx.AsyncClient:
        client = original(self, provider, **kwargs)
        return httpx.AsyncClient(transport=KillAfter(self.transport, 5),
                                 base_url=client.base_url, headers=client.headers)

    monkeypatch.setattr(Sandbox, "client", killing_client)
    code, _, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve")
    assert code == 1 and "Aborted." in err  # click reports the interrupt
    monkeypatch.setattr(Sandbox, "client", original)
    # four carried out; the fifth accepted by LinkedAPI, to be carried out, its id lost
    assert Sandbox.open(cli_dir / ".seqrun").world.count("acct-alice", "invite") == 4
    actions = [w["action"] for w in as_json(capsys, "plan", str(path), "--sandbox")["workflows"]]
    assert actions.count("unchanged") == 4 and actions.count("resume") == 1

    # apply, a day later again, ...: LinkedAPI's 10 invitations a day, each lead once
    days = 0
    while "No changes" not in invoke(capsys, "plan", str(path), "--sandbox")[1]:
        applied = as_json(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve")
        assert set(applied["deferred"].values()) <= {"connect limit 10/24h reached"}
        code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+1d")
        assert code == 0, err
        days += 1
        assert days <= 6
    world = Sandbox.open(cli_dir / ".seqrun").world
    assert world.duplicates("invite") == []  # nothing ran twice, the killed one included
    assert world.count("acct-alice", "invite") == 48  # the one already connected: none
    assert days == 5  # 48 invitations at 10 a day (the killed day counts its 5)

    results = as_json(capsys, "workflows", "results", "invite-each-lead")
    assert len(results) == 49 and {r["state"] for r in results} == {"completed"}
    assert sum(r["attempt"] for r in results) == 49  # one submission each
    code, out, _ = invoke(capsys, "workflows", "results", "invite-each-lead", "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 49 and rows[0]["workflow"].startswith("invite-each-lead[")
    code, out, err = invoke(capsys, "why", f"workflow/{rows[0]['workflow']}")
    assert code == 0 and "completed" in out, err


def test_a_template_that_fails_for_a_row_is_refused_by_line(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_dir / "leads.csv").write_text(
        "linkedin_profile_url,first_name\n"
        "https://www.linkedin.com/in/ada-lovelace-0001,Ada\n"
        "https://www.linkedin.com/in/grace-hopper-0002,\n", encoding="utf-8")
    path = cli_dir / "fan.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        "{{ lead.linkedin_profile_url }}", "{{ lead.linkedin_profile_url if lead.first_name "
        "else 'nope' }}"), encoding="utf-8")
    plan = as_json(capsys, "plan", str(path), "--sandbox")
    (fan,) = plan["fan_outs"]
    assert fan["leads"] == 1
    (refused,) = fan["refused"]
    assert "leads.csv:3:" in refused and "grace-hopper-0002" in refused


def test_workflows_results_of_nothing_is_an_error(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = invoke(capsys, "workflows", "results", "nothing")
    assert code == 1 and "nothing" in err


def test_for_each_over_a_sequence_s_leads_at_a_step(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = ROOT / "sequences" / "notify-on-trouble.yaml"
    code, _, err = invoke(capsys, "apply", str(seq), "--sandbox", "--virtual-clock",
                          "--auto-approve", "--no-run")
    assert code == 0, err
    path = cli_dir / "fan.yaml"
    text = EXAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace("    csv: leads.csv", "    sequence: notify-on-trouble\n"
                                 "    state: visit"), encoding="utf-8")
    plan = as_json(capsys, "plan", str(path), "--sandbox")
    assert plan["fan_outs"] == [{"name": "invite-each-lead", "leads": 4, "refused": []}]
    code, out, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                            "--auto-approve")
    assert code == 0, out + err
    world = Sandbox.open(cli_dir / ".seqrun").world
    assert world.count("acct-alice", "invite") == 4 and world.duplicates("invite") == []
    # nobody at `done` yet; a sequence never applied is named
    path.write_text(path.read_text().replace("state: visit", "state: done"))
    assert as_json(capsys, "plan", str(path), "--sandbox")["fan_outs"][0]["leads"] == 0
    path.write_text(path.read_text().replace("sequence: notify-on-trouble", "sequence: nope"))
    code, _, err = invoke(capsys, "plan", str(path), "--sandbox")
    assert code == 1 and "for_each.sequence 'nope' is not an applied sequence" in err


def people(n: int, skip: int = 0) -> list[Any]:
    """``n`` accessible people of the sandbox's world not connected to acct-alice."""
    world = Sandbox.open(None).world
    network = world.network.get("acct-alice", {})
    found = [p for p in world.profiles.values() if p.accessible and p.url not in network]
    assert len(found) >= skip + n
    return found[skip:skip + n]


def write_leads(path: Path, rows: list[Any], zones: dict[int, str] | None = None) -> Path:
    zones = zones or {}
    lines = [f"{p.url},{p.first_name},{zones.get(i, '')}" for i, p in enumerate(rows)]
    path.write_text("linkedin_profile_url,first_name,timezone\n" + "\n".join(lines) + "\n",
                    encoding="utf-8")
    return path


def test_a_fan_out_outside_its_window_is_deferred_to_the_window(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the virtual clock starts on a Monday at 08:00 UTC: before 09:00 in London, 17:00 in
    # Tokyo (inside 09:00-18:00 there): the Tokyo lead goes at once, the others at 09:00
    write_leads(cli_dir / "leads.csv", people(3), zones={2: "Asia/Tokyo"})
    path = cli_dir / "fan.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        "  for_each:\n", "  window:\n    timezone: lead\n    fallback_timezone: Europe/London\n"
        "    days: [mon, tue, wed, thu, fri]\n    hours: \"09:00-18:00\"\n  for_each:\n"),
        encoding="utf-8")
    # plan previews it (at the clock the sandbox keeps: Monday 08:00 UTC)
    store = Store.open(None, cli_dir / ".seqrun")
    try:
        plan = asyncio.run(make_plan(load([path]), store=store, now=VirtualClock().now()))
    finally:
        store.close()
    assert plan.to_json()["fan_outs"][0]["outside_window"] == {
        "outside the sending window until 2026-01-05 09:00 UTC": 2}
    applied = as_json(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                      "--auto-approve")
    assert sorted(applied["deferred"].values()) == [
        "outside the sending window until 2026-01-05 09:00 UTC"] * 2
    assert Sandbox.open(cli_dir / ".seqrun").world.count("acct-alice", "invite") == 1
    code, out, _ = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve")
    assert code == 0 and "2 workflow run(s) deferred (2: outside the sending window until " \
        "2026-01-05 09:00 UTC)" in " ".join(out.split())
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+1h")
    assert code == 0, err
    applied = as_json(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                      "--auto-approve")
    assert applied["deferred"] == {}
    world = Sandbox.open(cli_dir / ".seqrun").world
    assert world.count("acct-alice", "invite") == 3 and world.duplicates("invite") == []


SEQUENCE = """apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: invite-sequence
spec:
  provider: linkedapi
  identities: [acct-alice]
  leads:
    csv: sequence-leads.csv
  steps:
    - id: connect
      action: connect
      "on":
        ALREADY_CONNECTED: done
    - id: done
      end: completed
"""


def test_a_fan_out_and_a_sequence_on_one_identity_stay_within_its_limit_together(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # LinkedAPI: 10 invitations per identity per 24 h. The fan-out takes 8; the sequence, on
    # the same identity, gets the 2 left that day (the sandbox's own limit is lifted, so only
    # seqrun's ledger holds it), the rest the next day
    box = Sandbox.open(cli_dir / ".seqrun")
    box.world.identity("acct-alice").limits["connect"] = 100
    box.world.identity("acct-alice").limits["invite"] = 100
    box.save()
    box.close()
    write_leads(cli_dir / "leads.csv", people(8))
    write_leads(cli_dir / "sequence-leads.csv", people(12, skip=8))
    path = cli_dir / "fan.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        "  provider: linkedapi\n", "  provider: linkedapi\n  identities: [acct-alice]\n"),
        encoding="utf-8")
    applied = as_json(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                      "--auto-approve")
    assert applied["deferred"] == {}
    seq = cli_dir / "seq.yaml"
    seq.write_text(SEQUENCE, encoding="utf-8")
    code, _, err = invoke(capsys, "apply", str(seq), "--sandbox", "--virtual-clock",
                          "--auto-approve", "--no-run")
    assert code == 0, err
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+20h")
    assert code == 0, err
    world = Sandbox.open(cli_dir / ".seqrun").world
    assert world.count("acct-alice", "invite") == 10  # 8 + 2 within the first 24 h
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+2d")
    assert code == 0, err
    world = Sandbox.open(cli_dir / ".seqrun").world
    assert world.count("acct-alice", "invite") == 20 and world.duplicates("invite") == []


def test_a_fan_out_over_a_sequence_takes_its_window(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = cli_dir / "seq.yaml"
    seq.write_text((ROOT / "sequences" / "notify-on-trouble.yaml").read_text(encoding="utf-8")
                   .replace("csv: leads.csv", f"csv: {ROOT / 'sequences' / 'leads.csv'}")
                   .replace("  steps:\n", "  window:\n    timezone: UTC\n"
                            "    hours: \"10:00-16:00\"\n  steps:\n"), encoding="utf-8")
    code, _, err = invoke(capsys, "apply", str(seq), "--sandbox", "--virtual-clock",
                          "--auto-approve", "--no-run")
    assert code == 0, err
    path = cli_dir / "fan.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        "    csv: leads.csv", "    sequence: notify-on-trouble"), encoding="utf-8")
    applied = as_json(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                      "--auto-approve")
    assert set(applied["deferred"].values()) == {
        "outside the sending window until 2026-01-05 10:00 UTC"}
    assert len(applied["deferred"]) == 4
    assert Sandbox.open(cli_dir / ".seqrun").world.count("acct-alice", "invite") == 0


def test_a_fan_out_stays_within_the_policy_s_budget(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_leads(cli_dir / "leads.csv", people(6))
    (cli_dir / "policy.yaml").write_text(
        "apiVersion: seqrun/v1\nkind: Policy\nmetadata:\n  name: acme-org\nspec:\n"
        "  budgets:\n    connect: 4\n", encoding="utf-8")
    path = cli_dir / "fan.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    applied = as_json(capsys, "apply", str(path), str(cli_dir / "policy.yaml"), "--sandbox",
                      "--virtual-clock", "--auto-approve")
    assert list(applied["deferred"].values()) == ["organisation budget connect 4/24h reached"] * 2
    assert Sandbox.open(cli_dir / ".seqrun").world.count("acct-alice", "invite") == 4
