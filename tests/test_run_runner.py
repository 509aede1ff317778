"""The runner against the simulated LinkedIn (World) on a virtual clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import vocab
from engine.clock import VirtualClock
from engine.compile.machine import CompiledSequence, compile_sequence
from engine.errors import ProviderError
from engine.model import (
    ActionStep,
    Metadata,
    Sequence,
    Step,
    WaitForStep,
    WaitStep,
    Window,
)
from engine.providers.base import ActionResult, Lead
from engine.run.runner import Runner, window_opening
from engine.sandbox.world import World, WorldConfig
from engine.store import Store
from tests._world_provider import Kill, KillAfter, WorldProvider
from tests.conftest import postgres_schema

MONDAY_8 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ID = "ident-alice"


def outreach_steps() -> tuple[Step, ...]:
    return (
        ActionStep("visit", "visit_profile"),
        ActionStep(
            "connect",
            "connect",
            with_={"note": "Hi {{ lead.first_name }}"},
            on={"ALREADY_CONNECTED": "intro", "INVITATION_PENDING": "accepted"},
        ),
        WaitForStep("accepted", "connection_accepted", timedelta(days=14), "withdraw"),
        ActionStep("intro", "send_message", with_={"text": "Thanks {{ lead.first_name }}!"}),
        WaitStep("breather", timedelta(days=3)),
        ActionStep("follow_up", "send_message", with_={"text": "Follow-up?"}, next="completed"),
        ActionStep("withdraw", "withdraw_invitation", next="removed"),
    )


def make_seq(
    name: str = "outreach",
    *,
    steps: tuple[Step, ...] | None = None,
    window: Window | None = None,
    limits: Mapping[str, int] | None = None,
    cooldown: timedelta | None = timedelta(days=3),
    identities: tuple[str, ...] = (ID,),
) -> Sequence:
    return Sequence(
        metadata=Metadata(name),
        provider="edges",
        identities=identities,
        steps=steps or outreach_steps(),
        window=window,
        limits=dict(limits or {}),
        cooldown=cooldown,
        normalized={"name": name, "limits": dict(limits or {}), "w": str(window)},
    )


class Env:
    def __init__(
        self,
        tmp: Path,
        seq: Sequence,
        *,
        config: WorldConfig | None = None,
        identities: tuple[str, ...] = (ID,),
        url: str | None = None,
        **world_identity: Any,
    ) -> None:
        self.clock = VirtualClock(MONDAY_8)
        self.world = World(
            self.clock,
            seed=3,
            config=config
            or WorldConfig(
                already_connected_fraction=0, writes_first_fraction=0, inaccessible_fraction=0
            ),
        )
        for ident in identities:
            self.world.add_identity(ident, **world_identity)
        self.store = Store.open(url, tmp)
        self.seq = seq
        self.compiled: CompiledSequence = compile_sequence(seq)
        self.provider = WorldProvider(self.world)
        self.store.put_revision(self.compiled.revision, seq.name, "Sequence", {"n": seq.name})
        self.store.put_sequence(seq.name, "Sequence", "edges", self.compiled.revision)

    def runner(self, provider: Any = None, **kw: Any) -> Runner:
        return Runner(
            self.store,
            {"edges": provider or self.provider},
            self.clock,
            compiled={self.compiled.revision: self.compiled},
            **kw,
        )

    def lead(self, handle: str, identity: str = ID, tz: str = "", **profile: Any) -> int:
        url = f"https://www.linkedin.com/in/{handle}"
        self.world.add_profile(url, first_name=handle.title(), **profile)
        lead_id = self.store.upsert_lead(url, {"first_name": handle.title(), "timezone": tz})
        eid = self.store.enroll(
            lead_id,
            self.seq.name,
            self.compiled.revision,
            identity,
            self.compiled.initial,
            self.clock.now(),
        )
        assert eid is not None
        return eid

    def state(self, eid: int) -> str:
        row = self.store.get_enrollment(eid)
        assert row is not None
        return row.state


async def test_happy_path_walks_the_whole_sequence(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("ada", accepts=True, replies=False)
    await env.runner().run_until(MONDAY_8 + timedelta(days=10))
    assert env.state(eid) == "completed"
    kinds = [d.kind for d in env.world.deliveries(ID, "https://www.linkedin.com/in/ada")]
    assert kinds == ["visit", "invite", "message", "message"]
    assert env.world.invitations[ID] == {}
    texts = [d.text for d in env.world.deliveries(ID, kind="message")]
    assert texts == ["Thanks Ada!", "Follow-up?"]
    transitions = [
        (e.from_state, e.to_state, e.trigger)
        for e in env.store.events(enrollment_id=eid, kind="transition")
    ]
    assert transitions[:3] == [
        ("visit", "connect", "ok"),
        ("connect", "accepted", "ok"),
        ("accepted", "intro", "accepted"),
    ]
    assert all(a.status == "done" for a in env.store.actions(enrollment_id=eid))
    assert {a.revision for a in env.store.actions()} == {env.compiled.revision}


async def test_timeout_withdraws_then_removed(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("bob", accepts=False)
    await env.runner().run_until(MONDAY_8 + timedelta(days=16))
    assert env.state(eid) == "removed"
    kinds = [d.kind for d in env.world.deliveries(ID, "https://www.linkedin.com/in/bob")]
    assert kinds == ["visit", "invite", "withdraw"]


async def test_lead_who_wrote_first_is_replied_and_never_contacted(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("cy", writes_first_to=[ID], accepts=True)
    env.clock.advance(timedelta(days=4))  # the first message lands within 72 h
    await env.runner().tick()
    assert env.state(eid) == "replied"
    assert env.world.deliveries(ID, "https://www.linkedin.com/in/cy") == []


async def test_reply_during_a_wait_ends_every_live_enrollment_of_the_lead(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("di", accepts=True, replies=True)
    await env.runner().run_until(MONDAY_8 + timedelta(days=8))
    assert env.state(eid) == "replied"
    msgs = env.world.deliveries(ID, "https://www.linkedin.com/in/di", kind="message")
    assert len(msgs) == 1  # the follow-up never went out after the reply


async def test_already_connected_skips_the_invitation(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("ed", already_connected_with=[ID], replies=False)
    await env.runner().run_until(MONDAY_8 + timedelta(days=5))
    assert env.state(eid) == "completed"
    kinds = [d.kind for d in env.world.deliveries(ID, "https://www.linkedin.com/in/ed")]
    assert kinds == ["visit", "message", "message"]


async def test_business_window_in_the_lead_timezone(tmp_path: Path) -> None:
    window = Window(
        timezone="lead",
        fallback_timezone="Europe/Paris",
        days=("mon", "tue", "wed", "thu", "fri"),
        start=time(9),
        end=time(18),
    )
    env = Env(tmp_path, make_seq(window=window))
    env.clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))  # a Saturday
    eid = env.lead("fay", tz="America/New_York")
    result = await env.runner().tick()
    assert result.postponed == 1
    row = env.store.get_enrollment(eid)
    assert row is not None and row.next_due_at == datetime(2026, 1, 12, 14, 0, tzinfo=UTC)
    assert env.world.delivered == []
    nyc_open = window_opening(
        window,
        __import__("zoneinfo").ZoneInfo("America/New_York"),
        datetime(2026, 1, 12, 15, 0, tzinfo=UTC),
    )
    assert nyc_open is None


async def test_limits_per_identity_rolling_24h_shared_by_sequences(tmp_path: Path) -> None:
    steps: tuple[Step, ...] = (ActionStep("connect", "connect"),)
    env = Env(tmp_path, make_seq(steps=steps, limits={"connect": 10}))
    other = make_seq("other", steps=steps, limits={"connect": 20})
    other_c = compile_sequence(other)
    env.store.put_sequence("other", "Sequence", "edges", other_c.revision)
    for i in range(15):
        env.lead(f"l{i}")
    for i in range(15):
        url = f"https://www.linkedin.com/in/m{i}"
        lead = env.store.upsert_lead(url, {})
        env.store.enroll(lead, "other", other_c.revision, ID, "connect", env.clock.now())
    runner = Runner(
        env.store,
        {"edges": env.provider},
        env.clock,
        compiled={env.compiled.revision: env.compiled, other_c.revision: other_c},
    )
    await runner.tick()
    first = env.world.count(ID, "invite")
    assert first == 20  # 10 (outreach's cap) then the other sequence up to its 20
    env.clock.advance(timedelta(hours=23))
    await runner.tick()
    assert env.world.count(ID, "invite") == 20  # nothing frees before 24 h
    env.clock.advance(timedelta(hours=1))
    await runner.tick()
    assert env.world.count(ID, "invite") == 30
    assert env.world.usage(ID, "connect") == 10


async def test_provider_limit_reached_postpones_to_its_date(tmp_path: Path) -> None:
    steps: tuple[Step, ...] = (ActionStep("visit", "visit_profile"),)
    env = Env(tmp_path, make_seq(steps=steps), limits={"visit": 2})
    eids = [env.lead(f"v{i}") for i in range(4)]
    result = await env.runner().tick()
    assert env.world.count(ID, "visit") == 2
    assert result.postponed == 2
    row = env.store.get_enrollment(eids[3])
    assert row is not None and row.next_due_at == MONDAY_8 + timedelta(hours=24)
    assert env.provider.calls["visit_profile"] == 3  # one LIMIT_REACHED, then no more calls


async def test_profile_not_accessible_is_removed(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("gone", accessible=False)
    await env.runner().tick()
    assert env.state(eid) == "removed"


async def test_auth_expired_pauses_then_resumes_where_it_was(tmp_path: Path) -> None:
    env = Env(
        tmp_path,
        make_seq(steps=(ActionStep("visit", "visit_profile"), ActionStep("connect", "connect"))),
    )
    eids = [env.lead(f"a{i}") for i in range(3)]
    env.world.set_auth(ID, False)
    runner = env.runner()
    result = await runner.tick()
    assert result.paused_identities == [ID]
    ident = env.store.get_identity(ID)
    assert ident is not None and ident.status == "auth_expired"
    assert all(env.store.get_enrollment(e).paused for e in eids)  # type: ignore[union-attr]
    assert {env.state(e) for e in eids} == {"visit"}
    env.clock.advance(timedelta(hours=1))
    assert (await runner.tick()).due == 0
    env.world.set_auth(ID, True)
    result = await runner.tick()
    assert result.resumed_identities == [ID]
    assert {env.state(e) for e in eids} == {"completed"}
    assert env.world.count(ID, "invite") == 3


async def test_transient_errors_back_off_then_fail_with_reason(tmp_path: Path) -> None:
    class Always429(WorldProvider):
        async def perform(
            self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
        ) -> ActionResult:
            self.calls[action] += 1
            raise ProviderError(vocab.STATUS_429, "slow down", status=429, retry_after=30)

    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    eid = env.lead("x")
    provider = Always429(env.world)
    runner = env.runner(provider, retry_cap=3)
    dues = []
    for _ in range(10):
        await runner.tick()
        row = env.store.get_enrollment(eid)
        assert row is not None
        if row.next_due_at is None:
            break
        dues.append(row.next_due_at - env.clock.now())
        env.clock.set(row.next_due_at)
    row = env.store.get_enrollment(eid)
    assert row is not None and row.state == "failed"
    assert row.last_error is not None and "STATUS_429" in row.last_error
    assert provider.calls["visit_profile"] == 4  # first try + 3 retries
    assert dues[1] > dues[0] and all(d >= timedelta(seconds=30) for d in dues)


async def test_intent_is_committed_before_the_call(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    eid = env.lead("k")
    killer = KillAfter(env.provider, 1, after=False, method="perform")
    with pytest.raises(Kill):
        await env.runner(killer).tick()
    (intent,) = env.store.pending_intents()
    assert intent.idempotency_key == f"{eid}:visit:0"
    assert env.state(eid) == "visit"
    assert env.world.delivered == []


@pytest.mark.parametrize("after", [True, False])
async def test_recovery_never_resends_a_delivered_message(tmp_path: Path, after: bool) -> None:
    steps: tuple[Step, ...] = (ActionStep("intro", "send_message", with_={"text": "Hello"}),)
    env = Env(tmp_path, make_seq(steps=steps))
    eid = env.lead("m", already_connected_with=[ID], replies=False)
    killer = KillAfter(env.provider, 1, after=after, method="perform")
    with pytest.raises(Kill):
        await env.runner(killer).tick()
    assert len(env.store.pending_intents()) == 1
    fresh = env.runner()  # a new process on the same store
    result = await fresh.tick()
    # not found: it stays open (the lead waits) until the settle window has passed
    assert len(env.store.pending_intents()) == (0 if after else 1)
    if after:
        assert result.recovered == 1
    await fresh.run_until(env.clock.now() + timedelta(days=1))
    assert env.state(eid) == "completed"
    assert len(env.world.messages_to(ID, "https://www.linkedin.com/in/m")) == 1
    statuses = [a.status for a in env.store.actions(enrollment_id=eid)]
    assert statuses == (["done"] if after else ["unknown", "done"])


async def test_timeout_after_delivery_is_reconciled_not_resent(tmp_path: Path) -> None:
    class TimeoutAfter(WorldProvider):
        async def perform(
            self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
        ) -> ActionResult:
            await super().perform(identity, action, lead, params)
            raise ProviderError(vocab.TIMEOUT, "lost answer")

    steps: tuple[Step, ...] = (
        ActionStep("intro", "send_message", with_={"text": "Hi"}),
        ActionStep("connect", "connect"),
    )
    env = Env(tmp_path, make_seq(steps=steps))
    eid = env.lead("t", already_connected_with=[ID])
    await env.runner(TimeoutAfter(env.world)).tick()
    assert len(env.world.messages_to(ID, "https://www.linkedin.com/in/t")) == 1
    row = env.store.get_enrollment(eid)
    assert row is not None and row.state in ("completed", "failed")  # the message counted


async def test_kill_switch_stops_everything(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    env.lead("q")
    env.store.kv_put("runtime", "paused_all", True)
    result = await env.runner().tick()
    assert result.killed and env.world.delivered == []


async def test_the_same_runner_code_on_postgresql(tmp_path: Path) -> None:
    with postgres_schema("r") as url:
        env = Env(tmp_path, make_seq(), url=url)
        eid = env.lead("ada", accepts=True, replies=False)
        gone = env.lead("gone", accessible=False)
        await env.runner().run_until(MONDAY_8 + timedelta(days=10))
        assert (env.state(eid), env.state(gone)) == ("completed", "removed")
        assert len(env.world.deliveries(ID, kind="message")) == 2
        env.store.close()


async def test_a_failing_identity_does_not_stop_the_others(tmp_path: Path) -> None:
    class Broken(WorldProvider):
        async def sync_conversations(self, identity: str) -> list[Any]:
            if identity == "ident-bob":
                raise RuntimeError("adapter bug")
            return await super().sync_conversations(identity)

    steps: tuple[Step, ...] = (ActionStep("connect", "connect"),)
    env = Env(tmp_path, make_seq(steps=steps), identities=(ID, "ident-bob"))
    ok = env.lead("fine")
    bad = env.lead("stuck", identity="ident-bob")
    result = await env.runner(Broken(env.world)).tick()
    assert env.state(ok) == "completed" and env.state(bad) == "connect"
    assert result.errors and "adapter bug" in result.errors[0]


async def test_daemon_ticks_until_stopped_and_frees_the_run_lock(tmp_path: Path) -> None:
    import asyncio

    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),)))
    env.lead("z")
    stop = asyncio.Event()
    ticks: list[int] = []

    def on_tick(tick: object) -> None:  # stop after the third tick, however slow the box
        ticks.append(1)
        if len(ticks) == 3:
            stop.set()

    summary = await asyncio.wait_for(
        env.runner().run_forever(0.05, stop=stop, on_tick=on_tick), timeout=60
    )
    assert summary.ticks == 3 and summary.actions == 1
    with env.store.lock("run"):  # released on the way out
        pass


async def test_a_lead_updated_mid_sequence_gets_its_new_data_in_the_next_message(
    tmp_path: Path,
) -> None:
    """The runner renders each step with the lead's data as stored at that tick: a CSV fix
    applied between the invitation and the message shows in the message."""
    env = Env(tmp_path, make_seq())
    eid = env.lead("ada", accepts=True, replies=False)
    runner = env.runner()
    await runner.run_until(MONDAY_8 + timedelta(minutes=1))
    assert env.state(eid) == "accepted"  # visited, invited: waiting for the acceptance
    env.store.upsert_lead("https://www.linkedin.com/in/ada", {"first_name": "Adeline"})
    await runner.run_until(MONDAY_8 + timedelta(days=10))
    texts = [d.text for d in env.world.deliveries(ID, kind="message")]
    assert texts[0] == "Thanks Adeline!"
    notes = [d.text for d in env.world.deliveries(ID, kind="invite")]
    assert notes == ["Hi Ada"]  # what was sent stays as it was


class SyncFails(WorldProvider):
    """The world's provider whose conversation sync fails with ``label`` while ``failing``."""

    def __init__(self, world: World, label: str) -> None:
        super().__init__(world)
        self.label, self.failing, self.sync_calls = label, True, 0

    async def sync_conversations(self, identity: str) -> list[Any]:
        self.sync_calls += 1
        if self.failing:
            raise ProviderError(self.label, f"identity {identity!r} not found in workspace")
        return await super().sync_conversations(identity)


async def test_a_refused_sync_pauses_the_identity_until_resumed(tmp_path: Path) -> None:
    from engine.views.control import set_paused

    env = Env(tmp_path, make_seq())
    eid = env.lead("ada", accepts=True)
    provider = SyncFails(env.world, vocab.INVALID_INPUT)
    runner = env.runner(provider)
    result = await runner.tick()
    assert result.paused_identities == [ID] and result.postponed == 0
    assert "refused the conversation sync: INVALID_INPUT" in result.errors[0]
    assert f"seqrun resume --identity {ID}" in result.errors[0]
    ident = env.store.get_identity(ID)
    assert ident is not None and ident.status == "paused"
    assert ident.reason is not None and "not found in workspace" in ident.reason
    row = env.store.get_enrollment(eid)
    assert row is not None and row.paused and row.state == "visit"
    # it stays paused: later ticks ask the provider nothing (no retry every minute)
    env.clock.advance(timedelta(hours=1))
    await runner.tick()
    assert provider.sync_calls == 1 and env.world.deliveries(ID) == []
    # fixed, then resumed by hand: the lead goes on where it was
    provider.failing = False
    set_paused(env.store, False, identity=ID, now=env.clock.now())
    result = await runner.tick()
    assert result.actions >= 1 and result.errors == []
    assert [d.kind for d in env.world.deliveries(ID)][:1] == ["visit"]


async def test_an_outage_of_the_sync_backs_off_more_at_each_failure(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq())
    eid = env.lead("ada", accepts=True)
    provider = SyncFails(env.world, vocab.SERVER_ERROR)
    runner = env.runner(provider)
    delays = []
    for _ in range(3):
        started = env.clock.now()
        result = await runner.tick()
        assert result.postponed == 1 and result.paused_identities == []
        row = env.store.get_enrollment(eid)
        assert row is not None and row.next_due_at is not None and row.state == "visit"
        delays.append(row.next_due_at - started)
        env.clock.set(row.next_due_at)
    # 1 min, then 2, then 4 (x 0.5-1.5 jitter): the third wait is longer than any first one
    assert delays[0] <= timedelta(seconds=90) < timedelta(seconds=120) <= delays[2]
    provider.failing = False
    result = await runner.tick()
    assert result.actions >= 1  # the sync works again: the visit (and the invitation) go out
    provider.failing = True  # a new outage starts again from the shortest wait
    env.clock.advance(timedelta(days=1))
    env.lead("bob", accepts=True)
    await runner.tick()
    bob_lead = env.store.lead_by_url("https://www.linkedin.com/in/bob")
    assert bob_lead is not None
    bob = env.store.enrollments(lead_id=bob_lead.id)
    assert bob[0].state == "visit" and bob[0].next_due_at is not None
    assert bob[0].next_due_at - env.clock.now() <= timedelta(seconds=90)


async def test_a_reply_found_after_a_wait_elapsed_in_the_same_tick_starts_from_the_new_step(
    tmp_path: Path,
) -> None:
    """The wait ends (pause -> nudge), then the sync before nudge's call finds a reply: the
    reply leaves from nudge, not from the pause the store still held (a stale "from")."""
    steps: tuple[Step, ...] = (
        WaitStep("pause-3d", timedelta(days=3)),
        ActionStep("nudge", "connect", next="completed"),
    )
    env = Env(tmp_path, make_seq(steps=steps))
    eid = env.lead("eve", writes_first_to=[ID], accepts=True)
    env.clock.advance(timedelta(days=4))
    await env.runner().tick()
    transitions = [
        (e.from_state, e.to_state, e.trigger)
        for e in env.store.events(enrollment_id=eid, kind="transition")
    ]
    assert transitions == [("pause-3d", "nudge", "elapsed"), ("nudge", "replied", "reply")]
    assert env.state(eid) == "replied"
