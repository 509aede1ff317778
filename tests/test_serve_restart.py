"""`seqrun serve` killed (SIGKILL) and restarted while the sandbox's callbacks arrive: the
sandbox retries what failed with backoff, the receiver dedupes what it had already recorded,
and the runner completes every intent once (issue 12, "the receiver killed and restarted").

The receiver is the real command in a subprocess (uvicorn on loopback, its own SQLite
connection to the store the runner uses); the Edges sandbox runs in this process on a virtual
clock and POSTs its run callbacks to it over loopback HTTP, so its retries (30 s, 1, 2, 4, 8
min) are reached by advancing that clock, not by waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.model import ActionStep
from engine.providers.edges.actions import EdgesProvider
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.sandbox.world import World
from engine.serve.config import ServeConfig, edges_run_callback
from engine.store import Store
from engine.store.inbound import inbound_events
from tests.conftest import quiet_config
from tests.test_run_runner import make_seq
from tests.test_sandbox_scenario import _free_port

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
SECRET = "edges-secret-0123456789abcdef"
IDENTITIES = ("ident-a", "ident-b")
LEADS = 40
KILL_AT = 12  # the receiver dies once this many callbacks were answered


class Receiver:
    """`seqrun serve` on a fixed loopback port over ``state`` (restartable on that port: the
    runs' callback URL names it)."""

    def __init__(self, state: Path, port: int) -> None:
        self.state, self.port = state, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEQRUN_")}
        env["SEQRUN_EDGES_WEBHOOK_SECRET"] = SECRET
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--port", str(self.port),
             "--state-dir", str(self.state)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30  # start-up only: nothing measured
        with httpx.Client(base_url=self.base, timeout=2) as c:
            while True:
                assert self.proc.poll() is None, self.proc.communicate()[1]
                assert time.monotonic() < deadline, "seqrun serve did not start"
                try:
                    if c.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.communicate(timeout=30)


class KillMidStream(httpx.AsyncBaseTransport):
    """The sandbox's outbound transport: after the ``at``-th answered POST it SIGKILLs the
    receiver, so the next callbacks hit a dead port (the sandbox keeps them PENDING)."""

    def __init__(self, receiver: Receiver, at: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.receiver, self.at = receiver, at
        self.answered = 0
        self.killed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.answered += 1
        if self.answered == self.at and not self.killed:
            await response.aread()
            self.receiver.kill()
            self.killed = True
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_receiver_killed_and_restarted_while_callbacks_arrive_loses_nothing(
    tmp_path: Path,
) -> None:
    receiver = Receiver(tmp_path, _free_port())
    receiver.start()
    clock = VirtualClock(START)
    world = World(clock, seed=3, config=quiet_config(reply_probability=0.0))
    for name in IDENTITIES:
        world.add_identity(name, provider="edges")
    profiles = world.populate(LEADS)
    store = Store.open(None, tmp_path)
    seq = make_seq(steps=(ActionStep("visit", "visit_profile"),), identities=IDENTITIES)
    seq = replace(seq, execution="async")
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    for i, p in enumerate(profiles):
        lead = store.upsert_lead(p.url, {"first_name": p.first_name})
        store.enroll(lead, seq.name, compiled.revision, IDENTITIES[i % 2], compiled.initial,
                     START)
    outbound = KillMidStream(receiver, KILL_AT)
    try:
        async with httpx.AsyncClient(transport=outbound, timeout=10) as posts:
            sandbox = Sandbox(world, callback_client=posts)
            callback = edges_run_callback(ServeConfig(SECRET, None, receiver.base))
            runner = Runner(store, {"edges": EdgesProvider(sandbox.client("edges"))}, clock,
                            compiled={compiled.revision: compiled}, async_callback=callback)
            # every lead submitted through run/async; Edges runs them (and POSTs each result)
            # between our calls: the receiver dies after the 12th result it answered
            first = await runner.tick()
            await sandbox.tick()
            assert first.submitted and outbound.killed
            entries = sandbox.app.state.edges.state["callbacks"]
            assert Counter(e["status"] for e in entries)["PENDING"] >= LEADS - KILL_AT
            receiver.start()  # restarted on the same port, over the same store
            for _ in range(20):  # the backoffs: 30 s, 1, 2, 4, 8 min
                clock.advance(timedelta(minutes=1))
                await sandbox.tick()
                await runner.tick()
    finally:
        receiver.stop()
    # the sandbox: every callback delivered in the end, some only by a retry
    assert len(entries) == LEADS
    assert {e["status"] for e in entries} == {"SUCCESS"}
    assert sum(1 for e in entries if e["retry_count"] > 0) >= LEADS - KILL_AT
    # the receiver: each callback recorded once (a retry of a recorded one is a duplicate)
    events = inbound_events(store)
    refs = Counter(e.payload["callback_ref_uid"] for e in events)
    assert refs == Counter(e["callback_ref_uid"] for e in entries)
    # the runner: every intent completed by its callback, once; every lead visited once
    assert all((e.outcome or "").startswith("async result noted") for e in events), [
        e.outcome for e in events]
    actions = store.actions()
    assert Counter(a.status for a in actions) == {"done": LEADS}
    assert len({a.enrollment_id for a in actions}) == LEADS
    visits = Counter(d.profile_url for d in world.delivered if d.kind == "visit")
    assert len(visits) == LEADS and set(visits.values()) == {1}
    assert {store.get_enrollment(a.enrollment_id).state  # type: ignore[union-attr]
            for a in actions} == {"completed"}
