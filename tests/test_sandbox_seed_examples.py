"""Every request the seeds (``../shared/seeds/*.txt``) show, replayed against the in-process
sandbox: the same method, path, header shape and body, and the response checked for the
status and fields the seed's own code reads from it. One test per seed function or documented
example; each quotes the seed line it replays as ``seed NNN:LINE``.

Seed 000: Edges schedules, async runs, continue, identities, the schedule migration.
Seed 001: the Edges outreach-sequence guide (identity creation, the actions' key fields).
Seed 002: ConnectSafely's conversation sync. Seed 003: LinkedAPI's account API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine.clock import VirtualClock
from engine.sandbox import Sandbox
from engine.sandbox.world import World
from tests.conftest import quiet_config

ADA = "https://www.linkedin.com/in/ada"
BOB = "https://www.linkedin.com/in/bob"
CAROL = "https://www.linkedin.com/in/carol"
PERSON1 = "https://www.linkedin.com/in/person1"  # seed 003:8
GHOST = "https://www.linkedin.com/in/ghost"
ENGAGEMENT = "ident-alice"  # an Engagement Identity
STANDARD = "ident-bob"  # a standard identity
CALLBACK = "https://yourdomain.com/webhooks/edges"  # seed 000:55
EDGES_KEY = "X-API-Key"


class Receiver:
    """What the sandbox POSTs to callback and webhook URLs (they answer 200)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.posts.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    config = quiet_config(reply_delay_hours=(1, 1))
    w = World(clock, seed=16, config=config)
    w.add_identity(ENGAGEMENT, name="Alice Martin", type="engagement", provider="edges")
    w.add_identity(STANDARD, name="Bob Standard", type="standard", provider="edges")
    w.add_identity("acc_12345", provider="connectsafely")
    w.add_identity("acct-alice", name="Alice", aliases=("idt-alice",), provider="linkedapi")
    w.add_profile(ADA, full_name="Ada Lovelace", first_name="Ada", company="Engines",
                  accepts=True, replies=True,
                  already_connected_with=[ENGAGEMENT, "acct-alice", "acc_12345"])
    w.add_profile(BOB, full_name="Bob Friend", company="Engines", accepts=True,
                  replies=False)
    w.add_profile(CAROL, full_name="Carol Quiet", company="Looms", accepts=False,
                  replies=False)
    w.add_profile(PERSON1, full_name="Person One", already_connected_with=["acct-alice"])
    w.add_profile(GHOST, accessible=False)
    return w


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, httpx.AsyncClient]]:
    rec = Receiver()
    async with httpx.AsyncClient(transport=httpx.MockTransport(rec)) as hooks:
        yield rec, hooks


@pytest.fixture
def box(world: World, receiver: tuple[Receiver, httpx.AsyncClient]) -> Sandbox:
    return Sandbox(world, callback_client=receiver[1])


@pytest.fixture
async def edges(box: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """An Edges client without default headers: each test sends the seed's own."""
    async with httpx.AsyncClient(transport=box.transport,
                                 base_url=box.base_url("edges") + "/") as c:
        yield c


@pytest.fixture
def api_key(box: Sandbox) -> str:
    return box.credentials("edges")["EDGES_API_KEY"]


def _conversation_id(world: World) -> str:
    """Alice's conversation with Ada (seed 000:54 passes ``conversationId: 'ACoAAB...'``, a
    member id: the sandbox resolves a member id to the identity's conversation with them)."""
    world.message(ENGAGEMENT, ADA, "Hello Ada")
    return str(world.profile(ADA).profile_id)


def _contents(outputs: list[dict[str, Any]]) -> list[str]:
    """The message texts of a run's outputs (one output per input, its ``data`` the list)."""
    return [m["content"] for o in outputs for m in o["data"]]


# ---- seed 000: Edges, incremental Extract Messages --------------------------------------------


async def create_incremental_extract_messages_schedule(
    edges: httpx.AsyncClient, api_key: str, identity_id: str, conversation_id: str,
    max_results: int | None = None,
) -> httpx.Response:
    """seed 000:17-50, the body and headers as the seed builds them."""
    parameters: dict[str, Any] = {"sync_mode": "incremental"}
    if max_results is not None:  # ...(maxResults != null && { max_results: maxResults })
        parameters["max_results"] = max_results
    body = {
        "inputs": [{"conversation_id": conversation_id}],
        "callback": {"url": CALLBACK},
        "identity_ids": [identity_id],
        "cron": "0 9 * * *",
        "timezone": "Europe/Paris",
        "parameters": parameters,
    }
    return await edges.post("actions/linkedin-extract-messages/run/schedule",
                            headers={EDGES_KEY: api_key, "Content-Type": "application/json"},
                            content=json.dumps(body))


@pytest.mark.parametrize("max_results", [None, 50])
async def test_createIncrementalExtractMessagesSchedule(
        edges: httpx.AsyncClient, api_key: str, world: World, max_results: int | None) -> None:
    # seed 000:37 `const res = await fetch(ACTION_SCHEDULE, { method: 'POST', ...` then
    # `return res.json()`; the schedule's uid is read as `s.scheduled_run_uid ?? s.uid` (:212)
    r = await create_incremental_extract_messages_schedule(
        edges, api_key, ENGAGEMENT, _conversation_id(world), max_results)
    assert r.is_success, r.text
    schedule = r.json()
    assert schedule["scheduled_run_uid"] == schedule["uid"]
    assert schedule["parameters"]["sync_mode"] == "incremental"
    assert schedule["identity_ids"] == [ENGAGEMENT]
    assert (schedule["cron"], schedule["timezone"]) == ("0 9 * * *", "Europe/Paris")
    assert schedule["callback"] == {"url": CALLBACK}
    assert schedule["max_results"] == max_results
    assert schedule["status"] == "ACTIVE"
    # `cron = '0 9 * * *', // daily at 9am` in `timezone = 'Europe/Paris'` (seed 000:22-23)
    first = datetime.fromisoformat(schedule["next_run_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (first.hour, first.minute) == (9, 0)


async def test_createIncrementalExtractMessagesSchedule_refused_reads_err_message(
        edges: httpx.AsyncClient, api_key: str, world: World) -> None:
    # seed 000:45-47 `if (!res.ok) { const err = await res.json()...; throw new
    # Error(err.message ?? ...)`; seed 000:99 "incremental sync is not supported for standard
    # identities"
    r = await create_incremental_extract_messages_schedule(
        edges, api_key, STANDARD, _conversation_id(world))
    assert r.status_code == 400
    assert "Engagement Identity" in r.json()["message"]


async def test_incremental_schedule_first_run_full_then_only_new(
        edges: httpx.AsyncClient, api_key: str, world: World, box: Sandbox,
        clock: VirtualClock, receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    # seed 000:10-12 "First run: Full sync (capped by max_results). Next runs: Only new
    # messages since the last run."
    schedule = (await create_incremental_extract_messages_schedule(
        edges, api_key, ENGAGEMENT, _conversation_id(world))).json()
    clock.advance(timedelta(days=1))
    await box.tick()
    await box.tick()
    first = await edges.get(f"runs/{schedule['scheduled_run_uid']}", headers={EDGES_KEY: api_key})
    assert first.status_code == 404  # a schedule uid is not a run uid
    got = (await edges.get(f"schedules/{schedule['uid']}", headers={EDGES_KEY: api_key})).json()
    run_uids = got["run_uids"]
    assert len(run_uids) == 1
    outputs = (await edges.get(f"runs/{run_uids[0]}/outputs",
                               headers={EDGES_KEY: api_key})).json()
    assert "Hello Ada" in _contents(outputs)  # the full first sync
    clock.advance(timedelta(minutes=1))
    world.message(ENGAGEMENT, ADA, "Second message")
    clock.advance(timedelta(days=1))
    await box.tick()
    await box.tick()
    run_uids = (await edges.get(f"schedules/{schedule['uid']}",
                                headers={EDGES_KEY: api_key})).json()["run_uids"]
    assert len(run_uids) == 2
    newer = (await edges.get(f"runs/{run_uids[1]}/outputs", headers={EDGES_KEY: api_key})).json()
    texts = _contents(newer)
    assert "Second message" in texts and "Hello Ada" not in texts
    assert receiver[0].posts  # the callback URL was called


async def run_extract_messages_incremental_async(
        edges: httpx.AsyncClient, api_key: str, identity_id: str,
        conversation_id: str) -> httpx.Response:
    """seed 000:62-81."""
    return await edges.post(
        "actions/linkedin-extract-messages/run/async",
        headers={EDGES_KEY: api_key, "Content-Type": "application/json"},
        content=json.dumps({
            "inputs": [{"conversation_id": conversation_id}],
            "callback": {"url": CALLBACK},
            "identity_ids": [identity_id],
            "parameters": {"sync_mode": "incremental"},
        }))


async def test_runExtractMessagesIncrementalAsync(
        edges: httpx.AsyncClient, api_key: str, world: World) -> None:
    # seed 000:63 `const res = await fetch(ACTION_ASYNC, { method: 'POST', ...`, `return
    # res.json()`; its run_uid is what continueIncrementalRun(apiKey, runUid) takes (:82, :234)
    r = await run_extract_messages_incremental_async(edges, api_key, ENGAGEMENT,
                                                     _conversation_id(world))
    assert r.is_success, r.text
    run = r.json()
    assert run["run_uid"] and run["status"] == "QUEUED"
    assert run["parameters"]["sync_mode"] == "incremental"


async def test_continueIncrementalRun(
        edges: httpx.AsyncClient, api_key: str, world: World, box: Sandbox,
        clock: VirtualClock) -> None:
    # seed 000:83 `fetch(`${EDGES_API_BASE}/runs/${runUid}/continue`, { method: 'POST',
    # headers: {'X-API-Key': apiKey, 'Content-Type': 'application/json'} })`: no body
    run = (await run_extract_messages_incremental_async(
        edges, api_key, ENGAGEMENT, _conversation_id(world))).json()
    await box.tick()  # seed 000:58 "after the previous run has finished"
    done = (await edges.get(f"runs/{run['run_uid']}", headers={EDGES_KEY: api_key})).json()
    assert done["status"] == "SUCCEEDED"
    clock.advance(timedelta(hours=1))
    world.message(ENGAGEMENT, ADA, "A new one")
    r = await edges.post(f"runs/{run['run_uid']}/continue",
                         headers={EDGES_KEY: api_key, "Content-Type": "application/json"})
    assert r.is_success, r.text  # seed 000:90 `if (!res.ok) throw`
    continued = r.json()  # seed 000:91 `return res.json()`
    assert continued["run_uid"] == run["run_uid"]
    await box.tick()
    outputs = (await edges.get(f"runs/{run['run_uid']}/outputs",
                               headers={EDGES_KEY: api_key})).json()
    texts = _contents(outputs)
    assert "A new one" in texts and "Hello Ada" not in texts  # only new messages
    # seed 000:234 "then call POST /v1/runs/{run_uid}/continue for each subsequent fetch"
    clock.advance(timedelta(hours=1))
    world.message(ENGAGEMENT, ADA, "A third one")
    r = await edges.post(f"runs/{run['run_uid']}/continue",
                         headers={EDGES_KEY: api_key, "Content-Type": "application/json"})
    assert r.is_success, r.text
    await box.tick()
    outputs = (await edges.get(f"runs/{run['run_uid']}/outputs",
                               headers={EDGES_KEY: api_key})).json()
    assert "A third one" in _contents(outputs) and "A new one" not in _contents(outputs)


async def test_continueIncrementalRun_same_instant(
        edges: httpx.AsyncClient, api_key: str, world: World, box: Sandbox) -> None:
    # seed 000:12 "Only new messages since the last run", the virtual clock standing still
    # between the run and the new message: the watermark is the world's write number, not a
    # time, so a message written in the previous iteration's instant is still new
    run = (await run_extract_messages_incremental_async(
        edges, api_key, ENGAGEMENT, _conversation_id(world))).json()
    await box.tick()
    world.message(ENGAGEMENT, ADA, "Same instant")
    await edges.post(f"runs/{run['run_uid']}/continue",
                     headers={EDGES_KEY: api_key, "Content-Type": "application/json"})
    await box.tick()
    outputs = (await edges.get(f"runs/{run['run_uid']}/outputs",
                               headers={EDGES_KEY: api_key})).json()
    assert "Same instant" in _contents(outputs)


async def test_getEngagementIdentityIds(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 000:105 `fetch(`${EDGES_API_BASE}/identities?limit=100`, { headers: {'X-API-Key':
    # apiKey} })`; :110-113 `data.data ?? data.items ?? data`, `.filter((id) => id.type ===
    # 'engagement').map((id) => id.uid)`
    r = await edges.get("identities?limit=100", headers={EDGES_KEY: api_key})
    assert r.status_code == 200
    data = r.json()
    items = data if isinstance(data, list) else data.get("data", data.get("items"))
    assert [i["uid"] for i in items if i["type"] == "engagement"] == [ENGAGEMENT]


async def list_extract_messages_schedules(edges: httpx.AsyncClient,
                                          api_key: str) -> list[dict[str, Any]]:
    """seed 000:116-128."""
    params = urlencode({"action_name": "linkedin-extract-messages", "status": "ACTIVE",
                        "limit": "100"})
    r = await edges.get(f"schedules?{params}", headers={EDGES_KEY: api_key})
    assert r.status_code == 200, r.text
    data = r.json()
    items: list[dict[str, Any]] = data if isinstance(data, list) else data["data"]
    return items


async def _full_mode_schedule(edges: httpx.AsyncClient, api_key: str, identity: str,
                              action: str = "linkedin-extract-messages",
                              callback: bool = True) -> dict[str, Any]:
    """A schedule as it stood before the migration: full mode (no sync_mode)."""
    body: dict[str, Any] = {"inputs": [{}], "identity_ids": [identity],
                            "cron": "0 9 * * *", "timezone": "Europe/Paris",
                            "parameters": {"max_results": 20}}
    if callback:
        body["callback"] = {"url": CALLBACK}
    r = await edges.post(f"actions/{action}/run/schedule", headers={EDGES_KEY: api_key},
                         json=body)
    assert r.status_code == 201, r.text
    schedule: dict[str, Any] = r.json()
    return schedule


async def test_listExtractMessagesSchedules(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 000:122 `fetch(`${EDGES_API_BASE}/schedules?${params}`` with action_name
    # 'linkedin-extract-messages', status 'ACTIVE', limit '100' (:117-120)
    wanted = await _full_mode_schedule(edges, api_key, ENGAGEMENT)
    await _full_mode_schedule(edges, api_key, ENGAGEMENT, "linkedin-extract-conversations")
    cancelled = await _full_mode_schedule(edges, api_key, STANDARD)
    await edges.post(f"schedules/{cancelled['uid']}/cancel", headers={EDGES_KEY: api_key})
    items = await list_extract_messages_schedules(edges, api_key)
    assert [s["scheduled_run_uid"] for s in items] == [wanted["scheduled_run_uid"]]


async def test_listExtractMessagesSchedules_by_action_slug(edges: httpx.AsyncClient,
                                                           api_key: str) -> None:
    # seed 000:115 "Use query params as supported by your API (e.g. action_name or
    # action_slug)": the sandbox takes both
    wanted = await _full_mode_schedule(edges, api_key, ENGAGEMENT)
    await _full_mode_schedule(edges, api_key, ENGAGEMENT, "linkedin-extract-conversations")
    r = await edges.get("schedules?action_slug=linkedin-extract-messages&status=ACTIVE"
                        "&limit=100", headers={EDGES_KEY: api_key})
    assert [s["uid"] for s in r.json()] == [wanted["uid"]]


async def test_listExtractMessagesSchedules_past_100_pages(edges: httpx.AsyncClient,
                                                           api_key: str) -> None:
    # seed 000:119 `limit: '100'` reads one page: with 101 schedules the 101st is on the
    # next page, named by the X-Pagination-Next header (docs/sandbox.md, list pagination)
    made = [await _full_mode_schedule(edges, api_key, ENGAGEMENT) for _ in range(101)]
    params = urlencode({"action_name": "linkedin-extract-messages", "status": "ACTIVE",
                        "limit": "100"})
    first = await edges.get(f"schedules?{params}", headers={EDGES_KEY: api_key})
    assert len(first.json()) == 100
    nxt = await edges.get(first.headers["X-Pagination-Next"], headers={EDGES_KEY: api_key})
    assert [s["uid"] for s in nxt.json()] == [made[-1]["uid"]]
    assert "X-Pagination-Next" not in nxt.headers


async def test_filterSchedulesByEngagementIdentities(edges: httpx.AsyncClient,
                                                     api_key: str) -> None:
    # seed 000:134 `const ids = s.identity_ids ?? [];`: the listed schedules carry identity_ids
    ours = await _full_mode_schedule(edges, api_key, ENGAGEMENT)
    await _full_mode_schedule(edges, api_key, STANDARD)
    items = await list_extract_messages_schedules(edges, api_key)
    kept = [s for s in items if set(s.get("identity_ids") or []) & {ENGAGEMENT}]
    assert [s["uid"] for s in kept] == [ours["uid"]]


async def test_getSchedule(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 000:148 `fetch(`${EDGES_API_BASE}/schedules/${scheduledRunUid}`, ...)`; the fields
    # :171-181 read: inputs, callback, identity_ids, cron, timezone, schedule_at, parameters,
    # max_results
    created = await _full_mode_schedule(edges, api_key, ENGAGEMENT)
    r = await edges.get(f"schedules/{created['scheduled_run_uid']}",
                        headers={EDGES_KEY: api_key})
    assert r.status_code == 200
    s = r.json()
    assert s["inputs"] == [{}] and s["callback"] == {"url": CALLBACK}
    assert s["identity_ids"] == [ENGAGEMENT]
    assert (s["cron"], s["timezone"], s["schedule_at"]) == ("0 9 * * *", "Europe/Paris", None)
    assert s["max_results"] == 20 and "sync_mode" not in s["parameters"]


async def test_cancelSchedule(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 000:155 `fetch(`${EDGES_API_BASE}/schedules/${scheduledRunUid}/cancel`, { method:
    # 'POST', headers: {'X-API-Key': apiKey, 'Content-Type': 'application/json'} })`: no body
    created = await _full_mode_schedule(edges, api_key, ENGAGEMENT)
    r = await edges.post(f"schedules/{created['uid']}/cancel",
                         headers={EDGES_KEY: api_key, "Content-Type": "application/json"})
    assert r.is_success, r.text  # seed 000:165 `if (!res.ok) throw`
    got = (await edges.get(f"schedules/{created['uid']}", headers={EDGES_KEY: api_key})).json()
    assert got["status"] == "CANCELLED"


async def migrate_schedule_to_incremental(edges: httpx.AsyncClient, api_key: str,
                                          uid: str) -> httpx.Response:
    """seed 000:167-199, with JSON.stringify's rules: an undefined field is left out, a null
    one is sent as null (so ``schedule_at: null`` goes with the cron)."""
    schedule = (await edges.get(f"schedules/{uid}", headers={EDGES_KEY: api_key})).json()
    cancel = await edges.post(f"schedules/{uid}/cancel",
                              headers={EDGES_KEY: api_key, "Content-Type": "application/json"})
    assert cancel.is_success
    body: dict[str, Any] = {
        "inputs": schedule.get("inputs") or [],
        "callback": schedule.get("callback") or {},  # `schedule.callback ?? {}`
        "identity_ids": schedule.get("identity_ids") or [],
        "cron": schedule.get("cron"),
        "timezone": schedule.get("timezone"),
        "schedule_at": schedule.get("schedule_at"),
        "parameters": {**(schedule.get("parameters") or {}), "sync_mode": "incremental"},
    }
    body = {k: v for k, v in body.items() if k in schedule or k in ("inputs", "callback",
                                                                      "identity_ids",
                                                                      "parameters")}
    if schedule.get("max_results") is not None:
        body["max_results"] = schedule["max_results"]
    return await edges.post("actions/linkedin-extract-messages/run/schedule",
                            headers={EDGES_KEY: api_key, "Content-Type": "application/json"},
                            content=json.dumps(body))


@pytest.mark.parametrize("callback", [True, False])
async def test_migrateScheduleToIncremental(edges: httpx.AsyncClient, api_key: str,
                                            callback: bool) -> None:
    # seed 000:183 `fetch(`${EDGES_API_BASE}/actions/linkedin-extract-messages/run/schedule``
    # with `callback: schedule.callback ?? {}` (:172) and `schedule_at: schedule.schedule_at`
    # (:176, null beside the cron); `return res.json()` (:198)
    old = await _full_mode_schedule(edges, api_key, ENGAGEMENT, callback=callback)
    r = await migrate_schedule_to_incremental(edges, api_key, old["scheduled_run_uid"])
    assert r.is_success, r.text
    new = r.json()
    assert new["scheduled_run_uid"] != old["scheduled_run_uid"]
    assert new["parameters"] == {"sync_mode": "incremental"}
    assert new["max_results"] == 20
    assert new["callback"] == ({"url": CALLBACK} if callback else None)
    assert (new["cron"], new["timezone"], new["identity_ids"]) == (
        "0 9 * * *", "Europe/Paris", [ENGAGEMENT])
    gone = (await edges.get(f"schedules/{old['uid']}", headers={EDGES_KEY: api_key})).json()
    assert gone["status"] == "CANCELLED"


async def test_migrateScheduleToIncremental_one_off_schedule_at(
        edges: httpx.AsyncClient, api_key: str, world: World) -> None:
    # seed 000:174-176 `cron: schedule.cron, timezone: schedule.timezone, schedule_at:
    # schedule.schedule_at`: a one-off schedule comes back with `cron: null` beside its date
    at = (world.now + timedelta(days=2)).isoformat()
    r = await edges.post("actions/linkedin-extract-messages/run/schedule",
                         headers={EDGES_KEY: api_key},
                         json={"inputs": [{}], "identity_ids": [ENGAGEMENT], "schedule_at": at})
    assert r.status_code == 201, r.text
    r = await migrate_schedule_to_incremental(edges, api_key, r.json()["uid"])
    assert r.is_success, r.text
    new = r.json()
    assert new["cron"] is None and new["callback"] is None
    assert datetime.fromisoformat(new["next_run_at"]) == datetime.fromisoformat(at)


async def test_migrateScheduleToIncremental_standard_identity_fails_with_message(
        edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 000:194-196 `throw new Error(err.message ?? ...)`, caught per schedule (:218-221)
    old = await _full_mode_schedule(edges, api_key, STANDARD)
    r = await migrate_schedule_to_incremental(edges, api_key, old["uid"])
    assert r.status_code == 400
    assert isinstance(r.json()["message"], str)


async def test_migrateExtractMessagesSchedulesToIncremental(edges: httpx.AsyncClient,
                                                            api_key: str) -> None:
    # seed 000:202-225 end to end: engagement ids, list, filter, `const uid =
    # s.scheduled_run_uid ?? s.uid` (:212), migrate each
    ours = [await _full_mode_schedule(edges, api_key, ENGAGEMENT) for _ in range(2)]
    theirs = await _full_mode_schedule(edges, api_key, STANDARD)
    data = (await edges.get("identities?limit=100", headers={EDGES_KEY: api_key})).json()
    engagement_ids = {i["uid"] for i in data if i["type"] == "engagement"}
    schedules = await list_extract_messages_schedules(edges, api_key)
    to_migrate = [s for s in schedules if set(s.get("identity_ids") or []) & engagement_ids]
    results = []
    for s in to_migrate:
        uid = str(s.get("scheduled_run_uid") or s.get("uid"))
        r = await migrate_schedule_to_incremental(edges, api_key, uid)
        assert r.is_success, r.text
        results.append((uid, r.json()))
    assert [uid for uid, _ in results] == [s["uid"] for s in ours]
    active = await list_extract_messages_schedules(edges, api_key)
    assert sorted(s["uid"] for s in active) == sorted(
        [theirs["uid"]] + [new["uid"] for _, new in results])
    assert all(new["parameters"]["sync_mode"] == "incremental" for _, new in results)


# ---- seed 001: the Edges outreach-sequence guide ----------------------------------------------


async def test_create_engagement_identity(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:20-21 "Use the Create Identity API with is_engagement: true"
    r = await edges.post("identities", headers={EDGES_KEY: api_key},
                         json={"name": "Outreach Alice", "is_engagement": True})
    assert r.status_code == 201, r.text
    ident = r.json()
    assert ident["type"] == "engagement" and ident["uid"]
    listed = (await edges.get("identities?type=engagement", headers={EDGES_KEY: api_key})).json()
    assert ident["uid"] in [i["uid"] for i in listed]


async def _live(edges: httpx.AsyncClient, api_key: str, action: str, input: dict[str, Any],
                identity: str = ENGAGEMENT, **extra: Any) -> httpx.Response:
    return await edges.post(f"actions/{action}/run/live", headers={EDGES_KEY: api_key},
                            json={"input": input, "identity_ids": [identity], **extra})


async def test_linkedin_me_profile_id(edges: httpx.AsyncClient, api_key: str,
                                      world: World) -> None:
    # seed 001:128 "linkedin-me | linkedin_profile_id (user's own ID)"
    r = await _live(edges, api_key, "linkedin-me", {})
    assert r.status_code == 200, r.text
    assert r.json()["linkedin_profile_id"] == world.identity(ENGAGEMENT).profile_id


async def test_extract_conversations_last_message(edges: httpx.AsyncClient, api_key: str,
                                                  world: World) -> None:
    # seed 001:129 "linkedin-extract-conversations | last_message.linkedin_profile_id,
    # linkedin_thread_id"; :67 reply detection compares it with the user's own id
    world.message(ENGAGEMENT, ADA, "Hello Ada")
    r = await _live(edges, api_key, "linkedin-extract-conversations", {})
    assert r.status_code == 200, r.text
    (conv,) = r.json()
    assert conv["linkedin_thread_id"]
    me = world.identity(ENGAGEMENT).profile_id
    assert conv["last_message"]["linkedin_profile_id"] == me  # we wrote last: no reply yet


async def test_extract_connections_fields(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:130 "linkedin-extract-connections | linkedin_profile_id, connected_at"
    r = await _live(edges, api_key, "linkedin-extract-connections", {})
    assert r.status_code == 200, r.text
    (conn,) = r.json()
    assert conn["linkedin_profile_id"] and conn["connected_at"]


async def test_message_profile_thread_id(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:131 "linkedin-message-profile | linkedin_thread_id (returned on success)"
    r = await _live(edges, api_key, "linkedin-message-profile",
                    {"linkedin_profile_url": ADA}, parameters={"message": "Hi Ada"})
    assert r.status_code == 200, r.text
    assert r.json()["linkedin_thread_id"]


async def test_message_profile_not_connected(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:59 "NOT_CONNECTED | message-profile | Can't message non-connection"
    r = await _live(edges, api_key, "linkedin-message-profile",
                    {"linkedin_profile_url": CAROL}, parameters={"message": "Hi"})
    assert r.status_code >= 400
    assert r.json()["error_label"] == "NOT_CONNECTED"


async def test_connect_profile_status_and_labels(edges: httpx.AsyncClient,
                                                 api_key: str) -> None:
    # seed 001:132 "linkedin-connect-profile | Success/failure status"; :60-61
    # ALREADY_CONNECTED, INVITATION_PENDING
    r = await _live(edges, api_key, "linkedin-connect-profile", {"linkedin_profile_url": BOB})
    assert r.status_code == 200, r.text
    again = await _live(edges, api_key, "linkedin-connect-profile",
                        {"linkedin_profile_url": BOB})
    assert again.json()["error_label"] == "INVITATION_PENDING"
    known = await _live(edges, api_key, "linkedin-connect-profile",
                        {"linkedin_profile_url": ADA})
    assert known.json()["error_label"] == "ALREADY_CONNECTED"


async def test_visit_profile_status(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:133 "linkedin-visit-profile | Success/failure status"
    r = await _live(edges, api_key, "linkedin-visit-profile", {"linkedin_profile_url": CAROL})
    assert r.status_code == 200, r.text


async def test_visit_profile_limit_reached_postponed_until(edges: httpx.AsyncClient,
                                                           api_key: str) -> None:
    # seed 001:58 "LIMIT_REACHED | All | Daily Smart Limit hit | ... use postponed_until from
    # response"; :49 visit limit 80 a day (classic)
    for _ in range(80):
        r = await _live(edges, api_key, "linkedin-visit-profile",
                        {"linkedin_profile_url": CAROL})
        assert r.status_code == 200, r.text
    over = await _live(edges, api_key, "linkedin-visit-profile", {"linkedin_profile_url": CAROL})
    # the seed does not say where in the response: providers.md §1.5, `params.postponed_until`
    body = over.json()
    assert body["error_label"] == "LIMIT_REACHED"
    assert body["params"]["postponed_until"]


async def test_error_labels_profile_not_accessible_and_invalid_input(
        edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:62 "PROFILE_NOT_ACCESSIBLE | All | Profile deleted, blocked, or URL changed";
    # :64 "INVALID_INPUT | All | Bad parameters (wrong URL format, etc.)"
    gone = await _live(edges, api_key, "linkedin-visit-profile", {"linkedin_profile_url": GHOST})
    assert gone.json()["error_label"] == "PROFILE_NOT_ACCESSIBLE"
    bad = await _live(edges, api_key, "linkedin-visit-profile",
                      {"linkedin_profile_url": "not a url"})
    assert bad.status_code == 400
    assert bad.json()["error_label"] == "INVALID_INPUT"


async def test_identity_auth_expired_webhook_and_label(
        edges: httpx.AsyncClient, api_key: str, world: World, box: Sandbox,
        receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    # seed 001:45 "Identity auth expired | Webhook AUTH_EXPIRED event | PAUSE all leads for
    # that identity"; :63 "AUTH_EXPIRED | All | Identity LinkedIn session expired". The seed
    # names no webhook path: docs/sandbox.md, `POST /integrations/linkedin/webhooks` [inferred]
    hook = "https://yourdomain.com/webhooks/integration"
    r = await edges.post("integrations/linkedin/webhooks", headers={EDGES_KEY: api_key},
                         json={"url": hook})
    assert r.status_code == 201, r.text
    world.set_auth(ENGAGEMENT, False)
    await box.tick()
    events = [b for url, b in receiver[0].posts if url == hook]
    assert [(e["event"], e["identity_uid"]) for e in events] == [("AUTH_EXPIRED", ENGAGEMENT)]
    r = await _live(edges, api_key, "linkedin-visit-profile", {"linkedin_profile_url": CAROL})
    assert r.json()["error_label"] == "AUTH_EXPIRED"


async def test_search_people_fields(edges: httpx.AsyncClient, api_key: str) -> None:
    # seed 001:134 "linkedin-search-people | linkedin_profile_url, full_name, headline"
    url = "https://www.linkedin.com/search/results/people/?keywords=Engines"
    r = await _live(edges, api_key, "linkedin-search-people", {"linkedin_people_search_url": url})
    assert r.status_code == 200, r.text
    people = r.json()
    assert {p["full_name"] for p in people} >= {"Ada Lovelace", "Bob Friend"}
    assert all(p["linkedin_profile_url"] and "headline" in p for p in people)


async def test_callback_correlation_custom_data(
        edges: httpx.AsyncClient, api_key: str, box: Sandbox,
        receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    # seed 001:79 "When using async execution, pass custom_data to correlate callbacks with
    # your leads." The seed does not say where: providers.md §1.2, inside each input object,
    # echoed at the root of every callback
    r = await edges.post("actions/linkedin-visit-profile/run/async",
                         headers={EDGES_KEY: api_key},
                         json={"inputs": [{"linkedin_profile_url": CAROL,
                                           "custom_data": {"lead_id": 7}}],
                               "identity_ids": [ENGAGEMENT], "callback": {"url": CALLBACK}})
    assert r.status_code == 201, r.text
    await box.tick()
    bodies = [b for url, b in receiver[0].posts if url == CALLBACK]
    assert bodies and all(b["custom_data"] == {"lead_id": 7} for b in bodies)


# ---- seed 002: ConnectSafely ------------------------------------------------------------------


async def test_connectsafely_conversations_sync_curl(box: Sandbox, world: World) -> None:
    # seed 002:7 `curl -X POST 'https://api.connectsafely.ai/linkedin/conversations/sync' -H
    # 'Authorization: Bearer <your_api_key>' -H 'Content-Type: application/json' -d
    # '{"accountId":"acc_12345","force":false}'`; the 200 fields (:28-34). The 200 example
    # also shows `"error": "example_value"`: the sandbox leaves `error` out of a success
    # (docs/sandbox.md: simulated; a client testing `body.error` sees no error)
    world.message("acc_12345", ADA, "hi")
    async with box.client("connectsafely") as c:
        r = await c.post("conversations/sync", content='{"accountId":"acc_12345","force":false}',
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["accountId"] == "acc_12345"
    assert isinstance(body["conversationsProcessed"], int)
    assert isinstance(body["messagesProcessed"], int)
    assert (body["conversationsProcessed"], body["messagesProcessed"]) == (1, 1)
    assert isinstance(body["durationMs"], int) and isinstance(body["durationSeconds"], str)


async def test_connectsafely_conversations_sync_force(box: Sandbox, world: World) -> None:
    # seed 002:13 "force | boolean | No | Force sync even if recently synced"
    async with box.client("connectsafely") as c:
        await c.post("conversations/sync", json={"accountId": "acc_12345", "force": False})
        world.message("acc_12345", ADA, "just now")
        lazy = (await c.post("conversations/sync",
                             json={"accountId": "acc_12345", "force": False})).json()
        forced = (await c.post("conversations/sync",
                               json={"accountId": "acc_12345", "force": True})).json()
    assert lazy["success"] is True and lazy["messagesProcessed"] == 0  # synced moments ago
    assert forced["messagesProcessed"] == 1


async def test_connectsafely_conversations_sync_401(box: Sandbox) -> None:
    # seed 002:22 "401 | Unauthorized", example `{"error": "example_value"}` (:49-51)
    async with httpx.AsyncClient(transport=box.transport,
                                 base_url=box.base_url("connectsafely") + "/") as c:
        r = await c.post("conversations/sync", json={"accountId": "acc_12345", "force": False},
                         headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert isinstance(r.json()["error"], str)


async def test_connectsafely_conversations_sync_404(box: Sandbox) -> None:
    # seed 002:23 "404 | Account not found", example `{"error": "example_value"}` (:56-58)
    async with box.client("connectsafely") as c:
        r = await c.post("conversations/sync", json={"accountId": "acc_missing", "force": False})
    assert r.status_code == 404
    assert isinstance(r.json()["error"], str)


async def test_connectsafely_get_sync_status(box: Sandbox) -> None:
    # seed 002:67-68 "Get sync status for one or all LinkedIn accounts." The seed gives no
    # path: docs/sandbox.md, `GET /conversations/sync/status` [inferred], `accountId` for one
    async with box.client("connectsafely") as c:
        every = (await c.get("conversations/sync/status")).json()
        await c.post("conversations/sync", json={"accountId": "acc_12345", "force": False})
        one = (await c.get("conversations/sync/status", params={"accountId": "acc_12345"}))
    assert [a["status"] for a in every["accounts"]] == ["never_synced"]
    assert one.json()["status"] == "completed" and one.json()["lastSyncAt"]


# ---- seed 003: LinkedAPI account API ----------------------------------------------------------

# seed 003 shows no auth headers for the account API; docs/sandbox.md: the sandbox's
# linked-api-token + identification-token (the ambiguity is the seed's)
WORKFLOW = {"actionType": "st.checkConnectionStatus", "personUrl": PERSON1, "label": "person1"}


async def test_account_workflow_with_then(box: Sandbox, world: World) -> None:
    # seed 003:6-11 the body's `"then": { ... }`: a child action in the person's context
    # (here a message), run after its parent
    body = {**WORKFLOW, "then": {"actionType": "st.sendMessage", "text": "Hello from seed 003"}}
    async with box.client("linkedapi") as c:
        r = await c.post("account/workflow", json=body)
    assert r.json()["status"] == "completed", r.text
    (sent,) = world.messages_to("acct-alice", PERSON1)
    assert sent.text == "Hello from seed 003"


async def test_account_workflow_completed_with_a_failed_action(box: Sandbox) -> None:
    # seed 003:16-17 "a completed status doesn't mean that individual actions within the
    # workflow succeeded – specific actions might have failed": the action's own error
    async with box.client("linkedapi") as c:
        r = await c.post("account/workflow", json={**WORKFLOW, "personUrl": GHOST})
    body = r.json()
    assert body["status"] == "completed"
    assert body["completion"]["success"] is False
    assert body["completion"]["error"]["type"] == "personNotFound"


@pytest.mark.parametrize("header", [None, "long"])
async def test_account_workflow_long_polling(box: Sandbox, header: str | None) -> None:
    # seed 003:4 `POST https://api.linkedapi.io/account/workflow` with the body of :6-11;
    # :59-61 "If the result-handling header is not included, long is used by default";
    # Completed (:18-21) `{"status": "completed", "completion": {...}}`
    headers = {"result-handling": header} if header else {}
    async with box.client("linkedapi") as c:
        r = await c.post("account/workflow", json=WORKFLOW, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed"
    assert body["completion"]["actionType"] == "st.checkConnectionStatus"
    assert body["completion"]["label"] == "person1"
    assert body["completion"]["data"] == {"connectionStatus": "connected"}


async def test_account_workflow_reslink(box: Sandbox, clock: VirtualClock) -> None:
    # seed 003:63-78 `result-handling: reslink`: `{"status": "running", "progress":
    # {"message": ..., "resultLink": ".../account/results/{someHash}"}}` (:24-31), then
    # `GET https://api.linkedapi.io/account/results/{someHash}` (:69) until completed
    async with box.client("linkedapi") as c:
        r = await c.post("account/workflow", json=WORKFLOW, headers={"result-handling": "reslink"})
        body = r.json()
        assert body["status"] == "running"
        assert body["progress"]["message"] == (
            "Your workflow is running. Please check the resultLink periodically.")
        link = body["progress"]["resultLink"]
        assert link.startswith(box.base_url("linkedapi") + "/account/results/")
        assert (await c.get(link)).json()["status"] == "running"
        clock.advance(timedelta(minutes=1))
        done = (await c.get(link)).json()
    assert done["status"] == "completed"
    assert done["completion"]["data"] == {"connectionStatus": "connected"}


async def test_account_workflow_hook(box: Sandbox, clock: VirtualClock,
                                     receiver: tuple[Receiver, httpx.AsyncClient]) -> None:
    # seed 003:79-91 `result-handling: hook` plus a `webhook` header: `{"status": "running",
    # "progress": {"message": "...sent to the webhook.", "webhook": "https://..."}}`
    # (:32-39), then the completed result POSTed to the webhook
    hook = "https://webhookexample.com/"
    async with box.client("linkedapi") as c:
        r = await c.post("account/workflow", json=WORKFLOW,
                         headers={"result-handling": "hook", "webhook": hook})
        assert r.json() == {"status": "running", "progress": {
            "message": "Your workflow is running. The result will be sent to the webhook.",
            "webhook": hook}}
        clock.advance(timedelta(minutes=1))
        await c.get("account")  # any later call delivers what is due
    delivered = [b for url, b in receiver[0].posts if url == hook]
    assert delivered and delivered[0]["status"] == "completed"
    assert delivered[0]["completion"]["label"] == "person1"


async def test_account_workflow_failed_invalid_workflow(box: Sandbox) -> None:
    # seed 003:40-48 Failed: `{"status": "failed", "error": {"type": "invalidWorkflow",
    # "message": "Workflow configuration doesn't meet the constraints of one or more
    # actions."}}`
    async with box.client("linkedapi") as c:
        r = await c.post("account/workflow", json={**WORKFLOW, "actionType": "st.noSuchAction"})
    body = r.json()
    assert body["status"] == "failed"
    assert body["error"]["type"] == "invalidWorkflow"
    assert body["error"]["message"].startswith(
        "Workflow configuration doesn't meet the constraints of one or more actions.")
