"""Revision rollouts (issue 15): a new revision with `migrate:` and `rollout:` migrates a
canary of the in-flight leads at apply, the rest when the canary is healthy after the hold;
held (paused, reason shown) when the sandbox fails it; promote and rollback by hand. Also the
limits status shows (what the runner enforces) and a tier change picked up while running.
In-process sandbox, virtual clock; ground truth: what the sandbox received."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.apply.rollout import revision_rollout
from engine.cli.render import render_plan, render_status
from engine.errors import StoreError, UsageError
from engine.views.control import promote, rollback
from engine.views.status import status
from tests.conftest import ROOT, invoke
from tests.test_guardrails import MONDAY_8, POLICY, World, sequence, url

N = 50
OLD, NEW = "Old text for {{ lead.first_name }}", "New text for {{ lead.first_name }}"


def rev1() -> str:
    """Visit, wait 5 days, message: the leads in flight wait in `rest`."""
    return f"""apiVersion: seqrun/v1
kind: Sequence
metadata: {{name: rev}}
spec:
  provider: edges
  identities: [ident-alice]
  leads: {{csv: leads.csv}}
  steps:
    - {{id: visit, action: visit_profile}}
    - {{id: rest, wait: 5d}}
    - {{id: check, action: check_connection, "on": {{NOT_CONNECTED: failed}}}}
    - {{id: hello, action: send_message, with: {{text: "{OLD}"}}}}
"""


def rev2(migrate: str = "{rest: wait}") -> str:
    """The new text after one day; `rest` moves to `wait`; a canary of 10, hold 2 days."""
    return f"""apiVersion: seqrun/v1
kind: Sequence
metadata: {{name: rev}}
spec:
  provider: edges
  identities: [ident-alice]
  leads: {{csv: leads.csv}}
  migrate: {migrate}
  rollout: {{canary: 10, hold: 2d, promote_if: {{failed_rate_below: 0.05}}}}
  steps:
    - {{id: visit, action: visit_profile}}
    - {{id: wait, wait: 1d}}
    - {{id: check, action: check_connection, "on": {{NOT_CONNECTED: failed}}}}
    - {{id: hello, action: send_message, with: {{text: "{NEW}"}}}}
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def in_flight(world: World, *, connected: bool = True) -> None:
    """50 leads visited and waiting in revision 1's `rest` (5 days)."""
    urls = [url(i) for i in range(N)]
    for u in urls:  # connected: a message goes through (else NOT_CONNECTED -> failed)
        world.sandbox.world.add_profile(u, first_name="Lead", accepts=False, replies=False,
                                        already_connected_with=["ident-alice"] if connected
                                        else [])
    (world.tmp / "leads.csv").write_text(
        "linkedin_profile_url,first_name\n" + "".join(f"{u},Lead\n" for u in urls))
    await world.apply(world.manifest("rev.yaml", rev1()))
    await world.runner().run_until(MONDAY_8 + timedelta(hours=1))
    assert world.states("rev") == {"rest": N}


def messages(world: World) -> list[tuple[str, str]]:
    """(profile, text) of every message the sandbox delivered."""
    return [(d.profile_url, d.text or "") for d in world.sandbox.world.deliveries(kind="message")]


def revisions(world: World) -> Counter[str]:
    return Counter(e.revision for e in world.store.enrollments(sequence="rev"))


async def test_a_healthy_canary_of_10_over_50_in_flight_leads_is_promoted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    await in_flight(world)
    old_rev = world.store.get_sequence("rev").current_revision  # type: ignore[union-attr]
    path = world.manifest("rev.yaml", rev2())
    result = await world.apply(path)
    (sp,) = result.plan.sequences
    assert sp.revision_canary == 10
    render_plan(result.plan)
    assert "canary: 10 of 50 in-flight lead(s) migrate now, the rest after 2d if failed rate " \
        "below 5%" in capsys.readouterr().out
    assert result.sequences[0].migrated == 10  # the canary only
    assert revisions(world) == {sp.revision: 10, old_rev: 40}
    again = await world.apply(path)  # re-applying during the canary moves nobody else
    assert again.plan.sequences[0].migrations == () and revisions(world)[old_rev] == 40
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(days=1, hours=2))
    assert world.done("send_message") == 10  # the canary got the new text; the rest wait
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "canary"
    render_status(status(world.store, "rev", now=world.clock.now()))
    assert "revision rollout: canary (10 of 50 in-flight lead(s) as the canary, 10 migrated" \
        in capsys.readouterr().out
    await runner.run_until(MONDAY_8 + timedelta(days=6))
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoted" and state["migrated"] == 50
    assert revisions(world) == {sp.revision: N}
    assert world.states("rev") == {"completed": N}
    sent = messages(world)
    assert len(sent) == N and all(t == "New text for Lead" for _, t in sent)  # not the old
    assert len({to for to, _ in sent}) == N  # none messaged twice


async def test_a_failing_canary_holds_the_rest_on_the_old_revision_and_pauses(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    await in_flight(world, connected=False)  # the sandbox refuses the canary's messages
    old_rev = world.store.get_sequence("rev").current_revision  # type: ignore[union-attr]
    await world.apply(world.manifest("rev.yaml", rev2()))
    await world.runner().run_until(MONDAY_8 + timedelta(days=4))
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "held"
    assert state["reason"] == "canary of 10: failed rate 100% is not below 5%"
    row = world.store.get_sequence("rev")
    assert row is not None and row.paused
    assert revisions(world)[old_rev] == 40  # the rest never moved
    assert world.states("rev") == {"failed": 10, "rest": 40}
    render_status(status(world.store, "rev", now=world.clock.now()))
    assert "revision rollout: held" in capsys.readouterr().out


async def test_rollback_moves_the_canary_back_and_promote_migrates_everyone(
    world: World,
) -> None:
    await in_flight(world)
    old_rev = world.store.get_sequence("rev").current_revision  # type: ignore[union-attr]
    result = await world.apply(world.manifest("rev.yaml", rev2()))
    new_rev = result.plan.sequences[0].revision
    back = rollback(world.store, "rev", now=world.clock.now())
    assert back.migrated == 10
    assert revisions(world) == {old_rev: N}  # `wait` is `rest` again (migrate's inverse)
    assert world.states("rev") == {"rest": N}
    row = world.store.get_sequence("rev")
    assert row is not None and row.paused
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "rolled_back"
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(days=2))  # paused: nothing goes
    assert world.done("send_message") == 0
    done = promote(world.store, "rev", now=world.clock.now())
    assert done.migrated == N and revisions(world) == {new_rev: N}
    await runner.run_until(MONDAY_8 + timedelta(days=4))
    sent = messages(world)
    assert len(sent) == N and all(t == "New text for Lead" for _, t in sent)
    assert len({to for to, _ in sent}) == N


async def test_promote_by_hand_migrates_the_rest_before_the_hold(world: World) -> None:
    await in_flight(world)
    result = await world.apply(world.manifest("rev.yaml", rev2()))
    done = promote(world.store, "rev", now=world.clock.now())
    assert done.stage == "promoted" and done.migrated == 40
    assert revisions(world) == {result.plan.sequences[0].revision: N}
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoted"


async def test_rollback_without_an_inverse_names_the_steps(world: World) -> None:
    await in_flight(world)
    # two old steps map to `wait`: which one a canary lead came from is not known
    await world.apply(world.manifest("rev.yaml", rev2("{rest: wait, visit: wait}")))
    with pytest.raises(UsageError, match=r"step\(s\) 'wait' \(no such step in revision"):
        rollback(world.store, "rev", now=world.clock.now())
    assert world.states("rev") == {"wait": 10, "rest": 40}  # nothing moved


async def test_by_hand_the_leads_due_now_are_left_to_the_runners_next_tick(
    world: World,
) -> None:
    # enrolled, not run yet: all 50 are due now at `visit` (a runner may be reading them)
    urls = [url(i) for i in range(N)]
    for u in urls:
        world.sandbox.world.add_profile(u, first_name="Lead", accepts=False, replies=False,
                                        already_connected_with=["ident-alice"])
    (world.tmp / "leads.csv").write_text(
        "linkedin_profile_url,first_name\n" + "".join(f"{u},Lead\n" for u in urls))
    await world.apply(world.manifest("rev.yaml", rev1()))
    old_rev = world.store.get_sequence("rev").current_revision  # type: ignore[union-attr]
    result = await world.apply(world.manifest("rev.yaml", rev2()))
    new_rev = result.plan.sequences[0].revision
    assert result.sequences[0].migrated == 10  # at apply, under the lock, before any tick
    back = rollback(world.store, "rev", now=world.clock.now())
    assert back.migrated == 0  # due now: the runner moves them back, before its waves
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "rolling_back"
    runner = world.runner()
    await runner.tick()
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "rolled_back"
    assert revisions(world) == {old_rev: N} and world.done("visit_profile") == 0  # paused
    done = promote(world.store, "rev", now=world.clock.now())
    assert done.migrated == 0
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoting"
    await runner.run_until(MONDAY_8 + timedelta(days=3))
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoted"
    assert revisions(world) == {new_rev: N}
    sent = messages(world)
    assert len(sent) == N and all(t == "New text for Lead" for _, t in sent)


# ---- identity limits: what the runner enforces, and a tier change while running ------------


async def test_status_shows_the_limit_the_runner_enforces(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(3)])
    policy = world.manifest("policy.yaml", POLICY.format(
        body="  identities: {ident-alice: sales_navigator}\n"))
    s1 = world.manifest("s1.yaml", sequence("sn", csv, "ident-alice", "visit_profile",
                                            "  limits: {visit: 400, connect: 10}\n"))
    await world.apply(policy, s1)
    limits = status(world.store, "sn", now=world.clock.now()).to_json()["identities"][0][
        "limits_24h"]
    assert limits["visit_profile"]["limit"] == 400  # under Sales Navigator's 500
    assert limits["connect"]["limit"] == 10  # the manifest's, under the provider's 30
    assert limits["send_message"]["limit"] == 250  # Edges' Sales Navigator figure
    # the account turns out classic: the runner holds it to Edges' 80 visits, and so does
    # status (not the manifest's 400)
    world.manifest("policy.yaml", POLICY.format(body="  identities: {ident-alice: classic}\n"))
    await world.apply(policy)
    limits = status(world.store, "sn", now=world.clock.now()).to_json()["identities"][0][
        "limits_24h"]
    assert limits["visit_profile"]["limit"] == 80


async def test_a_tier_change_is_picked_up_by_the_running_runner(world: World) -> None:
    world.sandbox.world.add_identity("ident-sn", kind="sales_navigator", provider="edges")
    csv = world.leads("leads.csv", [url(i) for i in range(150)])
    s1 = world.manifest("s1.yaml", sequence("grow", csv, "ident-sn", "visit_profile"))
    await world.apply(s1)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(hours=2))
    assert world.done("visit_profile") == 80  # no Policy: a classic account's limit
    policy = world.manifest("policy.yaml", POLICY.format(
        body="  identities: {ident-sn: sales_navigator}\n"))
    await world.apply(policy)  # while the same runner goes on
    await runner.run_until(MONDAY_8 + timedelta(hours=3))
    assert world.done("visit_profile") == 150  # its next tick: Sales Navigator's 500


async def test_a_lead_whose_call_is_in_flight_is_migrated_once_it_settled(world: World) -> None:
    await in_flight(world)
    old_rev = world.store.get_sequence("rev").current_revision  # type: ignore[union-attr]
    result = await world.apply(world.manifest("rev.yaml", rev2()))
    new_rev = result.plan.sequences[0].revision
    rest = [e for e in world.store.enrollments(sequence="rev") if e.revision == old_rev]
    flying = rest[0]
    # a crash left an intent without outcome (a call in flight, as far as the store knows)
    world.store.log_intents(({
        "enrollment_id": flying.id, "sequence": "rev", "revision": old_rev, "step": "visit",
        "identity": "ident-alice", "action": "visit_profile", "at": world.clock.now(),
        "holder": None, "request": {}, "variant": None},))
    done = promote(world.store, "rev", now=world.clock.now())
    assert done.migrated == 39  # not the lead mid-call
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoting"
    assert revisions(world) == {new_rev: 49, old_rev: 1}
    # the runner reconciles the intent with the sandbox, then its next tick moves the lead
    await world.runner().run_until(MONDAY_8 + timedelta(hours=3))
    assert world.store.pending_intents() == []
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoted" and state["migrated"] == 50
    assert revisions(world) == {new_rev: N}


async def test_a_crash_during_the_promotion_leaves_it_undone_and_the_next_tick_does_it(
    world: World,
) -> None:
    await in_flight(world)
    old_rev = world.store.get_sequence("rev").current_revision  # type: ignore[union-attr]
    result = await world.apply(world.manifest("rev.yaml", rev2()))
    new_rev = result.plan.sequences[0].revision
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(days=2))  # the canary is done; the hold is not
    updates = 0

    def die_mid_promotion(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal updates  # the database goes away after 20 of the 40 moves (a kill, a fault)
        if statement.startswith("UPDATE enrollments SET revision"):
            updates += 1
            if updates > 20:
                raise sqlite3.OperationalError("disk I/O error")

    sa.event.listen(world.store.engine, "before_cursor_execute", die_mid_promotion)
    world.clock.set(MONDAY_8 + timedelta(days=2, hours=2))
    with pytest.raises(StoreError):
        await runner.tick()
    sa.event.remove(world.store.engine, "before_cursor_execute", die_mid_promotion)
    assert updates == 21
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "canary"  # nothing half done
    assert revisions(world) == {new_rev: 10, old_rev: 40}
    await runner.run_until(MONDAY_8 + timedelta(days=5))
    state = revision_rollout(world.store, "rev")
    assert state is not None and state["stage"] == "promoted" and state["migrated"] == N
    assert revisions(world) == {new_rev: N}
    sent = messages(world)
    assert len(sent) == N == len({to for to, _ in sent})
    assert all(t == "New text for Lead" for _, t in sent)


# ---- the shipped example on the CLI -------------------------------------------------------


def test_the_shipped_revision_rollout_example_on_the_cli(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seqs = cli_dir / "sequences"
    seqs.mkdir()
    for name in ("guardrails-canary.yaml", "guardrails-canary-v2.yaml.next", "demo-leads.csv"):
        (seqs / name).write_bytes((ROOT / "sequences" / name).read_bytes())
    code, out, _ = invoke(capsys, "apply", "sequences/guardrails-canary.yaml", "--sandbox",
                          "--virtual-clock", "--auto-approve")
    assert code == 0, out
    code, out, _ = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+5d")
    assert code == 0, out
    code, out, _ = invoke(capsys, "plan", "sequences/guardrails-canary-v2.yaml.next",
                          "--sandbox", "-o", "json")
    (sp,) = json.loads(out)["sequences"]
    in_flight = sum(g["count"] for g in sp["in_flight"] if not g["keeps_revision"])
    assert sp["revision_canary"] == 20 and in_flight > 20
    code, out, _ = invoke(capsys, "apply", "sequences/guardrails-canary-v2.yaml.next",
                          "--sandbox", "--virtual-clock", "--auto-approve")
    assert code == 0 and "migrated 20" in out, out
    code, out, _ = invoke(capsys, "status", "guardrails-canary", "--virtual-clock")
    assert f"revision rollout: canary (20 of {in_flight} in-flight lead(s)" in out
    code, out, _ = invoke(capsys, "promote", "guardrails-canary", "--virtual-clock")
    assert code == 0, out
    assert f"{in_flight - 20} in-flight lead(s) migrated to the new revision" in out
    code, out, _ = invoke(capsys, "status", "guardrails-canary", "--virtual-clock", "-o", "json")
    revision = json.loads(out)["sequences"][0]["guardrails"]["revision"]
    assert revision["stage"] == "promoted" and revision["migrated"] == in_flight
