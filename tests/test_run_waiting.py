"""Waiting costs nothing: a lead held back by a limit is scheduled once for the instant a slot
frees for it (in line behind the leads already waiting), and writes one event when it starts
waiting, not one per re-postponement. Virtual clock, simulated LinkedIn."""

from __future__ import annotations

from collections import deque
from datetime import time, timedelta
from pathlib import Path

from engine.model import ActionStep, Step, Window
from engine.run.rules import _fits
from engine.store import Store
from engine.views.status import status
from tests.test_run_runner import ID, MONDAY_8, Env, make_seq

DAY = timedelta(hours=24)
VISITS: tuple[Step, ...] = (ActionStep("visit", "visit_profile"),)


def _postponed_events(store: Store, eid: int) -> list[dict[str, object]]:
    return [dict(e.data) for e in store.events(enrollment_id=eid) if e.kind == "postponed"]


async def test_a_lead_held_by_a_limit_is_not_touched_before_its_slot(tmp_path: Path) -> None:
    env = Env(tmp_path, make_seq(steps=VISITS, limits={"visit_profile": 2}))
    eids = [env.lead(f"v{i}") for i in range(6)]
    runner = env.runner()
    first = await runner.tick()
    assert first.actions == 2 and first.postponed == 4
    counted = status(env.store, now=env.clock.now()).sequences[0]
    assert counted.waiting == {"limit:visit_profile": 4}  # `seqrun status` counts them
    due = {eid: env.store.get_enrollment(eid).next_due_at for eid in eids[2:]}  # type: ignore[union-attr]
    # two slots free 24 h after the first two visits; the next two a day later (in line)
    assert sorted(due.values()) == [MONDAY_8 + DAY] * 2 + [MONDAY_8 + 2 * DAY] * 2
    env.clock.advance(DAY - timedelta(minutes=1))
    assert (await runner.tick()).due == 0  # nobody polled before the slot
    env.clock.advance(timedelta(minutes=1))
    second = await runner.tick()
    assert (second.due, second.actions, second.postponed) == (2, 2, 0)  # only the slots' leads
    waiting = [eid for eid in eids[2:] if due[eid] == MONDAY_8 + 2 * DAY]
    for eid in waiting:  # the others were not touched
        row = env.store.get_enrollment(eid)
        assert row is not None and row.next_due_at == MONDAY_8 + 2 * DAY
    env.clock.advance(DAY)
    third = await runner.tick()
    assert (third.due, third.actions) == (2, 2)
    assert env.world.count(ID, "visit") == 6
    assert env.world.usage(ID, "visit") <= 2


async def test_a_lead_arriving_while_others_wait_joins_the_end_of_the_line(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path, make_seq(steps=VISITS, limits={"visit_profile": 1}))
    early = [env.lead(f"e{i}") for i in range(3)]
    runner = env.runner()
    await runner.tick()  # one visit, two in line (+1 day, +2 days)
    env.clock.advance(timedelta(hours=1))
    late = env.lead("late")
    await runner.tick()
    row = env.store.get_enrollment(late)
    assert row is not None and row.next_due_at == MONDAY_8 + 3 * DAY
    assert row.waiting == "limit:visit_profile"
    for k in (1, 2, 3):
        env.clock.advance(MONDAY_8 + k * DAY - env.clock.now())
        assert (await runner.tick()).actions == 1
    assert env.world.count(ID, "visit") == 4
    assert all(env.store.get_enrollment(e).next_due_at is None for e in early)  # type: ignore[union-attr]


async def test_one_event_when_a_lead_starts_waiting_not_per_postponement(
    tmp_path: Path,
) -> None:
    # window 09:00-18:00 UTC every day: at 08:00 the lead waits for the window, at 09:00 for
    # the limit (another lead took the day's slot), then it goes: one "postponed" event
    window = Window(
        timezone="UTC",
        fallback_timezone="UTC",
        days=("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        start=time(9, 0),
        end=time(18, 0),
    )
    env = Env(tmp_path, make_seq(steps=VISITS, window=window, limits={"visit_profile": 1}))
    first, second = env.lead("a"), env.lead("b")
    runner = env.runner()
    held = await runner.tick()
    assert held.postponed == 2
    rows = [env.store.get_enrollment(e) for e in (first, second)]
    assert [r.waiting for r in rows if r] == ["window", "window"]
    env.clock.advance(timedelta(hours=1))  # 09:00: one visit, the other waits for the limit
    await runner.tick()
    waiting = [e for e in (first, second) if env.store.get_enrollment(e).waiting]  # type: ignore[union-attr]
    assert len(waiting) == 1
    row = env.store.get_enrollment(waiting[0])
    assert row is not None and row.waiting == "limit:visit_profile"
    assert row.next_due_at == MONDAY_8 + timedelta(hours=1) + DAY
    env.clock.advance(DAY)
    assert (await runner.tick()).actions == 1
    for eid in (first, second):
        events = _postponed_events(env.store, eid)
        assert len(events) == 1 and events[0]["reason"] == "outside the sending window"
        done = env.store.get_enrollment(eid)
        assert done is not None and done.waiting is None and done.next_due_at is None


async def test_a_slot_its_lead_cannot_use_goes_to_the_next_in_line(tmp_path: Path) -> None:
    # Monday to Friday 09:00-18:00 UTC, one visit a day; on Friday at 10:00 one lead goes and
    # three wait in line for Saturday, Sunday and Monday 10:00. On Saturday the first one's
    # window is closed: the next in line is due at once with its slot (in case its window is
    # open) and hands over its Sunday instant; held too, it waits for Monday (no swapping
    # back and forth), and the limit holds throughout.
    window = Window(timezone="UTC", fallback_timezone="UTC", start=time(9, 0), end=time(18, 0))
    env = Env(tmp_path, make_seq(steps=VISITS, window=window, limits={"visit_profile": 1}))
    friday_10 = MONDAY_8 + timedelta(days=4, hours=2)
    env.clock.advance(friday_10 - env.clock.now())
    eids = [env.lead(f"w{i}") for i in range(4)]
    runner = env.runner()
    assert (await runner.tick()).actions == 1

    def due() -> dict[int, object]:
        return {e: env.store.get_enrollment(e).next_due_at for e in eids[1:]}  # type: ignore[union-attr]

    first, second, third = sorted(due(), key=lambda e: due()[e])  # type: ignore[arg-type,return-value]
    assert [due()[e] for e in (first, second, third)] == [friday_10 + k * DAY for k in (1, 2, 3)]
    env.clock.advance(DAY)  # Saturday 10:00
    await runner.tick()
    assert due()[first] == friday_10 + 2 * DAY and due()[second] == env.clock.now()
    env.clock.advance(timedelta(seconds=1))
    await runner.tick()
    monday_9 = MONDAY_8 + timedelta(days=7, hours=1)
    assert due()[second] == monday_9 and due()[first] == friday_10 + 2 * DAY
    await runner.run_until(MONDAY_8 + timedelta(days=11))
    assert env.world.count(ID, "visit") == 4
    assert env.world.usage(ID, "visit") <= 1


def test_a_free_slot_is_taken_only_when_no_promised_instant_needs_it() -> None:
    # limit 2 a day; the ledger holds one action at 09:00; a lead is promised 08:00 the next
    # day; at 10:00 another lead arrives with one slot free in the ledger
    t0 = MONDAY_8
    usage = deque([t0 + timedelta(hours=1)])
    line = deque([(t0 + DAY, 7)])
    now = t0 + timedelta(hours=2)
    # going now would make the promised action the third in its 24 h: it waits in line
    assert not _fits(usage, line, 2, now)
    # with room for three, or a promise more than 24 h ahead, or no line, it goes now
    assert _fits(usage, line, 3, now)
    assert _fits(usage, deque([(now + DAY, 7)]), 2, now)
    assert _fits(usage, deque(), 2, now)


async def test_a_wait_right_after_a_call_is_noted_on_that_calls_transition(
    tmp_path: Path,
) -> None:
    """Two visits, then one connect a day: the lead whose connect waits for the limit right
    after its visit has no "postponed" row; the wait (reason, until) is on the event of the
    transition its visit made (committed with the next call, then rewritten), and `status`
    still counts it waiting."""
    steps: tuple[Step, ...] = (ActionStep("visit", "visit_profile"),
                               ActionStep("connect", "connect"))
    env = Env(tmp_path, make_seq(steps=steps, limits={"visit_profile": 2, "connect": 1}))
    eids = [env.lead("a"), env.lead("b")]
    result = await env.runner().tick()
    assert (result.actions, result.postponed) == (3, 1)
    held = [e for e in eids if env.store.get_enrollment(e).waiting]  # type: ignore[union-attr]
    assert len(held) == 1
    assert _postponed_events(env.store, held[0]) == []
    entered = [e for e in env.store.events(enrollment_id=held[0])
               if e.kind == "transition" and e.to_state == "connect"]
    assert len(entered) == 1 and entered[0].data is not None
    assert entered[0].data["action"] == "visit_profile"  # what it said before stays
    wait = entered[0].data["waiting"]
    assert "limit" in wait["reason"] and wait["until"] == (MONDAY_8 + DAY).isoformat()
    counted = status(env.store, now=env.clock.now()).sequences[0]
    assert counted.waiting == {"limit:connect": 1}


async def test_a_wait_from_enrolment_is_noted_on_the_enrolled_event(tmp_path: Path) -> None:
    """A lead held by the limit at the step it was enrolled at has the wait (reason, until)
    on its "enrolled" event (its data kept), not a "postponed" row; `status` counts it."""
    env = Env(tmp_path, make_seq(steps=VISITS, limits={"visit_profile": 1}))
    eids = [env.lead("a"), env.lead("b")]
    env.store.record_events([
        {"kind": "enrolled", "subject": f"https://www.linkedin.com/in/{h}", "at": MONDAY_8,
         "enrollment_id": eid, "to_state": "visit", "revision": env.compiled.revision,
         "data": {"sequence": env.seq.name, "source": "leads.csv"}}
        for h, eid in zip("ab", eids, strict=True)])
    env.clock.advance(timedelta(minutes=5))  # the first tick comes after the apply
    result = await env.runner().tick()
    assert (result.actions, result.postponed) == (1, 1)
    held = [e for e in eids if env.store.get_enrollment(e).waiting]  # type: ignore[union-attr]
    assert len(held) == 1 and _postponed_events(env.store, held[0]) == []
    (enrolled,) = [e for e in env.store.events(enrollment_id=held[0]) if e.kind == "enrolled"]
    assert enrolled.data is not None and enrolled.data["source"] == "leads.csv"
    wait = enrolled.data["waiting"]
    first_tick = MONDAY_8 + timedelta(minutes=5)
    assert "limit" in wait["reason"] and wait["until"] == (first_tick + DAY).isoformat()
    assert wait["since"] == first_tick.isoformat()
    counted = status(env.store, now=env.clock.now()).sequences[0]
    assert counted.waiting == {"limit:visit_profile": 1}
