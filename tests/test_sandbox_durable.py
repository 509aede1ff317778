"""The sandbox's world is crash-safe: every answered call is in ``sandbox.db`` before the answer
leaves (engine/sandbox/durable.py), embedded or served; a scenario never silently loses to a
saved world."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from engine.clock import VirtualClock
from engine.errors import ConfigError
from engine.sandbox import LEGACY_FILE, Sandbox
from engine.sandbox.durable import DB_FILE

ADA = "https://www.linkedin.com/in/ada-lovelace-0001"
EDGES_KEY = {"X-API-Key": "sbx-edges-key"}


def _connect_body(url: str = ADA) -> dict[str, object]:
    return {"input": {"linkedin_profile_url": url}, "identity_ids": ["ident-alice"],
            "parameters": {"message": "Hi Ada"}}


def _relationship(box: Sandbox, url: str = ADA) -> str:
    return box.world.relationship("ident-alice", url)


async def test_an_answered_call_is_on_disk_before_the_process_lets_go(tmp_path: Path) -> None:
    box = Sandbox.open(tmp_path, profiles=0)
    async with box.client("edges") as client:
        r = await client.post("actions/linkedin-connect-profile/run/live", json=_connect_body())
    assert r.status_code == 200, r.text
    # no save, no close: what a SIGKILL leaves; a second process opens the directory
    again = Sandbox.open(tmp_path)
    assert _relationship(again) == "pending"
    assert [d.kind for d in again.world.delivered] == ["invite"]
    assert again.world.clock.now() == box.world.clock.now()


async def test_write_through_keeps_every_table_the_whole_save_keeps(tmp_path: Path) -> None:
    """Connect, accept (an applied event), message, reply, follow, withdraw: the world
    written call by call equals the world written whole."""
    box = Sandbox.open(tmp_path, profiles=5, seed=3)
    urls = [p.url for p in box.world.profiles.values()][:5]
    clock = box.world.clock
    assert isinstance(clock, VirtualClock)
    async with box.client("edges") as client:
        for url in urls:
            await client.post("actions/linkedin-visit-profile/run/live",
                              json={"input": {"linkedin_profile_url": url},
                                    "identity_ids": ["ident-alice"]})
            await client.post("actions/linkedin-connect-profile/run/live",
                              json=_connect_body(url))
        clock.advance(timedelta(days=10))
        for url in urls:
            await client.post("actions/linkedin-message-profile/run/live",
                              json={"input": {"linkedin_profile_url": url},
                                    "identity_ids": ["ident-alice"],
                                    "parameters": {"message": "Thanks!"}})
        clock.advance(timedelta(days=5))
        await client.post("actions/linkedin-me/run/live",
                          json={"input": {}, "identity_ids": ["ident-alice"]})
    through = Sandbox.open(tmp_path).world.to_json()
    box.save()
    whole = Sandbox.open(tmp_path).world.to_json()
    assert through == whole
    assert any(t["messages"] for t in whole["threads"])


def test_a_scenario_beside_a_saved_world_is_refused_unless_replaced(tmp_path: Path) -> None:
    Sandbox.open(tmp_path, profiles=0).close()
    scenario = {"seed": 4, "identities": [{"uid": "ident-zed", "name": "Zed"}]}
    with pytest.raises(ConfigError, match="already holds a sandbox world"):
        Sandbox.open(tmp_path, scenario=scenario)
    box = Sandbox.open(tmp_path, scenario=scenario, replace=True)
    assert set(box.world.identities) == {"ident-zed"}
    box.close()
    assert set(Sandbox.open(tmp_path).world.identities) == {"ident-zed"}


def test_a_world_saved_by_an_earlier_version_is_read_then_written_through(
        tmp_path: Path) -> None:
    old = Sandbox.open(None, profiles=2)
    doc = {"clock": "2026-02-02T10:00:00Z", "world": old.world.to_json()}
    (tmp_path / LEGACY_FILE).write_text(json.dumps(doc), encoding="utf-8")
    box = Sandbox.open(tmp_path)
    assert (tmp_path / DB_FILE).exists()
    assert box.world.clock.now().isoformat().startswith("2026-02-02T10:00")
    assert set(box.world.profiles) == set(old.world.profiles)


def test_json_orjson_refuses_is_written_all_the_same(tmp_path: Path) -> None:
    """A client's body may hold an integer past 64 bits (JSON allows it, orjson does not)."""
    box = Sandbox.open(tmp_path, profiles=0)
    box.world.api_state["linkedapi"] = {"body": {"n": 10**30}}
    box.persist()
    assert Sandbox.open(tmp_path).world.api_state["linkedapi"] == {"body": {"n": 10**30}}


async def test_a_look_without_write_changes_nothing_on_disk(tmp_path: Path) -> None:
    Sandbox.open(tmp_path, profiles=0).close()
    look = Sandbox.open(tmp_path, write=False)
    async with look.client("edges") as client:
        r = await client.post("actions/linkedin-connect-profile/run/live", json=_connect_body())
    assert r.status_code == 200
    look.close()
    assert _relationship(look) == "pending"
    assert _relationship(Sandbox.open(tmp_path)) == "none"


def test_a_look_without_write_leaves_no_database(tmp_path: Path) -> None:
    box = Sandbox.open(tmp_path, write=False, profiles=0)
    box.close()
    assert not (tmp_path / DB_FILE).exists()


# ---- served: SIGKILL right after an acknowledged send ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "sandbox", "serve", "--port", str(port),
         "--state-dir", str(state_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_up(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "sandbox serve exited"
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "sandbox serve did not start"
        time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    yield tmp_path / "world", _free_port()


def test_sigkill_of_sandbox_serve_right_after_an_acknowledged_invitation(
        served: tuple[Path, int]) -> None:
    state_dir, port = served
    base = f"http://127.0.0.1:{port}"
    proc = _serve(state_dir, port)
    try:
        _wait_up(proc, base)
        r = httpx.post(base + "/v1/actions/linkedin-connect-profile/run/live",
                       headers=EDGES_KEY, json=_connect_body(), timeout=10)
        assert r.status_code == 200, r.text
        os.kill(proc.pid, signal.SIGKILL)  # at once: no shutdown, no tick
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc = _serve(state_dir, port)
    try:
        _wait_up(proc, base)
        rel = httpx.get(base + "/_sandbox/relationship",
                        params={"identity": "ident-alice", "profile": ADA}, timeout=10)
        assert rel.json()["relationship"] == "pending"
        again = httpx.post(base + "/v1/actions/linkedin-connect-profile/run/live",
                           headers=EDGES_KEY, json=_connect_body(), timeout=10)
        assert again.json()["error_label"] == "INVITATION_PENDING"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_new_state_directory_is_owner_only(tmp_path: Path) -> None:
    """`sandbox serve --state-dir` (Sandbox.open) makes the directory 0700, as the store
    makes its own: the world holds message texts."""
    folder = tmp_path / "new" / "world"
    Sandbox.open(folder, profiles=0).close()
    assert (folder / DB_FILE).exists()
    assert folder.stat().st_mode & 0o777 == 0o700


def test_monthly_counts_survive_a_reopen(tmp_path: Path) -> None:
    box = Sandbox.open(tmp_path, profiles=0)
    world = box.world
    uid = next(iter(world.identities))
    world.identity(uid).monthly_limits["message"] = 5
    world._count(world.identity(uid), "message")
    box.save()
    box.close()
    again = Sandbox.open(tmp_path)
    assert again.world.month_usage(uid, "message") == 1
    again.close()
