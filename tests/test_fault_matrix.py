"""The fault matrix (issue 18; docs/reliability.md, "Fault matrix").

Each case plays a small campaign (30 leads over 3 Edges identities: visit -> connect -> wait
for acceptance -> message, a withdrawal when nobody accepts) against the in-process sandbox on
the virtual clock, with one fault or a pair of faults injected, then checks the store against
the sandbox's ground truth (the checks of tests/chaos/harness.py, in process):

* every lead ends in a terminal (none stuck in a step, none waiting);
* nothing delivered twice (no invitation or message twice to a person by an identity);
* no phantom: every action the store records as delivered reached the sandbox (visits settled
  without evidence are counted apart, as the chaos harness does);
* each lead's terminal is the one its world implies (inaccessible: removed; connected before:
  messaged, never invited; accepted: invited and messaged once; never accepted: invited,
  withdrawn, removed; a reply: replied) or ``failed`` with the reason (a retry cap);
* no call went to the sandbox while its identity's session was expired.

Faults come from the sandbox itself (429 with Retry-After, 5xx, timeouts before or after the
action, an expired session then re-auth, tight smart limits) or from :class:`FaultTransport`,
an httpx transport wrapping the sandbox app's (connection refused, latency spikes that move
the virtual clock during a call, the state database write-locked by another connection).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from engine.clock import VirtualClock
from engine.compile.machine import CompiledSequence, compile_sequence
from engine.model import ActionStep, Metadata, Sequence, Step, WaitForStep
from engine.providers.edges.actions import EdgesProvider
from engine.run.runner import Runner
from engine.sandbox import BASE_URLS, Sandbox
from engine.sandbox.world import FaultConfig, World, WorldConfig
from engine.store import Store
from engine.vocab import TERMINALS

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
HORIZON = timedelta(days=21)
IDENTITIES = ("ident-a", "ident-b", "ident-c")
LEADS = 30
HELLO = "Thanks for connecting, {{ lead.first_name }}!"
#: the reason of a lead the retry cap ended (engine.run.outcomes)
RETRY_CAP_REASON = re.compile(r"^(STATUS_429|SERVER_ERROR|TIMEOUT) after \d+ retries: ")
# delivery kinds of the sandbox an action of the store stands for (as the chaos harness)
EFFECT_KIND = {"connect": "invite", "send_message": "message", "visit_profile": "visit",
               "withdraw_invitation": "withdraw"}


def campaign() -> Sequence:
    steps: tuple[Step, ...] = (
        ActionStep("visit", "visit_profile"),
        ActionStep("connect", "connect", with_={"note": "Hi {{ lead.first_name }}"},
                   on={"ALREADY_CONNECTED": "hello", "INVITATION_PENDING": "accepted"}),
        WaitForStep("accepted", "connection_accepted", timedelta(days=7), "withdraw"),
        ActionStep("hello", "send_message", with_={"text": HELLO}, next="completed"),
        ActionStep("withdraw", "withdraw_invitation", next="removed"),
    )
    return Sequence(metadata=Metadata("matrix"), provider="edges", identities=IDENTITIES,
                    steps=steps, limits={"visit_profile": 40, "connect": 20, "send_message": 30},
                    normalized={"campaign": "matrix"})


# ---- the faults -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: what the sandbox and the transport inject."""

    name: str
    world: dict[str, Any] = field(default_factory=dict)  # FaultConfig fields
    limits: dict[str, int] | None = None  # the sandbox's smart limits (LIMIT_REACHED storms)
    refused: float = 0.0  # share of calls refused (httpx.ConnectError: nothing happened)
    outage: tuple[timedelta, timedelta] | None = None  # every call refused in this window
    spikes: float = 0.0  # share of calls during which the virtual clock jumps 20-40 min
    db_locked: float = 0.0  # share of calls during which another connection holds the lock
    always: tuple[str, str] | None = None  # (Edges action slug, "5xx"|"429"|"refused"): every call
    lock_at: timedelta | None = None  # from then on, another connection keeps the write lock


FAULTS = {
    f.name: f
    for f in (
        Fault("429-retry-after", world={"rate_429": 0.2, "retry_after_s": 900}),
        Fault("5xx", world={"rate_5xx": 0.2}),
        Fault("timeout", world={"rate_timeout": 0.15}),
        Fault("latency-spike", spikes=0.2),
        Fault("auth-expired-reauth", world={
            "auth_expire_at": {"ident-a": START + timedelta(hours=3),
                               "ident-b": START + timedelta(days=2)},
            "reauth_at": {"ident-a": START + timedelta(days=1),
                          "ident-b": START + timedelta(days=2, hours=6)}}),
        Fault("limit-storm", limits={"visit": 3, "connect": 2, "message": 2}),
        Fault("connection-refused", refused=0.15,
              outage=(timedelta(hours=2), timedelta(hours=14))),
        Fault("db-locked", db_locked=0.15),
    )
}


def combine(a: Fault, b: Fault) -> Fault:
    return Fault(f"{a.name}+{b.name}", world={**a.world, **b.world}, limits=a.limits or b.limits,
                 refused=max(a.refused, b.refused), outage=a.outage or b.outage,
                 spikes=max(a.spikes, b.spikes), db_locked=max(a.db_locked, b.db_locked))


class FaultTransport(httpx.AsyncBaseTransport):
    """The sandbox app's transport with the faults a network and a busy host add: a refused
    connection (the request never left), a latency spike (the virtual clock moves while the
    call is in flight), the state database write-locked by another connection meanwhile
    (the runner's next commit waits for it, as behind a `seqrun status` or an import)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, fault: Fault, clock: VirtualClock,
                 db: Path, seed: int) -> None:
        self.inner, self.fault, self.clock, self.db = inner, fault, clock, db
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.holders: list[threading.Thread] = []
        self.kept: list[sqlite3.Connection] = []  # write locks kept until release_kept()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        f, x = self.fault, self.rng.random()
        elapsed = self.clock.now() - START
        if f.always and f"/actions/{f.always[0]}/" in request.url.path:
            return self.refuse(request, f.always[1])
        if (f.outage and f.outage[0] <= elapsed < f.outage[1]) or x < f.refused:
            self.injected["refused"] += 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if self.rng.random() < f.spikes:
            self.injected["spike"] += 1
            self.clock.advance(timedelta(minutes=self.rng.uniform(20, 40)))
        if self.rng.random() < f.db_locked:
            self.injected["db_locked"] += 1
            self.holders.append(hold_write_lock(self.db, LOCK_HOLD_S))
        response = await self.inner.handle_async_request(request)
        if f.lock_at is not None and elapsed >= f.lock_at and not self.injected["lock_kept"]:
            self.injected["lock_kept"] += 1  # once: after the answer, before its commit
            other = sqlite3.connect(self.db, isolation_level=None, timeout=0)
            other.execute("BEGIN IMMEDIATE")
            self.kept.append(other)
        return response

    def release_kept(self) -> None:
        for other in self.kept:
            other.execute("ROLLBACK")
            other.close()
        self.kept.clear()


    def refuse(self, request: httpx.Request, kind: str) -> httpx.Response:
        """A call that never works: refused, or answered 503 / 429 with Retry-After."""
        self.injected[f"always-{kind}"] += 1
        if kind == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if kind == "429":
            return httpx.Response(429, headers={"Retry-After": "600"}, request=request,
                                  json={"error_label": "STATUS_429", "message": "slow down"})
        return httpx.Response(503, json={"error_label": "LK_524", "message": "upstream down"},
                              request=request)


#: real seconds another connection holds the write lock (the store's busy timeout is 10 s:
#: the runner's next commit waits for it)
LOCK_HOLD_S = 0.01


def hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another connection takes the database's write lock now and keeps it ``seconds`` (real
    time, in a thread: the runner's next commit, in this thread, has to wait for it)."""
    other = sqlite3.connect(db, isolation_level=None, timeout=5, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


# ---- one campaign -----------------------------------------------------------------------


@dataclass
class Played:
    store: Store
    world: World
    compiled: CompiledSequence
    transport: FaultTransport
    answers: Answers
    connected_before: dict[str, set[str]]  # identity -> profiles connected before the run


def build_world(clock: VirtualClock, fault: Fault, seed: int) -> World:
    config = WorldConfig(accept_probability=0.6, accept_delay_hours=(2.0, 96.0),
                         reply_probability=0.2, reply_delay_hours=(1.0, 48.0),
                         already_connected_fraction=0.15, writes_first_fraction=0.05,
                         writes_first_delay_hours=(0.0, 96.0), inaccessible_fraction=0.1,
                         faults=FaultConfig(**fault.world))
    if fault.limits is not None:
        config.limits = {kind: dict(fault.limits) for kind in config.limits}
    world = World(clock, seed=seed, config=config)
    for ident in IDENTITIES:
        world.add_identity(ident, provider="edges")
    world.populate(LEADS)
    return world


def enroll(store: Store, world: World, compiled: CompiledSequence, seq: Sequence) -> None:
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    for i, profile in enumerate(sorted(world.profiles.values(), key=lambda p: p.url)):
        lead = store.upsert_lead(profile.url, {"first_name": profile.first_name})
        assert store.enroll(lead, seq.name, compiled.revision, IDENTITIES[i % len(IDENTITIES)],
                            compiled.initial, START) is not None


class Answers(httpx.AsyncBaseTransport):
    """Counts the error labels the sandbox answered (a LIMIT_REACHED storm, the AUTH_EXPIRED
    answers an expired session got before the runner paused the identity)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.labels: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code >= 400:
            body = json.loads(await response.aread())
            self.labels[str(body.get("error_label"))] += 1
        return response


async def play(
    tmp: Path, fault: Fault, seed: int = 7, *, retry_cap: int = 5,
    runner_dies: Callable[[Runner, FaultTransport], Awaitable[None]] | None = None,
) -> Played:
    clock = VirtualClock(START)
    world = build_world(clock, fault, seed)
    sandbox = Sandbox(world)
    store = Store.open(None, tmp)
    seq = campaign()
    compiled = compile_sequence(seq)
    enroll(store, world, compiled, seq)
    before = {ident: set(world.network[ident]) for ident in IDENTITIES}
    answers = Answers(sandbox.transport)
    transport = FaultTransport(answers, fault, clock, tmp / "state.db", seed)
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URLS["edges"] + "/",
                               headers=sandbox.headers("edges"))

    def runner() -> Runner:
        return Runner(store, {"edges": EdgesProvider(client)}, clock, retry_cap=retry_cap,
                      compiled={compiled.revision: compiled})

    if runner_dies is not None:
        await runner_dies(runner(), transport)  # a process that dies; a fresh one takes over below
    await runner().run_until(START + HORIZON)
    await client.aclose()
    for holder in transport.holders:
        holder.join()
    return Played(store, world, compiled, transport, answers, before)


# ---- the checks -------------------------------------------------------------------------


def check(p: Played) -> Counter[str]:
    """The ground truth checks of the module's docstring; the terminals, counted."""
    store, world = p.store, p.world
    terminals: Counter[str] = Counter()
    invites = Counter((d.identity, d.profile_url) for d in world.delivered if d.kind == "invite")
    assert world.duplicates("message") == [], "a message delivered twice"
    assert max(invites.values(), default=0) <= 1, "an invitation sent twice"
    # an expired session is answered AUTH_EXPIRED once per identity, then the runner pauses
    # the identity (and only health checks go out until it is back)
    expiries = len(p.world.config.faults.auth_expire_at)
    assert p.answers.labels["AUTH_EXPIRED"] <= expiries, p.answers.labels
    assert store.pending_intents() == []
    for enr in store.enrollments():
        lead = store.get_lead(enr.lead_id)
        assert lead is not None
        url = lead.profile_url
        terminals[enr.state] += 1
        assert enr.state in TERMINALS, f"{url} stuck in {enr.state} ({enr.last_error})"
        assert enr.next_due_at is None, url
        check_phantoms(store, enr.id, enr.identity, url, world)
        check_terminal(enr, url, world, url in p.connected_before[enr.identity])
    return terminals


def check_phantoms(store: Store, enrollment_id: int, identity: str, url: str,
                   world: World) -> None:
    got = Counter(d.kind for d in world.deliveries(identity, url))
    for action in store.actions(enrollment_id=enrollment_id):
        kind = EFFECT_KIND.get(action.action)
        if action.status != "done" or kind is None:
            continue
        if isinstance(action.response, dict) and action.response.get("unverified"):
            continue  # settled without evidence (a visit): counted apart
        assert got[kind] > 0, f"{url}: {action.action} recorded done, never delivered"


def check_terminal(enr: Any, url: str, world: World, connected_before: bool) -> None:
    """The terminal the lead's world implies, and what it was sent to get there."""
    ident, profile = enr.identity, world.profiles[url]
    sent = [d.kind for d in world.deliveries(ident, url)]
    thread = world.threads[ident].get(url)
    theirs = [m for m in (thread.messages if thread else []) if not m.from_us]
    ours = [m for m in (thread.messages if thread else []) if m.from_us]
    if enr.state == "failed":
        # only the retry cap may end a lead in failed here, and with the reason
        assert RETRY_CAP_REASON.search(enr.last_error or ""), (url, enr.last_error)
        return
    if not profile.accessible:
        assert enr.state == "removed" and "message" not in sent, (url, enr.state, sent)
    elif enr.state == "replied":
        assert theirs, f"{url}: replied, but the lead never wrote"
    elif enr.state == "completed":
        assert len(ours) == 1 and url in world.network[ident], (url, sent)
        # connected before: messaged, never invited; else invited once, then messaged
        assert sent.count("invite") == (0 if connected_before else 1), (url, sent)
    elif enr.state == "removed":
        assert not connected_before, (url, sent)
        assert sent[-1:] == ["withdraw"] and url not in world.network[ident], (url, sent)
        assert sent.count("invite") == 1 and "message" not in sent, (url, sent)
    else:
        pytest.fail(f"{url}: unexpected terminal {enr.state} ({enr.last_error})")


# ---- the matrix -------------------------------------------------------------------------

SINGLES = sorted(FAULTS)
PAIRS = [f"{a}+{b}" for a, b in itertools.combinations(SINGLES, 2)]
ALL = "+".join(SINGLES)  # every fault at once


def fault_named(name: str) -> Fault:
    faults = [FAULTS[part] for part in name.split("+")]
    fault = faults[0]
    for other in faults[1:]:
        fault = combine(fault, other)
    return fault


@pytest.mark.parametrize("name", [*SINGLES, *PAIRS, ALL])
async def test_fault_matrix_ends_every_lead_right_and_nothing_twice(
    tmp_path: Path, name: str
) -> None:
    fault = fault_named(name)
    played = await play(tmp_path, fault)
    terminals = check(played)
    assert sum(terminals.values()) == LEADS
    assert terminals["completed"] > 0  # the campaign went through despite the faults
    # the fault was really injected
    injected = Counter(played.world.faults_injected) + played.transport.injected
    wanted = {"rate_429": "429", "rate_5xx": "5xx", "rate_timeout": "timeout"}
    for knob, kind in wanted.items():
        if fault.world.get(knob):
            assert injected[kind] > 0, (knob, injected)
    for knob, kind in (("refused", "refused"), ("spikes", "spike"), ("db_locked", "db_locked")):
        if getattr(fault, knob):
            assert injected[kind] > 0, (knob, injected)
    played.store.close()


@pytest.mark.parametrize("kind", ["5xx", "429", "refused"])
async def test_a_retry_cap_ends_the_lead_in_failed_with_the_reason(
    tmp_path: Path, kind: str
) -> None:
    """Every message call fails (503, 429 with Retry-After, connection refused): each lead
    that reaches the message is retried ``retry_cap`` times, then ends in ``failed`` with the
    label and the count as its reason; never a silent stop, never a message."""
    cap = 3
    fault = Fault(f"always-{kind}", always=("linkedin-message-profile", kind))
    played = await play(tmp_path, fault, retry_cap=cap)
    store, world = played.store, played.world
    assert not world.deliveries(kind="message")
    failed = [e for e in store.enrollments() if e.state == "failed"]
    assert failed, "no lead reached the message"
    label = {"5xx": "SERVER_ERROR", "429": "STATUS_429", "refused": "SERVER_ERROR"}[kind]
    for enr in failed:
        assert (enr.last_error or "").startswith(f"{label} after {cap} retries: "), enr
        attempts = [a for a in store.actions(enrollment_id=enr.id) if a.step == "hello"]
        assert len(attempts) == cap + 1 and all(a.status == "failed" for a in attempts)
    assert played.transport.injected[f"always-{kind}"] == len(failed) * (cap + 1)
    check(played)  # every other lead went on as its world implies
    store.close()


async def test_a_database_locked_beyond_the_busy_timeout_stops_the_run_and_a_restart_ends_right(
    tmp_path: Path,
) -> None:
    """Another process keeps the write lock longer than the store waits for it (a large
    import): the run stops with "database is locked" (its wave's outcomes not committed, its
    intents open), and a fresh run reconciles them: every lead right, nothing sent twice."""
    stopped: list[BaseException] = []

    async def dies(runner: Runner, transport: FaultTransport) -> None:
        # SQLite waits busy_timeout for a lock (10 s in the store): 50 ms here, so the run
        # gives up at once; set on every new connection of the store's pool
        engine = runner.store.engine
        engine.dispose()
        sa.event.listen(engine, "connect",
                        lambda conn, _: conn.execute("PRAGMA busy_timeout=50"))
        try:
            await runner.run_until(START + HORIZON)
        except Exception as exc:
            stopped.append(exc)
        finally:
            transport.release_kept()  # the other process is done

    fault = replace(FAULTS["timeout"], name="db-locked-long", lock_at=timedelta(days=1))
    played = await play(tmp_path, fault, runner_dies=dies)
    assert played.transport.injected["lock_kept"] == 1 and stopped, "the lock was never hit"
    assert "database is locked" in str(stopped[0]) or "locked by another process" in str(
        stopped[0])
    terminals = check(played)
    assert sum(terminals.values()) == LEADS and terminals["completed"] > 0
    played.store.close()
