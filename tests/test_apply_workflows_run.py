"""run_workflow against the sandbox LinkedAPI: following, persisting, and never a duplicate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.apply.workflows import (
    complete_from_hook,
    run_workflow,
    workflow_record,
    workflow_results,
)
from engine.cli.render_workflows import workflow_lines
from engine.clock import VirtualClock
from engine.errors import PlanError, ProviderError
from engine.model import Metadata, Workflow, WorkflowNode
from engine.sandbox import SandboxTransport
from engine.sandbox.linkedapi.api import SANDBOX_TOKEN, routes, state
from engine.sandbox.world import FaultConfig, World, WorldConfig
from engine.store import Store
from tests.conftest import SHARED_EXAMPLES

ADA = "https://www.linkedin.com/in/ada-lovelace-0001"
BOB = "https://www.linkedin.com/in/bob-friend"
HEADERS = {"linked-api-token": SANDBOX_TOKEN, "identification-token": "sbx-idt-acct-alice"}


def memory_store() -> Store:
    """A real store in an in-memory SQLite database, migrated to head."""
    return Store.open("sqlite://")


class Crash(Exception):
    """A simulated process death."""

    pass


class FlakyTransport(httpx.AsyncBaseTransport):
    """Forwards to the sandbox; ``fail(request)`` says whether to break this call, and how."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        fail: Callable[[httpx.Request, int], tuple[str, BaseException] | None],
    ) -> None:
        self.inner = inner
        self.fail = fail
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        plan = self.fail(request, self.calls)
        if plan is None:
            return await self.inner.handle_async_request(request)
        when, exc = plan
        if when == "after":
            response = await self.inner.handle_async_request(request)
            await response.aread()
        raise exc


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    w = World(clock, seed=11)
    w.add_identity("acct-alice", name="Alice", provider="linkedapi")
    w.add_profile(ADA, first_name="Ada", full_name="Ada Lovelace", accepts=False, replies=False)
    w.add_profile(BOB, full_name="Bob Friend", already_connected_with=["acct-alice"], replies=False)
    return w


@pytest.fixture
def asgi(world: World) -> httpx.AsyncBaseTransport:
    app = Starlette(routes=[Mount("/linkedapi", routes=routes(world))])
    return httpx.ASGITransport(app=app)


def client_for(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport, base_url="http://sandbox/linkedapi", headers=HEADERS
    )


def check_then_invite(**kw: Any) -> Workflow:
    return Workflow(
        Metadata("check-then-invite"),
        "linkedapi",
        (
            WorkflowNode(
                "st.openPersonPage",
                {"personUrl": ADA, "basicInfo": True},
                label="open",
                then=(
                    WorkflowNode("st.checkConnectionStatus", label="check"),
                    WorkflowNode("connect", {"note": "Hello Ada"}, label="invite"),
                ),
                then_is_list=True,
            ),
        ),
        identities=("acct-alice",),
        **kw,
    )


def message_bob() -> Workflow:
    return Workflow(
        Metadata("hello-bob"),
        "linkedapi",
        (WorkflowNode("send_message", {"personUrl": BOB, "text": "Hello Bob"}),),
    )


def invites(world: World) -> int:
    return len(world.deliveries(kind="invite"))


def is_post(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith(("/workflows", "/workflow"))


# ---- the happy paths -------------------------------------------------------------------------


async def test_current_api_submits_follows_and_persists(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    store = memory_store()
    at_post: list[Any] = []

    def look(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        if is_post(request):
            at_post.append(workflow_record(store, "check-then-invite"))
        return None

    start = clock.now()
    async with client_for(FlakyTransport(asgi, look)) as client:
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.state == "completed" and result.ok
    assert result.submissions == 1
    assert clock.now() > start  # it polled while the workflow ran in simulated time
    assert [(n.id, n.label, n.status) for n in result.nodes] == [
        ("n0", "open", "ok"),
        ("n0.0", "check", "ok"),
        ("n0.1", "invite", "ok"),
    ]
    assert result.nodes[1].data == {"connectionStatus": "notConnected"}
    assert result.completion["data"]["then"][1]["actionType"] == "st.sendConnectionRequest"
    assert invites(world) == 1
    record = workflow_record(store, "check-then-invite")
    assert record is not None
    assert [h["to"] for h in record["history"]] == ["pending", "running", "completed"]
    assert record["workflow_id"] == result.workflow_id
    # the intent was saved before the POST: as it leaves, the record is pending, without an id
    first = at_post[0]
    assert first["state"] == "pending" and first["workflow_id"] is None
    assert [r.name for r in workflow_results(store)] == ["check-then-invite"]
    assert result.to_json()["nodes"][2]["status"] == "ok"


async def test_action_error_is_a_node_result(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    store = memory_store()
    async with client_for(asgi) as client:
        await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
        again = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert again.state == "completed"  # LinkedAPI: a completed workflow may hold failed actions
    assert again.nodes[2].status == "error"
    assert again.nodes[2].error is not None
    assert again.nodes[2].error["label"] == "INVITATION_PENDING"
    assert invites(world) == 1


@pytest.mark.parametrize("handling", ["long", "reslink"])
async def test_account_api(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World, handling: str
) -> None:
    store = memory_store()
    wf = check_then_invite(api="account", result_handling=handling)
    async with client_for(asgi) as client:
        result = await run_workflow(wf, client=client, store=store, clock=clock)
    assert result.state == "completed"
    assert [n.status for n in result.nodes] == ["ok", "ok", "ok"]
    assert invites(world) == 1
    assert (result.workflow_id is None) == (handling == "long")


async def test_account_hook_is_settled_by_the_delivery(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    store = memory_store()
    wf = check_then_invite(
        api="account", result_handling="hook", webhook="https://hooks.example/seqrun"
    )
    async with client_for(asgi) as client:
        result = await run_workflow(wf, client=client, store=store, clock=clock)
        assert result.state == "running"
        # running again while the hook is pending neither resubmits nor fails
        again = await run_workflow(wf, client=client, store=store, clock=clock)
        assert again.state == "running" and again.submissions == 0
        clock.advance(timedelta(minutes=2))
        await client.get("/account")
    (delivery,) = state(world).outbox
    done = complete_from_hook(store, delivery["payload"], name=wf.name, wf=wf)
    assert done is not None and done.state == "completed"
    assert [n.status for n in done.nodes] == ["ok", "ok", "ok"]
    assert complete_from_hook(store, delivery["payload"], name=wf.name) is None  # idempotent
    assert invites(world) == 1


async def test_invalid_workflow_fails(asgi: httpx.AsyncBaseTransport, clock: VirtualClock) -> None:
    store = memory_store()
    wf = Workflow(Metadata("bad"), "linkedapi", (WorkflowNode("st.fly", {"personUrl": ADA}),))
    async with client_for(asgi) as client:
        result = await run_workflow(wf, client=client, store=store, clock=clock)
    assert result.state == "failed"
    assert result.error is not None and result.error["label"] == "INVALID_INPUT"
    assert result.error["type"] == "invalidWorkflow"
    assert [n.status for n in result.nodes] == ["skipped"]


async def test_unknown_provider_and_missing_identity(clock: VirtualClock) -> None:
    node = (WorkflowNode("visit_profile", {"personUrl": ADA}),)
    with pytest.raises(PlanError, match="nosuch"):
        await run_workflow(
            Workflow(Metadata("x"), "nosuch", node),
            client=httpx.AsyncClient(),
            store=memory_store(),
            clock=clock,
        )
    result = await run_workflow(
        Workflow(Metadata("x"), "edges", node),
        client=httpx.AsyncClient(),
        store=memory_store(),
        clock=clock,
    )
    assert result.state == "failed"
    assert result.error is not None and "identities" in result.error["message"]


# ---- never a duplicate ----------------------------------------------------------------------


async def test_lost_answer_does_not_duplicate_the_invitation(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        if is_post(request) and n == 1:
            return "after", httpx.ReadTimeout("lost", request=request)
        return None

    store = memory_store()
    async with client_for(FlakyTransport(asgi, fail)) as client:
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert invites(world) == 1
    assert result.state == "completed"
    assert result.reconciled is True
    assert result.submissions == 1
    assert "observed" in result.note


async def test_crash_between_submission_and_answer_then_rerun(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        return ("after", Crash()) if is_post(request) else None

    store = memory_store()
    async with client_for(FlakyTransport(asgi, fail)) as client:
        with pytest.raises(Crash):
            await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    record = workflow_record(store, "check-then-invite")
    assert record is not None
    assert record["state"] == "pending" and record["workflow_id"] is None
    async with client_for(asgi) as client:  # the next process
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.submissions == 0
    assert result.reconciled and result.state == "completed"
    assert invites(world) == 1


async def test_crash_after_the_id_came_back_resumes_by_id(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        return ("before", Crash()) if request.method == "GET" else None

    store = memory_store()
    async with client_for(FlakyTransport(asgi, fail)) as client:
        with pytest.raises(Crash):
            await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    record = workflow_record(store, "check-then-invite")
    assert record is not None and record["state"] == "running" and record["workflow_id"]
    async with client_for(asgi) as client:
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.resumed and result.submissions == 0
    assert result.workflow_id == record["workflow_id"]
    assert result.state == "completed"
    assert invites(world) == 1


async def test_request_that_never_arrived_is_submitted_again(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        if is_post(request) and n == 1:
            return "before", httpx.ReadTimeout("lost", request=request)
        return None

    store = memory_store()
    async with client_for(FlakyTransport(asgi, fail)) as client:
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.submissions == 2
    assert result.state == "completed" and not result.reconciled
    assert invites(world) == 1


async def test_lost_message_answer_is_found_in_the_conversation(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        if is_post(request) and n == 1:
            return "after", httpx.ReadTimeout("lost", request=request)
        return None

    store = memory_store()
    async with client_for(FlakyTransport(asgi, fail)) as client:
        result = await run_workflow(message_bob(), client=client, store=store, clock=clock)
    assert result.reconciled
    assert len(world.messages_to("acct-alice", BOB)) == 1
    assert world.duplicates() == []


async def test_the_cap_of_ten_queues_instead_of_failing(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    store = memory_store()
    async with client_for(asgi) as client:
        for _ in range(10):
            r = await client.post("/workflows", json={"actionType": "st.retrieveConnections"})
            assert r.status_code == 200
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.state == "completed"
    assert result.submissions >= 2  # refused at the cap, then accepted
    assert invites(world) == 1
    record = workflow_record(store, "check-then-invite")
    assert record is not None and record["attempt"] == 1


async def test_with_the_real_store(
    asgi: httpx.AsyncBaseTransport,
    clock: VirtualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_mod = pytest.importorskip("engine.store")
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    store = store_mod.Store.open(None, tmp_path)
    async with client_for(asgi) as client:
        result = await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    assert result.state == "completed"
    record = workflow_record(store, "check-then-invite")
    assert record is not None and record["state"] == "completed"


async def test_shared_example_against_the_embedded_sandbox(tmp_path: Path) -> None:
    loader = pytest.importorskip("engine.manifest.loader")
    sandbox_mod = pytest.importorskip("engine.sandbox")
    examples = SHARED_EXAMPLES
    (wf,) = loader.load([examples / "check-then-message.yaml"])
    sandbox = sandbox_mod.Sandbox.open(tmp_path / ".seqrun")
    store = memory_store()
    async with sandbox.client("linkedapi") as client:
        result = await run_workflow(wf, client=client, store=store, clock=sandbox.world.clock)
    assert result.state == "completed", result.to_json()
    assert [(n.label, n.status) for n in result.nodes] == [
        ("open", "ok"),
        ("check", "ok"),
        ("invite", "ok"),
    ]
    sandbox.save()
    again = sandbox_mod.Sandbox.open(tmp_path / ".seqrun")  # the next process sees the same
    assert len(again.world.deliveries(kind="invite")) == 1
    assert state(again.world).workflows[str(result.workflow_id)].status == "completed"


async def test_chaos_never_duplicates(clock: VirtualClock) -> None:
    """5xx and timeouts (before and after the action) on every LinkedAPI call (429 draws are
    no fault: LinkedAPI has no request rate limit): each invitation and message is delivered
    exactly once."""
    faults = FaultConfig(rate_429=0.1, rate_5xx=0.1, rate_timeout=0.2, retry_after_s=5)
    world = World(clock, seed=5, config=WorldConfig(faults=faults, accept_probability=0.0))
    # 12 invitations in a day: above LinkedAPI's default of 10 (this test is about duplicates)
    world.add_identity("acct-alice", name="Alice", provider="linkedapi", limits={"connect": 12})
    people = [f"https://www.linkedin.com/in/lead-{i:02d}" for i in range(12)]
    for url in people:
        world.add_profile(url, already_connected_with=[], replies=False)
    world.add_profile(BOB, already_connected_with=["acct-alice"], replies=False)
    app = Starlette(routes=[Mount("/linkedapi", routes=routes(world))])
    store = memory_store()
    async with client_for(SandboxTransport(app)) as client:
        for i, url in enumerate(people):
            wf = Workflow(
                Metadata(f"w{i}"),
                "linkedapi",
                (
                    WorkflowNode("connect", {"personUrl": url, "note": f"hi {i}"}),
                    WorkflowNode("send_message", {"personUrl": BOB, "text": f"note {i}"}),
                ),
                root_is_list=True,
            )
            for _ in range(5):  # a run that gives up is simply run again, like a new process
                try:
                    result = await run_workflow(wf, client=client, store=store, clock=clock)
                except ProviderError:
                    continue
                if result.state in ("completed", "failed"):
                    break
            assert result.state == "completed", result.to_json()
    assert sum(world.faults_injected.values()) > 10
    per_person = {url: len(world.deliveries(url=url, kind="invite")) for url in people}
    assert per_person == {url: 1 for url in people}
    assert world.duplicates() == []
    assert len(world.messages_to("acct-alice", BOB)) == len(people)


async def test_result_lines_show_the_tree(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock
) -> None:
    async with client_for(asgi) as client:
        result = await run_workflow(
            check_then_invite(), client=client, store=memory_store(), clock=clock
        )
    lines = workflow_lines(result)
    assert lines[0] == f"Workflow check-then-invite: completed ({result.workflow_id})"
    assert lines[1].startswith("  n0 open st.openPersonPage: ok name=Ada Lovelace")
    assert lines[2] == "    n0.0 check st.checkConnectionStatus: ok connectionStatus=notConnected"
    assert lines[3] == "    n0.1 invite st.sendConnectionRequest: ok"


# ---- node by node on providers without workflows -----------------------------------------------


def edges_workflow() -> Workflow:
    return Workflow(
        Metadata("edges-tree"),
        "edges",
        (
            WorkflowNode(
                "visit_profile",
                {"personUrl": "https://www.linkedin.com/in/grace-node"},
                label="open",
                then=(
                    WorkflowNode("check_connection", label="check"),
                    WorkflowNode("connect", {"note": "Hi Grace"}, label="invite"),
                ),
                then_is_list=True,
            ),
        ),
        identities=("ident-alice",),
    )


async def test_edges_workflow_runs_node_by_node() -> None:
    sandbox_mod = pytest.importorskip("engine.sandbox")
    sandbox = sandbox_mod.Sandbox.open(None)
    world = sandbox.world
    world.add_profile(
        "https://www.linkedin.com/in/grace-node", accepts=False, already_connected_with=[]
    )
    store = memory_store()
    async with sandbox.client("edges") as client:
        result = await run_workflow(edges_workflow(), client=client, store=store, clock=world.clock)
        assert result.state == "completed", result.to_json()
        assert [(n.id, n.status) for n in result.nodes] == [
            ("n0", "ok"),
            ("n0.0", "ok"),
            ("n0.1", "ok"),
        ]
        assert result.nodes[1].data is not None
        assert result.nodes[1].data["connectionStatus"] == "not_connected"
        again = await run_workflow(edges_workflow(), client=client, store=store, clock=world.clock)
    assert again.nodes[2].status == "error"
    assert again.nodes[2].error is not None
    assert again.nodes[2].error["label"] == "INVITATION_PENDING"
    assert len(world.deliveries(url="https://www.linkedin.com/in/grace-node", kind="invite")) == 1


async def test_edges_node_left_sent_by_a_crash_is_reconciled() -> None:
    sandbox_mod = pytest.importorskip("engine.sandbox")
    sandbox = sandbox_mod.Sandbox.open(None)
    world = sandbox.world
    url = "https://www.linkedin.com/in/grace-node"
    world.add_profile(url, accepts=False, already_connected_with=[])

    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        if "connect-profile" in request.url.path:
            return "after", Crash()
        return None

    store = memory_store()
    flaky = FlakyTransport(sandbox.transport, fail)
    async with httpx.AsyncClient(
        transport=flaky, base_url=sandbox.base_url("edges") + "/", headers=sandbox.headers("edges")
    ) as client:
        with pytest.raises(Crash):
            await run_workflow(edges_workflow(), client=client, store=store, clock=world.clock)
    record = workflow_record(store, "edges-tree")
    assert record is not None and record["node_states"]["n0.1"]["status"] == "sent"
    async with sandbox.client("edges") as client:
        result = await run_workflow(edges_workflow(), client=client, store=store, clock=world.clock)
    assert result.state == "completed" and result.resumed and result.reconciled
    assert len(world.deliveries(url=url, kind="invite")) == 1
    assert len(world.deliveries(url=url, kind="visit")) == 1  # done nodes are not redone


async def test_a_new_revision_waits_for_the_old_one_still_running(
    asgi: httpx.AsyncBaseTransport, clock: VirtualClock, world: World
) -> None:
    def fail(request: httpx.Request, n: int) -> tuple[str, BaseException] | None:
        return ("before", Crash()) if request.method == "GET" else None

    store = memory_store()
    async with client_for(FlakyTransport(asgi, fail)) as client:
        with pytest.raises(Crash):
            await run_workflow(check_then_invite(), client=client, store=store, clock=clock)
    old_id = workflow_record(store, "check-then-invite")["workflow_id"]  # type: ignore[index]
    changed = Workflow(
        Metadata("check-then-invite"),
        "linkedapi",
        (WorkflowNode("check_connection", {"personUrl": ADA}, label="only"),),
        identities=("acct-alice",),
    )
    async with client_for(asgi) as client:
        result = await run_workflow(changed, client=client, store=store, clock=clock)
    assert result.state == "completed"
    assert result.workflow_id != old_id
    assert [(n.label, n.status) for n in result.nodes] == [("only", "ok")]
    assert result.nodes[0].data == {"connectionStatus": "pending"}  # the old one ran first
    assert invites(world) == 1
