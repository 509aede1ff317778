"""Schedules from the command line: `seqrun plan/apply` on Schedules (the README's inbox-sync
example, `-out FILE` / `apply FILE` with stale-plan refusal, `--prune`, redacted `-o json`)
and `seqrun run` driving `mode: async` schedules, all against the embedded sandbox."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from tests.conftest import SHARED_EXAMPLES, invoke

INBOX_SYNC = SHARED_EXAMPLES / "inbox-sync.yaml"
SECRET = "s3cr3t-header-value"
ASYNC = """\
apiVersion: seqrun/v1
kind: Schedule
metadata:
  name: inbox-async
spec:
  provider: edges
  action: linkedin-extract-conversations
  identities: [ident-alice]
  mode: async
  parameters:
    sync_mode: incremental
    max_results: 500
"""


@pytest.fixture
def work(cli_dir: Path) -> Path:
    return cli_dir


def edges_get(work: Path, path: str) -> Any:
    """What the simulated Edges reports (ground truth), through its own API."""

    async def get() -> Any:
        box = Sandbox.open(work / ".seqrun")
        async with box.client("edges") as client:
            resp = await client.get(path)
            resp.raise_for_status()
            return resp.json()

    return asyncio.run(get())


def live_schedules(work: Path) -> dict[str, str]:
    """uid -> cron of the ACTIVE extract-messages schedules."""
    data = edges_get(work, "schedules?action_name=linkedin-extract-messages&status=ACTIVE")
    items: list[dict[str, Any]] = (
        data.get("items") or data.get("data") or [] if isinstance(data, dict) else data)
    out: dict[str, str] = {}
    for item in items:
        uid = item.get("uid") or item.get("scheduled_run_uid")
        out[str(uid)] = str(item.get("cron"))
    return out


def with_secret_header(src: Path, dst: Path, name: str | None = None, cron: str | None = None
                       ) -> Path:
    text = src.read_text(encoding="utf-8").replace(
        "url: https://hooks.example.com/seqrun/edges",
        f"url: https://hooks.example.com/seqrun/edges\n    headers:\n      X-Secret: {SECRET}")
    if name:
        text = text.replace("name: inbox-sync", f"name: {name}")
    if cron:
        text = text.replace('cron: "0 8-18/2 * * 1-5"', f'cron: "{cron}"')
    dst.write_text(text, encoding="utf-8")
    return dst


def test_readme_inbox_sync_plan_apply_noop(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(capsys, "plan", str(INBOX_SYNC), "--sandbox", "--detailed-exitcode")
    assert code == 2, err
    assert out.splitlines() == ["+ create inbox-sync",
                                "Plan: 1 to create, 0 to replace, 0 to delete, 0 unchanged."]
    assert live_schedules(work) == {}  # plan changed nothing
    code, out, err = invoke(capsys, "apply", str(INBOX_SYNC), "--sandbox", "--auto-approve")
    assert code == 0, err
    assert "Schedules: 1 created, 0 replaced, 0 deleted, 0 unchanged." in out
    (uid,) = live_schedules(work)
    assert f"create inbox-sync -> {uid}" in out
    assert live_schedules(work) == {uid: "0 8-18/2 * * 1-5"}
    code, out, _ = invoke(capsys, "plan", str(INBOX_SYNC), "--sandbox", "--detailed-exitcode")
    assert code == 0
    assert out.splitlines() == [f"= unchanged inbox-sync [{uid}]",
                                "No changes. 1 schedule(s) up to date."]
    code, out, _ = invoke(capsys, "status")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:3] == ["SCHEDULE", "MODE", "ACTION"]
    assert row.split()[:4] == ["inbox-sync", "schedule", "linkedin-extract-messages", uid]
    code, out, _ = invoke(capsys, "status", "inbox-sync", "-o", "json")
    (sched,) = json.loads(out)["schedules"]
    assert (sched["uid"], sched["cron"], sched["mode"]) == (uid, "0 8-18/2 * * 1-5", "schedule")


def test_plan_json_never_shows_callback_header_values(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = with_secret_header(INBOX_SYNC, work / "sync.yaml")
    code, out, _ = invoke(capsys, "plan", str(manifest), "--sandbox", "-o", "json")
    assert code == 0 and SECRET not in out
    row = json.loads(out)["schedules"]["rows"][0]
    assert row["action"] == "create" and row["config"]["callback"]["headers"]["X-Secret"] != ""
    code, out, _ = invoke(capsys, "apply", str(manifest), "--sandbox", "--auto-approve",
                       "-o", "json")
    assert code == 0 and SECRET not in out
    assert json.loads(out)["schedules"]["created"] == ["inbox-sync"]


def test_saved_plan_applies_once_then_is_stale(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = with_secret_header(INBOX_SYNC, work / "sync.yaml")
    code, out, err = invoke(capsys, "plan", str(manifest), "--sandbox", "-out", "plan.json")
    assert code == 0, err
    assert "Saved the plan to plan.json; apply it with `seqrun apply plan.json --sandbox`." in out
    saved = work / "plan.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # it holds the header to recreate it
    assert live_schedules(work) == {}
    code, out, err = invoke(capsys, "apply", "plan.json", "--sandbox")  # approved when saved
    assert code == 0, err
    assert "Schedules: 1 created" in out and SECRET not in out
    assert len(live_schedules(work)) == 1
    code, _, err = invoke(capsys, "apply", "plan.json", "--sandbox")
    assert code == 1 and "stale plan" in err
    assert len(live_schedules(work)) == 1  # refused: nothing created twice


def test_saved_plan_is_stale_when_live_state_moved(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = with_secret_header(INBOX_SYNC, work / "sync.yaml")
    assert invoke(capsys, "apply", str(manifest), "--sandbox", "--auto-approve")[0] == 0
    changed = with_secret_header(INBOX_SYNC, work / "sync.yaml", cron="0 9 * * 1-5")
    code, out, _ = invoke(capsys, "plan", str(changed), "--sandbox", "-out", "plan.json")
    assert code == 0 and "-/+ replace inbox-sync" in out
    (uid,) = live_schedules(work)
    # another apply replaces the schedule before the saved plan is applied
    code, _, err = invoke(capsys, "apply", str(INBOX_SYNC), "--sandbox", "--auto-approve")
    assert code == 0, err
    code, _, err = invoke(capsys, "apply", "plan.json", "--sandbox")
    assert code == 1 and "stale plan" in err
    assert uid not in live_schedules(work)


def test_out_refuses_sequences_and_prune_belongs_to_plan(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    founders = str(SHARED_EXAMPLES / "founders-outreach.yaml")
    code, _, err = invoke(capsys, "plan", str(INBOX_SYNC), founders, "--sandbox", "-out",
                       "plan.json")
    assert code == 2 and "Schedule plans only" in err and not (work / "plan.json").exists()
    assert invoke(capsys, "plan", str(INBOX_SYNC), "--sandbox", "-out", "plan.json")[0] == 0
    code, _, err = invoke(capsys, "apply", "plan.json", "--sandbox", "--prune")
    assert code == 2 and "--prune" in err


def test_prune_deletes_undeclared_managed_schedules(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = with_secret_header(INBOX_SYNC, work / "other.yaml", name="other-sync",
                               cron="0 9 * * *")
    code, _, err = invoke(capsys, "apply", str(INBOX_SYNC), str(other), "--sandbox",
                       "--auto-approve")
    assert code == 0, err
    assert sorted(live_schedules(work).values()) == ["0 8-18/2 * * 1-5", "0 9 * * *"]
    # without --prune an undeclared schedule is left alone
    code, out, _ = invoke(capsys, "plan", str(INBOX_SYNC), "--sandbox", "--detailed-exitcode")
    assert code == 0 and "other-sync" not in out
    code, out, _ = invoke(capsys, "plan", str(INBOX_SYNC), "--sandbox", "--prune",
                       "--detailed-exitcode")
    assert code == 2 and "- delete other-sync [" in out
    code, out, err = invoke(capsys, "apply", str(INBOX_SYNC), "--sandbox", "--prune",
                         "--auto-approve")
    assert code == 0, err
    assert "Schedules: 0 created, 0 replaced, 1 deleted, 1 unchanged." in out
    assert list(live_schedules(work).values()) == ["0 8-18/2 * * 1-5"]
    code, _, _ = invoke(capsys, "plan", str(INBOX_SYNC), "--sandbox", "--prune",
                     "--detailed-exitcode")
    assert code == 0


def test_run_drives_async_schedules(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "async.yaml").write_text(ASYNC, encoding="utf-8")
    code, out, err = invoke(capsys, "apply", "async.yaml", "--sandbox", "--virtual-clock",
                         "--auto-approve")
    assert code == 0, err
    assert "create inbox-async (async, runner-driven)" in out
    code, out, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--once", "-o", "json")
    assert code == 0, err
    first = json.loads(out)["async_schedules"]["inbox-async"]
    assert first["started"] == 1 and first["continued"] == 0
    run_uid = first["run_uid"]
    assert edges_get(work, f"runs/{run_uid}")["uid"] == run_uid  # the run exists on Edges
    # a day of simulated time: each finished run is continued, never a second run/async
    code, out, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+1d")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("async schedule inbox-async:"))
    assert line.startswith("async schedule inbox-async: 0 run(s) started, ")
    continued = int(line.split(", ")[1].split()[0])
    assert continued >= 2
    after = edges_get(work, f"runs/{run_uid}")
    assert after["iteration"] == continued + 1  # Edges saw exactly the continues we counted
    assert after["last_error"] is None and after["outputs_count"] > 0
    code, out, _ = invoke(capsys, "status", "-o", "json")
    (sched,) = json.loads(out)["schedules"]
    assert (sched["name"], sched["mode"], sched["run_uid"]) == ("inbox-async", "async", run_uid)
    assert sched["continues"] == continued


def test_kill_switch_stops_async_schedules(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "async.yaml").write_text(ASYNC, encoding="utf-8")
    assert invoke(capsys, "apply", "async.yaml", "--sandbox", "--virtual-clock",
               "--auto-approve")[0] == 0
    assert invoke(capsys, "pause", "--all")[0] == 0
    code, out, _ = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--once", "-o", "json")
    assert code == 0 and json.loads(out)["async_schedules"] == {}
    assert invoke(capsys, "resume", "--all")[0] == 0
    code, out, _ = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--once", "-o", "json")
    assert json.loads(out)["async_schedules"]["inbox-async"]["started"] == 1


def test_run_without_async_schedules_asks_nothing_of_edges(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # no sandbox and no EDGES_API_KEY: an Edges client would be a ConfigError
    monkeypatch.delenv("EDGES_API_KEY", raising=False)
    code, out, err = invoke(capsys, "run", "--once", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["async_schedules"] == {}


def test_the_daemon_loop_drives_async_schedules_too(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "async.yaml").write_text(ASYNC, encoding="utf-8")
    assert invoke(capsys, "apply", "async.yaml", "--sandbox", "--auto-approve")[0] == 0
    # real clock, not --once: run_forever until the deadline (how many ticks fit in it depends
    # on the machine's load: only that each one advanced the schedule once is asserted)
    code, out, err = invoke(capsys, "run", "--sandbox", "--until", "+1s", "--poll-interval", "0.2",
                         "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["run"]["ticks"] >= 1
    runs = data["async_schedules"]["inbox-async"]
    assert runs["started"] == 1 and runs["ticks"] == data["run"]["ticks"]  # never started twice


def test_async_schedule_without_edges_credentials_is_a_reported_error(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (work / "async.yaml").write_text(ASYNC, encoding="utf-8")
    assert invoke(capsys, "apply", "async.yaml", "--sandbox", "--auto-approve")[0] == 0
    monkeypatch.delenv("EDGES_API_KEY", raising=False)
    code, out, _ = invoke(capsys, "run", "--once")  # the real API: no key
    assert code == 1
    assert "error: async schedules:" in out and "EDGES_API_KEY" in out
