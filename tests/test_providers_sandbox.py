"""Both adapters against the in-process sandbox (build_app over a World on a virtual clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from engine.clock import VirtualClock
from engine.errors import ConfigError, ProviderError
from engine.providers.base import Lead
from engine.providers.clients import make_client
from engine.providers.connectsafely import ConnectSafelyProvider
from engine.providers.edges.actions import EdgesProvider
from engine.sandbox.app import build_app
from engine.sandbox.common import CREDENTIALS
from engine.sandbox.world import World, WorldConfig

ANA = "https://www.linkedin.com/in/ana-lima"
BOB = "https://www.linkedin.com/in/bob-stone"
GONE = "https://www.linkedin.com/in/gone-person"


@pytest.fixture
def world() -> World:
    config = WorldConfig(accept_probability=1.0, reply_probability=1.0,
                         already_connected_fraction=0.0, writes_first_fraction=0.0,
                         inaccessible_fraction=0.0)
    w = World(VirtualClock(), seed=7, config=config)
    w.add_identity("id-alice")
    w.add_profile(ANA, already_connected_with=[], writes_first_to=[])
    w.add_profile(BOB, already_connected_with=["id-alice"], writes_first_to=[])
    w.add_profile(GONE, accessible=False, already_connected_with=[], writes_first_to=[])
    return w


def client(world: World, provider: str) -> httpx.AsyncClient:
    app = build_app(world)
    base = {"edges": "http://sandbox/v1", "connectsafely": "http://sandbox/linkedin"}[provider]
    env = {**CREDENTIALS[provider], f"SEQRUN_{provider.upper()}_BASE_URL": base}
    return make_client(provider, env=env, transport=httpx.ASGITransport(app=app))


@pytest.fixture
async def edges(world: World) -> AsyncIterator[EdgesProvider]:
    async with client(world, "edges") as c:
        yield EdgesProvider(c)


@pytest.fixture
async def cs(world: World) -> AsyncIterator[ConnectSafelyProvider]:
    async with client(world, "connectsafely") as c:
        yield ConnectSafelyProvider(c)


async def test_edges_connect_accept_message_reply(edges: EdgesProvider, world: World) -> None:
    me = await edges.me("id-alice")
    assert me == str(world.identity("id-alice").profile_id)
    lead = Lead(ANA, {"enrollment_id": 1})
    await edges.perform("id-alice", "visit_profile", lead, {})
    await edges.perform("id-alice", "connect", lead, {"note": "Hi Ana"})
    assert (await edges.relationship("id-alice", lead)).status == "pending"
    with pytest.raises(ProviderError) as info:
        await edges.perform("id-alice", "connect", lead, {"note": "again"})
    assert info.value.label == "INVITATION_PENDING"
    with pytest.raises(ProviderError) as info:
        await edges.perform("id-alice", "send_message", lead, {"text": "too early"})
    assert info.value.label == "NOT_CONNECTED"
    world.clock.advance(timedelta(days=4))  # type: ignore[attr-defined]
    assert (await edges.perform("id-alice", "check_connection", lead, {})).status == "connected"
    await edges.perform("id-alice", "send_message", lead, {"text": "Thanks for connecting"})
    convs = {c.profile_url: c for c in await edges.sync_conversations("id-alice")}
    assert convs[ANA].last_sender_is_us and convs[ANA].first_sender_is_us
    world.clock.advance(timedelta(days=3))  # type: ignore[attr-defined]
    convs = {c.profile_url: c for c in await edges.sync_conversations("id-alice")}
    assert not convs[ANA].last_sender_is_us  # the lead replied
    assert len(world.messages_to("id-alice", ANA)) == 1


async def test_edges_edge_cases(edges: EdgesProvider, world: World) -> None:
    with pytest.raises(ProviderError) as info:
        await edges.perform("id-alice", "connect", Lead(BOB), {})
    assert info.value.label == "ALREADY_CONNECTED"
    assert BOB in await edges.connections("id-alice")
    with pytest.raises(ProviderError) as info:
        await edges.perform("id-alice", "visit_profile", Lead(GONE), {})
    assert info.value.label == "PROFILE_NOT_ACCESSIBLE"
    assert await edges.identity_healthy("id-alice")
    world.set_auth("id-alice", False)
    assert not await edges.identity_healthy("id-alice")
    with pytest.raises(ProviderError) as info:
        await edges.perform("id-alice", "visit_profile", Lead(ANA), {})
    assert info.value.label == "AUTH_EXPIRED"


async def test_edges_limit_reached_has_postponed_until(world: World) -> None:
    world.config.limits["classic"]["visit"] = 1
    async with client(world, "edges") as c:
        edges = EdgesProvider(c)
        await edges.perform("id-alice", "visit_profile", Lead(ANA), {})
        with pytest.raises(ProviderError) as info:
            await edges.perform("id-alice", "visit_profile", Lead(BOB), {})
    assert info.value.label == "LIMIT_REACHED"
    assert "postponed_until" in info.value.params


async def test_edges_bad_key_is_a_config_error(world: World) -> None:
    app = build_app(world)
    env = {"EDGES_API_KEY": "wrong-key", "SEQRUN_EDGES_BASE_URL": "http://sandbox/v1"}
    async with make_client("edges", env=env, transport=httpx.ASGITransport(app=app)) as c:
        with pytest.raises(ConfigError) as info:
            await EdgesProvider(c).perform("id-alice", "visit_profile", Lead(ANA), {})
    assert "wrong-key" not in str(info.value)


async def test_connectsafely_flow(cs: ConnectSafelyProvider, world: World) -> None:
    lead = Lead(ANA)
    await cs.perform("id-alice", "connect", lead, {"note": "Hi"})
    assert (await cs.relationship("id-alice", lead)).status == "pending"
    with pytest.raises(ProviderError) as info:
        await cs.perform("id-alice", "connect", Lead(BOB), {})
    assert info.value.label == "ALREADY_CONNECTED"
    with pytest.raises(ProviderError) as info:
        await cs.perform("id-alice", "send_message", lead, {"text": "early"})
    assert info.value.label == "NOT_CONNECTED"
    with pytest.raises(ProviderError) as info:
        await cs.perform("id-alice", "connect", Lead(GONE), {})
    assert info.value.label == "PROFILE_NOT_ACCESSIBLE"
    world.clock.advance(timedelta(days=4))  # type: ignore[attr-defined]
    result = await cs.perform("id-alice", "check_connection", lead, {})
    assert result.status == "connected"
    await cs.perform("id-alice", "send_message", lead, {"text": "Thanks"})
    convs = {c.profile_url: c for c in await cs.sync_conversations("id-alice")}
    assert convs[ANA].last_sender_is_us and convs[ANA].our_texts == ("Thanks",)
    world.clock.advance(timedelta(days=3))  # type: ignore[attr-defined]
    convs = {c.profile_url: c for c in await cs.sync_conversations("id-alice")}
    assert not convs[ANA].last_sender_is_us
    assert await cs.identity_healthy("id-alice")
    world.set_auth("id-alice", False)
    assert not await cs.identity_healthy("id-alice")
    with pytest.raises(ProviderError) as info:
        await cs.perform("id-alice", "send_message", lead, {"text": "x"})
    assert info.value.label == "AUTH_EXPIRED"


@pytest.mark.parametrize(
    ("knob", "label"),
    [("rate_429", "STATUS_429"), ("rate_5xx", "SERVER_ERROR"), ("rate_timeout", "TIMEOUT")],
)
@pytest.mark.parametrize("provider_name", ["edges", "connectsafely"])
async def test_injected_faults_map_to_transient_labels(
    world: World, knob: str, label: str, provider_name: str
) -> None:
    from engine.sandbox import Sandbox
    from engine.vocab import TRANSIENT_LABELS

    setattr(world.config.faults, knob, 1.0)
    box = Sandbox(world)
    async with make_client(provider_name, sandbox=box, env={}) as c:
        adapter: EdgesProvider | ConnectSafelyProvider = (
            EdgesProvider(c) if provider_name == "edges" else ConnectSafelyProvider(c))
        with pytest.raises(ProviderError) as info:
            await adapter.perform("id-alice", "connect", Lead(ANA), {"note": "Hi"})
    assert info.value.label == label and label in TRANSIENT_LABELS
    if label == "STATUS_429":
        assert info.value.retry_after == float(world.config.faults.retry_after_s)


@pytest.mark.parametrize("provider_name", ["edges", "connectsafely"])
async def test_our_messages_reads_the_thread_behind_a_reply(
    world: World, provider_name: str
) -> None:
    """The summary shows the lead's reply only; our message before it is in the thread."""
    async with client(world, provider_name) as c:
        p = EdgesProvider(c) if provider_name == "edges" else ConnectSafelyProvider(c)
        sent_at = world.clock.now()
        await p.perform("id-alice", "send_message", Lead(BOB), {"text": "Hello Bob"})
        world.clock.advance(timedelta(days=3))  # type: ignore[attr-defined]
        convs = {s.profile_url: s for s in await p.sync_conversations("id-alice")}
        summary = convs[BOB]
        assert not summary.last_sender_is_us and summary.our_texts == ()
        found = await p.our_messages("id-alice", summary, sent_at)
        assert [m.text for m in found] == ["Hello Bob"]
        assert await p.our_messages("id-alice", summary, sent_at + timedelta(days=1)) == []
