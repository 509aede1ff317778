"""ConnectSafely's conversation sync: `force` (seed 002, "force sync even if recently synced")
honoured by the sandbox and the adapter, set per sequence by `spec.sync.force` (refused on the
other providers), and the last sync's counts, time and status shown by `seqrun status`."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.manifest.loader import load
from engine.model import Metadata, Sequence
from engine.providers.connectsafely import ConnectSafelyProvider
from engine.run.sync import sync_force
from engine.sandbox import Sandbox
from engine.sandbox.world import World
from tests.conftest import invoke, quiet_config

ROOT = Path(__file__).resolve().parent.parent
ADA = "https://www.linkedin.com/in/ada"
BOB = "https://www.linkedin.com/in/bob"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    config = quiet_config(reply_delay_hours=(1, 1))
    w = World(clock, seed=4, config=config)
    w.add_identity("acc_12345", provider="connectsafely")
    w.add_profile(ADA, already_connected_with=["acc_12345"], replies=True)
    w.add_profile(BOB, already_connected_with=["acc_12345"], replies=True)
    return w


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with Sandbox(world).client("connectsafely") as c:
        yield c


async def test_a_recent_sync_without_force_is_skipped_and_with_force_runs(
    client: httpx.AsyncClient, world: World, clock: VirtualClock
) -> None:
    acc = {"accountId": "acc_12345"}
    world.message("acc_12345", BOB, "hi")
    first = (await client.post("conversations/sync", json={**acc, "force": False})).json()
    assert (first["conversationsProcessed"], first["messagesProcessed"]) == (1, 1)
    before = (await client.get("conversations/sync/status", params=acc)).json()
    clock.advance(timedelta(seconds=30))
    world.message("acc_12345", ADA, "hello Ada")
    skipped = (await client.post("conversations/sync", json={**acc, "force": False})).json()
    assert (skipped["conversationsProcessed"], skipped["messagesProcessed"]) == (0, 0)
    # the status still describes the sync that ran; the listing does not show Ada yet
    assert (await client.get("conversations/sync/status", params=acc)).json() == before
    listed = (await client.get("conversations", params=acc)).json()["conversations"]
    assert [c["participantProfileUrl"] for c in listed] == [BOB]
    forced = (await client.post("conversations/sync", json={**acc, "force": True})).json()
    assert (forced["conversationsProcessed"], forced["messagesProcessed"]) == (1, 1)
    status = (await client.get("conversations/sync/status", params=acc)).json()
    assert status["lastSyncAt"] != before["lastSyncAt"] and status["messagesProcessed"] == 1
    clock.advance(timedelta(minutes=2))  # out of the window: an unforced sync runs again
    world.message("acc_12345", BOB, "again")
    later = (await client.post("conversations/sync", json={**acc, "force": False})).json()
    assert later["messagesProcessed"] == 1


async def test_the_adapter_passes_force_and_reports_the_sync(
    client: httpx.AsyncClient, world: World, clock: VirtualClock
) -> None:
    provider = ConnectSafelyProvider(client)
    world.message("acc_12345", BOB, "hi")
    assert [c.profile_url for c in await provider.sync_conversations("acc_12345")] == [BOB]
    first = provider.sync_report("acc_12345")
    assert first is not None and first["force"] is True  # unset: forced, as before
    assert (first["conversations_processed"], first["messages_processed"]) == (1, 1)
    assert first["sync_status"] == "completed" and first["last_sync_at"] is not None
    clock.advance(timedelta(seconds=20))
    world.message("acc_12345", ADA, "hello Ada")
    urls = [c.profile_url for c in await provider.sync_conversations("acc_12345", force=False)]
    assert urls == [BOB]  # skipped by the provider: Ada's thread is not in its database yet
    # the report is still of the sync that ran (its time and counts), sent without force
    assert provider.sync_report("acc_12345") == {**first, "force": False}
    urls = [c.profile_url for c in await provider.sync_conversations("acc_12345", force=True)]
    assert sorted(urls) == [ADA, BOB]
    report = provider.sync_report("acc_12345")
    assert report is not None and report["last_sync_at"] > first["last_sync_at"]


def _sequence(tmp: Path, provider: str, sync: str) -> Path:
    text = (ROOT / "sequences" / "founders-on-connectsafely.yaml").read_text()
    text = text.replace("  provider: connectsafely\n", f"  provider: {provider}\n{sync}")
    shutil.copy(ROOT / "sequences" / "leads.csv", tmp / "leads.csv")
    path = tmp / "seq.yaml"
    path.write_text(text)
    return path


def test_validate_refuses_sync_force_on_other_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sequence(tmp_path, "linkedapi", "  sync:\n    force: false\n")
    code, _, err = invoke(capsys, "validate", str(path))
    assert code != 0
    assert "seq.yaml:14:" in err and "$.spec.sync.force" in err  # the line of `force`
    assert "sync.force is only valid with provider: connectsafely" in err
    ok = _sequence(tmp_path, "connectsafely", "  sync:\n    force: false\n")
    code, _, err = invoke(capsys, "validate", str(ok))
    assert code == 0, err
    assert load([ok])[0].sync_force is False  # type: ignore[union-attr]


def _status_sync(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = invoke(capsys, "status", "--virtual-clock", "-o", "json")
    assert code == 0, err
    ids = {i["id"]: i for i in json.loads(out)["identities"]}
    sync: dict[str, Any] = ids["acc_12345"]["sync"]
    return sync


@pytest.mark.parametrize("setting, forced", [("  sync:\n    force: false\n", False),
                                             ("", True)])
def test_status_shows_the_last_sync_per_identity(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], setting: str, forced: bool
) -> None:
    path = _sequence(cli_dir, "connectsafely", setting)
    code, _, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve")
    assert code == 0, err
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+3d")
    assert code == 0, err
    sync = _status_sync(capsys)
    assert sync["force"] is forced  # what every runner sync of this sequence sent
    assert sync["sync_status"] == "completed" and sync["last_sync_at"]
    assert isinstance(sync["conversations_processed"], int)
    assert isinstance(sync["messages_processed"], int)
    world = Sandbox.open(cli_dir / ".seqrun").world
    state = world.api_state["connectsafely"]["syncs"]["acc_12345"]
    assert sync["last_sync_at"].startswith(state["lastSyncAt"][:19])  # the provider's time
    code, out, err = invoke(capsys, "status", "--virtual-clock")
    assert code == 0, err
    assert "conversation syncs" in out and "completed" in out


def test_an_identity_shared_by_sequences_skips_force_only_if_all_say_false() -> None:
    def seq(force: bool | None) -> Sequence:
        return Sequence(Metadata("s"), "connectsafely", ("acc_12345",), (), sync_force=force)

    assert sync_force([seq(None), seq(None)]) is None
    assert sync_force([seq(False), seq(False)]) is False
    assert sync_force([seq(False), seq(None)]) is True  # unset is the forced default
    assert sync_force([seq(False), seq(True)]) is True
