"""The sandbox's ConnectSafely API (/linkedin): seed 002's sync shape, actions, error bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.sandbox import Sandbox
from engine.sandbox.world import World
from tests.conftest import quiet_config

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
    w.add_identity("acc_2", provider="connectsafely")
    w.add_identity("ident-alice", provider="edges")
    w.add_profile(ADA, accepts=True, replies=True)
    w.add_profile(BOB, already_connected_with=["acc_12345"], replies=True)
    w.add_profile("https://www.linkedin.com/in/gone", accessible=False)
    return w


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with Sandbox(world).client("connectsafely") as c:
        yield c


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert isinstance(body["error"], str) and body["success"] is False
    return body


async def test_bearer_auth(world: World) -> None:
    sb = Sandbox(world)
    async with httpx.AsyncClient(transport=sb.transport, base_url="http://sandbox/linkedin/") as c:
        error_of(await c.post("conversations/sync", json={}), 401)
        error_of(await c.post("conversations/sync", json={},
                              headers={"Authorization": "Bearer nope"}), 401)


async def test_sync_shape_counts_and_force(client: httpx.AsyncClient, world: World,
                                           clock: VirtualClock) -> None:
    world.message("acc_12345", BOB, "hi")
    r = await client.post("conversations/sync", json={"accountId": "acc_12345", "force": False})
    body = r.json()
    assert set(body) == {"success", "accountId", "conversationsProcessed", "messagesProcessed",
                         "durationMs", "durationSeconds"}
    assert body["success"] is True and body["accountId"] == "acc_12345"
    assert (body["conversationsProcessed"], body["messagesProcessed"]) == (1, 1)
    assert isinstance(body["durationMs"], int) and isinstance(body["durationSeconds"], str)
    clock.advance(timedelta(hours=2))  # Bob replied
    r = await client.post("conversations/sync", json={"accountId": "acc_12345", "force": True})
    assert r.json()["messagesProcessed"] == 1  # only the new reply
    error_of(await client.post("conversations/sync", json={"accountId": "acc_nope"}), 404)
    error_of(await client.post("conversations/sync", json={"accountId": "ident-alice"}), 404)


async def test_sync_status(client: httpx.AsyncClient) -> None:
    r = await client.get("conversations/sync/status")
    assert [a["status"] for a in r.json()["accounts"]] == ["never_synced", "never_synced"]
    await client.post("conversations/sync", json={})  # the default account
    r = await client.get("conversations/sync/status", params={"accountId": "acc_12345"})
    assert r.json()["status"] == "completed" and r.json()["lastSyncAt"]
    error_of(await client.get("conversations/sync/status", params={"accountId": "x"}), 404)


async def test_conversations_reflect_the_last_sync(client: httpx.AsyncClient, world: World,
                                                   clock: VirtualClock) -> None:
    world.message("acc_12345", BOB, "hi")
    r = await client.get("conversations", params={"accountId": "acc_12345"})
    assert r.json()["conversations"] == []  # never synced
    await client.post("conversations/sync", json={"accountId": "acc_12345"})
    clock.advance(timedelta(hours=2))  # Bob replies after the sync
    (conv,) = (await client.get("conversations")).json()["conversations"]
    assert conv["lastMessage"]["fromMe"] is True and conv["participantProfileUrl"] == BOB
    await client.post("conversations/sync", json={"accountId": "acc_12345", "force": True})
    (conv,) = (await client.get("conversations")).json()["conversations"]
    assert conv["lastMessage"]["fromMe"] is False and conv["firstMessageFromMe"] is True
    msgs = (await client.get(f"conversations/{conv['conversationId']}/messages")).json()
    assert [m["fromMe"] for m in msgs["messages"]] == [True, False]
    error_of(await client.get("conversations/2-nope/messages"), 404)


async def test_conversations_since_includes_its_own_instant(
        client: httpx.AsyncClient, world: World, clock: VirtualClock) -> None:
    """``since`` keeps a conversation whose last activity is in that very instant (many
    writes share one on the virtual clock); one older is left out."""
    world.message("acc_12345", BOB, "same instant")
    since = clock.now().isoformat()
    await client.post("conversations/sync", json={"accountId": "acc_12345"})
    r = await client.get("conversations", params={"accountId": "acc_12345", "since": since})
    assert [c["lastMessage"]["text"] for c in r.json()["conversations"]] == ["same instant"]
    clock.advance(timedelta(minutes=1))
    later = clock.now().isoformat()
    r = await client.get("conversations", params={"accountId": "acc_12345", "since": later})
    assert r.json()["conversations"] == []


async def test_message(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("message", json={"accountId": "acc_12345", "recipientProfileId": "bob",
                                           "message": "Hello"})
    assert r.json()["success"] is True and r.json()["conversationId"]
    assert [d.text for d in world.messages_to("acc_12345", BOB)] == ["Hello"]
    body = error_of(await client.post("message", json={"recipientProfileId": "ada",
                                                       "message": "x"}), 400)
    assert body["code"] == "not_connected"
    error_of(await client.post("message", json={"recipientProfileId": "bob"}), 400)
    error_of(await client.post("message", json={"recipientProfileId": "gone", "message": "x"}),
             404)
    urn = f"urn:li:fsd_profile:{world.profiles[BOB].sales_navigator_profile_id}"
    r = await client.post("message", json={"recipientProfileUrn": urn, "message": "again"})
    assert r.status_code == 200


async def test_connect_and_relationship(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("connect", json={"profileId": "ada", "customMessage": "Hi Ada"})
    assert r.json()["success"] is True
    rel = (await client.get("relationship/ada")).json()
    assert rel["connected"] is False and rel["invitationPending"] is True
    assert error_of(await client.post("connect", json={"profileId": "ada"}), 400)["code"] == (
        "invitation_pending")
    assert error_of(await client.post("connect", json={"profileId": "bob"}), 400)["code"] == (
        "already_connected")
    error_of(await client.post("connect", json={"profileId": "gone"}), 404)
    error_of(await client.post("connect", json={}), 400)
    error_of(await client.post("connect", json={"profileId": "x", "customMessage": "n" * 301}),
             400)
    rel = (await client.get("relationship/acc_12345/bob")).json()
    assert rel["connected"] is True and rel["connectionDegree"] == "1st"
    error_of(await client.get("relationship/acc_nope/bob"), 404)


async def test_limit_429_and_injected_faults(client: httpx.AsyncClient, world: World) -> None:
    world.identity("acc_12345").weekly_limits["connect"] = 0
    r = await client.post("connect", json={"profileId": "ada"})
    assert error_of(r, 429)["code"] == "limit_reached" and r.headers["Retry-After"]
    world.config.faults.rate_429 = 1.0
    r = await client.get("relationship/bob")
    error_of(r, 429)
    assert r.headers["Retry-After"] == "30"
    world.config.faults.rate_429, world.config.faults.rate_5xx = 0.0, 1.0
    error_of(await client.get("relationship/bob"), 500)


async def test_connectsafely_limits_are_its_own_not_edges(
        client: httpx.AsyncClient, world: World) -> None:
    """ConnectSafely documents 90 connection requests a week and no daily cap: 30 in one day
    go out (Edges' smart limit would stop at 25), and its daily message limit is 100."""
    world.populate(30, prefix="cs")
    urls = sorted(u for u in world.profiles if "-cs0" in u)
    for url in urls:
        if url not in world.network["acc_12345"]:
            r = await client.post("connect", json={"profileId": url.rsplit("/", 1)[-1]})
            assert r.status_code == 200, r.text
    assert world.limit_for("acc_12345", "connect") is None
    assert world.weekly_limit_for(world.identity("acc_12345"), "connect") == 90
    assert world.limit_for("acc_12345", "message") == 100


async def test_auth_expired_account(client: httpx.AsyncClient, world: World) -> None:
    world.set_auth("acc_12345", False)
    r = await client.post("message", json={"recipientProfileId": "bob", "message": "x"})
    assert error_of(r, 403)["code"] == "account_session_expired"
    r = await client.post("conversations/sync", json={"accountId": "acc_12345"})
    assert r.json()["success"] is False and r.json()["error"]


async def test_follow(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("follow", json={"profileId": "ada"})
    assert r.json()["following"] is True
    await client.post("follow", json={"profileId": "ada"})
    assert world.count("acc_12345", "follow") == 1
    assert (await client.get("relationship/ada")).json()["following"] is True
    error_of(await client.post("follow", json={}), 400)
    error_of(await client.post("follow", json={"profileId": "gone"}), 404)


async def test_weekly_connect_cap_puts_the_account_on_a_24h_hold(
    client: httpx.AsyncClient, world: World, clock: VirtualClock
) -> None:
    """ConnectSafely: 90 connection requests a calendar week (reset Monday 00:00 UTC); going
    over puts the account on a 24 h hold (429). Here a cap of 2, on a Monday."""
    from engine.errors import ProviderError
    from engine.providers.base import Lead
    from engine.providers.connectsafely import ConnectSafelyProvider
    from engine.vocab import LIMIT_REACHED

    world.add_identity("acc_3", provider="connectsafely", weekly_limits={"connect": 2})
    for name in ("p1", "p2", "p3", "p4"):
        world.add_profile(f"https://www.linkedin.com/in/{name}")
    assert clock.now().weekday() == 0  # Monday 08:00
    for name in ("p1", "p2"):
        r = await client.post("connect", json={"accountId": "acc_3", "profileId": name})
        assert r.json()["success"] is True
    clock.advance(timedelta(days=1))  # Tuesday: the week's two are spent, rolling 24 h or not
    r = await client.post("connect", json={"accountId": "acc_3", "profileId": "p3"})
    body = error_of(r, 429)
    hold = clock.now() + timedelta(days=1)
    iso = hold.isoformat().replace("+00:00", "Z")
    assert body["code"] == "limit_reached" and body["retryAt"] == iso
    assert r.headers["X-RateLimit-Action"] == "connect" and r.headers["Retry-After"] == "86400"
    # the adapter reads it as LIMIT_REACHED until the hold ends
    provider = ConnectSafelyProvider(client)
    with pytest.raises(ProviderError) as caught:
        await provider.perform("acc_3", "connect", Lead("https://www.linkedin.com/in/p3"), {})
    assert caught.value.label == LIMIT_REACHED
    assert caught.value.params["postponed_until"] == iso
    # the hold and the week's count survive a save of the world
    saved = World.from_json(world.to_json(), clock)
    usage = saved.inspect()["identities"]["acc_3"]["usage_week"]["connect"]
    assert usage == {"cap": 2, "used": 2, "hold_until": iso}
    clock.advance(timedelta(hours=25))  # the hold is over, the week is not: a new hold
    r = await client.post("connect", json={"accountId": "acc_3", "profileId": "p3"})
    again = (clock.now() + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert error_of(r, 429)["retryAt"] == again
    clock.set(datetime(2026, 1, 12, 9, 0, tzinfo=UTC))  # next Monday, the hold over
    r = await client.post("connect", json={"accountId": "acc_3", "profileId": "p3"})
    assert r.json()["success"] is True
    other = await client.post("connect", json={"accountId": "acc_12345", "profileId": "p4"})
    assert other.json()["success"] is True  # an account without a weekly cap


async def test_the_runner_keeps_to_a_weekly_cap_through_its_holds(
    tmp_path: Any, world: World, clock: VirtualClock
) -> None:
    """60 invitations over a cap of 30 a week: the engine's rolling-24-h limit (12) alone
    would send 36 in the first three days; the account's holds postpone the rest to the next
    week, and no week goes over, nobody is lost or invited twice."""
    from collections import Counter

    from engine.compile.machine import compile_sequence
    from engine.model import ActionStep, Metadata, Sequence
    from engine.providers.connectsafely import ConnectSafelyProvider
    from engine.run.runner import Runner
    from engine.sandbox.world import week_start
    from engine.store import Store

    world.add_identity("acc_9", provider="connectsafely", weekly_limits={"connect": 30})
    profiles = world.populate(60, prefix="cs")
    seq = Sequence(metadata=Metadata("weekly"), provider="connectsafely", identities=("acc_9",),
                   steps=(ActionStep("connect", "connect"),), normalized={"n": "weekly"})
    compiled = compile_sequence(seq)
    store = Store.open(None, tmp_path)
    store.put_revision(compiled.revision, seq.name, "Sequence", {"n": seq.name})
    store.put_sequence(seq.name, "Sequence", "connectsafely", compiled.revision)
    for p in profiles:
        lead = store.upsert_lead(p.url, {})
        store.enroll(lead, seq.name, compiled.revision, "acc_9", compiled.initial, clock.now())
    async with Sandbox(world).client("connectsafely") as c:
        runner = Runner(store, {"connectsafely": ConnectSafelyProvider(c)}, clock,
                        compiled={compiled.revision: compiled})
        await runner.run_until(clock.now() + timedelta(days=14))
    invites = [d for d in world.delivered if d.identity == "acc_9" and d.kind == "invite"]
    per_week = Counter(week_start(d.at) for d in invites)
    assert sorted(per_week.values()) == [30, 30]
    assert len({d.profile_url for d in invites}) == 60
    states = Counter(e.state for e in store.enrollments(sequence="weekly"))
    assert states == {"completed": 60}
    holds = [a for a in store.actions(identity="acc_9") if a.label == "LIMIT_REACHED"]
    assert holds and all(a.created_at.weekday() in (2, 3, 4, 5, 6) for a in holds)
    store.close()
