"""Calls the runner spares: an identity whose profile id is in the store is not asked
``linkedin-me`` again by a new process (the Edges adapter takes it from the runner)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.model import ActionStep, Metadata, Sequence
from engine.providers.edges.actions import EdgesProvider
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.sandbox.world import World
from engine.store import Store
from tests.conftest import quiet_config

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.slugs: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.slugs[request.url.path.rsplit("/", 3)[-3]] += 1
        return await self.inner.handle_async_request(request)


async def run_once(store: Store, world: World, clock: VirtualClock) -> Counter[str]:
    sandbox = Sandbox(world)
    counting = Counting(sandbox.transport)
    client = httpx.AsyncClient(transport=counting, base_url=sandbox.base_url("edges") + "/",
                               headers=sandbox.headers("edges"))
    seq = Sequence(metadata=Metadata("visits"), provider="edges", identities=("id-a",),
                   steps=(ActionStep("visit", "visit_profile"),), cooldown=timedelta(days=3),
                   normalized={"t": 1})
    compiled = compile_sequence(seq)
    runner = Runner(store, {"edges": EdgesProvider(client)}, clock,
                    compiled={compiled.revision: compiled})
    await runner.tick()
    await client.aclose()
    return counting.slugs


async def test_a_new_process_reuses_the_stored_profile_id(tmp_path: Path) -> None:
    clock = VirtualClock(START)
    world = World(clock, seed=3, config=quiet_config())
    world.add_identity("id-a", provider="edges")
    profiles = world.populate(4)
    store = Store.open(None, tmp_path)
    seq = Sequence(metadata=Metadata("visits"), provider="edges", identities=("id-a",),
                   steps=(ActionStep("visit", "visit_profile"),), cooldown=timedelta(days=3),
                   normalized={"t": 1})
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, "visits", "Sequence", {"t": 1})
    store.put_sequence("visits", "Sequence", "edges", compiled.revision)
    for p in profiles[:2]:
        lead = store.upsert_lead(p.url, {})
        store.enroll(lead, "visits", compiled.revision, "id-a", compiled.initial, clock.now())
    first = await run_once(store, world, clock)
    assert first["linkedin-me"] == 1 and first["linkedin-visit-profile"] == 2
    ident = store.get_identity("id-a")
    assert ident is not None
    assert ident.profile_id == str(world.identity("id-a").profile_id)
    for p in profiles[2:]:
        lead = store.upsert_lead(p.url, {})
        store.enroll(lead, "visits", compiled.revision, "id-a", compiled.initial, clock.now())
    second = await run_once(store, world, clock)  # a new adapter, as in a new process
    assert second["linkedin-me"] == 0
    assert second["linkedin-visit-profile"] == 2
    assert second["linkedin-extract-conversations"] == 1  # the sync still happens
