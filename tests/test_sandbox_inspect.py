"""The inspection API (/_sandbox) and the embedded Sandbox (open, credentials, save, reopen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.sandbox import BASE_URLS, Sandbox
from engine.sandbox.world import World
from tests.conftest import quiet_config

BOB = "https://www.linkedin.com/in/bob"


def small_world() -> World:
    config = quiet_config(accept_delay_hours=(1, 1))
    w = World(VirtualClock(), seed=2, config=config)
    w.add_identity("ident-alice", provider="edges")
    w.add_profile(BOB, already_connected_with=["ident-alice"], replies=False)
    return w


async def send(edges: httpx.AsyncClient, text: str) -> httpx.Response:
    return await edges.post("actions/linkedin-message-profile/run/live", json={
        "input": {"linkedin_profile_url": BOB}, "parameters": {"message": text},
        "identity_ids": ["ident-alice"]})


async def already_sent(edges: httpx.AsyncClient, text: str) -> bool:
    while True:  # the check itself may time out
        try:
            r = await edges.post("actions/linkedin-extract-conversations/run/live",
                                 json={"input": {}, "identity_ids": ["ident-alice"]})
        except httpx.ReadTimeout:
            continue
        return any(c["last_message"]["content"] == text for c in r.json())


async def naive_send(edges: httpx.AsyncClient, text: str) -> None:
    for _ in range(5):
        try:
            if (await send(edges, text)).status_code < 300:
                return
        except httpx.ReadTimeout:
            continue


async def careful_send(edges: httpx.AsyncClient, text: str) -> None:
    for _ in range(5):
        try:
            if (await send(edges, text)).status_code < 300:
                return
        except httpx.ReadTimeout:
            if await already_sent(edges, text):
                return


@pytest.mark.parametrize(("sender", "duplicated"), [(naive_send, True), (careful_send, False)])
async def test_inspection_catches_a_duplicate_message(sender: Any, duplicated: bool) -> None:
    world = small_world()
    sb = Sandbox(world)
    async with sb.client("edges") as edges, sb.client("inspect") as inspect:
        await inspect.post("faults", json={"rate_timeout": 0.6})
        for i in range(8):
            await sender(edges, f"hello {i}")
        await inspect.post("faults", json={"rate_timeout": 0})
        dups = (await inspect.get("duplicates")).json()
        by_pair = (await inspect.get("deliveries/by-pair", params={"kind": "message"})).json()
    assert bool(dups) is duplicated
    assert by_pair[0]["identity"] == "ident-alice" and by_pair[0]["profile_url"] == BOB
    texts = [d["text"] for d in by_pair[0]["deliveries"]]
    assert (len(texts) != len(set(texts))) is duplicated


async def test_inspection_endpoints() -> None:
    world = small_world()
    sb = Sandbox(world)
    async with sb.client("edges") as edges, sb.client("inspect") as inspect:
        await send(edges, "hi")
        d = (await inspect.get("deliveries", params={"identity": "ident-alice"})).json()
        assert d == [{"identity": "ident-alice", "profile_url": BOB, "kind": "message",
                      "at": "2026-01-05T08:00:00Z", "text": "hi"}]
        assert (await inspect.get("counts", params={"kind": "message"})).json() == {"count": 1}
        clock = (await inspect.get("clock")).json()
        assert clock == {"now": "2026-01-05T08:00:00Z", "virtual": True}
        r = await inspect.post("clock/advance", json={"hours": 2})
        assert r.json()["now"] == "2026-01-05T10:00:00Z"
        assert (await inspect.post("faults", json={"nope": 1})).status_code == 400
        f = (await inspect.post("faults", json={"latency_s": 0, "rate_429": 0.5})).json()
        assert f["rate_429"] == 0.5
        await inspect.post("faults", json={"rate_429": 0})
        r = await inspect.post("auth", json={"identity": "ident-alice", "ok": False})
        assert r.json() == {"identity": "ident-alice", "auth_ok": False}
        events = (await inspect.get("integration-events")).json()
        assert [e["event"] for e in events] == ["AUTH_EXPIRED"]
        await inspect.post("auth", json={"identity": "ident-alice", "ok": True})
        r = await inspect.post("profiles", json={"url": "https://www.linkedin.com/in/new",
                                                 "writes_first_to": ["ident-alice"]})
        assert r.status_code == 201
        rel = (await inspect.get("relationship", params={"identity": "ident-alice",
                                                         "profile": BOB})).json()
        assert rel["relationship"] == "connected"
        conv = (await inspect.get("conversation", params={"identity": "ident-alice",
                                                          "profile": BOB})).json()
        assert [m["text"] for m in conv["messages"]] == ["hi"]
        await edges.post("actions/linkedin-me/run/async",
                         json={"identity_ids": ["ident-alice"], "inputs": [{}],
                               "callback": {"url": "https://hooks.example/x"}})
        assert (await inspect.post("tick")).json()["runs_started"] == 0
        cbs = (await inspect.get("callbacks")).json()
        assert cbs[0]["api"] == "edges" and cbs[0]["callback_url"] == "https://hooks.example/x"
        summary = (await inspect.get("world")).json()
        assert summary["identities"]["ident-alice"]["delivered"] == {"message": 1}


async def test_clock_advance_refused_on_a_real_clock() -> None:
    from engine.clock import RealClock

    async with Sandbox(World(RealClock())).client("inspect") as inspect:
        assert (await inspect.post("clock/advance", json={"hours": 1})).status_code == 409
        assert (await inspect.get("clock")).json()["virtual"] is False


async def test_open_default_world_save_and_reopen(tmp_path: Path) -> None:
    sb = Sandbox.open(tmp_path, profiles=5)
    assert {"ident-alice", "ident-bob", "acct-alice", "acc_12345"} <= set(sb.world.identities)
    assert sb.world.identity("ident-bob").type == "standard"
    assert sb.credentials("edges") == {"EDGES_API_KEY": "sbx-edges-key"}
    creds = sb.credentials("linkedapi")
    assert set(creds) >= {"LINKEDAPI_TOKEN", "LINKEDAPI_IDENTIFICATION_TOKEN"}
    assert sb.world.identity(creds["LINKEDAPI_IDENTIFICATION_TOKEN"]).uid == "acct-alice"
    assert sb.credentials("connectsafely") == {"CONNECTSAFELY_API_KEY": "sbx-connectsafely-key"}
    assert sb.base_url("linkedapi") == BASE_URLS["linkedapi"] == "http://sandbox/linkedapi"
    url = "https://www.linkedin.com/in/ada-lovelace-0001"
    async with sb.client("edges") as edges:
        r = await edges.post("actions/linkedin-visit-profile/run/live", json={
            "input": {"linkedin_profile_url": url}, "identity_ids": ["ident-alice"]})
        assert r.status_code == 200
        r = await edges.post("actions/linkedin-me/run/schedule", json={
            "identity_ids": ["ident-alice"], "inputs": [{}], "cron": "0 9 * * *"})
        sched_uid = r.json()["uid"]
    assert sb.world.profiles[url].full_name == "Ada Lovelace"  # from the examples' leads CSV
    assert isinstance(sb.world.clock, VirtualClock)
    sb.world.clock.advance(3600)
    sb.save()

    again = Sandbox.open(tmp_path)
    assert again.world.now == sb.world.now  # the virtual clock resumed
    assert again.world.count("ident-alice", "visit") == 1
    async with again.client("edges") as edges:
        r = await edges.get(f"schedules/{sched_uid}")
        assert r.json()["status"] == "ACTIVE"


async def test_connectsafely_and_linkedapi_clients_are_wired(tmp_path: Path) -> None:
    sb = Sandbox.open(None, profiles=0)
    async with sb.client("connectsafely") as cs:
        r = await cs.get("conversations/sync/status", params={"accountId": "acc_12345"})
        assert r.status_code == 200
    if sb.app.state.linkedapi_mounted:
        async with sb.client("linkedapi") as la:
            r = await la.get("account")
            assert r.status_code < 500


async def test_auth_expiry_integration_webhook_is_posted() -> None:
    posted: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        posted.append({"url": str(request.url), "body": json.loads(request.content),
                       "secret": request.headers.get("x-secret")})
        return httpx.Response(204)

    world = small_world()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as hooks:
        sb = Sandbox(world, callback_client=hooks)
        async with sb.client("inspect") as inspect:
            r = await inspect.post("integration-webhooks",
                                   json={"url": "https://hooks.example/int",
                                         "headers": {"X-Secret": "s"}})
            assert r.status_code == 201
            world.set_auth("ident-alice", False)
            await sb.tick()
            world.set_auth("ident-alice", True)
            await sb.tick()
            await sb.tick()  # nothing new: nothing re-sent
    assert [p["body"]["event"] for p in posted] == ["AUTH_EXPIRED", "AUTH_SUCCESS"]
    assert posted[0]["body"]["identity_uid"] == "ident-alice"
    assert posted[0]["url"] == "https://hooks.example/int" and posted[0]["secret"] == "s"


async def test_same_seed_and_http_calls_give_the_same_state() -> None:
    import json

    async def script(seed: int) -> str:
        sb = Sandbox.open(None, seed=seed, profiles=30)
        urls = sorted(sb.world.profiles)[:12]
        async with sb.client("edges") as edges:
            for url in urls:
                await edges.post("actions/linkedin-connect-profile/run/live", json={
                    "input": {"linkedin_profile_url": url}, "identity_ids": ["ident-alice"]})
            assert isinstance(sb.world.clock, VirtualClock)
            sb.world.clock.advance(4 * 86400)
            for url in urls:
                await edges.post("actions/linkedin-message-profile/run/live", json={
                    "input": {"linkedin_profile_url": url}, "parameters": {"message": "hi"},
                    "identity_ids": ["ident-alice"]})
            sb.world.clock.advance(3 * 86400)
            await edges.post("actions/linkedin-extract-conversations/run/async",
                             json={"identity_ids": ["ident-alice"], "inputs": [{}]})
            await sb.tick()
        return json.dumps(sb.world.to_json(), sort_keys=True)

    a, b, c = await script(11), await script(11), await script(12)
    assert a == b and a != c


async def test_overlaps_record_an_identitys_calls_answered_at_once() -> None:
    """Ground truth for the multi-worker tests: two calls of one identity being answered at
    once are an overlap; calls of two identities at once, or one after the other, are not."""
    import asyncio

    w = small_world()
    w.add_identity("ident-bob", provider="edges")
    w.config.faults.latency_s = 0.01  # each call is still being answered when the next comes
    sandbox = Sandbox(w)

    def visit(identity: str) -> dict[str, Any]:
        return {"input": {"linkedin_profile_url": BOB}, "identity_ids": [identity]}

    path = "actions/linkedin-visit-profile/run/live"
    async with sandbox.client("edges") as edges, sandbox.client("inspect") as inspect:
        await asyncio.gather(edges.post(path, json=visit("ident-alice")),
                             edges.post(path, json=visit("ident-bob")))
        await edges.post(path, json=visit("ident-alice"))
        assert (await inspect.get("overlaps")).json() == []
        await asyncio.gather(edges.post(path, json=visit("ident-alice")),
                             edges.post(path, json=visit("ident-alice")))
        overlaps = (await inspect.get("overlaps")).json()
    assert [(o["identity"], o["op"], o["during"]) for o in overlaps] == [
        ("ident-alice", "linkedin-visit-profile", ["linkedin-visit-profile"])]
    assert w.in_flight == {"ident-alice": [], "ident-bob": []}
