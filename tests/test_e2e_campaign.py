"""End to end on the virtual clock: a 30-day campaign against the sandbox, checked against the
World's ground truth; and a kill test (the runner dies at many points and a fresh one resumes).
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.clock import VirtualClock
from engine.compile.machine import compile_sequence
from engine.model import ActionStep, Metadata, Sequence, Step, WaitForStep, WaitStep, Window
from engine.providers.edges.actions import EdgesProvider
from engine.run.runner import Runner, window_opening
from engine.sandbox import Sandbox
from engine.sandbox.world import FaultConfig, World, WorldConfig
from engine.store import Store
from engine.vocab import TERMINALS
from tests._world_provider import Kill, KillAfter, WorldProvider

START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)  # a Monday
IDENTITIES = ("ident-a", "ident-b", "ident-c")
TIMEZONES = ("Europe/London", "America/New_York", "Asia/Tokyo", "", "Europe/Berlin")
WINDOW = Window(
    timezone="lead",
    fallback_timezone="Europe/Paris",
    days=("mon", "tue", "wed", "thu", "fri"),
    start=time(9),
    end=time(18),
)
LIMITS = {"visit_profile": 40, "connect": 20, "send_message": 30}
COOLDOWN = timedelta(days=3)
INTRO = "Thanks for connecting, {{ lead.first_name }}!"
FOLLOW = "Quick follow-up, {{ lead.first_name }}: worth a call?"


def campaign() -> Sequence:
    steps: tuple[Step, ...] = (
        ActionStep("visit", "visit_profile"),
        ActionStep(
            "connect",
            "connect",
            with_={"note": "Hi {{ lead.first_name }}"},
            on={"ALREADY_CONNECTED": "intro", "INVITATION_PENDING": "accepted"},
        ),
        WaitForStep("accepted", "connection_accepted", timedelta(days=14), "withdraw"),
        ActionStep("intro", "send_message", with_={"text": INTRO}),
        WaitStep("breather", timedelta(days=3)),
        ActionStep("follow_up", "send_message", with_={"text": FOLLOW}, next="completed"),
        ActionStep("withdraw", "withdraw_invitation", next="removed"),
    )
    return Sequence(
        metadata=Metadata("founders"),
        provider="edges",
        identities=IDENTITIES,
        steps=steps,
        window=WINDOW,
        limits=LIMITS,
        cooldown=COOLDOWN,
        normalized={"campaign": "founders"},
    )


def build_world(clock: VirtualClock, n: int, *, faults: FaultConfig, seed: int = 11) -> World:
    config = WorldConfig(
        accept_probability=0.6,
        reply_probability=0.3,
        already_connected_fraction=0.1,
        writes_first_fraction=0.05,
        inaccessible_fraction=0.03,
        faults=faults,
    )
    world = World(clock, seed=seed, config=config)
    for ident in IDENTITIES:
        world.add_identity(ident, provider="edges")
    world.populate(n)
    return world


def enroll_all(store: Store, world: World, seq: Sequence, now: datetime) -> dict[int, str]:
    compiled = compile_sequence(seq)
    store.put_revision(compiled.revision, seq.name, "Sequence", dict(seq.normalized))
    store.put_sequence(seq.name, "Sequence", "edges", compiled.revision)
    out = {}
    for i, profile in enumerate(sorted(world.profiles.values(), key=lambda p: p.url)):
        lead = store.upsert_lead(
            profile.url,
            {"first_name": profile.first_name, "timezone": TIMEZONES[i % len(TIMEZONES)]},
        )
        eid = store.enroll(
            lead, seq.name, compiled.revision, IDENTITIES[i % 3], compiled.initial, now
        )
        assert eid is not None
        out[eid] = profile.url
    return out


def lead_zone(store: Store, url: str) -> ZoneInfo:
    lead = store.lead_by_url(url)
    assert lead is not None
    return ZoneInfo(lead.data.get("timezone") or WINDOW.fallback_timezone)


def check_ground_truth(store: Store, world: World, seq: Sequence) -> Counter[str]:
    """Every rule of the issue, checked on what the simulated LinkedIn really received."""
    rows = store.enrollments(sequence=seq.name)
    states: Counter[str] = Counter(r.state for r in rows)
    # every lead in a terminal state; nothing lost
    assert all(r.state in TERMINALS for r in rows), states
    assert all(r.next_due_at is None for r in rows)
    by_url = {}
    for r in rows:
        lead = store.get_lead(r.lead_id)
        assert lead is not None
        by_url[lead.profile_url] = r
    # no profile messaged twice by the same step; no double invitation
    assert world.duplicates("message") == []
    invites = Counter((d.identity, d.profile_url) for d in world.delivered if d.kind == "invite")
    assert max(invites.values(), default=0) <= 1
    # no limit exceeded in any rolling 24 h (manifest limits are below the smart limits)
    kinds = {"visit": "visit_profile", "invite": "connect", "message": "send_message"}
    for ident in IDENTITIES:
        for kind, action in kinds.items():
            times = sorted(d.at for d in world.delivered if d.identity == ident and d.kind == kind)
            for i, t in enumerate(times):
                inside = [x for x in times[: i + 1] if x > t - timedelta(hours=24)]
                assert len(inside) <= LIMITS[action], (ident, kind, t)
    # every delivery inside the business window of the lead's timezone
    for d in world.delivered:
        assert window_opening(WINDOW, lead_zone(store, d.profile_url), d.at) is None, d
    for ident in IDENTITIES:
        for url, thread in world.threads[ident].items():
            msgs = thread.messages
            for k, m in enumerate(msgs):
                if not m.from_us:
                    continue
                # no message inside a cooldown: the conversation was quiet for 3 days
                assert all(p.created_at <= m.created_at - COOLDOWN for p in msgs[:k]), url
                # no message after the lead wrote (first or back)
                assert all(p.from_us for p in msgs[:k]), url
    # the right terminal for each lead
    for url, r in by_url.items():
        profile = world.profiles[url]
        conv = world.threads[r.identity].get(url)
        theirs = [m.created_at for m in (conv.messages if conv else []) if not m.from_us]
        ended = max(e.at for e in store.events(enrollment_id=r.id, kind="transition"))
        if not profile.accessible:
            assert r.state == "removed", url
        elif theirs and min(theirs) < ended:
            assert r.state == "replied", url
        elif r.state == "completed":
            ours = [m for m in (conv.messages if conv else []) if m.from_us]
            assert len(ours) == 2 and url in world.network[r.identity], url
        elif r.state == "removed":
            kinds_sent = [d.kind for d in world.deliveries(r.identity, url)]
            assert kinds_sent[-1] == "withdraw" and url not in world.network[r.identity], url
        else:
            pytest.fail(f"{url}: unexpected terminal {r.state} ({r.last_error})")
    return states


async def test_thirty_day_campaign_against_the_sandbox(tmp_path: Path) -> None:
    clock = VirtualClock(START)
    faults = FaultConfig(
        rate_429=0.03,
        rate_5xx=0.01,
        retry_after_s=20,
        auth_expire_at={"ident-a": START + timedelta(days=5)},
        reauth_at={"ident-a": START + timedelta(days=6)},
    )
    world = build_world(clock, 200, faults=faults)
    sandbox = Sandbox(world)
    provider = EdgesProvider(sandbox.client("edges"))
    store = Store.open(None, tmp_path)
    seq = campaign()
    enroll_all(store, world, seq, clock.now())
    runner = Runner(
        store,
        {"edges": provider},
        clock,
        compiled={compile_sequence(seq).revision: compile_sequence(seq)},
    )
    summary = await runner.run_until(START + timedelta(days=30))
    states = check_ground_truth(store, world, seq)
    assert states["completed"] > 20 and states["replied"] > 10 and states["removed"] > 10
    assert world.faults_injected["429"] > 0
    # AUTH_EXPIRED at day 5, re-auth at day 6: paused then resumed where it was
    assert "ident-a" in summary.paused_identities and "ident-a" in summary.resumed_identities
    paused = store.events("ident-a", kind="identity_paused")[0].at
    resumed = store.events("ident-a", kind="identity_resumed")[0].at
    assert START + timedelta(days=5) <= paused < resumed <= START + timedelta(days=6, hours=2)
    assert not [d for d in world.delivered if d.identity == "ident-a" and paused <= d.at < resumed]
    # already-connected leads and leads who wrote first took their edge-case routes
    routed = [e for e in store.events(kind="transition") if e.trigger == "ALREADY_CONNECTED"]
    assert routed
    assert any(
        e.trigger == "reply" and e.from_state in ("visit", "connect")
        for e in store.events(kind="transition")
    )
    assert store.pending_intents() == []


async def _run_killed(tmp: Path, n: int, after: bool, seed: int) -> tuple[Store, World, Sequence]:
    clock = VirtualClock(START)
    world = build_world(clock, 24, faults=FaultConfig(rate_429=0.05, rate_timeout=0.05), seed=seed)
    store = Store.open(None, tmp)
    seq = campaign()
    compiled = compile_sequence(seq)
    enroll_all(store, world, seq, clock.now())
    end = START + timedelta(days=30)
    inner = WorldProvider(world)
    killer: Any = KillAfter(inner, n, after=after)
    runner = Runner(store, {"edges": killer}, clock, compiled={compiled.revision: compiled})
    with contextlib.suppress(Kill):
        await runner.run_until(end)
    # a new process: fresh runner, same store, same simulated LinkedIn
    again = Runner(store, {"edges": inner}, clock, compiled={compiled.revision: compiled})
    await again.run_until(end)
    return store, world, seq


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_killed_at_random_points_resumes_without_loss_or_duplicate(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    for k in range(3):
        n = rng.randint(1, 200)
        after = rng.random() < 0.5
        store, world, seq = await _run_killed(tmp_path / f"s{seed}-{k}", n, after, seed * 10 + k)
        check_ground_truth(store, world, seq)
        store.close()
