"""The shared inbox-sync Schedule (linkedin-extract-messages, no `inputs`) runs as-is on the
sandbox: each iteration extracts the identity's messages across its conversations, newest
first, only the new ones after the first (incremental); live without a thread is BAD_INPUT."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.clock import VirtualClock
from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from engine.sandbox.common import parse_iso
from tests.conftest import SHARED_EXAMPLES

INBOX_SYNC = SHARED_EXAMPLES / "inbox-sync.yaml"
ANN = "https://www.linkedin.com/in/ann-inbox"
BEN = "https://www.linkedin.com/in/ben-inbox"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return tmp_path


def edges(sb: Any) -> dict[str, Any]:
    state: dict[str, Any] = sb.app.state.edges.state
    return state


async def next_iteration(sb: Any) -> dict[str, Any]:
    """Move the virtual clock to the schedule's next run, tick, and return that run."""
    (sched,) = edges(sb)["schedules"].values()
    sb.world.clock.set(parse_iso(sched["next_run_at"]))
    assert await sb.tick() == 1
    run: dict[str, Any] = edges(sb)["runs"][sched["last_run_uid"]]
    return run


def test_inbox_sync_schedule_runs_as_is(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["apply", str(INBOX_SYNC), "--sandbox", "--virtual-clock", "--auto-approve"])
    assert code == 0, capsys.readouterr().err
    sb = Sandbox.open(work / ".seqrun")
    world = sb.world
    clock = world.clock
    assert isinstance(clock, VirtualClock)
    for url in (ANN, BEN):
        world.add_profile(url, already_connected_with=["ident-alice"], replies=False)
    world.message("ident-alice", ANN, "Hello Ann")
    clock.advance(60)
    world.message("ident-alice", BEN, "Hello Ben")

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        first = await next_iteration(sb)
        clock.advance(60)
        world.message("ident-alice", ANN, "Following up, Ann")
        second = await next_iteration(sb)
        async with sb.client("edges") as client:
            live = await client.post(
                "actions/linkedin-extract-messages/run/live",
                json={"input": {}, "identity_ids": ["ident-alice"]},
            )
        assert live.status_code == 400 and live.json()["error_label"] == "BAD_INPUT"
        return first, second

    first, second = asyncio.run(go())
    assert first["status"] == "SUCCEEDED", first.get("last_error")
    texts = [m["content"] for m in first["outputs"][0]["data"]]
    assert texts == ["Hello Ben", "Hello Ann"]  # across conversations, newest first
    assert second["status"] == "SUCCEEDED", second.get("last_error")
    assert [m["content"] for m in second["outputs"][0]["data"]] == ["Following up, Ann"]
