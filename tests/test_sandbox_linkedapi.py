"""The sandbox LinkedAPI (both generations) over the World, through httpx.ASGITransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.clock import VirtualClock
from engine.errors import ProviderError
from engine.providers.base import Lead
from engine.providers.linkedapi.actions import LinkedApiProvider
from engine.sandbox.linkedapi.api import (
    SANDBOX_TOKEN,
    routes,
    sandbox_credentials,
    state,
)
from engine.sandbox.world import World

ADA = "https://www.linkedin.com/in/ada-lovelace-0001"
BOB = "https://www.linkedin.com/in/bob-friend"
GHOST = "https://www.linkedin.com/in/ghost"
HEADERS = {"linked-api-token": SANDBOX_TOKEN, "identification-token": "idt-alice"}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    w = World(clock, seed=3)
    w.add_identity("acct-alice", name="Alice", aliases=("idt-alice",), provider="linkedapi")
    w.add_identity("acct-eve", name="Eve", provider="edges")
    w.add_profile(ADA, first_name="Ada", full_name="Ada Lovelace", accepts=False, replies=True)
    w.add_profile(BOB, full_name="Bob Friend", already_connected_with=["acct-alice"])
    w.add_profile(GHOST, accessible=False)
    return w


def app_for(world: World) -> Starlette:
    return Starlette(routes=[Mount("/linkedapi", routes=routes(world))])


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_for(world)),
        base_url="http://sandbox/linkedapi",
        headers=HEADERS,
    ) as c:
        yield c


async def run(client: httpx.AsyncClient, clock: VirtualClock, body: Any) -> dict[str, Any]:
    r = await client.post("/workflows", json=body)
    assert r.status_code == 200, r.text
    wid = r.json()["result"]["workflowId"]
    clock.advance(timedelta(minutes=5))
    r = await client.get(f"/workflows/{wid}")
    result: dict[str, Any] = r.json()["result"]
    return result


# ---- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({}, "linkedApiTokenRequired"),
        (
            {"linked-api-token": "wrong", "identification-token": "idt-alice"},
            "invalidLinkedApiToken",
        ),
        ({"linked-api-token": SANDBOX_TOKEN}, "identificationTokenRequired"),
        (
            {"linked-api-token": SANDBOX_TOKEN, "identification-token": "nobody"},
            "invalidIdentificationToken",
        ),
        (
            {"linked-api-token": SANDBOX_TOKEN, "identification-token": "acct-eve"},
            "invalidIdentificationToken",
        ),
    ],
)
async def test_auth_errors(world: World, headers: dict[str, str], kind: str) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_for(world)), base_url="http://s/linkedapi"
    ) as c:
        r = await c.get("/account", headers=headers)
        assert r.status_code == 401
        assert r.json() == {
            "success": False,
            "error": {"type": kind, "message": r.json()["error"]["message"]},
        }
        r = await c.post("/account/workflow", headers=headers, json={})
        assert r.json()["status"] == "failed"
        assert r.json()["error"]["type"] == kind


async def test_account(client: httpx.AsyncClient) -> None:
    r = await client.get("/account")
    assert r.json() == {
        "success": True,
        "result": {"name": "Alice", "url": "https://www.linkedin.com/in/acct-alice"},
    }


# ---- current API workflows ------------------------------------------------------------------


async def test_workflow_tree_runs_in_the_parents_person_context(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    body = {
        "actionType": "st.openPersonPage",
        "personUrl": ADA,
        "basicInfo": True,
        "label": "open",
        "then": [
            {"actionType": "st.checkConnectionStatus", "label": "check"},
            {"actionType": "st.sendConnectionRequest", "label": "invite", "note": "Hello Ada"},
        ],
    }
    r = await client.post("/workflows", json=body)
    wid = r.json()["result"]["workflowId"]
    assert r.json()["result"]["workflowStatus"] == "running"
    r = await client.get(f"/workflows/{wid}")
    assert r.json()["result"]["workflowStatus"] == "running"
    assert world.deliveries(kind="invite") == []  # nothing happens before it runs
    clock.advance(timedelta(seconds=40))
    result = (await client.get(f"/workflows/{wid}")).json()["result"]
    assert result["workflowStatus"] == "completed"
    completion = result["completion"]
    assert completion["actionType"] == "st.openPersonPage"
    assert completion["label"] == "open"
    assert completion["success"] is True
    assert completion["data"]["name"] == "Ada Lovelace"
    check, invite = completion["data"]["then"]
    assert check == {
        "actionType": "st.checkConnectionStatus",
        "label": "check",
        "success": True,
        "data": {"connectionStatus": "notConnected"},
    }
    assert invite == {"actionType": "st.sendConnectionRequest", "label": "invite", "success": True}
    (delivery,) = world.deliveries(kind="invite")
    assert delivery.profile_url == ADA and delivery.text == "Hello Ada"


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"actionType": "st.sendConnectionRequest", "personUrl": BOB}, "alreadyConnected"),
        ({"actionType": "st.openPersonPage", "personUrl": GHOST}, "personNotFound"),
        ({"actionType": "st.sendMessage", "personUrl": ADA, "text": "hi"}, "messagingNotAllowed"),
        ({"actionType": "st.withdrawConnectionRequest", "personUrl": ADA}, "notPending"),
        (
            {"actionType": "st.sendConnectionRequest", "personUrl": ADA, "note": "x" * 301},
            "noteTooLong",
        ),
        (
            {
                "actionType": "st.checkConnectionStatus",
                "personUrl": "https://www.linkedin.com/in/acct-alice",
            },
            "selfProfileNotAllowed",
        ),
    ],
)
async def test_action_errors(
    client: httpx.AsyncClient, clock: VirtualClock, body: dict[str, Any], error_type: str
) -> None:
    result = await run(client, clock, body)
    assert result["workflowStatus"] == "completed"  # completed, with a failed action
    assert result["completion"]["success"] is False
    assert result["completion"]["error"]["type"] == error_type


async def test_already_pending(client: httpx.AsyncClient, clock: VirtualClock) -> None:
    body = [{"actionType": "st.sendConnectionRequest", "personUrl": ADA}] * 2
    result = await run(client, clock, body)
    first, second = result["completion"]
    assert first["success"] is True
    assert second["error"]["type"] == "alreadyPending"


async def test_list_actions(client: httpx.AsyncClient, clock: VirtualClock) -> None:
    result = await run(
        client,
        clock,
        [
            {"actionType": "st.sendConnectionRequest", "personUrl": ADA},
            {"actionType": "st.retrievePendingRequests"},
            {"actionType": "st.retrieveConnections"},
            {"actionType": "st.searchPeople", "term": "ada", "limit": 5},
        ],
    )
    _, pending, connections, search = result["completion"]
    assert [p["publicUrl"] for p in pending["data"]] == [ADA]
    assert [p["publicUrl"] for p in connections["data"]] == [BOB]
    assert ADA in [p["publicUrl"] for p in search["data"]]


@pytest.mark.parametrize(
    "body",
    [
        {"actionType": "st.fly", "personUrl": ADA},
        {"actionType": "st.openPersonPage"},
        {
            "actionType": "st.openPersonPage",
            "personUrl": ADA,
            "then": {"actionType": "st.checkConnectionStatus", "personUrl": ADA},
        },
        {"actionType": "st.sendMessage", "personUrl": ADA, "text": "x" * 1901},
        {"actionType": "st.checkConnectionStatus", "personUrl": ADA, "bogus": 1},
        [],
        "nonsense",
    ],
)
async def test_invalid_workflow(client: httpx.AsyncClient, body: Any) -> None:
    r = await client.post("/workflows", json=body)
    assert r.status_code == 400
    assert r.json()["success"] is False
    assert r.json()["error"]["type"] == "invalidWorkflow"


async def test_cap_of_ten_unfinished_workflows(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    body = {"actionType": "st.checkConnectionStatus", "personUrl": ADA}
    for _ in range(10):
        assert (await client.post("/workflows", json=body)).status_code == 200
    r = await client.post("/workflows", json=body)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "tooManyRequests"
    clock.advance(timedelta(minutes=1))
    assert (await client.post("/workflows", json=body)).status_code == 200


async def test_delete_cancels_a_running_workflow(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    r = await client.post(
        "/workflows", json={"actionType": "st.sendConnectionRequest", "personUrl": ADA}
    )
    wid = r.json()["result"]["workflowId"]
    r = await client.delete(f"/workflows/{wid}")
    assert r.json() == {"success": True, "result": {"cancelled": True}}
    clock.advance(timedelta(minutes=5))
    result = (await client.get(f"/workflows/{wid}")).json()["result"]
    assert result["workflowStatus"] == "failed"
    assert world.deliveries(kind="invite") == []
    assert (await client.delete(f"/workflows/{wid}")).json()["result"] == {"cancelled": False}
    r = await client.get("/workflows/wf-unknown")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "workflowNotFound"


async def test_signed_out_account(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    r = await client.post(
        "/workflows", json={"actionType": "st.checkConnectionStatus", "personUrl": ADA}
    )
    wid = r.json()["result"]["workflowId"]
    world.set_auth("acct-alice", False)
    clock.advance(timedelta(minutes=5))
    result = (await client.get(f"/workflows/{wid}")).json()["result"]
    assert result["workflowStatus"] == "failed"
    assert result["failure"]["reason"] == "linkedinAccountSignedOut"
    r = await client.post(
        "/workflows", json={"actionType": "st.checkConnectionStatus", "personUrl": ADA}
    )
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "linkedinAccountSignedOut"


# ---- conversations -------------------------------------------------------------------------


async def test_conversation_poll_needs_sync_and_sees_replies(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    r = await client.post("/conversations/poll", json=[{"personUrl": BOB, "type": "st"}])
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "conversationsNotSynced"
    await run(client, clock, {"actionType": "st.sendMessage", "personUrl": BOB, "text": "Hi"})
    r = await client.post("/conversations/poll", json=[{"personUrl": BOB, "type": "st"}])
    (conv,) = r.json()["result"]
    assert conv["personUrl"] == BOB
    assert [(m["sender"], m["text"]) for m in conv["messages"]] == [("us", "Hi")]
    await run(client, clock, {"actionType": "st.syncConversation", "personUrl": ADA})
    r = await client.post("/conversations/poll", json=[{"personUrl": ADA, "type": "st"}])
    assert r.json()["result"][0]["messages"] == []
    r = await client.post("/conversations/poll", json={"not": "a list"})
    assert r.json()["error"]["type"] == "invalidRequestPayload"


async def test_poll_since_includes_its_own_instant(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    """A message written in the very instant a client polls from is in the answer (the
    virtual clock stands still while many writes happen); one before it is not."""
    await run(client, clock, {"actionType": "st.sendMessage", "personUrl": BOB, "text": "Hi"})
    clock.advance(timedelta(hours=1))
    world.message("acct-alice", BOB, "same instant")
    since = clock.now().isoformat()
    r = await client.post("/conversations/poll",
                          json=[{"personUrl": BOB, "type": "st", "since": since}])
    (conv,) = r.json()["result"]
    assert [m["text"] for m in conv["messages"]] == ["same instant"]


async def test_adapter_finds_our_message_of_the_intent_instant_behind_a_reply(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    """Reconciling a message whose answer was lost reads the thread from the intent's
    instant: our message, sent in that instant, then hidden by the lead's reply, is found."""
    carol = "https://www.linkedin.com/in/carol-replies"
    world.add_profile(carol, full_name="Carol Replies", already_connected_with=["acct-alice"],
                      replies=True)
    provider = LinkedApiProvider(client, clock=clock)
    await provider.perform("acct-alice", "send_message", Lead(carol), {"text": "Hello Carol"})
    thread = world.thread_with("acct-alice", carol)
    assert thread is not None
    (ours,) = thread.messages
    clock.advance(timedelta(days=7))  # the lead replies: her message hides ours
    summary = next(c for c in await provider.sync_conversations("acct-alice")
                   if c.profile_url == carol)
    assert not summary.last_sender_is_us
    found = await provider.our_messages("acct-alice", summary, ours.created_at)
    assert [m.text for m in found] == ["Hello Carol"]


# ---- account API (seed 003) ------------------------------------------------------------------


async def test_account_long_completes_at_once(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/account/workflow",
        json={"actionType": "st.checkConnectionStatus", "personUrl": BOB, "label": "person1"},
    )
    assert r.json() == {
        "status": "completed",
        "completion": {
            "actionType": "st.checkConnectionStatus",
            "label": "person1",
            "success": True,
            "data": {"connectionStatus": "connected"},
        },
    }


async def test_account_reslink(client: httpx.AsyncClient, clock: VirtualClock) -> None:
    r = await client.post(
        "/account/workflow",
        headers={"result-handling": "reslink"},
        json={"actionType": "st.checkConnectionStatus", "personUrl": BOB},
    )
    body = r.json()
    assert body["status"] == "running"
    assert body["progress"]["message"].startswith("Your workflow is running")
    link = body["progress"]["resultLink"]
    assert link.startswith("http://sandbox/linkedapi/account/results/")
    path = link.removeprefix("http://sandbox/linkedapi")
    assert (await client.get(path)).json()["status"] == "running"
    clock.advance(timedelta(minutes=1))
    done = (await client.get(path)).json()
    assert done["status"] == "completed"
    assert done["completion"]["data"] == {"connectionStatus": "connected"}


async def test_account_hook(client: httpx.AsyncClient, clock: VirtualClock, world: World) -> None:
    r = await client.post(
        "/account/workflow",
        headers={"result-handling": "hook", "webhook": "https://hooks.example/x"},
        json={"actionType": "st.checkConnectionStatus", "personUrl": BOB},
    )
    assert r.json() == {
        "status": "running",
        "progress": {
            "message": "Your workflow is running. The result will be sent to the webhook.",
            "webhook": "https://hooks.example/x",
        },
    }
    clock.advance(timedelta(minutes=1))
    await client.get("/account")
    (delivery,) = state(world).outbox
    assert delivery["url"] == "https://hooks.example/x"
    assert delivery["payload"]["status"] == "completed"
    r = await client.post("/account/workflow", headers={"result-handling": "hook"}, json={})
    assert r.status_code == 400


async def test_account_failed_invalid_workflow(client: httpx.AsyncClient) -> None:
    r = await client.post("/account/workflow", json={"actionType": "st.nope"})
    body = r.json()
    assert body["status"] == "failed"
    assert body["error"]["type"] == "invalidWorkflow"
    assert body["error"]["message"].startswith(
        "Workflow configuration doesn't meet the constraints"
    )


# ---- persistence, credentials, the adapter end to end ----------------------------------------


async def test_state_survives_dump_and_load(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    r = await client.post(
        "/workflows", json={"actionType": "st.sendConnectionRequest", "personUrl": ADA}
    )
    wid = r.json()["result"]["workflowId"]
    world2 = World.from_json(json.loads(json.dumps(world.to_json())), clock)
    clock.advance(timedelta(minutes=5))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_for(world2)),
        base_url="http://s/linkedapi",
        headers=HEADERS,
    ) as c2:
        result = (await c2.get(f"/workflows/{wid}")).json()["result"]
    assert result["workflowStatus"] == "completed"
    assert len(world2.deliveries(kind="invite")) == 1


def test_sandbox_credentials(world: World) -> None:
    assert sandbox_credentials(world) == {
        "LINKEDAPI_TOKEN": SANDBOX_TOKEN,
        "LINKEDAPI_IDENTIFICATION_TOKEN": "sbx-idt-acct-alice",
        "LINKEDAPI_IDENTIFICATION_TOKEN__ACCT_ALICE": "sbx-idt-acct-alice",
    }


@pytest.mark.parametrize("api", ["current", "account"])
async def test_adapter_against_the_sandbox(
    client: httpx.AsyncClient, clock: VirtualClock, world: World, api: str
) -> None:
    provider = LinkedApiProvider(client, api=api, clock=clock)
    assert await provider.me("acct-alice") == "https://www.linkedin.com/in/acct-alice"
    await provider.perform("acct-alice", "visit_profile", Lead(ADA), {})
    await provider.perform("acct-alice", "connect", Lead(ADA), {"note": "Hi Ada"})
    assert (await provider.relationship("acct-alice", Lead(ADA))).status == "pending"
    with pytest.raises(ProviderError) as info:
        await provider.perform("acct-alice", "connect", Lead(ADA), {})
    assert info.value.label == "INVITATION_PENDING"
    with pytest.raises(ProviderError) as info:
        await provider.perform("acct-alice", "send_message", Lead(ADA), {"text": "hi"})
    assert info.value.label == "NOT_CONNECTED"
    await provider.perform("acct-alice", "send_message", Lead(BOB), {"text": "Hello Bob"})
    await provider.perform("acct-alice", "withdraw_invitation", Lead(ADA), {})
    with pytest.raises(ProviderError) as info:
        await provider.perform("acct-alice", "withdraw_invitation", Lead(ADA), {})
    assert info.value.label == "NOT_PENDING"
    convs = await provider.sync_conversations("acct-alice")
    assert [(c.profile_url, c.last_sender_is_us) for c in convs] == [(BOB, True)]
    assert len(world.deliveries(kind="invite")) == 1
    assert world.duplicates() == []


async def test_hook_results_are_posted_with_a_callback_client(
    world: World, clock: VirtualClock
) -> None:
    received: list[tuple[str, Any]] = []

    def hook(request: httpx.Request) -> httpx.Response:
        received.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(hook)) as callbacks:
        app = Starlette(
            routes=[Mount("/linkedapi", routes=routes(world, callback_client=callbacks))]
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://s/linkedapi", headers=HEADERS
        ) as c:
            await c.post(
                "/account/workflow",
                headers={"result-handling": "hook", "webhook": "https://hooks.example/in"},
                json={"actionType": "st.checkConnectionStatus", "personUrl": BOB},
            )
            assert received == []
            clock.advance(timedelta(minutes=1))
            await c.get("/account")
    ((url, payload),) = received
    assert url == "https://hooks.example/in"
    assert payload["status"] == "completed"
    assert state(world).outbox == []


# ---- the whole SDK surface ----------------------------------------------------------------


def test_every_action_type_has_a_handler() -> None:
    from engine.sandbox.linkedapi.actions import HANDLERS, ITERATORS
    from engine.sandbox.linkedapi.wire import ACTIONS

    assert set(HANDLERS) | ITERATORS == set(ACTIONS)


async def test_filters_apply_to_search_and_connections(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    world.add_profile("https://www.linkedin.com/in/cto-one", full_name="Cy One",
                      company="Kernel Works", job_title="CTO", location="Paris",
                      already_connected_with=["acct-alice"])
    world.add_profile("https://www.linkedin.com/in/ceo-two", full_name="Di Two",
                      company="Orbital Math", job_title="CEO", location="Berlin",
                      already_connected_with=["acct-alice"])
    found = await run(client, clock, {"actionType": "st.searchPeople", "limit": 50,
                                      "filter": {"position": "CTO", "locations": ["Paris"]}})
    assert [p["name"] for p in found["completion"]["data"]] == ["Cy One"]
    found = await run(client, clock, {"actionType": "st.retrieveConnections",
                                      "filter": {"currentCompanies": ["Orbital"]}})
    assert [p["name"] for p in found["completion"]["data"]] == ["Di Two"]
    found = await run(client, clock, {"actionType": "st.retrieveConnections",
                                      "filter": {"firstName": "Bob"}})
    assert [p["publicUrl"] for p in found["completion"]["data"]] == [BOB]


async def test_remove_connection_and_connection_not_found(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    done = await run(client, clock, {"actionType": "st.removeConnection", "personUrl": BOB})
    assert done["completion"] == {"actionType": "st.removeConnection", "success": True}
    assert world.relationship("acct-alice", BOB) == "none"
    again = await run(client, clock, {"actionType": "st.removeConnection", "personUrl": BOB})
    assert again["completion"]["error"]["type"] == "connectionNotFound"


async def test_sales_navigator_actions_need_a_sales_navigator_account(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    body = {"actionType": "nv.searchPeople", "limit": 2}
    refused = await run(client, clock, body)
    assert refused["completion"]["error"]["type"] == "noSalesNavigator"
    world.identity("acct-alice").kind = "sales_navigator"
    found = await run(client, clock, body)
    assert found["completion"]["success"] and all(
        p["hashedUrl"].startswith("https://www.linkedin.com/sales/lead/")
        for p in found["completion"]["data"])


async def test_do_for_people_runs_its_children_for_each_person_found(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    done = await run(client, clock, {
        "actionType": "st.searchPeople", "term": "Ada",
        "then": {"actionType": "st.doForPeople",
                 "then": {"actionType": "st.openPersonPage", "basicInfo": True,
                          "then": [{"actionType": "st.retrievePersonExperience"}]}}})
    each = done["completion"]["then"]["data"]
    assert [p["data"]["publicUrl"] for p in each] == [ADA]
    assert each[0]["data"]["then"][0]["data"][0]["companyName"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"actionType": "st.doForPeople"}, "cannot start a workflow"),
        ({"actionType": "st.retrievePersonSkills"}, "cannot start a workflow"),
        ({"actionType": "st.openPersonPage", "personUrl": ADA,
          "then": {"actionType": "st.retrieveCompanyDMs"}}, "cannot run in a person context"),
        ({"actionType": "st.openCompanyPage"}, "needs companyUrl"),
        ({"actionType": "nv.sendMessage", "personUrl": ADA, "text": "x"}, "needs a subject"),
        ({"actionType": "st.reactToPost", "postUrl": "x", "type": "meh"}, "type must be"),
    ],
)
async def test_workflow_constraints_of_the_new_actions(
    client: httpx.AsyncClient, body: dict[str, Any], why: str
) -> None:
    r = await client.post("/workflows", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalidWorkflow"
    assert why in r.json()["error"]["message"]


async def test_linkedapi_account_limits_are_its_documented_defaults(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    """10 connection requests a day (not Edges' 25): the 11th is refused with the SDK's
    dailyConnectionAttemptsExceeded; an admin limit is enforced the same way."""
    people = world.populate(30, prefix="lim")
    body = [{"actionType": "st.sendConnectionRequest", "personUrl": p.url} for p in people
            if p.accessible and p.url not in world.network["acct-alice"]][:11]
    done = await run(client, clock, body)
    errors = [item.get("error", {}).get("type") for item in done["completion"]]
    assert errors == [None] * 10 + ["dailyConnectionAttemptsExceeded"]
    r = await client.post("/admin/limits.set", json={"accountId": "acct-alice", "limits": [
        {"category": "stMessages", "period": "daily", "maxValue": 1}]})
    assert r.json() == {"success": True}
    msg = [{"actionType": "st.sendMessage", "personUrl": BOB, "text": "hi"}] * 2
    done = await run(client, clock, msg)
    assert [item["success"] for item in done["completion"]] == [True, False]
    assert done["completion"][1]["error"]["type"] == "requestNotAllowed"
    usage = (await client.post("/admin/limits.getUsage", json={"accountId": "acct-alice"})
             ).json()["result"]["usage"]
    assert {"category": "stMessages", "period": "daily", "maxValue": 1, "isEnabled": True,
            "currentUsage": 1} in usage


async def test_stats_actions_lists_the_actions_run(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    start = clock.now()
    await run(client, clock, {"actionType": "st.checkConnectionStatus", "personUrl": GHOST})
    r = await client.get("/stats/actions", params={
        "start": start.isoformat(), "end": (clock.now() + timedelta(days=1)).isoformat()})
    rows = r.json()["result"]
    assert [(x["actionType"], x["success"]) for x in rows] == [
        ("st.checkConnectionStatus", False)]
    r = await client.get("/stats/actions", params={
        "start": start.isoformat(), "end": (start + timedelta(days=31)).isoformat()})
    assert r.status_code == 400


async def test_no_injected_429_outside_the_admin_api(
    client: httpx.AsyncClient, world: World
) -> None:
    """LinkedAPI documents no request rate limit for workflows (only the unfinished cap): a
    429 draw is no fault there, so the SDK's polling never sees tooManyRequests."""
    world.config.faults.rate_429 = 1.0
    r = await client.post("/workflows", json={"actionType": "st.retrievePendingRequests"})
    assert r.status_code == 200
    r = await client.get(f"/workflows/{r.json()['result']['workflowId']}")
    assert r.status_code == 200
    r = await client.post("/admin/accounts.getAll")
    assert r.status_code == 429 and r.json()["error"]["type"] == "tooManyRequests"
    assert world.faults_injected["429"] == 1


async def test_created_posts_admin_limits_and_tokens_survive_a_reopen(tmp_path: Path) -> None:
    from engine.sandbox import Sandbox

    sandbox = Sandbox.open(tmp_path, clock=VirtualClock(), profiles=0)
    clock = sandbox.world.clock
    assert isinstance(clock, VirtualClock)
    async with sandbox.client("linkedapi") as api:
        created = await run(api, clock, {"actionType": "st.createPost", "text": "Hello"})
        url = created["completion"]["data"]["postUrl"]
        await run(api, clock, {"actionType": "st.reactToPost", "postUrl": url, "type": "love"})
        await api.post("/admin/limits.set", json={"accountId": "acct-alice", "limits": [
            {"category": "stConnectionRequests", "period": "daily", "maxValue": 3}]})
        token = (await api.post("/admin/accounts.regenerateIdentificationToken",
                                json={"accountId": "acct-alice"})).json()["result"]["token"]
    sandbox.save()
    again = Sandbox.open(tmp_path)
    assert again.world.limit_for("acct-alice", "connect") == 3
    async with again.client("linkedapi") as api:
        api.headers["identification-token"] = token
        clock2 = again.world.clock
        assert isinstance(clock2, VirtualClock)
        post = await run(api, clock2, {"actionType": "st.openPost", "postUrl": url,
                                       "then": {"actionType": "st.retrievePostReactions"}})
        assert post["completion"]["data"]["text"] == "Hello"
        assert [r["type"] for r in post["completion"]["data"]["then"]["data"]] == ["love"]
        assert post["completion"]["data"]["reactionsCount"] == 1


async def test_a_derived_post_counts_the_comments_it_lists(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    from engine.sandbox.linkedapi import catalog

    world.populate(40, prefix="post")
    posts = [x for p in sorted(world.profiles.values(), key=lambda p: p.url)
             for x in catalog.person_posts(world, p)]
    for url in [p["url"] for p in posts[:5]]:
        done = await run(client, clock, {
            "actionType": "st.openPost", "postUrl": url,
            "then": {"actionType": "st.retrievePostComments", "limit": 100}})
        data = done["completion"]["data"]
        assert data["commentsCount"] == len(data["then"]["data"])


async def test_a_weekly_admin_limit_counts_and_stops_reactions(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    r = await client.post("/admin/limits.set", json={"accountId": "acct-alice", "limits": [
        {"category": "stReactions", "period": "weekly", "maxValue": 1}]})
    assert r.json()["success"]
    created = await run(client, clock, {"actionType": "st.createPost", "text": "x"})
    url = created["completion"]["data"]["postUrl"]
    react = {"actionType": "st.reactToPost", "postUrl": url, "type": "like"}
    done = await run(client, clock, [react, react])
    assert [i["success"] for i in done["completion"]] == [True, False]
    usage = (await client.post("/admin/limits.getUsage", json={"accountId": "acct-alice"})
             ).json()["result"]["usage"]
    weekly = [u for u in usage if u["category"] == "stReactions"]
    assert weekly == [{"category": "stReactions", "period": "weekly", "maxValue": 1,
                       "isEnabled": True, "currentUsage": 1}]


async def test_a_monthly_admin_limit_stops_messages_until_the_next_month(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    """Monthly limits set through the admin API are enforced (they were only reported):
    the third message of the month is refused, getUsage counts the month, and the 1st of
    the next month frees the account again."""
    r = await client.post("/admin/limits.set", json={"accountId": "acct-alice", "limits": [
        {"category": "stMessages", "period": "monthly", "maxValue": 2}]})
    assert r.json() == {"success": True}
    msg = {"actionType": "st.sendMessage", "personUrl": BOB, "text": "hi"}
    done = await run(client, clock, [msg, msg, msg])
    assert [item["success"] for item in done["completion"]] == [True, True, False]
    assert done["completion"][2]["error"]["type"] == "requestNotAllowed"
    usage = (await client.post("/admin/limits.getUsage", json={"accountId": "acct-alice"})
             ).json()["result"]["usage"]
    assert {"category": "stMessages", "period": "monthly", "maxValue": 2, "isEnabled": True,
            "currentUsage": 2} in usage
    now = clock.now()
    first = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=1)
    clock.advance(first - now)
    done = await run(client, clock, msg)
    assert done["completion"]["success"] is True


async def test_a_disabled_monthly_limit_caps_nothing(
    client: httpx.AsyncClient, clock: VirtualClock
) -> None:
    await client.post("/admin/limits.set", json={"accountId": "acct-alice", "limits": [
        {"category": "stMessages", "period": "monthly", "maxValue": 1, "isEnabled": False}]})
    msg = {"actionType": "st.sendMessage", "personUrl": BOB, "text": "hi"}
    done = await run(client, clock, [msg, msg])
    assert [item["success"] for item in done["completion"]] == [True, True]


async def test_a_connection_session_completes_and_connects_an_account(
    client: httpx.AsyncClient, clock: VirtualClock, world: World
) -> None:
    """A LinkedIn user signing in through the session's link connects a new account: the
    session reads success, accounts.getAll lists the account, its token runs workflows."""
    created = (await client.post("/admin/accounts.createConnectionSession")).json()["result"]
    sid, link = created["sessionId"], created["connectionLink"]
    assert link == f"http://sandbox/linkedapi/connect/{sid}"
    pending = (await client.post("/admin/accounts.getAll")).json()["result"]
    assert {"sessionId": sid, "status": "pending"} in pending["pendingConnectionSessions"]
    r = await client.post(link, json={"name": "Carol"})
    assert r.status_code == 200 and r.json()["result"]["session"]["status"] == "success"
    got = (await client.post("/admin/accounts.getConnectionSession", json={"sessionId": sid})
           ).json()["result"]["session"]
    assert got["status"] == "success" and got["type"] == "connection"
    listing = (await client.post("/admin/accounts.getAll")).json()["result"]
    assert listing["pendingConnectionSessions"] == []
    account = next(a for a in listing["accounts"] if a["id"] == got["accountId"])
    assert account["name"] == "Carol" and account["status"] == "active"
    client.headers["identification-token"] = account["identificationToken"]
    done = await run(client, clock, {"actionType": "st.checkConnectionStatus",
                                     "personUrl": ADA})
    assert done["completion"]["success"] is True
    again = await client.post(link)  # a link serves one sign-in
    assert again.status_code == 409


async def test_a_cancelled_or_unknown_connection_session_connects_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    created = (await client.post("/admin/accounts.createConnectionSession")).json()["result"]
    await client.post("/admin/accounts.cancelConnectionSession",
                      json={"sessionId": created["sessionId"]})
    before = set(world.identities)
    assert (await client.post(created["connectionLink"])).status_code == 409
    r = await client.post("/connect/sess-nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "sessionNotFound"
    assert set(world.identities) == before
