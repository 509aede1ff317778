"""The sandbox's Edges API (/v1): success and error shapes per endpoint, async runs, callbacks,
schedules, incremental sync, pagination and injected faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.sandbox import Sandbox
from engine.sandbox.world import World
from tests.conftest import quiet_config

ADA = "https://www.linkedin.com/in/ada"
BOB = "https://www.linkedin.com/in/bob"
GONE = "https://www.linkedin.com/in/gone"
ERROR_KEYS = {"error_label", "error_scope", "error_ref", "message", "status_code", "params"}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    config = quiet_config(accept_delay_hours=(1, 1),
                         reply_delay_hours=(1, 1), writes_first_delay_hours=(0, 0))
    w = World(clock, seed=3, config=config)
    w.add_identity("ident-alice", name="Alice Martin", type="engagement", provider="edges")
    w.add_identity("ident-bob", name="Bob Durand", type="standard", provider="edges")
    w.add_identity("ident-sn", name="Sam Nav", kind="sales_navigator", provider="edges")
    w.add_identity("other", provider="connectsafely")
    w.add_profile(ADA, full_name="Ada Lovelace", company="Engines", accepts=True, replies=True)
    w.add_profile(BOB, full_name="Bob Stone", already_connected_with=["ident-alice", "ident-bob"])
    w.add_profile(GONE, accessible=False)
    return w


@pytest.fixture
def sandbox(world: World) -> Sandbox:
    return Sandbox(world)


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox.client("edges") as c:
        yield c


async def live(client: httpx.AsyncClient, action: str, input: dict[str, Any] | None = None,
               parameters: dict[str, Any] | None = None, identity: str = "ident-alice",
               **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"input": input if input is not None else {},
                            "identity_ids": [identity], **extra}
    if parameters is not None:
        body["parameters"] = parameters
    return await client.post(f"actions/{action}/run/live", json=body)


def assert_error(r: httpx.Response, status: int, label: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == ERROR_KEYS
    assert body["error_label"] == label and body["status_code"] == status
    assert body["error_ref"].startswith("ERR-")
    return body


async def test_api_key_is_required(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(transport=sandbox.transport,
                                 base_url="http://sandbox/v1/") as anon:
        assert_error(await anon.get("identities"), 401, "UNAUTHORIZED")
        r = await anon.get("identities", headers={"x-api-key": "wrong"})
        assert_error(r, 401, "UNAUTHORIZED")
        r = await anon.get("identities", headers={"X-API-KEY": "sbx-edges-key"})
        assert r.status_code == 200  # the header name is case-insensitive


async def test_live_refuses_inputs_and_unknown_actions(client: httpx.AsyncClient) -> None:
    r = await client.post("actions/linkedin-visit-profile/run/live",
                          json={"inputs": [{"linkedin_profile_url": ADA}],
                                "identity_ids": ["ident-alice"]})
    body = assert_error(r, 400, "BAD_INPUT")
    assert body["message"] == "body must NOT have additional properties (inputs)"
    assert_error(await live(client, "linkedin-fly"), 404, "NOT_FOUND")
    r = await client.post("actions/linkedin-me/run/live", json={"input": {}})
    assert_error(r, 400, "BAD_PARAMETERS")
    assert_error(await live(client, "linkedin-me", identity="nobody"), 400, "BAD_PARAMETERS")
    assert_error(await live(client, "linkedin-me", identity="other"), 400, "BAD_PARAMETERS")


async def test_me(client: httpx.AsyncClient, world: World) -> None:
    r = await live(client, "linkedin-me")
    assert r.status_code == 200
    assert r.json()["linkedin_profile_id"] == world.identity("ident-alice").profile_id


async def test_visit_profile(client: httpx.AsyncClient, world: World) -> None:
    r = await live(client, "linkedin-visit-profile", {"linkedin_profile_url": ADA + "/"})
    ada = world.profiles[ADA]
    assert r.json() == {"sales_navigator_profile_id": ada.sales_navigator_profile_id,
                        "linkedin_profile_id": ada.profile_id}
    assert_error(await live(client, "linkedin-visit-profile", {"linkedin_profile_url": GONE}),
                 424, "PROFILE_NOT_ACCESSIBLE")
    assert_error(await live(client, "linkedin-visit-profile",
                            {"linkedin_profile_url": "https://example.com/x"}), 400,
                 "INVALID_INPUT")
    assert_error(await live(client, "linkedin-visit-profile", {}), 400, "BAD_INPUT")


async def test_connect_profile(client: httpx.AsyncClient, world: World) -> None:
    r = await live(client, "linkedin-connect-profile",
                   {"linkedin_profile_url": ADA, "custom_data": {"lead": 1}}, {"message": "Hi"})
    body = r.json()
    assert body["pending"] is True and body["connected"] is False and body["message"] == "Hi"
    assert body["linkedin_profile_id"] == world.profiles[ADA].profile_id
    assert "connection_sent_date" in body
    assert_error(await live(client, "linkedin-connect-profile", {"linkedin_profile_url": ADA}),
                 424, "INVITATION_PENDING")
    assert_error(await live(client, "linkedin-connect-profile", {"linkedin_profile_url": BOB}),
                 424, "ALREADY_CONNECTED")
    r = await live(client, "linkedin-connect-profile",
                   {"linkedin_profile_url": "https://www.linkedin.com/in/x"},
                   {"message": "n" * 301})
    assert_error(r, 400, "BAD_PARAMETERS")


async def test_message_profile(client: httpx.AsyncClient, world: World) -> None:
    assert_error(await live(client, "linkedin-message-profile", {"linkedin_profile_url": ADA},
                            {"message": "hi"}), 424, "NOT_CONNECTED")
    assert_error(await live(client, "linkedin-message-profile", {"linkedin_profile_url": BOB}),
                 400, "BAD_PARAMETERS")
    r = await live(client, "linkedin-message-profile", {"linkedin_profile_url": BOB},
                   {"message": "Hello Bob"})
    body = r.json()
    thread = world.thread_with("ident-alice", BOB)
    assert thread is not None
    assert body["linkedin_thread_id"] == thread.thread_id and body["is_sent"] is True
    assert body["message"] == "Hello Bob" and body["linkedin_message_id"]
    assert [d.text for d in world.messages_to("ident-alice", BOB)] == ["Hello Bob"]


async def test_withdraw_and_inmail(client: httpx.AsyncClient, world: World) -> None:
    assert_error(await live(client, "linkedin-withdraw-invitation",
                            {"linkedin_profile_url": ADA}), 424, "NOT_PENDING")
    await live(client, "linkedin-connect-profile", {"linkedin_profile_url": ADA})
    r = await live(client, "linkedin-withdraw-invitation", {"linkedin_profile_url": ADA})
    assert r.json()["withdrawn"] is True
    assert world.relationship("ident-alice", ADA) == "none"
    r = await live(client, "linkedin-inmail-profile", {"linkedin_profile_url": ADA},
                   {"subject": "S", "message": "T"})
    assert_error(r, 424, "SN_ACCOUNT_UPGRADE")
    r = await live(client, "linkedin-inmail-profile", {"linkedin_profile_url": ADA},
                   {"subject": "S", "message": "T"}, identity="ident-sn")
    assert r.status_code == 200 and r.json()["subject"] == "S"


async def test_limit_reached_has_postponed_until(client: httpx.AsyncClient,
                                                 world: World) -> None:
    world.config.limits["classic"]["visit"] = 1
    await live(client, "linkedin-visit-profile", {"linkedin_profile_url": ADA})
    body = assert_error(await live(client, "linkedin-visit-profile",
                                   {"linkedin_profile_url": BOB}), 429, "LIMIT_REACHED")
    assert body["params"]["postponed_until"] == "2026-01-06T08:00:00Z"


async def test_auth_expired_shows_in_identities(client: httpx.AsyncClient, world: World) -> None:
    world.set_auth("ident-alice", False)
    assert_error(await live(client, "linkedin-me"), 424, "AUTH_EXPIRED")
    r = await client.get("identities", params={"retrieve_accounts": "true"})
    status = {i["uid"]: i["accounts"][0]["status"] for i in r.json()}
    assert status == {"ident-alice": "AUTH_EXPIRED", "ident-bob": "ACTIVE", "ident-sn": "ACTIVE"}
    world.set_auth("ident-alice", True)
    assert (await live(client, "linkedin-me")).status_code == 200


async def test_identities_type_filter_and_pages(client: httpx.AsyncClient) -> None:
    r = await client.get("identities", params={"type": "engagement"})
    assert [(i["uid"], i["type"]) for i in r.json()] == [("ident-alice", "engagement"),
                                                          ("ident-sn", "engagement")]
    r = await client.get("identities", params={"limit": 2})
    assert len(r.json()) == 2 and "page=2" in r.headers["X-Pagination-Next"]
    r = await client.get(r.headers["X-Pagination-Next"])
    assert [i["uid"] for i in r.json()] == ["ident-sn"] and "X-Pagination-Next" not in r.headers


async def test_injected_faults(client: httpx.AsyncClient, world: World) -> None:
    f = world.config.faults
    f.rate_429 = 1.0
    r = await live(client, "linkedin-me")
    assert_error(r, 429, "STATUS_429")
    assert r.headers["Retry-After"] == "30"
    f.rate_429, f.rate_5xx = 0.0, 1.0
    assert_error(await live(client, "linkedin-me"), 500, "INTERNAL_ERROR")
    f.rate_5xx, f.rate_timeout = 0.0, 1.0
    for i in range(20):
        url = f"https://www.linkedin.com/in/t{i}"
        with pytest.raises(httpx.ReadTimeout):
            await live(client, "linkedin-visit-profile", {"linkedin_profile_url": url})
    # some timed-out calls were performed anyway, some were not
    assert 0 < world.count("ident-alice", "visit") < 20


async def test_extract_conversations_pages_and_last_message(
        client: httpx.AsyncClient, world: World) -> None:
    me = world.identity("ident-alice").profile_id
    for i in range(25):
        url = f"https://www.linkedin.com/in/c{i:02d}"
        world.add_profile(url, already_connected_with=["ident-alice"])
        world.message("ident-alice", url, f"hi {i}")
    r = await live(client, "linkedin-extract-conversations")
    page = r.json()
    assert len(page) == 20
    assert page[0]["last_message"]["linkedin_profile_id"] == me
    assert {"linkedin_thread_id", "participants", "last_activity_at", "unread_count",
            "read"} <= set(page[0])
    nxt = r.headers["X-Pagination-Next"]
    r2 = await client.post(nxt, json={"input": {}, "identity_ids": ["ident-alice"]})
    assert len(r2.json()) == 5 and "X-Pagination-Next" not in r2.headers
    ids = {c["linkedin_thread_id"] for c in page + r2.json()}
    assert len(ids) == 25
    bad = await client.post("actions/linkedin-extract-conversations/run/live",
                            params={"cursor": "garbage"},
                            json={"input": {}, "identity_ids": ["ident-alice"]})
    assert_error(bad, 400, "BAD_PARAMETERS")


async def test_extract_connections_pages_of_40(client: httpx.AsyncClient, world: World) -> None:
    for i in range(45):
        world.add_profile(f"https://www.linkedin.com/in/k{i:02d}",
                          already_connected_with=["ident-alice"])
    r = await live(client, "linkedin-extract-connections")
    assert len(r.json()) == 40 and r.headers["X-Pagination-Next"]
    item = r.json()[0]
    assert isinstance(item["linkedin_profile_id"], int) and item["connected_at"]


async def test_lead_who_writes_first_shows_in_conversations(
        client: httpx.AsyncClient, world: World) -> None:
    lead = world.add_profile("https://www.linkedin.com/in/eager", writes_first_to=["ident-alice"])
    r = await live(client, "linkedin-extract-conversations")
    (conv,) = r.json()
    assert conv["last_message"]["linkedin_profile_id"] == lead.profile_id
    assert conv["first_message"]["linkedin_profile_id"] == lead.profile_id


async def test_extract_messages_and_incremental_sync(client: httpx.AsyncClient,
                                                     world: World, clock: VirtualClock) -> None:
    thread = world.message("ident-alice", BOB, "one")
    r = await live(client, "linkedin-extract-messages",
                   {"linkedin_thread_url": thread.thread_url})
    (msg,) = r.json()
    assert msg["content"] == "one" and msg["linkedin_thread_id"] == thread.thread_id
    inc = {"sync_mode": "incremental"}
    r = await live(client, "linkedin-extract-messages", {"linkedin_thread_url": thread.thread_id},
                   inc, identity="ident-bob")
    body = assert_error(r, 400, "BAD_PARAMETERS")
    assert "Engagement" in body["message"]
    first = await live(client, "linkedin-extract-messages",
                       {"linkedin_thread_url": thread.thread_id}, inc)
    assert [m["content"] for m in first.json()] == ["one"]
    clock.advance(60)
    world.message("ident-alice", BOB, "two")
    second = await live(client, "linkedin-extract-messages",
                        {"linkedin_thread_url": thread.thread_id}, inc)
    assert [m["content"] for m in second.json()] == ["two"]
    assert_error(await live(client, "linkedin-extract-messages", {"linkedin_thread_url": "2-x"}),
                 400, "BAD_INPUT")


async def test_search_people(client: httpx.AsyncClient) -> None:
    url = "https://www.linkedin.com/search/results/people/?keywords=lovelace"
    r = await client.post("actions/linkedin-search-people/run/live",
                          json={"input": {"linkedin_people_search_url": url},
                                "identity_mode": "auto"})
    (hit,) = r.json()
    assert hit["linkedin_profile_url"] == ADA and hit["full_name"] == "Ada Lovelace"


async def test_async_run_callbacks_queued(client: httpx.AsyncClient, world: World,
                                          sandbox: Sandbox) -> None:
    r = await client.post("actions/linkedin-visit-profile/run/async", json={
        "identity_ids": ["ident-alice"],
        "inputs": [{"linkedin_profile_url": ADA, "custom_data": {"lead_id": 1}},
                   {"linkedin_profile_url": GONE, "custom_data": {"lead_id": 2}}],
        "callback": {"url": "https://hooks.example/x", "headers": {"Authorization": "B"},
                     "on": "all"}})
    assert r.status_code == 201
    run = r.json()
    assert run["uid"] == run["run_uid"] and run["status"] == "QUEUED"
    assert world.count(kind="visit") == 0
    got = (await client.get(f"runs/{run['uid']}")).json()
    assert got["status"] == "PARTIAL_SUCCEEDED"
    assert got["last_error"]["error_label"] == "PROFILE_NOT_ACCESSIBLE"
    outs = (await client.get(f"runs/{run['uid']}/outputs")).json()
    assert [o["status"] for o in outs] == ["SUCCEEDED", "FAILED"]
    cbs = world.api_state["edges"]["callbacks"]
    assert [c["payload"]["custom_data"] for c in cbs] == [{"lead_id": 1}, {"lead_id": 2}]
    assert [c["payload"]["run"]["status"] for c in cbs] == ["RUNNING", "PARTIAL_SUCCEEDED"]
    assert all(c["payload"]["callback_ref_uid"] for c in cbs)
    r = await client.post("actions/linkedin-visit-profile/run/async",
                          json={"identity_ids": ["ident-alice"],
                                "input": {"linkedin_profile_url": ADA}})
    assert_error(r, 400, "BAD_INPUT")
    assert_error(await client.get("runs/nope"), 404, "NOT_FOUND")


async def test_async_callbacks_posted_through_client(world: World) -> None:
    seen: list[tuple[str, dict[str, Any], str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), json.loads(request.content),
                     request.headers.get("authorization")))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as hooks:
        sb = Sandbox(world, callback_client=hooks)
        async with sb.client("edges") as client:
            r = await client.post("actions/linkedin-visit-profile/run/async", json={
                "identity_ids": ["ident-alice"],
                "inputs": [{"linkedin_profile_url": ADA, "custom_data": {"k": "v"}}],
                "callback": {"url": "https://hooks.example/cb", "headers": {"Authorization": "S"},
                             "on": "final"}})
            await sb.tick()
    (url, payload, auth) = seen[0]
    assert url == "https://hooks.example/cb" and auth == "S"
    assert payload["custom_data"] == {"k": "v"}
    assert payload["run"]["run_uid"] == r.json()["uid"]
    assert payload["run"]["status"] == "SUCCEEDED"
    assert world.api_state["edges"]["callbacks"][0]["status"] == "SUCCESS"


async def test_async_limit_reached_postpones(client: httpx.AsyncClient, world: World,
                                             sandbox: Sandbox, clock: VirtualClock) -> None:
    world.config.limits["classic"]["visit"] = 1
    r = await client.post("actions/linkedin-visit-profile/run/async", json={
        "identity_ids": ["ident-alice"],
        "inputs": [{"linkedin_profile_url": ADA}, {"linkedin_profile_url": BOB}]})
    uid = r.json()["uid"]
    await sandbox.tick()
    run = (await client.get(f"runs/{uid}")).json()
    assert run["status"] == "BLOCKED"
    assert run["postponed_until"] == "2026-01-06T08:00:00Z"
    assert run["last_error"]["error_label"] == "LIMIT_REACHED"
    clock.advance(timedelta(hours=24))
    await sandbox.tick()
    run = (await client.get(f"runs/{uid}")).json()
    assert run["status"] == "SUCCEEDED" and world.count(kind="visit") == 2
    listed = (await client.get("runs", params={"status": "succeeded"})).json()
    assert [x["uid"] for x in listed] == [uid]


async def test_continue_incremental_run(client: httpx.AsyncClient, world: World,
                                        clock: VirtualClock) -> None:
    thread = world.message("ident-alice", BOB, "one")
    r = await client.post("actions/linkedin-extract-messages/run/async", json={
        "identity_ids": ["ident-alice"], "inputs": [{"linkedin_thread_url": thread.thread_id}],
        "parameters": {"sync_mode": "incremental"}})
    uid = r.json()["run_uid"]
    outs = (await client.get(f"runs/{uid}/outputs")).json()
    assert [m["content"] for m in outs[0]["data"]] == ["one"]
    clock.advance(60)
    world.message("ident-alice", BOB, "two")
    cont = await client.post(f"runs/{uid}/continue")
    assert cont.status_code == 200 and cont.json()["iteration"] == 2
    outs = (await client.get(f"runs/{uid}/outputs")).json()
    assert [m["content"] for m in outs[0]["data"]] == ["two"]
    full = await client.post("actions/linkedin-me/run/async",
                             json={"identity_ids": ["ident-alice"], "inputs": [{}]})
    await client.get("runs")
    assert_error(await client.post(f"runs/{full.json()['uid']}/continue"), 400, "BAD_PARAMETERS")


async def test_schedules_lifecycle(client: httpx.AsyncClient, world: World, sandbox: Sandbox,
                                   clock: VirtualClock) -> None:
    body = {"identity_ids": ["ident-alice"], "inputs": [{}], "cron": "0 9 * * *",
            "timezone": "Europe/Paris", "parameters": {"sync_mode": "incremental"},
            "max_results": 500, "callback": {"url": "https://hooks.example/s"}}
    r = await client.post("actions/linkedin-extract-conversations/run/schedule", json=body)
    assert r.status_code == 201
    sched = r.json()
    assert sched["status"] == "ACTIVE" and sched["scheduled_run_uid"] == sched["uid"]
    # 08:00 UTC is 09:00 in Paris: the next iteration is tomorrow's
    assert sched["next_run_at"] == "2026-01-06T08:00:00Z"
    got = (await client.get(f"schedules/{sched['uid']}")).json()
    for key in ("scheduled_run_uid", "uid", "identity_ids", "inputs", "callback", "cron",
                "timezone", "parameters", "max_results"):
        assert got[key] == sched[key]
    assert got["max_results"] == 500
    assert await sandbox.tick() == 0
    clock.advance(timedelta(days=1))
    assert await sandbox.tick() == 1
    assert await sandbox.tick() == 0
    clock.advance(timedelta(days=1))
    assert await sandbox.tick() == 1
    got = (await client.get(f"schedules/{sched['uid']}")).json()
    assert got["iterations"] == 2
    bad = dict(body, parameters={"sync_mode": "incremental"}, identity_ids=["ident-bob"])
    assert_error(await client.post("actions/linkedin-extract-conversations/run/schedule",
                                   json=bad), 400, "BAD_PARAMETERS")
    assert_error(await client.post("actions/linkedin-extract-conversations/run/schedule",
                                   json=dict(body, cron="not a cron")), 400, "BAD_PARAMETERS")
    cancelled = (await client.post(f"schedules/{sched['uid']}/cancel")).json()
    assert cancelled["status"] == "CANCELLED"
    clock.advance(timedelta(days=1))
    assert await sandbox.tick() == 0
    assert_error(await client.get("schedules/nope"), 404, "NOT_FOUND")


async def test_schedule_skips_while_previous_run_is_blocked(
        client: httpx.AsyncClient, world: World, sandbox: Sandbox, clock: VirtualClock) -> None:
    world.config.limits["classic"]["message"] = 0
    r = await client.post("actions/linkedin-message-profile/run/schedule", json={
        "identity_ids": ["ident-alice"], "inputs": [{"linkedin_profile_url": BOB}],
        "parameters": {"message": "hi"}, "cron": "0 * * * *", "timezone": "UTC"})
    uid = r.json()["uid"]
    clock.advance(timedelta(minutes=30))
    assert await sandbox.tick() == 0  # the next iteration is 09:00
    clock.advance(timedelta(minutes=30))
    assert await sandbox.tick() == 1  # 09:00: run started, then blocked by the limit
    clock.advance(timedelta(hours=1))
    assert await sandbox.tick() == 0  # 10:00: skipped, the previous run is BLOCKED
    got = (await client.get(f"schedules/{uid}")).json()
    assert got["skipped_iterations"] == 1 and got["iterations"] == 1


async def test_list_schedules_filters_and_cursor(client: httpx.AsyncClient) -> None:
    for action in ["linkedin-extract-messages"] * 3 + ["linkedin-extract-connections"]:
        inputs = [{"linkedin_thread_url": "2-x"}] if action.endswith("messages") else [{}]
        r = await client.post(f"actions/{action}/run/schedule", json={
            "identity_ids": ["ident-alice"], "inputs": inputs, "cron": "0 9 * * *",
            "timezone": "UTC"})
        assert r.status_code == 201, r.text
    r = await client.get("schedules", params={"action_name": "linkedin-extract-messages",
                                              "status": "ACTIVE", "limit": 2})
    assert len(r.json()) == 2
    r2 = await client.get(r.headers["X-Pagination-Next"])
    assert len(r2.json()) == 1 and "X-Pagination-Next" not in r2.headers
    r = await client.get("schedules", params={"status": "CANCELLED"})
    assert r.json() == []


async def test_get_callback(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("actions/linkedin-me/run/async", json={
        "identity_ids": ["ident-alice"], "inputs": [{}],
        "callback": {"url": "https://hooks.example/c", "on": "final"}})
    await client.get("runs")
    (cb,) = world.api_state["edges"]["callbacks"]
    got = (await client.get(f"runs/callbacks/{cb['uid']}")).json()
    assert got["run_uid"] == r.json()["uid"] and got["status"] == "PENDING"
    assert got["callback_url"] == "https://hooks.example/c"
    assert_error(await client.get("runs/callbacks/nope"), 404, "NOT_FOUND")


async def test_seed_000_migration_to_incremental(client: httpx.AsyncClient,
                                                 world: World) -> None:
    """Seed 000, verbatim: create a full-mode schedule, then list, get, cancel and recreate it
    with sync_mode incremental on an Engagement Identity."""
    thread = world.message("ident-alice", BOB, "hello")
    body = {"inputs": [{"conversation_id": thread.thread_id}],
            "callback": {"url": "https://yourdomain.com/webhooks/edges"},
            "identity_ids": ["ident-alice"], "cron": "0 9 * * *", "timezone": "Europe/Paris",
            "parameters": {"max_results": 100}}
    r = await client.post("actions/linkedin-extract-messages/run/schedule", json=body)
    assert r.status_code == 201
    idents = (await client.get("identities", params={"limit": 100})).json()
    engagement = [i["uid"] for i in idents if i["type"] == "engagement"]
    assert "ident-alice" in engagement
    r = await client.get("schedules", params={"action_name": "linkedin-extract-messages",
                                              "status": "ACTIVE", "limit": "100"})
    (listed,) = r.json()
    uid = listed.get("scheduled_run_uid") or listed["uid"]
    schedule = (await client.get(f"schedules/{uid}")).json()
    assert (await client.post(f"schedules/{uid}/cancel")).status_code == 200
    new_body = {
        "inputs": schedule["inputs"], "callback": schedule["callback"],
        "identity_ids": schedule["identity_ids"], "cron": schedule["cron"],
        "timezone": schedule["timezone"], "schedule_at": schedule["schedule_at"],
        "parameters": {**schedule["parameters"], "sync_mode": "incremental"},
        "max_results": schedule["max_results"],
    }
    r = await client.post("actions/linkedin-extract-messages/run/schedule", json=new_body)
    assert r.status_code == 201, r.text
    fresh = r.json()
    assert fresh["parameters"]["sync_mode"] == "incremental" and fresh["max_results"] == 100
    active = (await client.get("schedules", params={"status": "ACTIVE"})).json()
    assert [s["uid"] for s in active] == [fresh["uid"]]


async def test_runs_queued_during_a_slow_callback_are_kept(world: World) -> None:
    """Serve mode: while a callback POST is in flight, other requests come in; the run they
    queue must not be lost and no input may be processed twice."""
    sb_holder: list[Sandbox] = []
    queued: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not queued:  # the first callback: another client submits a run meanwhile
            async with sb_holder[0].client("edges") as other:
                r = await other.post("actions/linkedin-visit-profile/run/async", json={
                    "identity_ids": ["ident-alice"], "inputs": [{"linkedin_profile_url": BOB}]})
                queued.append(r.json()["uid"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as hooks:
        sb = Sandbox(world, callback_client=hooks)
        sb_holder.append(sb)
        async with sb.client("edges") as client:
            await client.post("actions/linkedin-visit-profile/run/async", json={
                "identity_ids": ["ident-alice"], "inputs": [{"linkedin_profile_url": ADA}],
                "callback": {"url": "https://hooks.example/slow"}})
            await sb.tick()
            await sb.tick()
            second = (await client.get(f"runs/{queued[0]}")).json()
    assert second["status"] == "SUCCEEDED"
    assert [d.profile_url for d in world.deliveries(kind="visit")] == [ADA, BOB]
