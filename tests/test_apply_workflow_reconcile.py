"""A lost LinkedAPI submission: a long wait (a queued workflow), every effect required,
message texts compared after whitespace normalization."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.apply.workflows import RECONCILE_AFTER, run_workflow, workflow_record
from engine.clock import VirtualClock
from engine.model import Metadata, Workflow, WorkflowNode
from engine.sandbox.linkedapi.api import routes, state
from engine.sandbox.world import World
from tests.test_apply_workflows_run import (
    ADA,
    BOB,
    FlakyTransport,
    check_then_invite,
    client_for,
    invites,
    is_post,
    memory_store,
)

GHOST = "https://www.linkedin.com/in/ghost-profile"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    w = World(clock, seed=11)
    w.add_identity("acct-alice", name="Alice", provider="linkedapi")
    w.add_profile(ADA, first_name="Ada", full_name="Ada Lovelace", accepts=False, replies=False)
    w.add_profile(BOB, full_name="Bob Friend", already_connected_with=["acct-alice"], replies=False)
    w.add_profile(GHOST, accessible=False, accepts=False, replies=False)
    return w


@pytest.fixture
def asgi(world: World) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=Starlette(routes=[Mount("/linkedapi", routes=routes(world))]))


def lose_first_answer(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
    if is_post(request) and n == 1:
        return "after", httpx.ReadTimeout("lost", request=request)
    return None


def submitted(world: World, action_type: str) -> int:
    """Workflows the sandbox LinkedAPI received that contain ``action_type``."""
    return sum(1 for r in state(world).workflows.values() if action_type in json.dumps(r.body))


def test_default_wait_is_an_hour() -> None:
    assert RECONCILE_AFTER >= 3600


async def test_a_slow_queued_workflow_is_waited_for_not_resubmitted(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    state(world).base_seconds = 1200.0  # sits 20 min at LinkedAPI: longer than the old 5 min
    store = memory_store()
    start = clock.now()
    async with client_for(FlakyTransport(asgi, lose_first_answer)) as client:
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.state == "completed" and result.reconciled
    assert result.submissions == 1
    assert submitted(world, "st.sendConnectionRequest") == 1
    assert invites(world) == 1
    assert clock.now() - start >= timedelta(hours=1)


async def test_the_wait_is_configurable_from_the_environment(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    store = memory_store()
    start = clock.now()
    env = {"SEQRUN_LINKEDAPI_RECONCILE_AFTER": "600"}
    async with client_for(FlakyTransport(asgi, lose_first_answer)) as client:
        result = await run_workflow(
            check_then_invite(), client=client, store=store, clock=clock, env=env
        )
    assert result.state == "completed" and result.reconciled
    assert timedelta(minutes=10) <= clock.now() - start < timedelta(hours=1)


def two_invites() -> Workflow:
    return Workflow(
        Metadata("two-invites"),
        "linkedapi",
        (
            WorkflowNode("connect", {"personUrl": ADA, "note": "Hi Ada"}),
            WorkflowNode("connect", {"personUrl": GHOST, "note": "Hi"}),
        ),
        identities=("acct-alice",),
        root_is_list=True,
    )


async def test_one_effect_of_two_is_not_completed_and_not_resubmitted(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    store = memory_store()
    async with client_for(FlakyTransport(asgi, lose_first_answer)) as client:
        result = await run_workflow(two_invites(), client=client, store=store, clock=clock)
    assert result.state == "running"
    assert "not (yet) observed" in result.note and GHOST in result.note
    assert result.submissions == 1
    assert submitted(world, "st.sendConnectionRequest") == 1
    record = workflow_record(store, "two-invites")
    assert record is not None and record["state"] == "running" and not record["reconciled"]
    # the next run checks again, still without a second submission
    async with client_for(asgi) as client:
        again = await run_workflow(two_invites(), client=client, store=store, clock=clock)
    assert again.state == "running" and again.submissions == 0
    assert submitted(world, "st.sendConnectionRequest") == 1
    assert invites(world) == 1


class ReformattingTransport(httpx.AsyncBaseTransport):
    """Forwards to ``inner`` and gives message texts back as LinkedIn may: whitespace folded."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/conversations/poll"):
            return response
        body: Any = json.loads(await response.aread())
        for conv in (body.get("result") or []) if isinstance(body, dict) else []:
            for msg in conv.get("messages") or []:
                msg["text"] = " ".join(str(msg.get("text", "")).split())
        return httpx.Response(response.status_code, json=body, headers={})


async def test_a_message_found_with_different_whitespace_is_not_sent_again(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    wf = Workflow(
        Metadata("hello-bob"),
        "linkedapi",
        (WorkflowNode("send_message", {"personUrl": BOB, "text": "Hello  Bob,\n\nsee you "}),),
        identities=("acct-alice",),
    )
    store = memory_store()
    transport = FlakyTransport(ReformattingTransport(asgi), lose_first_answer)
    async with client_for(transport) as client:
        result = await run_workflow(wf, client=client, store=store, clock=clock)
    assert result.state == "completed" and result.reconciled
    assert len(world.messages_to("acct-alice", BOB)) == 1
