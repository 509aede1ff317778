"""Identity leases (engine.store.leases, engine.run.leases): the compare-and-set claim, the
heartbeat, expiry and take-over, release, dead local workers, fair shares, and a store
migrated by a newer seqrun. On SQLite always, on PostgreSQL when SEQRUN_TEST_DATABASE_URL
is set (each test in a schema of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.errors import StoreError
from engine.model import ActionStep, Metadata, Sequence
from engine.providers.edges.actions import EdgesProvider
from engine.run.leases import IdentityLeases
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.store import HEAD, Store
from engine.store import tables as t
from engine.store.db import MIGRATIONS
from engine.store.locks import _pid_ns
from engine.vocab import KILL_SWITCH, TERMINALS
from tests.conftest import PG_URL, invoke, postgres_schema

TTL = timedelta(minutes=5)
NOW = datetime.now(UTC)
IDS = [f"ident-{i:02d}" for i in range(6)]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL: a SQLite file, or a fresh schema of the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_schema("w") as pg:
        yield pg


@pytest.fixture
def store(url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(url, tmp_path)
    yield s
    s.close()


def beat(store: Store, worker: str) -> set[str]:
    held, _ = store.heartbeat(worker, TTL, host="h", pid=1, started_at=NOW)
    return held


def expire(store: Store, worker: str) -> None:
    """``worker`` stopped beating long ago (its row and leases expired)."""
    past = datetime.now(UTC) - timedelta(hours=1)
    with store.transaction() as c:
        c.execute(t.identity_leases.update().where(t.identity_leases.c.worker == worker)
                  .values(expires_at=past))
        c.execute(t.workers.update().where(t.workers.c.id == worker).values(expires_at=past))


def test_a_claim_takes_only_free_identities(store: Store) -> None:
    beat(store, "a")
    beat(store, "b")
    got_a = store.claim_identities("a", IDS, 4, TTL)
    assert [c.identity for c in got_a] == IDS[:4] and {c.previous for c in got_a} == {None}
    got_b = store.claim_identities("b", IDS, 6, TTL)  # wants all: gets what is free
    assert [c.identity for c in got_b] == IDS[4:]
    assert store.claim_identities("b", IDS, 6, TTL) == []
    assert beat(store, "a") == set(IDS[:4]) and beat(store, "b") == set(IDS[4:])
    workers = {w.id: w.identities for w in store.live_workers()}
    assert workers == {"a": tuple(IDS[:4]), "b": tuple(IDS[4:])}


def test_an_expired_lease_is_taken_over_and_its_old_holder_no_longer_renews_it(
    store: Store,
) -> None:
    beat(store, "a")
    store.claim_identities("a", IDS[:2], 2, TTL)
    expire(store, "a")
    assert [w.id for w in store.live_workers()] == []
    got = store.claim_identities("b", IDS[:2], 2, TTL)
    assert [(c.identity, c.previous) for c in got] == [(IDS[0], "a"), (IDS[1], "a")]
    assert beat(store, "a") == set()  # back from a pause: it holds nothing any more
    assert beat(store, "b") == set(IDS[:2])


def test_released_identities_are_free_at_once_and_retire_frees_everything(
    store: Store,
) -> None:
    beat(store, "a")
    store.claim_identities("a", IDS, 6, TTL)
    store.release_identities("a", IDS[:2])
    assert [c.identity for c in store.claim_identities("b", IDS, 6, TTL)] == IDS[:2]
    store.retire_worker("a")
    assert [c.identity for c in store.claim_identities("b", IDS, 6, TTL)] == IDS[2:]
    assert {w.id for w in store.live_workers()} == set()  # b never beat: no worker row


def test_a_dead_worker_of_this_host_is_reaped_without_waiting_for_expiry(store: Store) -> None:
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a PID that ran and is gone
    dead = f"{socket.gethostname()}:{proc.pid}:deadbeef:{_pid_ns()}"
    beat(store, dead)
    store.claim_identities(dead, IDS[:3], 3, TTL)
    assert store.reap_dead_workers() == [dead]
    claimed = store.claim_identities("b", IDS, 6, TTL)
    assert [c.identity for c in claimed] == IDS
    # the dead worker's are reported taken over from it (the run summary says so)
    assert [c.previous for c in claimed] == [dead] * 3 + [None] * 3


def test_workers_claiming_at_once_never_share_an_identity(url: str, tmp_path: Path) -> None:
    """Four workers (threads, each its own connection) claim every identity at once, in
    rounds: each identity goes to exactly one."""
    ids = [f"ident-{i:02d}" for i in range(40)]
    Store.open(url, tmp_path).close()  # migrated once
    won: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        s = Store.open(url, tmp_path)
        try:
            barrier.wait()
            for _ in range(5):
                for c in s.claim_identities(name, ids, 10, TTL):
                    won.setdefault(c.identity, []).append(name)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(won) == ids and all(len(v) == 1 for v in won.values())


def test_a_store_of_a_newer_seqrun_is_refused_with_the_remedy(url: str, tmp_path: Path) -> None:
    s = Store.open(url, tmp_path)
    with s.transaction() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    s.close()
    with pytest.raises(StoreError, match=r"9999, newer than this seqrun knows.*upgrade seqrun"):
        Store.open(url, tmp_path)


def _one_migration_behind(url: str, tmp_path: Path) -> str:
    """A store at head, then downgraded one migration (what an older seqrun left); the
    revision it is at."""
    from alembic import command
    from alembic.config import Config

    s = Store.open(url, tmp_path)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with s.transaction() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "-1")
        before = str(c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar())
    s.close()
    assert before != HEAD
    return before


def _revision(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return str(c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def test_an_older_schema_is_migrated_only_by_db_upgrade_on_a_server_on_open_on_sqlite(
    url: str, tmp_path: Path
) -> None:
    """PostgreSQL (shared by a fleet of workers): an older store is refused, naming its
    revision, this seqrun's and the command; `Store.open(upgrade=True)` (`seqrun db upgrade`)
    migrates it. SQLite (one machine): migrated on open, as before."""
    before = _one_migration_behind(url, tmp_path)
    if url.startswith("sqlite"):
        s = Store.open(url, tmp_path)
        assert s.migrated_from == before and _revision(url) == HEAD
        s.close()
        return
    with pytest.raises(StoreError, match=rf"revision {before}, older than this seqrun's {HEAD}"
                                         r".*run `seqrun db upgrade`"):
        Store.open(url, tmp_path)
    assert _revision(url) == before  # nothing was migrated
    s = Store.open(url, tmp_path, upgrade=True)
    assert s.migrated_from == before
    s.close()
    s = Store.open(url, tmp_path)  # at head: opens
    assert s.migrated_from == HEAD
    s.close()


def test_sqlite_processes_opening_an_older_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Four processes open a SQLite store one migration behind at the same time: the check and
    the upgrade run under BEGIN IMMEDIATE's write lock, so one migrates and the others find
    it at head (none fails on a table already made)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    before = _one_migration_behind(url, tmp_path)
    code = ("import sys; from engine.store import Store; "
            "s = Store.open(sys.argv[1]); print(s.migrated_from); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    found = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        found.append(out.strip())
    assert sorted(found) == sorted([before] + [HEAD] * 3)
    assert _revision(url) == HEAD


# ---- runners as workers: each identity in one worker, fair shares, take-over ----------------

MONDAY_8 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WIDS = [f"wk-{i:02d}" for i in range(6)]


class Ledger:
    """Per identity: the calls in flight now, the most ever in flight at once (over every
    worker), and the workers that called for it."""

    def __init__(self) -> None:
        self.inflight: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.callers: dict[str, set[str]] = {}


class Watch(httpx.AsyncBaseTransport):
    """The sandbox's transport, keeping the ledger of one worker's calls."""

    def __init__(self, inner: httpx.AsyncBaseTransport, worker: str, ledger: Ledger) -> None:
        self.inner, self.worker, self.ledger = inner, worker, ledger

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = (await request.aread()).decode() + str(request.url)
        who = next((i for i in WIDS if i in body), None)
        if who is None:
            return await self.inner.handle_async_request(request)
        cls = self.ledger
        cls.inflight[who] = cls.inflight.get(who, 0) + 1
        cls.most[who] = max(cls.most.get(who, 0), cls.inflight[who])
        cls.callers.setdefault(who, set()).add(self.worker)
        try:
            for _ in range(3):  # let the other workers' tasks run while this call is out
                await asyncio.sleep(0)
            return await self.inner.handle_async_request(request)
        finally:
            cls.inflight[who] -= 1


class Campaign:
    """24 leads over 6 identities (visit, then a message: they are connected already), on
    one embedded sandbox and virtual clock; one Store (connection) per worker."""

    def __init__(self, tmp: Path, url: str | None = None) -> None:
        self.ledger = Ledger()
        self.tmp, self.url = tmp, url
        self.stores: list[Store] = []
        self.clock = VirtualClock(MONDAY_8)
        self.sandbox = Sandbox.open(None, clock=self.clock, profiles=0)
        self.world = self.sandbox.world
        seq = Sequence(metadata=Metadata("many"), provider="edges", identities=tuple(WIDS),
                       steps=(ActionStep("visit", "visit_profile"),
                              ActionStep("intro", "send_message",
                                         with_={"text": "Hello {{ lead.first_name }}"})),
                       cooldown=None, normalized={"name": "many"})
        self.compiled = compile_sequence(seq)
        self.store = self.open()
        self.store.put_revision(self.compiled.revision, "many", "Sequence", {"n": "many"})
        self.store.put_sequence("many", "Sequence", "edges", self.compiled.revision)
        for uid in WIDS:
            self.world.add_identity(uid, name=uid, provider="edges")
            self.store.put_identity(uid, "edges")
        self.urls: list[str] = []
        for i in range(24):
            url_ = f"https://www.linkedin.com/in/many-{i:02d}"
            who = WIDS[i % len(WIDS)]
            self.world.add_profile(url_, first_name=f"L{i}", replies=False,
                                   already_connected_with=[who])
            lead = self.store.upsert_lead(url_, {"first_name": f"L{i}"})
            self.store.enroll(lead, "many", self.compiled.revision, who, self.compiled.initial,
                              self.clock.now())
            self.urls.append(url_)

    def open(self) -> Store:
        self.stores.append(Store.open(self.url, self.tmp))
        return self.stores[-1]

    def close(self) -> None:
        for s in self.stores:
            s.close()

    def runner(self, name: str, watch: type[Watch] = Watch) -> Runner:
        client = httpx.AsyncClient(transport=watch(self.sandbox.transport, name, self.ledger),
                                   base_url=self.sandbox.base_url("edges") + "/",
                                   headers=self.sandbox.headers("edges"))
        return Runner(self.open(), {"edges": EdgesProvider(client)}, self.clock,
                      compiled={self.compiled.revision: self.compiled})

    def open_leads(self) -> int:
        return sum(1 for e in self.store.enrollments() if e.state not in TERMINALS)

    async def play(self, runners: list[Runner], rounds: int = 200) -> None:
        """Every worker ticks at once, then the clock moves to the next due time."""
        for _ in range(rounds):
            await asyncio.gather(*(r.tick() for r in runners))
            if self.open_leads() == 0:
                return
            nxt = self.store.next_due_at()
            self.clock.advance(max(timedelta(minutes=1), (nxt or self.clock.now())
                                   - self.clock.now()))
        raise AssertionError(f"{self.open_leads()} leads still open")

    def check_ground_truth(self) -> None:
        for i, url_ in enumerate(self.urls):
            who = WIDS[i % len(WIDS)]
            assert len(self.world.messages_to(who, url_)) == 1, url_
        assert all(e.state == "completed" for e in self.store.enrollments())


@pytest.fixture
def campaign(url: str, tmp_path: Path) -> Iterator[Campaign]:
    camp = Campaign(tmp_path, url)
    yield camp
    camp.close()


async def test_three_workers_share_the_identities_and_never_act_for_one_at_once(
    campaign: Campaign,
) -> None:
    camp = campaign
    runners = [camp.runner(n) for n in ("a", "b", "c")]
    async with contextlib.AsyncExitStack() as stack:
        leases = [await stack.enter_async_context(r.hold_leases(timedelta(minutes=1)))
                  for r in runners]
        await camp.play(runners)
        held = [set(lease.state.owned or ()) for lease in leases]
    assert sorted(len(h) for h in held) == [2, 2, 2] and set().union(*held) == set(WIDS)
    assert set(camp.ledger.most) == set(WIDS) and max(camp.ledger.most.values()) == 1
    assert all(len(c) == 1 for c in camp.ledger.callers.values())  # one worker per identity
    camp.check_ground_truth()
    assert camp.store.live_workers() == []  # each released everything on the way out


async def test_a_worker_that_joins_takes_a_share_and_the_first_releases_it(
    campaign: Campaign,
) -> None:
    camp = campaign
    a, b = camp.runner("a"), camp.runner("b")
    async with a.hold_leases(timedelta(minutes=1)) as la:
        await a.tick()
        assert la.state.owned == set(WIDS)  # alone: every identity
        async with b.hold_leases(timedelta(minutes=1)) as lb:
            la.rebalance_every = lb.rebalance_every = 0.0  # at every tick (not every 7.5 s)
            await a.tick()  # two live workers: a keeps its share of 3, releases the rest
            await b.tick()
            assert len(la.state.owned or ()) == 3 and len(lb.state.owned or ()) == 3
            await camp.play([a, b])
    assert max(camp.ledger.most.values()) == 1
    camp.check_ground_truth()


class JoinOnFirstCall(Watch):
    """Worker a's first call runs ``hook`` (once): a worker joins while a's tick runs."""

    hook: Callable[[], Awaitable[None]] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hook, cls = JoinOnFirstCall.hook, JoinOnFirstCall
        if hook is not None and self.worker == "a":
            cls.hook = None
            await hook()
        return await super().handle_async_request(request)


async def test_a_worker_that_joins_mid_tick_gets_its_share_before_the_tick_ends(
    campaign: Campaign,
) -> None:
    """a holds every identity and is in a tick (a big campaign's tick can last hours) when
    b joins: a's heartbeat finds the identities above its share, and each is given up at its
    next call (its writes flushed, nothing in flight), not at the end of the tick; b claims
    them at its first tick and the campaign ends with every message sent once."""
    camp = campaign
    a, b = camp.runner("a", JoinOnFirstCall), camp.runner("b")
    joined: list[IdentityLeases] = []
    async with contextlib.AsyncExitStack() as stack:
        la = await stack.enter_async_context(a.hold_leases(timedelta(minutes=1)))

        async def join() -> None:
            joined.append(await stack.enter_async_context(b.hold_leases(timedelta(minutes=1))))
            la._find_extra()  # what a's heartbeat does every ttl / 4

        JoinOnFirstCall.hook = join
        await a.tick()
        assert la.state.owned == set(WIDS[:3])  # the share of one of two live workers
        workers = {w.id: w.identities for w in camp.store.live_workers()}
        assert workers == {la.id: tuple(WIDS[:3]), joined[0].id: ()}  # the rest released
        assert camp.store.pending_intents() == []  # given up between two calls
        left = {e.identity for e in camp.store.enrollments() if e.state not in TERMINALS}
        assert left and left <= set(WIDS[3:])  # before the end of their leads
        await b.tick()
        assert joined[0].state.owned == set(WIDS[3:])
        await camp.play([a, b])
    assert max(camp.ledger.most.values()) == 1
    camp.check_ground_truth()


async def test_a_daemons_tick_ends_soon_when_a_dead_workers_leases_wait(
    campaign: Campaign,
) -> None:
    """a holds its share (3 identities) and another worker the rest; that one dies while
    a's tick runs. a's heartbeat finds the free leases while a is short of its share, so its
    tick ends at a call once it ran ``tick_budget`` (each identity one call at least, so a
    slow sync cannot starve it; nothing in flight, the leads left due), and the next tick's
    balance takes the dead worker's identities over: a big campaign's tick does not keep
    them waiting. Without leases to claim, a tick runs to its end."""
    camp = campaign
    a = camp.runner("a", JoinOnFirstCall)
    other = "otherhost:7:cafe:1"
    beat(camp.store, other)
    camp.store.claim_identities(other, WIDS[3:], 3, TTL)
    async with a.hold_leases(timedelta(minutes=1)) as la:
        la.tick_budget = 0.0  # spent at once once leases wait

        async def dies() -> None:
            expire(camp.store, other)
            la._find_extra()  # what a's heartbeat does every ttl / 4

        JoinOnFirstCall.hook = dies
        result = await a.tick()
        assert la.to_claim and la.state.owned == set(WIDS[:3])
        assert sorted(x.identity for x in camp.store.actions()) == WIDS[:3]  # one call each
        assert result.actions == 3 and camp.store.pending_intents() == []
        assert a.next_wait(result, 30.0) == 0.0  # cut short with leads due: at once
        second = await a.tick()
        assert sorted(second.taken_over) == WIDS[3:] and la.state.owned == set(WIDS)
        assert not la.to_claim
        await camp.play([a])
    camp.check_ground_truth()


async def test_a_daemon_sleeps_until_a_later_due_instant_not_for_leads_it_could_not_act_for(
    campaign: Campaign,
) -> None:
    """Under the kill switch (here over unpaused sequences: `pause --all` also pauses them,
    which hides them from the due-time query) every lead stays due: the daemon waited 0 s
    (50 ms, its floor) after each tick and spun at 20 ticks a second, redoing its reads.
    Now a lead already due when the tick started is no reason to tick again at once: the
    daemon sleeps its poll interval, or until a lead due later, whichever comes first."""
    camp = campaign
    a = camp.runner("a")
    camp.store.kv_put(*KILL_SWITCH, {"at": camp.clock.now().isoformat()})
    async with a.hold_leases(timedelta(minutes=1)):
        killed = await a.tick()
        assert killed.killed and killed.actions == 0
        assert a.next_wait(killed, 30.0) == 30.0  # every lead due since before the tick
        later = camp.store.enrollments()[0]
        camp.store.update_enrollment(later.id, next_due_at=camp.clock.now() + timedelta(
            seconds=10))
        assert a.next_wait(killed, 30.0) == 10.0  # a lead due later wakes it then
        camp.store.kv_delete(*KILL_SWITCH)
        await camp.play([a])
    camp.check_ground_truth()


async def test_an_expired_workers_identities_are_taken_over_and_its_intents_reconciled(
    campaign: Campaign,
) -> None:
    """Worker a dies with a message in flight (its intent open, its lease not renewed):
    once the lease expired, b takes the identities over, reconciles the open intent with
    the provider (the message was delivered: recorded, never resent) and goes on."""
    camp = campaign
    a, b = camp.runner("a"), camp.runner("b")
    async with a.hold_leases(timedelta(minutes=1)) as la:
        await a.tick()  # the visits
        camp.clock.advance(timedelta(minutes=5))
        la.state.owned = {WIDS[0]}  # a acts for one identity only from here
        dead = la.id
        await a.tick()  # its messages for wk-00 went out
        # it "dies" after its last call: the intent is open again, nothing released
        with camp.store.transaction() as c:
            last = c.execute(sa.select(t.action_log.c.idempotency_key)
                             .where(t.action_log.c.identity == WIDS[0],
                                    t.action_log.c.action == "send_message")
                             .order_by(t.action_log.c.id.desc())).scalar()
            c.execute(t.action_log.update().where(t.action_log.c.idempotency_key == last)
                      .values(status="intent", finished_at=None))
        expire(camp.store, dead)
        async with b.hold_leases(timedelta(minutes=1)):
            camp.clock.advance(timedelta(minutes=10))  # past the settle window
            first = await b.tick()
            assert WIDS[0] in first.taken_over and first.recovered == 1
            await camp.play([b])
        la.state.owned = set()
    camp.check_ground_truth()  # every message once: the reconciled one was not resent


async def test_a_running_worker_stops_when_a_newer_seqrun_migrates_the_store(
    campaign: Campaign,
) -> None:
    camp = campaign
    runner = camp.runner("a")
    async with runner.hold_leases(timedelta(minutes=1)) as leases:
        await runner.tick()
        with camp.store.transaction() as c:
            c.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        leases.rebalance_every = 0.0
        with pytest.raises(StoreError, match="newer than this seqrun knows"):
            await runner.tick()


async def test_a_worker_losing_a_lease_mid_wave_leaves_its_outcome_to_the_new_holder(
    campaign: Campaign,
) -> None:
    """a's lease of wk-00 expires right after a's first message for it returns: a makes no
    further call for wk-00 and does not write that outcome (b may be acting already); b takes
    wk-00 over, reconciles the open intent (the message is in the thread: done) and sends the
    rest. Every message once."""
    camp = campaign
    stolen: list[str] = []

    class Steal(Watch):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            body = request.content.decode()
            if not stolen and "message" in str(request.url) and WIDS[0] in body:
                with camp.store.transaction() as c:  # the lease ran out meanwhile
                    c.execute(t.identity_leases.update()
                              .where(t.identity_leases.c.identity == WIDS[0])
                              .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
                la._beat()  # a's heartbeat finds it gone
                stolen.append(WIDS[0])
            return response

    a, b = camp.runner("a", Steal), camp.runner("b")
    async with a.hold_leases(timedelta(minutes=1)) as la:
        await a.tick()  # the visits
        camp.clock.advance(timedelta(minutes=5))
        await a.tick()  # the messages: wk-00's first one, then the lease is gone
        assert stolen and WIDS[0] not in (la.state.owned or set())
        wk0 = [x for x in camp.store.actions(identity=WIDS[0]) if x.action == "send_message"]
        assert [x.status for x in wk0] == ["intent"]  # one call, its outcome not written
        async with b.hold_leases(timedelta(minutes=1)) as lb:
            la.rebalance_every = lb.rebalance_every = 0.0
            camp.clock.advance(timedelta(minutes=10))
            first = await b.tick()
            assert WIDS[0] in first.taken_over and first.recovered == 1
            await camp.play([a, b])
    camp.check_ground_truth()


# ---- the CLI: db upgrade, status, --workers ---------------------------------------------------


def test_db_upgrade_migrates_then_has_nothing_to_do(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alembic import command
    from alembic.config import Config

    s = Store.open(None, cli_dir / ".seqrun")  # a store one migration behind
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with s.transaction() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "-1")
        before = c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    s.close()
    code, out, err = invoke(capsys, "db", "upgrade", "-o", "json")
    assert code == 0, err
    assert before != HEAD and json.loads(out) == {**json.loads(out), "was": before, "now": HEAD}
    code, out, _ = invoke(capsys, "db", "upgrade")
    assert code == 0 and f"schema at {HEAD}, nothing to do" in out


@pytest.mark.skipif(not PG_URL, reason="SEQRUN_TEST_DATABASE_URL not set")
def test_commands_on_an_older_postgresql_store_say_to_run_db_upgrade(
    url: str, cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if url.startswith("sqlite"):
        pytest.skip("SQLite stores migrate on open")
    before = _one_migration_behind(url, cli_dir)
    monkeypatch.setenv("SEQRUN_DATABASE_URL", url)
    for argv in (["run", "--once"], ["status"], ["dnc", "list"]):
        code, _, err = invoke(capsys, *argv)
        assert code != 0 and "Traceback" not in err, (argv, err)
        assert f"schema revision {before}, older than this seqrun's {HEAD}" in err, (argv, err)
        assert "seqrun db upgrade" in err
    assert _revision(url) == before
    code, out, err = invoke(capsys, "db", "upgrade", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["was"] == before and _revision(url) == HEAD
    code, _, err = invoke(capsys, "status")
    assert code == 0, err


def test_status_shows_the_live_workers_their_identities_and_last_heartbeat(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Store.open(None, cli_dir / ".seqrun")
    beat(s, "otherhost:7:cafe:1")
    s.claim_identities("otherhost:7:cafe:1", IDS[:2], 2, TTL)
    beat(s, "gone")
    expire(s, "gone")
    s.close()
    code, out, err = invoke(capsys, "status", "-o", "json")
    assert code == 0, err
    (worker,) = json.loads(out)["workers"]
    assert worker["id"] == "otherhost:7:cafe:1" and worker["identities"] == IDS[:2]
    assert worker["last_heartbeat"]
    code, out, _ = invoke(capsys, "status")
    assert code == 0 and "WORKER" in out and "ident-00, ident-01" in out


def test_workers_refuse_the_embedded_sandbox(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = invoke(capsys, "run", "--workers", "2", "--sandbox", "--once")
    assert code == 2 and "seqrun sandbox serve" in err


def test_a_run_summary_says_which_identities_were_taken_over() -> None:
    from engine.cli.render_run import run_lines
    from engine.run.results import RunSummary, TickResult

    tick = TickResult(NOW, taken_over=["ident-01", "ident-00"])
    summary = RunSummary(NOW, NOW)
    summary.add(tick)
    assert summary.to_json()["taken_over"] == ["ident-01", "ident-00"]
    assert "took over ident-00, ident-01 from a worker" in "\n".join(run_lines(summary))
