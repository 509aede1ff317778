"""The Edges sandbox's incremental watermarks are the world's write numbers, not times: on the
virtual clock many writes share one instant, and an item written in the instant of the
previous incremental list must still be new to the next one (none missed), while an item
listed once is not listed again (none duplicated). A world saved before the numbers still
loads, its old time watermarks read as "the writes before that instant"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from engine.clock import VirtualClock
from engine.providers.clients import make_client
from engine.providers.edges.actions import EdgesProvider
from engine.sandbox import Sandbox
from engine.sandbox.durable import DB_FILE, WorldDB
from engine.sandbox.world import World
from engine.sandbox.world.records import all_rows
from tests.conftest import quiet_config

ALICE = "ident-alice"
ADA = "https://www.linkedin.com/in/ada"
INCREMENTAL = {"sync_mode": "incremental"}


def _world(clock: VirtualClock) -> World:
    # acceptances and replies land in the instant of the invitation or message they answer
    config = quiet_config(accept_delay_hours=(0, 0),
                         reply_delay_hours=(0, 0), writes_first_delay_hours=(0, 0))
    w = World(clock, seed=5, config=config)
    w.add_identity(ALICE, name="Alice Martin", type="engagement", provider="edges")
    w.add_profile(ADA, full_name="Ada Lovelace", already_connected_with=[ALICE], replies=False)
    for i in range(8):
        w.add_profile(f"https://www.linkedin.com/in/p{i}", full_name=f"P {i}", accepts=True,
                      replies=False)
    return w


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    return _world(clock)


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with Sandbox(world).client("edges") as c:
        yield c


async def _live(client: httpx.AsyncClient, action: str, input: dict[str, Any] | None = None,
                cursor: str | None = None) -> httpx.Response:
    body = {"input": input or {}, "identity_ids": [ALICE], "parameters": INCREMENTAL}
    r = await client.post(cursor or f"actions/{action}/run/live", json=body)
    assert r.status_code == 200, r.text
    return r


def _texts(outputs: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for o in outputs for m in o["data"] or []]


async def test_async_continue_in_one_instant_misses_and_repeats_nothing(
        client: httpx.AsyncClient, world: World) -> None:
    """Every write and every iteration in one virtual instant (the inbox sync of seed 000:
    no thread input)."""
    world.message(ALICE, ADA, "one")
    r = await client.post("actions/linkedin-extract-messages/run/async", json={
        "identity_ids": [ALICE], "inputs": [{}], "parameters": INCREMENTAL})
    uid = r.json()["run_uid"]
    seen = [_texts((await client.get(f"runs/{uid}/outputs")).json())]
    for text in ("two", "three", None):
        if text is not None:
            world.message(ALICE, ADA, text)
        assert (await client.post(f"runs/{uid}/continue")).status_code == 200
        seen.append(_texts((await client.get(f"runs/{uid}/outputs")).json()))
    assert seen == [["one"], ["two"], ["three"], []]


async def test_a_failed_iteration_does_not_move_the_watermark(
        client: httpx.AsyncClient, world: World) -> None:
    """The session expires: the iteration FAILS and lists nothing; the next one, once it is
    back, lists what was written meanwhile (and in the failed iteration's instant)."""
    world.message(ALICE, ADA, "one")
    r = await client.post("actions/linkedin-extract-messages/run/async", json={
        "identity_ids": [ALICE], "inputs": [{}], "parameters": INCREMENTAL})
    uid = r.json()["run_uid"]
    assert _texts((await client.get(f"runs/{uid}/outputs")).json()) == ["one"]
    world.message(ALICE, ADA, "two")
    world.set_auth(ALICE, False)
    await client.post(f"runs/{uid}/continue")
    assert (await client.get(f"runs/{uid}")).json()["status"] == "FAILED"
    world.set_auth(ALICE, True)
    await client.post(f"runs/{uid}/continue")
    assert _texts((await client.get(f"runs/{uid}/outputs")).json()) == ["two"]


async def test_scheduled_iterations_get_each_write_exactly_once(
        client: httpx.AsyncClient, world: World, clock: VirtualClock) -> None:
    """Hourly incremental schedule; writes land in each iteration's own instant, before and
    after it runs: the iterations together return each message once."""
    r = await client.post("actions/linkedin-extract-messages/run/schedule", json={
        "identity_ids": [ALICE], "inputs": [{}], "parameters": INCREMENTAL,
        "cron": "0 * * * *", "timezone": "UTC"})
    assert r.status_code == 201, r.text
    sched = r.json()["uid"]
    written: list[str] = []
    for hour in range(4):
        due = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        clock.advance(due - clock.now())
        world.message(ALICE, ADA, f"h{hour} before")
        await client.get("runs")  # any request runs the due iteration, in this instant
        world.message(ALICE, ADA, f"h{hour} after")
        written += [f"h{hour} before", f"h{hour} after"]
    clock.advance(timedelta(hours=1))
    await client.get("runs")  # a last iteration picks up the last write
    runs = (await client.get(f"schedules/{sched}")).json()["run_uids"]
    got: list[str] = []
    for uid in runs:
        got += _texts((await client.get(f"runs/{uid}/outputs")).json())
    assert sorted(got) == sorted(written)  # none missed, none twice


async def test_live_connections_accepted_in_the_instant_of_the_last_list(
        client: httpx.AsyncClient, world: World) -> None:
    """An invitation accepted in the instant of the previous incremental list (the
    acceptance applied after it) is in the next one, and only there."""
    urls = [f"https://www.linkedin.com/in/p{i}" for i in range(3)]
    world.connect(ALICE, urls[0])
    first = (await _live(client, "linkedin-extract-connections")).json()
    assert {c["linkedin_profile_url"] for c in first} == {ADA, urls[0]}
    for url in urls[1:]:
        world.connect(ALICE, url)
    second = (await _live(client, "linkedin-extract-connections")).json()
    assert {c["linkedin_profile_url"] for c in second} == set(urls[1:])
    assert (await _live(client, "linkedin-extract-connections")).json() == []


async def test_live_conversations_and_replies_in_one_instant(
        client: httpx.AsyncClient, world: World) -> None:
    url = "https://www.linkedin.com/in/p0"
    world.message(ALICE, ADA, "hi Ada")
    first = (await _live(client, "linkedin-extract-conversations")).json()
    assert [c["last_message"]["content"] for c in first] == ["hi Ada"]
    world.connect(ALICE, url)
    world.message(ALICE, url, "hi P0")
    second = (await _live(client, "linkedin-extract-conversations")).json()
    assert [c["last_message"]["content"] for c in second] == ["hi P0"]


async def test_pages_of_one_incremental_list_ignore_writes_made_while_paging(
        client: httpx.AsyncClient, world: World) -> None:
    """The cursor keeps the first page's window: three messages written between the pages
    neither shift page two nor join it; the next incremental list has exactly them."""
    thread = None
    for i in range(25):
        thread = world.message(ALICE, ADA, f"m{i:02d}")
    assert thread is not None
    ref = {"linkedin_thread_url": thread.thread_url}
    page1 = await _live(client, "linkedin-extract-messages", ref)
    for i in range(25, 28):
        world.message(ALICE, ADA, f"m{i:02d}")
    page2 = await _live(client, "linkedin-extract-messages", ref,
                        cursor=page1.headers["X-Pagination-Next"])
    assert "X-Pagination-Next" not in page2.headers
    listed = [m["content"] for m in page1.json() + page2.json()]
    assert sorted(listed) == [f"m{i:02d}" for i in range(25)]
    after = (await _live(client, "linkedin-extract-messages", ref)).json()
    assert [m["content"] for m in after] == ["m27", "m26", "m25"]


# ---- the engine's incremental reads ------------------------------------------------------


async def test_engine_connections_refresh_sees_one_accepted_in_a_crowded_instant(
        world: World) -> None:
    """45 invitations accepted in one instant, read by a full sweep; one more accepted in
    that instant after it: the adapter's incremental refresh (newest first, stops at the
    first page of known connections) must see it, so the sandbox lists an instant's
    connections newest written first (not by URL)."""
    crowd = [f"https://www.linkedin.com/in/z{i:02d}" for i in range(45)]
    late = "https://www.linkedin.com/in/a-late"
    for url in [*crowd, late]:
        world.add_profile(url, full_name=url[-3:], accepts=True, replies=False)
    world.identity(ALICE).limits["connect"] = 100
    for url in crowd:
        world.connect(ALICE, url)
    async with make_client("edges", sandbox=Sandbox(world), env={}) as c:
        edges = EdgesProvider(c)
        assert await edges.connections(ALICE) == {ADA, *crowd}
        world.connect(ALICE, late)  # accepted in the same instant
        assert late in await edges.connections(ALICE)


# ---- a world saved before the write numbers ----------------------------------------------


def _as_before_the_numbers(world: World, clock: str) -> list[tuple[str, str, bytes]]:
    """The rows an earlier sandbox wrote for ``world``: connections as a bare time,
    messages and scalars without numbers, Edges watermarks as ISO times."""
    rows: list[tuple[str, str, bytes]] = []
    for section, key, body in all_rows(world, clock):
        value = orjson.loads(body)
        if section == "connections":
            value = value[0]
        elif section == "threads":
            for m in value["messages"]:
                del m["seq"]
        elif section == "meta" and key == "scalars":
            del value["writes"]
        elif section == "api_state" and key == "edges":
            for run in value["runs"].values():
                run.pop("upto", None)
            value["watermarks"] = dict.fromkeys(value["watermarks"], clock)
        rows.append((section, key, orjson.dumps(value)))
    return rows


async def test_a_world_saved_before_the_numbers_loads_and_misses_nothing(
        tmp_path: Path) -> None:
    clock = VirtualClock()
    world = _world(clock)
    world.message(ALICE, ADA, "before the run")
    clock.advance(timedelta(hours=1))
    async with Sandbox(world).client("edges") as client:
        r = await client.post("actions/linkedin-extract-messages/run/async", json={
            "identity_ids": [ALICE], "inputs": [{}], "parameters": INCREMENTAL})
        uid = r.json()["run_uid"]
        assert _texts((await client.get(f"runs/{uid}/outputs")).json()) == ["before the run"]
        await _live(client, "linkedin-extract-connections")
    world.message(ALICE, ADA, "same instant, after the run")  # the bug lost this one
    world.connect(ALICE, "https://www.linkedin.com/in/p1")  # accepted in the same instant
    saved_at = clock.now().isoformat().replace("+00:00", "Z")
    db = WorldDB(tmp_path / DB_FILE)
    db.write(_as_before_the_numbers(world, saved_at))
    db.close()

    box = Sandbox.open(tmp_path)
    w = box.world
    seqs = [m.seq for t in w.threads[ALICE].values() for m in t.messages]
    conns = [w.connection_seq(ALICE, u) for u in w.network[ALICE]]
    assert sorted(seqs + conns) == list(range(1, len(seqs) + len(conns) + 1))
    assert seqs == sorted(seqs)  # in the order of their times
    box.close()
    again = Sandbox.open(tmp_path)  # numbered once, written whole: the same numbers
    assert [m.seq for t in again.world.threads[ALICE].values() for m in t.messages] == seqs
    async with again.client("edges") as client:
        assert (await client.post(f"runs/{uid}/continue")).status_code == 200
        got = _texts((await client.get(f"runs/{uid}/outputs")).json())
        assert got == ["same instant, after the run"]
        # a pre-existing connection materialized after the upgrade: dated in the past,
        # numbered last; the old time watermark must not jump over p1 because of it
        old_friend = "https://www.linkedin.com/in/old-friend"
        again.world.add_profile(old_friend, already_connected_with=[ALICE])
        conns_now = (await _live(client, "linkedin-extract-connections")).json()
        assert {c["linkedin_profile_url"] for c in conns_now} == {
            "https://www.linkedin.com/in/p1", old_friend}
        again.world.message(ALICE, ADA, "after the upgrade")
        assert (await client.post(f"runs/{uid}/continue")).status_code == 200
        got = _texts((await client.get(f"runs/{uid}/outputs")).json())
        assert got == ["after the upgrade"]
    again.close()
