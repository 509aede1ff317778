"""A founders-style Sequence on LinkedAPI: the runner drives the LinkedAPI adapter over HTTP
(the sandbox's LinkedAPI on the World) for 30 virtual days; ground truth from the World."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.model import ActionStep, Metadata, Sequence, WaitForStep
from engine.providers.linkedapi.actions import LinkedApiProvider
from engine.sandbox.linkedapi.api import SANDBOX_TOKEN, routes
from engine.sandbox.world import World, WorldConfig

runner_mod = pytest.importorskip("engine.run.runner")
store_mod = pytest.importorskip("engine.store")

MONDAY_8 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ID = "acct-alice"


def founders() -> Sequence:
    """The shape of ../shared/examples/founders-on-linkedapi.yaml."""
    return Sequence(
        metadata=Metadata("founders-on-linkedapi"),
        provider="linkedapi",
        identities=(ID,),
        steps=(
            ActionStep("connect", "connect", on={"ALREADY_CONNECTED": "hello"}),
            WaitForStep("accepted", "connection_accepted", timedelta(days=10), "removed"),
            ActionStep(
                "hello",
                "send_message",
                with_={"text": "Hi {{ lead.first_name }}, glad to be connected."},
            ),
        ),
        normalized={"name": "founders-on-linkedapi"},
    )


async def test_founders_on_linkedapi_for_30_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    clock = VirtualClock(MONDAY_8)
    world = World(
        clock,
        seed=21,
        config=WorldConfig(
            accept_probability=0.6,
            reply_probability=0.3,
            already_connected_fraction=0.0,
            writes_first_fraction=0.0,
            inaccessible_fraction=0.0,
        ),
    )
    world.add_identity(ID, name="Alice", provider="linkedapi")
    store = store_mod.Store.open(None, tmp_path)
    seq = founders()
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", {"n": seq.name})
    store.put_sequence(seq.name, "Sequence", "linkedapi", compiled.revision)
    urls = []
    for i in range(12):
        url = f"https://www.linkedin.com/in/founder-{i:02d}"
        kw = {"already_connected_with": [ID]} if i == 0 else {}
        if i == 1:
            kw = {"accessible": False}
        world.add_profile(url, first_name=f"F{i}", **kw)
        lead_id = store.upsert_lead(url, {"first_name": f"F{i}"})
        store.enroll(lead_id, seq.name, compiled.revision, ID, compiled.initial, clock.now())
        urls.append(url)
    app = Starlette(routes=[Mount("/linkedapi", routes=routes(world))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox/linkedapi",
        headers={"linked-api-token": SANDBOX_TOKEN, "identification-token": f"sbx-idt-{ID}"},
    ) as client:
        provider = LinkedApiProvider(client, clock=clock)
        runner = runner_mod.Runner(
            store, {"linkedapi": provider}, clock, compiled={compiled.revision: compiled}
        )
        await runner.run_until(MONDAY_8 + timedelta(days=30))

    # ground truth: nobody invited or messaged twice; the connected lead messaged, not invited
    for url in urls:
        assert len(world.deliveries(ID, url, kind="invite")) <= 1
        assert len(world.deliveries(ID, url, kind="message")) <= 1
    assert world.duplicates() == []
    assert world.deliveries(ID, urls[0], kind="invite") == []
    assert len(world.deliveries(ID, urls[0], kind="message")) == 1
    assert world.deliveries(ID, urls[1]) == []
    accepted = [u for u in urls[2:] if world.relationship(ID, u) == "connected"]
    assert accepted, "some leads accepted"
    for url in accepted:  # every accepted lead got the hello, exactly once
        (msg,) = world.deliveries(ID, url, kind="message")
        assert msg.text is not None and msg.text.startswith("Hi F")
