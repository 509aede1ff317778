"""The runner consumes what `seqrun serve` received: webhooks pause and resume identities
before their next action, a LinkedAPI hook completes its workflow, an Edges schedule callback
updates the conversation cache and stops the leads who replied (engine/run/inbound)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.apply.workflows import run_workflow, workflow_record
from engine.clock import VirtualClock
from engine.model import ActionStep
from engine.run.runner import Runner
from engine.sandbox.linkedapi.api import routes
from engine.sandbox.world import World
from engine.serve.app import build_app
from engine.serve.config import SECRET_HEADER, ServeConfig
from engine.store import Store, tables
from engine.store import schedules as schedule_db
from engine.store.inbound import inbound_events
from engine.store.workflows import put_workflow_run
from tests.test_apply_workflows_run import ADA, HEADERS, check_then_invite, invites
from tests.test_run_runner import ID, Env, make_seq

EDGES = "edges-secret-0123456789abcdef"
LINKEDAPI = "linkedapi-token-0123456789abcdef"
CONFIG = ServeConfig(EDGES, LINKEDAPI)


def receiver(store: Store) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(store, CONFIG)),
                             base_url="http://receiver")


async def integration(store: Store, event: str, at: str, identity: str = ID) -> None:
    async with receiver(store) as c:
        r = await c.post("/hooks/edges/integrations", headers={SECRET_HEADER: EDGES},
                         json={"event": event, "identity_uid": identity,
                               "integration": "linkedin", "at": at})
        assert r.status_code == 200


async def test_auth_expired_webhook_pauses_an_identity_of_50_enrollments_before_it_acts(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    eids = [env.lead(f"lead{i}") for i in range(50)]
    env.world.set_auth(ID, False)  # what the provider also says when asked
    await integration(env.store, "AUTH_EXPIRED", "2026-01-05T07:59:00Z")
    runner = env.runner()
    result = await runner.tick()
    assert result.paused_identities == [ID]
    assert result.actions == 0 and result.due == 0
    # no call at all for this identity: no sync, no visit (only the health check asks)
    assert set(env.provider.calls) <= {"healthy"}
    ident = env.store.get_identity(ID)
    assert ident is not None and ident.status == "auth_expired"
    assert all(env.store.get_enrollment(e).paused for e in eids)  # type: ignore[union-attr]
    (paused,) = env.store.events(ID, kind="identity_paused")
    assert paused.data["enrollments"] == 50
    assert paused.data["source"] == "edges webhook AUTH_EXPIRED"
    # AUTH_SUCCESS resumes it; a late retry of the old AUTH_EXPIRED changes nothing
    env.world.set_auth(ID, True)
    await integration(env.store, "AUTH_SUCCESS", "2026-01-05T08:30:00Z")
    await integration(env.store, "AUTH_EXPIRED", "2026-01-05T08:00:00Z")
    env.clock.advance(timedelta(minutes=1))
    result = await runner.tick()
    assert result.resumed_identities == [ID]
    assert result.actions == 50
    assert {env.state(e) for e in eids} == {"completed"}
    outcomes = [e.outcome for e in inbound_events(env.store)]
    assert outcomes[0] == "paused 50 enrollments"
    assert outcomes[1] == "resumed 50 enrollments"
    assert outcomes[2] is not None and outcomes[2].startswith("stale")


async def test_the_same_webhook_three_times_is_one_transition(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    env.lead("lead0")
    for _ in range(3):
        await integration(env.store, "AUTH_EXPIRED", "2026-01-05T07:59:00Z")
    env.world.set_auth(ID, False)
    await env.runner().tick()
    assert len(inbound_events(env.store)) == 1
    assert len(env.store.events(ID, kind="identity_paused")) == 1


async def test_a_user_pause_is_not_lifted_by_auth_success(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    eid = env.lead("lead0")
    env.store.set_identity_status(ID, "paused", "paused by the user")
    env.store.set_enrollments_paused(True, identity=ID)
    await integration(env.store, "AUTH_SUCCESS", "2026-01-05T07:59:00Z")
    await env.runner().tick()
    assert env.store.get_identity(ID).status == "paused"  # type: ignore[union-attr]
    assert env.state(eid) == "visit"
    assert inbound_events(env.store)[0].outcome == "ignored: identity is paused"


async def test_deleted_identity_is_paused_for_a_human(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    env.lead("lead0")
    await integration(env.store, "DELETED", "2026-01-05T07:59:00Z")
    result = await env.runner().tick()
    assert result.actions == 0
    assert env.store.get_identity(ID).status == "paused"  # type: ignore[union-attr]


# ---- a LinkedAPI hook workflow -----------------------------------------------------------------


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    w = World(clock, seed=11)
    w.add_identity("acct-alice", name="Alice", provider="linkedapi")
    w.add_profile(ADA, first_name="Ada", full_name="Ada Lovelace", accepts=False, replies=False)
    return w


async def _hooked_sandbox(
    store: Store, clock: VirtualClock, world: World
) -> AsyncIterator[httpx.AsyncClient]:
    async with receiver(store) as hooks:
        app = Starlette(routes=[Mount("/linkedapi", routes=routes(world, hooks))])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://sandbox/linkedapi",
                                     headers=HEADERS) as client:
            yield client


@pytest.mark.parametrize("deliveries", [1, 3])
async def test_a_hook_workflow_completes_through_the_receiver(
    store: Store, clock: VirtualClock, world: World, deliveries: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the manifest names the secret by its variable, as `seqrun serve` prints the URL
    monkeypatch.setenv("SEQRUN_LINKEDAPI_WEBHOOK_SECRET", LINKEDAPI)
    placeholder = ("http://receiver/hooks/linkedapi/$SEQRUN_LINKEDAPI_WEBHOOK_SECRET/"
                   "workflows/check-then-invite")
    url = placeholder.replace("$SEQRUN_LINKEDAPI_WEBHOOK_SECRET", LINKEDAPI)
    wf = check_then_invite(api="account", result_handling="hook", webhook=placeholder)
    async for client in _hooked_sandbox(store, clock, world):
        result = await run_workflow(wf, client=client, store=store, clock=clock)
        assert result.state == "running"
        clock.advance(timedelta(minutes=2))
        await client.get("/account")  # the sandbox finishes it and POSTs the result
    (event,) = inbound_events(store)
    assert event.kind == "hook" and event.subject == "check-then-invite"
    async with receiver(store) as again:  # LinkedAPI retrying the same delivery
        for _ in range(deliveries - 1):
            r = await again.post(url.removeprefix("http://receiver"), json=event.payload)
            assert r.json() == {"recorded": False}
    await Runner(store, {}, clock).tick()
    record = workflow_record(store, "check-then-invite")
    assert record is not None and record["state"] == "completed"
    assert [h["to"] for h in record["history"]].count("completed") == 1
    assert record["finished_at"] == clock.now().isoformat()  # on the runner's clock
    assert inbound_events(store)[0].outcome == "workflow check-then-invite completed"
    # the node results, mapped on the submitted body (the receiver has no manifest)
    assert [(n["id"], n["label"], n["status"]) for n in record["nodes"]] == [
        ("n0", "open", "ok"), ("n0.0", "check", "ok"), ("n0.1", "invite", "ok")]
    assert invites(world) == 1
    assert record["webhook"] == placeholder
    dump = "\n".join(store.engine.raw_connection().driver_connection.iterdump())  # type: ignore[union-attr]
    assert LINKEDAPI not in dump


# ---- an Edges schedule callback ----------------------------------------------------------------


async def test_a_conversations_callback_updates_the_cache_and_stops_the_replied_lead(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),
                                        ActionStep("intro", "send_message",
                                                   with_={"text": "Hi"}))))
    eids = [env.lead("ada"), env.lead("bob")]
    env.store.put_identity(ID, "edges", profile_id="me-1")
    schedule_db.put(env.store, schedule_db.MANAGED, "inbox", {
        "uid": "sch-1", "fingerprint": "f", "origin": "created", "action":
        "linkedin-extract-conversations", "applied_at": "2026-01-05T08:00:00+00:00",
        "config": {"action": "linkedin-extract-conversations", "identity_ids": [ID]}})
    ada = "https://www.linkedin.com/in/ada"
    conv = {"participants": [{"linkedin_profile_id": "p-ada", "linkedin_profile_url": ada},
                             {"linkedin_profile_id": "me-1"}],
            "last_message": {"linkedin_profile_id": "p-ada", "content": "hi!"},
            "last_activity_at": "2026-01-05T07:30:00Z"}
    body = {"callback_ref_uid": "cbr-9", "run": {"run_uid": "run-9", "schedule_uid": "sch-1",
                                                 "status": "RUNNING"}, "data": [conv]}
    async with receiver(env.store) as c:
        for _ in range(3):
            await c.post("/hooks/edges/callbacks", json=body, headers={SECRET_HEADER: EDGES})
    result = await env.runner().tick()
    assert env.state(eids[0]) == "replied"
    assert env.state(eids[1]) != "replied"
    cached = env.store.conversations(ID)[ada]
    assert cached.last_sender_is_us is False
    assert inbound_events(env.store)[0].outcome == "1 conversations updated, 1 enrollments replied"
    assert [r.to_state for r in result.records if r.enrollment_id == eids[0]] == ["replied"]


# ---- whatever the receiver accepts, the runner consumes without failing -----------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=3),
    max_leaves=15,
)
_TIMES = st.sampled_from(["2026-01-05T07:30:00Z", "2026-01-05T07:30:00"])  # aware, naive
_conv = st.fixed_dictionaries({}, optional={
    "participants": _json | st.lists(st.fixed_dictionaries({}, optional={
        "linkedin_profile_id": _json | st.just("me-1"),
        "linkedin_profile_url": _json | st.just("https://www.linkedin.com/in/ada")})),
    "last_message": _json | st.fixed_dictionaries({}, optional={
        "linkedin_profile_id": _json, "content": _json}),
    "first_message": _json, "last_activity_at": _json | st.just("2026-01-05T07:30:00Z"),
    # a message of an inbox sync
    "linkedin_thread_id": _json | st.sampled_from(["t-1", "t-2"]),
    "linkedin_profile_id": _json | st.just("me-1"),
    "linkedin_profile_url": _json | st.just("https://www.linkedin.com/in/ada"),
    "created_at": _json | _TIMES,
})
_bodies = st.one_of(
    st.fixed_dictionaries({"callback_ref_uid": st.text(min_size=1, max_size=9)}, optional={
        "run": st.fixed_dictionaries({}, optional={
            "schedule_uid": st.sampled_from(["sch-1", "sch-2"]) | _json,
                                                   "run_uid": _json}),
        "data": st.lists(_conv | _json, max_size=3) | _json,
        "results": st.lists(st.fixed_dictionaries({}, optional={"data": st.lists(_conv)}))
        | _json}).map(lambda b: ("/hooks/edges/callbacks", b)),
    st.fixed_dictionaries({"event": st.sampled_from(["AUTH_EXPIRED", "AUTH_SUCCESS", "DELETED"]),
                           "identity_uid": st.just(ID) | st.text(min_size=1, max_size=9)},
                          optional={"at": _json | _TIMES}).map(
        lambda b: ("/hooks/edges/integrations", b)),
    st.fixed_dictionaries({"id": st.text(min_size=1, max_size=9), "type": st.sampled_from(
        ["workflow.completed", "workflow.started", "account.frozen", "account.active",
         "webhook.test"]), "data": st.fixed_dictionaries({
             "workflowId": st.just("wf-1"), "accountId": st.just(ID)},
             optional={"status": _json, "result": _json})}, optional={"createdAt": _json | _TIMES})
    .map(lambda b: (f"/hooks/linkedapi/{LINKEDAPI}/events", b)),
    st.fixed_dictionaries({"status": st.sampled_from(["completed", "failed", "complete",
                                                      "error"])},
                          optional={"completion": _json, "error": _json})
    .map(lambda b: (f"/hooks/linkedapi/{LINKEDAPI}/workflows/hooked", b)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=st.lists(_bodies, min_size=1, max_size=4))
def test_every_accepted_event_is_consumed_without_an_error(
    tmp_path_factory: pytest.TempPathFactory, bodies: list[tuple[str, dict[str, Any]]]
) -> None:
    if "s" not in _STORES:  # one store for every example: a migration per example is slow
        _STORES["s"] = Store.open(None, tmp_path_factory.mktemp("consume"))
    store = _STORES["s"]
    with store.transaction() as conn:
        for table in (tables.inbound_events, tables.events, tables.identities):
            conn.execute(table.delete())
        conn.execute(tables.kv.delete().where(tables.kv.c.ns != "store"))  # keep its id
    store.put_identity(ID, "edges", profile_id="me-1")
    schedule_db.put(store, schedule_db.MANAGED, "inbox", {
        "uid": "sch-1", "fingerprint": "f", "origin": "created", "action":
        "linkedin-extract-conversations", "applied_at": "2026-01-05T08:00:00+00:00",
        "config": {"action": "linkedin-extract-conversations", "identity_ids": [ID]}})
    schedule_db.put(store, schedule_db.MANAGED, "inbox-sync", {
        "uid": "sch-2", "fingerprint": "f", "origin": "created", "action":
        "linkedin-extract-messages", "applied_at": "2026-01-05T08:00:00+00:00",
        "config": {"action": "linkedin-extract-messages", "identity_ids": [ID]}})
    put_workflow_run(store, "hooked", {"name": "hooked", "provider": "linkedapi",
                                       "state": "running", "workflow_id": "wf-1", "attempt": 1})

    async def go() -> None:
        async with receiver(store) as c:
            for path, body in bodies:
                r = await c.post(path, json=body, headers={SECRET_HEADER: EDGES})
                assert r.status_code in (200, 400), r.text
        await Runner(store, {}, VirtualClock()).tick()

    asyncio.run(go())
    events = inbound_events(store)
    assert all(e.consumed_at is not None for e in events)
    assert [e.outcome for e in events if (e.outcome or "").startswith("error")] == []


_STORES: dict[str, Store] = {}


async def test_an_inbox_sync_callback_of_messages_stops_the_lead_who_wrote_last(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),
                                        ActionStep("intro", "send_message",
                                                   with_={"text": "Hi"}))))
    ada, bob, cy = env.lead("ada"), env.lead("bob"), env.lead("cy")
    env.store.put_identity(ID, "edges", profile_id="me-1")
    schedule_db.put(env.store, schedule_db.MANAGED, "inbox-sync", {
        "uid": "sch-2", "fingerprint": "f", "origin": "created", "action":
        "linkedin-extract-messages", "applied_at": "2026-01-05T08:00:00+00:00",
        "config": {"action": "linkedin-extract-messages", "identity_ids": [ID]}})

    def msg(thread: str, sender: str, at: str, url: str | None = None) -> dict[str, Any]:
        m = {"linkedin_thread_id": thread, "linkedin_profile_id": sender, "content": "...",
             "created_at": at}
        return m if url is None else {**m, "linkedin_profile_url": url}

    messages = [
        # ada answered our message: a reply
        msg("t-ada", "me-1", "2026-01-05T07:00:00Z"),
        msg("t-ada", "p-ada", "2026-01-05T07:30:00Z", "https://linkedin.com/in/ada/"),
        # bob wrote, then we did: not a reply any more
        msg("t-bob", "p-bob", "2026-01-05T06:00:00Z", "https://www.linkedin.com/in/bob"),
        msg("t-bob", "me-1", "2026-01-05T06:30:00Z"),
        # cy wrote, but the message does not say who cy is: counted, not guessed
        msg("t-cy", "p-cy", "2026-01-05T07:45:00Z"),
    ]
    body = {"callback_ref_uid": "cbr-m", "data": messages,
            "run": {"run_uid": "run-m", "schedule_uid": "sch-2", "status": "RUNNING"}}
    async with receiver(env.store) as c:
        await c.post("/hooks/edges/callbacks", json=body, headers={SECRET_HEADER: EDGES})
    await env.runner().tick()
    assert env.state(ada) == "replied"
    assert env.state(bob) != "replied" and env.state(cy) != "replied"
    assert set(env.store.conversations(ID)) >= {"https://www.linkedin.com/in/ada"}
    assert inbound_events(env.store)[0].outcome == (
        "1 conversations updated, 1 enrollments replied, 1 threads without a profile URL")
