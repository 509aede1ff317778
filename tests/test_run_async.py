"""``execution: async`` (issue 12): outreach through Edges ``run/async``, results by callback to
the receiver (in process, on the same store) or by polling ``GET /runs/{uid}``, checked against
the sandbox's ground truth with the fault matrix's checks (no duplicate, no lost lead, no
phantom, every lead in the terminal its world implies)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.manifest import loader
from engine.model import ActionStep, Metadata, Sequence
from engine.providers.edges.actions import EdgesProvider
from engine.run.async_runs import NS
from engine.run.results import TickResult
from engine.run.runner import Runner
from engine.sandbox import BASE_URLS, Sandbox
from engine.sandbox.world import FaultConfig, World, WorldConfig
from engine.serve.app import build_app
from engine.serve.config import (
    EDGES_CALLBACKS,
    SECRET_HEADER,
    ServeConfig,
    edges_run_callback,
    receiver_warnings,
)
from engine.store import Store
from engine.store.inbound import inbound_events, record_inbound
from tests import test_fault_matrix as matrix
from tests.test_fault_matrix import Answers, Fault, FaultTransport, Played, campaign, check
from tests.test_run_safety import Crash

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
SECRET = "edges-secret-0123456789abcdef"
PUBLIC = "http://127.0.0.1:8080"
CALLBACK = edges_run_callback(ServeConfig(SECRET, None, PUBLIC))
OUTREACH = {"linkedin-visit-profile", "linkedin-connect-profile", "linkedin-message-profile",
            "linkedin-withdraw-invitation"}


class Counting(httpx.AsyncBaseTransport):
    """Counts requests by (method, path kind)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")
        if "actions" in parts:
            kind = f"{parts[parts.index('actions') + 1]} {parts[-1]}"
        elif "runs" in parts:
            kind = "GET /runs/{uid}" + ("/outputs" if parts[-1] == "outputs" else "") \
                if parts[-1] != "runs" else "GET /runs"
        else:
            kind = f"{request.method} {parts[-1]}"
        self.calls[kind] += 1
        return await self.inner.handle_async_request(request)


@dataclass
class AsyncPlay:
    played: Played
    counting: Counting
    sandbox: Sandbox
    identities: tuple[str, ...]


def async_campaign(identities: tuple[str, ...]) -> Sequence:
    return replace(campaign(), identities=identities, execution="async")


async def play_async(
    tmp: Path, *, leads: int, identities: int, callbacks: bool, days: int = 21,
    faults: FaultConfig | None = None, seed: int = 7, step: timedelta = timedelta(hours=1),
) -> AsyncPlay:
    clock = VirtualClock(START)
    names = tuple(f"ident-{i}" for i in range(identities))
    world = World(clock, seed=seed, config=WorldConfig(
        accept_probability=0.6, accept_delay_hours=(2.0, 96.0), reply_probability=0.2,
        reply_delay_hours=(1.0, 48.0), already_connected_fraction=0.15,
        writes_first_fraction=0.05, writes_first_delay_hours=(0.0, 96.0),
        inaccessible_fraction=0.1, faults=faults or FaultConfig()))
    for name in names:
        world.add_identity(name, provider="edges")
    world.populate(leads)
    store = Store.open(None, tmp)
    # the receiver, in process, over the same store: what `seqrun serve` runs
    receiver = httpx.AsyncClient(transport=httpx.ASGITransport(
        app=build_app(store, ServeConfig(SECRET, None, PUBLIC))), base_url=PUBLIC)
    sandbox = Sandbox(world, callback_client=receiver if callbacks else None)
    seq = async_campaign(names)
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    for i, profile in enumerate(sorted(world.profiles.values(), key=lambda p: p.url)):
        lead = store.upsert_lead(profile.url, {"first_name": profile.first_name})
        store.enroll(lead, seq.name, compiled.revision, names[i % identities], compiled.initial,
                     START)
    before = {name: set(world.network[name]) for name in names}
    answers = Answers(sandbox.transport)
    counting = Counting(answers)
    transport = FaultTransport(counting, Fault("none"), clock, tmp / "state.db", seed)
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URLS["edges"] + "/",
                               headers=sandbox.headers("edges"))

    async def provider_works(result: TickResult) -> bool:
        await sandbox.tick()  # Edges processes queued runs on its own, between our calls
        return False

    runner = Runner(store, {"edges": EdgesProvider(client)}, clock,
                    compiled={compiled.revision: compiled}, retry_cap=5,
                    tick_hooks=[provider_works], async_callback=CALLBACK if callbacks else None)
    await runner.run_until(START + timedelta(days=days), step)
    await client.aclose()
    await receiver.aclose()
    return AsyncPlay(Played(store, world, compiled, transport, answers, before), counting,
                     sandbox, names)


def kind(outcome: str | None) -> str:
    """What the runner did with a callback (an inbound event's outcome)."""
    for prefix, name in (("async result noted", "noted"), ("duplicate", "duplicate"),
                         ("ignored", "ignored")):
        if (outcome or "").startswith(prefix):
            return name
    return str(outcome)


def outreach_live_calls(counting: Counting) -> int:
    return sum(n for k, n in counting.calls.items()
               if k.split()[0] in OUTREACH and k.endswith(" live"))


def submitted(counting: Counting) -> int:
    return sum(n for k, n in counting.calls.items() if k.endswith(" async"))


async def test_an_async_campaign_of_500_leads_completes_through_callbacks_only(
    tmp_path: Path,
) -> None:
    game = await play_async(tmp_path, leads=500, identities=5, callbacks=True)
    terminals = check(game.played)  # ground truth: no duplicate, none lost, no phantom
    store = game.played.store
    assert sum(terminals.values()) == 500 and terminals["completed"] > 100, terminals
    # every outreach action went through run/async; no run was polled: callbacks only
    assert outreach_live_calls(game.counting) == 0
    assert submitted(game.counting) > 1000
    assert game.counting.calls["GET /runs/{uid}"] == 0, game.counting.calls
    events = inbound_events(store)
    noted = [e for e in events if (e.outcome or "").startswith("async result noted")]
    assert len(noted) == submitted(game.counting)
    assert all(e.consumed_at is not None for e in events)
    assert store.kv_items(NS) == {}  # nothing left tracked
    # each run's outcome is recorded once, as done or failed like a live answer
    statuses = Counter(a.status for a in store.actions())
    assert statuses["intent"] == 0 and statuses["done"] > 1000, statuses


async def test_an_async_campaign_of_500_leads_completes_through_polling_only(
    tmp_path: Path,
) -> None:
    game = await play_async(tmp_path, leads=500, identities=5, callbacks=False)
    terminals = check(game.played)
    store = game.played.store
    assert sum(terminals.values()) == 500 and terminals["completed"] > 100, terminals
    assert outreach_live_calls(game.counting) == 0
    assert game.counting.calls["GET /runs/{uid}"] >= submitted(game.counting) > 1000
    assert inbound_events(store) == [] and game.sandbox.app.state.edges.state["callbacks"] == []
    assert store.kv_items(NS) == {}


async def test_callbacks_delivered_twice_and_late_make_one_transition_each(
    tmp_path: Path,
) -> None:
    faults = FaultConfig(callback_twice=0.5, callback_delay_s=1800)
    # the runner wakes every 10 min while runs are in flight, so a callback 30 min late still
    # arrives before the run is asked about (after `async_wait`, 1 h)
    game = await play_async(tmp_path, leads=60, identities=2, callbacks=True, faults=faults,
                            step=timedelta(minutes=10))
    check(game.played)
    store = game.played.store
    injected = game.played.world.faults_injected
    assert injected["callback_twice"] > 20 and injected["callback_late"] > 50, injected
    outcomes = Counter(kind(e.outcome) for e in inbound_events(store))
    # the second delivery of a result is noted as a duplicate (or comes after it was settled)
    assert outcomes["noted"] == submitted(game.counting)
    # (a twin POSTed by Edges after the runner's last tick is still pending: "None")
    twins = outcomes["duplicate"] + outcomes["ignored"] + outcomes["None"]
    assert twins == injected["callback_twice"], outcomes
    # one transition per action: no step entered twice by the same run
    for enr in store.enrollments():
        kinds = [e.data.get("action") for e in store.events(enrollment_id=enr.id)
                 if e.kind == "transition" and isinstance(e.data, dict)]
        counts = Counter(k for k in kinds if k)
        assert all(n == 1 for n in counts.values()), (enr.id, kinds)


async def test_a_callback_recorded_twice_under_two_keys_moves_the_lead_once(
    tmp_path: Path,
) -> None:
    """The receiver dedupes a retry; a second delivery under another callback_ref_uid reaches
    the runner, which settles the intent once."""
    clock = VirtualClock(START)
    world = World(clock, seed=3, config=WorldConfig(already_connected_fraction=0.0,
                                                    inaccessible_fraction=0.0))
    world.add_identity("ident-0", provider="edges")
    (profile,) = world.populate(1)
    store = Store.open(None, tmp_path)
    sandbox = Sandbox(world)  # no callback client: the test delivers the callback itself
    seq = async_campaign(("ident-0",))
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    lead = store.upsert_lead(profile.url, {"first_name": "Ada"})
    enr_id = store.enroll(lead, seq.name, compiled.revision, "ident-0", compiled.initial, START)
    async with sandbox.client("edges") as client:
        runner = Runner(store, {"edges": EdgesProvider(client)}, clock,
                        compiled={compiled.revision: compiled}, async_callback=CALLBACK)
        first = await runner.tick()
        assert first.submitted == 1 and first.actions == 0
        ((key, entry),) = store.kv_items(NS).items()
        await sandbox.tick()  # the visit runs
        run = (await client.get(f"runs/{entry['run_uid']}/outputs")).json()[0]
        body = {"run": {"run_uid": entry["run_uid"], "status": "SUCCEEDED"},
                "custom_data": run["custom_data"], "data": run["data"], "error": None}
        for ref in ("cbr-1", "cbr-1", "cbr-2"):  # a retry (deduped), then another delivery
            record_inbound(store, source="edges", kind="callback", dedupe_key=f"edges:cb:{ref}",
                           subject=entry["run_uid"], payload={**body, "callback_ref_uid": ref})
        second = await runner.tick()
    assert second.async_settled == 1 and second.actions == 1
    assert [kind(e.outcome) for e in inbound_events(store)] == ["noted", "duplicate"]
    enr = store.get_enrollment(enr_id)
    assert enr is not None and enr.state == "connect"  # visit done once, the lead moved on
    visits = [a for a in store.actions(enrollment_id=enr_id) if a.action == "visit_profile"]
    assert [(a.idempotency_key, a.status) for a in visits] == [(key, "done")]


class DiesAfterSubmitting(httpx.AsyncBaseTransport):
    """A process killed right after its ``n``-th run/async submission reached Edges, before
    it could record the run (the answer is lost with the process)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int) -> None:
        self.inner = inner
        self.left = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/run/async"):
            self.left -= 1
            if self.left == 0:
                raise Crash  # a BaseException: nothing of the tick swallows it
        return response


@pytest.mark.parametrize("callbacks", [True, False], ids=["callbacks", "polling"])
async def test_a_kill_between_submission_and_its_record_never_sends_twice(
    tmp_path: Path, callbacks: bool
) -> None:
    clock = VirtualClock(START)
    names = ("ident-0", "ident-1")
    world = World(clock, seed=11, config=WorldConfig(accept_probability=0.6,
                                                     accept_delay_hours=(2.0, 96.0)))
    for name in names:
        world.add_identity(name, provider="edges")
    world.populate(40)
    store = Store.open(None, tmp_path)
    receiver = httpx.AsyncClient(transport=httpx.ASGITransport(
        app=build_app(store, ServeConfig(SECRET, None, PUBLIC))), base_url=PUBLIC)
    sandbox = Sandbox(world, callback_client=receiver if callbacks else None)
    seq = async_campaign(names)
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    for i, profile in enumerate(sorted(world.profiles.values(), key=lambda p: p.url)):
        lead = store.upsert_lead(profile.url, {"first_name": profile.first_name})
        store.enroll(lead, seq.name, compiled.revision, names[i % 2], compiled.initial, START)
    before = {name: set(world.network[name]) for name in names}
    answers = Answers(sandbox.transport)

    def runner(inner: httpx.AsyncBaseTransport) -> Runner:
        client = httpx.AsyncClient(transport=inner, base_url=BASE_URLS["edges"] + "/",
                                   headers=sandbox.headers("edges"))
        return Runner(store, {"edges": EdgesProvider(client)}, clock,
                      compiled={compiled.revision: compiled},
                      async_callback=CALLBACK if callbacks else None)

    async def provider_works(result: TickResult) -> bool:
        await sandbox.tick()
        return False

    # three processes die, each right after a submission it never recorded
    for n in (7, 20, 15):
        with pytest.raises(Crash):
            await runner(DiesAfterSubmitting(answers, n)).run_until(START + timedelta(days=3))
        await sandbox.tick()
    orphans = [a for a in store.pending_intents() if a.idempotency_key not in store.kv_items(NS)]
    assert orphans, "the kills left runs nobody recorded"
    final = runner(answers)
    final.tick_hooks = (provider_works,)
    await final.run_until(START + timedelta(days=21))
    transport = FaultTransport(answers, Fault("none"), clock, tmp_path / "state.db", 0)
    check(Played(store, world, compiled, transport, answers, before))
    await receiver.aclose()


class Submissions(httpx.AsyncBaseTransport):
    """Counts run/async submissions per profile URL; the ``die_at``-th dies once it reached
    Edges."""

    def __init__(self, inner: httpx.AsyncBaseTransport, die_at: int | None = None) -> None:
        self.inner = inner
        self.die_at = die_at
        self.by_url: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/run/async"):
            body = json.loads(request.content)
            self.by_url[body["inputs"][0]["linkedin_profile_url"]] += 1
            if self.die_at is not None and sum(self.by_url.values()) == self.die_at:
                raise Crash
        return response


@pytest.mark.parametrize("callbacks", [True, False], ids=["callbacks", "polling"])
async def test_a_blocked_run_whose_submission_was_lost_is_found_and_never_resent(
    tmp_path: Path, callbacks: bool
) -> None:
    """Edges' smart limit of one invitation a day BLOCKs the second run until the next day;
    the process dies right after submitting it. The restart finds the run by its key (it
    has not happened yet, so the relationship cannot tell) and waits for it: never resent."""
    clock = VirtualClock(START)
    world = World(clock, seed=5, config=WorldConfig(already_connected_fraction=0.0,
                                                    inaccessible_fraction=0.0))
    world.add_identity("ident-0", provider="edges")
    world.identity("ident-0").limits["connect"] = 1
    profiles = world.populate(2)
    store = Store.open(None, tmp_path)
    receiver = httpx.AsyncClient(transport=httpx.ASGITransport(
        app=build_app(store, ServeConfig(SECRET, None, PUBLIC))), base_url=PUBLIC)
    sandbox = Sandbox(world, callback_client=receiver if callbacks else None)
    seq = Sequence(metadata=Metadata("invite"), provider="edges", identities=("ident-0",),
                   steps=(ActionStep("connect", "connect", next="completed"),),
                   execution="async", normalized={"invite": 1})
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    for profile in profiles:
        lead = store.upsert_lead(profile.url, {})
        store.enroll(lead, seq.name, compiled.revision, "ident-0", compiled.initial, START)
    submissions = Submissions(sandbox.transport, die_at=2)
    client = httpx.AsyncClient(transport=submissions, base_url=BASE_URLS["edges"] + "/",
                               headers=sandbox.headers("edges"))

    def runner() -> Runner:
        return Runner(store, {"edges": EdgesProvider(client)}, clock,
                      compiled={compiled.revision: compiled},
                      async_callback=CALLBACK if callbacks else None)

    with pytest.raises(Crash):
        await runner().run_until(START + timedelta(days=1))
    submissions.die_at = None
    await runner().run_until(START + timedelta(days=4))
    await receiver.aclose()
    assert dict(submissions.by_url) == {p.url: 1 for p in profiles}  # never resent
    invites = [d.profile_url for d in world.delivered if d.kind == "invite"]
    assert sorted(invites) == sorted(p.url for p in profiles)
    assert store.pending_intents() == [] and store.kv_items(NS) == {}
    assert {e.state for e in store.enrollments()} == {"completed"}


def test_execution_async_is_validated_and_warned_about(tmp_path: Path) -> None:
    manifest = tmp_path / "seq.yaml"
    manifest.write_text(
        "apiVersion: seqrun/v1\nkind: Sequence\nmetadata: {name: a}\nspec:\n"
        "  provider: linkedapi\n  execution: async\n  identities: [acct-alice]\n"
        "  steps:\n    - {id: visit, action: visit_profile, execution: async, next: completed}\n"
    )
    with pytest.raises(Exception) as err:
        loader.load([manifest])
    text = str(err.value)
    assert "$.spec.execution" in text or "spec.execution" in text, text
    assert "only valid with provider: edges" in text
    manifest.write_text(
        "apiVersion: seqrun/v1\nkind: Sequence\nmetadata: {name: a}\nspec:\n"
        "  provider: edges\n  identities: [ident-alice]\n"
        "  steps:\n    - {id: visit, action: visit_profile, execution: async, next: completed}\n"
    )
    (seq,) = loader.load([manifest])
    assert isinstance(seq, Sequence) and seq.is_async(seq.steps[0])  # type: ignore[arg-type]
    (warning,) = receiver_warnings([seq], env={})
    assert "execution: async" in warning and "polled" in warning
    env = {"SEQRUN_PUBLIC_URL": "https://hooks.example.com",
           "SEQRUN_EDGES_WEBHOOK_SECRET": SECRET}
    assert receiver_warnings([seq], env=env) == []
    assert CALLBACK == {"url": PUBLIC + EDGES_CALLBACKS, "headers": {SECRET_HEADER: SECRET},
                        "on": "all"}


@pytest.mark.parametrize("name", ["timeout", "5xx", "429-retry-after", "limit-storm",
                                  "auth-expired-reauth", "timeout+limit-storm"])
async def test_the_fault_matrix_in_async_mode_ends_every_lead_right_and_nothing_twice(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault matrix's campaign with `execution: async` (polled): submissions time out
    (before or after Edges created the run), fail, are refused at a limit; runs are BLOCKED
    by tight smart limits; sessions expire. The same ground-truth checks hold."""
    monkeypatch.setattr(matrix, "campaign", lambda: replace(campaign(), execution="async"))
    played = await matrix.play(tmp_path, matrix.fault_named(name))
    terminals = check(played)
    assert sum(terminals.values()) == matrix.LEADS and terminals["completed"] > 0, terminals
    assert played.store.kv_items(NS) == {}
    played.store.close()
