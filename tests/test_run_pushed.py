"""Managed Edges schedules push connections and conversations to `seqrun serve`; the runner
reads those caches instead of polling while they are fresh (engine/run/pushed), and still
honours sync-before-send (seed 001) and never loses an acceptance to a missed result.

The Edges sandbox runs in process on a virtual clock that lets it run its hourly schedules
while the runner sleeps (tests/_pushing.EdgesTime); their results go by callback to the
receiver (in process, same store). Provider calls are counted at the transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from engine.compile.machine import CompiledSequence, compile_sequence
from engine.model import ActionStep, Step, WaitForStep
from engine.providers.edges.actions import EdgesProvider
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.sandbox.world import World, WorldConfig
from engine.serve.app import build_app
from engine.serve.config import ServeConfig
from engine.store import Store
from engine.store import tables as t
from tests._pushing import EdgesTime, apply_pushing_schedules
from tests.test_run_runner import make_seq

START = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)  # a Monday
ID = "ident-a"
SECRET = "edges-secret-0123456789abcdef"
PUBLIC = "http://127.0.0.1:8080"
INVITE: tuple[Step, ...] = (
    ActionStep("connect", "connect", with_={"note": "Hi"}),
    WaitForStep("accepted", "connection_accepted", timedelta(days=2), "withdraw"),
    ActionStep("intro", "send_message", with_={"text": "Thanks!"}, next="completed"),
    ActionStep("withdraw", "withdraw_invitation", next="removed"),
)
MESSAGE: tuple[Step, ...] = (ActionStep("visit", "visit_profile"),
                             ActionStep("hello", "send_message", with_={"text": "Hello"}))


class Calls(httpx.AsyncBaseTransport):
    """Counts the provider calls: (virtual time, Edges action) of each."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: EdgesTime) -> None:
        self.inner, self.clock = inner, clock
        self.made: list[tuple[datetime, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.made.append((self.clock.now(), request.url.path.rsplit("/", 3)[-3]))
        return await self.inner.handle_async_request(request)

    def of(self, action: str, since: datetime | None = None) -> list[datetime]:
        return [at for at, a in self.made if a == action and (since is None or at >= since)]


@dataclass
class Edges:
    clock: EdgesTime
    world: World
    store: Store
    sandbox: Sandbox
    calls: Calls
    provider: EdgesProvider
    compiled: dict[str, CompiledSequence] = field(default_factory=dict)

    def lead(self, seq_steps: tuple[Step, ...], handle: str, **profile: object) -> int:
        url = f"https://www.linkedin.com/in/{handle}"
        self.world.add_profile(url, first_name=handle.title(), **profile)  # type: ignore[arg-type]
        seq = make_seq("invite" if seq_steps is INVITE else "message", steps=seq_steps)
        compiled = compile_sequence(seq)
        self.compiled[compiled.revision] = compiled
        self.store.put_revision(compiled.revision, seq.name, "Sequence", {"n": seq.name})
        self.store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
        lead = self.store.upsert_lead(url, {"first_name": handle.title()})
        eid = self.store.enroll(lead, seq.name, compiled.revision, ID, compiled.initial,
                                self.clock.now())
        assert eid is not None
        return eid

    def runner(self) -> Runner:
        return Runner(self.store, {"edges": self.provider}, self.clock,
                      compiled=lambda revision: self.compiled[revision])

    def state(self, eid: int) -> str:
        row = self.store.get_enrollment(eid)
        assert row is not None
        return row.state

    def delivered(self, handle: str, kind: str) -> list[datetime]:
        url = f"https://www.linkedin.com/in/{handle}"
        return [d.at for d in self.world.delivered if d.profile_url == url and d.kind == kind]


@pytest.fixture
async def edges(tmp_path: Path) -> AsyncIterator[Edges]:
    clock = EdgesTime(START)
    world = World(clock, seed=4, config=WorldConfig(
        already_connected_fraction=0, writes_first_fraction=0, inaccessible_fraction=0,
        reply_probability=0, accept_delay_hours=(2.0, 3.0)))
    world.add_identity(ID, provider="edges")
    store = Store.open(None, tmp_path)
    # its own profile id known (as after a first tick): inbox results are read from the start
    store.put_identity(ID, "edges", profile_id=str(world.identity(ID).profile_id))
    config = ServeConfig(SECRET, None, PUBLIC)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(
            app=build_app(store, config, clock)), base_url=PUBLIC) as receiver:
        sandbox = Sandbox(world, callback_client=receiver)
        calls = Calls(sandbox.transport, clock)
        async with httpx.AsyncClient(transport=calls, base_url=sandbox.base_url("edges") + "/",
                                     headers=sandbox.headers("edges")) as client:
            await apply_pushing_schedules(client, store, config, (ID,))
            clock.edges = sandbox
            yield Edges(clock, world, store, sandbox, calls, EdgesProvider(client))


async def test_pushed_connections_replace_the_acceptance_polls(edges: Edges) -> None:
    runner = edges.runner()
    await runner.run_until(START + timedelta(hours=1))  # the schedules' first results, 09:00
    enrolled = edges.clock.now()
    ada = edges.lead(INVITE, "ada", accepts=True)
    bob = edges.lead(INVITE, "bob", accepts=False)
    await runner.run_until(START + timedelta(days=3))
    assert edges.state(ada) == "completed" and edges.delivered("ada", "message")
    assert edges.state(bob) == "removed" and edges.delivered("bob", "withdraw")
    # no acceptance poll while the connections schedule kept its hours: the only live check
    # is the one a timeout would follow (bob's, two days after his invitation)
    (invited,) = edges.delivered("bob", "invite")
    polls = edges.calls.of("linkedin-extract-connections", since=enrolled)
    assert polls and min(polls) >= invited + timedelta(days=2)
    assert len(polls) <= 2  # one sweep of the identity's connections (its pages)


async def test_an_acceptance_the_results_missed_is_found_by_the_check_before_a_timeout(
    edges: Edges,
) -> None:
    """A result lost (or the same-instant watermark of an incremental list) must not cost an
    acceptance: before taking the timeout route the runner asks the provider."""
    cy = edges.lead(INVITE, "cy", accepts=True)
    runner = edges.runner()
    await runner.run_until(START + timedelta(hours=1))
    assert edges.delivered("cy", "invite")
    # the acceptance reached the cache... and is lost from it: only a live check can tell
    await runner.run_until(START + timedelta(hours=6))
    with edges.store.transaction() as conn:
        conn.execute(t.connection_cache.delete())
    assert edges.state(cy) == "accepted"  # still waiting: its poll is aligned on 8 h
    await runner.run_until(START + timedelta(days=3))
    assert edges.state(cy) == "completed"
    assert edges.delivered("cy", "message") and not edges.delivered("cy", "withdraw")


async def test_a_message_waits_for_the_inbox_result_and_goes_out_without_a_sync(
    edges: Edges,
) -> None:
    runner = edges.runner()
    await runner.run_until(START + timedelta(hours=2))  # the schedules ran at 09:00, 10:00
    enrolled = edges.clock.now()  # 10:30
    ada = edges.lead(MESSAGE, "ada", already_connected_with=[ID])
    # bob wrote at 10:20: after the 10:00 inbox result, before his message is due
    bob = edges.lead(MESSAGE, "bob", already_connected_with=[ID])
    edges.world._schedule(START + timedelta(hours=1, minutes=50), "writes_first", ID,
                          "https://www.linkedin.com/in/bob", text="Hi, are you hiring?")
    await runner.run_until(START + timedelta(hours=4))
    # the visits took the 10:00 result as their sync (30 min old); the messages waited for
    # the 11:00 one and went out a minute after it, with no conversation sync of their own
    assert edges.calls.of("linkedin-extract-conversations", since=enrolled) == []
    assert edges.delivered("ada", "visit") == [enrolled]
    assert edges.delivered("ada", "message") == [START + timedelta(hours=2, minutes=31)]
    assert edges.state(ada) == "completed"
    # bob's reply, older than the send would have been, stopped his message
    assert edges.delivered("bob", "message") == []
    assert edges.state(bob) == "replied"


async def test_without_a_fresh_inbox_result_a_message_syncs_live(edges: Edges) -> None:
    runner = edges.runner()
    await runner.run_until(START + timedelta(hours=2))
    edges.clock.edges = None  # the schedules stop running (a paused schedule, an outage)
    edges.clock.set(START + timedelta(hours=4))  # 12:30: the 11:00 run is overdue
    enrolled = edges.clock.now()
    ada = edges.lead(MESSAGE, "ada", already_connected_with=[ID])
    await runner.run_until(START + timedelta(hours=5))
    assert edges.delivered("ada", "message") == [enrolled]
    assert edges.calls.of("linkedin-extract-conversations", since=enrolled)
    assert edges.state(ada) == "completed"
