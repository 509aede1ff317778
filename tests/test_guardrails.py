"""Guardrails (issue 15): canary rollout, send caps, one lead one voice, the Policy's
do-not-contact domains, organisation budgets and identity tiers, on the in-process sandbox
and the virtual clock (ground truth: the action log of what the sandbox answered)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.apply.leads import import_leads
from engine.apply.sequences import apply
from engine.cli.render import render_status
from engine.clock import VirtualClock
from engine.errors import ManifestError
from engine.manifest.loader import load
from engine.model import Caps
from engine.providers.edges.actions import EdgesProvider
from engine.run.guards import rollout_state
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.store import Store
from engine.views.control import promote, rollback
from engine.views.status import status
from tests.conftest import invoke

MONDAY_8 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def url(n: int, prefix: str = "lead") -> str:
    return f"https://www.linkedin.com/in/{prefix}-{n:04d}"


class World:
    """A store, a virtual clock and the embedded sandbox with profiles for the leads."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = VirtualClock(MONDAY_8)
        self.sandbox = Sandbox.open(None, clock=self.clock, profiles=0)
        self.store = Store.open(None, tmp / ".seqrun")

    def leads(self, name: str, urls: list[str], *, inaccessible: int = 0, **columns: str) -> str:
        for i, u in enumerate(urls):
            self.sandbox.world.add_profile(u, first_name="Lead", accessible=i >= inaccessible,
                                           accepts=False, replies=False)
        head = ",".join(["linkedin_profile_url", "first_name", *columns])
        rows = [",".join([u, "Lead", *columns.values()]) for u in urls]
        (self.tmp / name).write_text("\n".join([head, *rows]) + "\n")
        return name

    def manifest(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    async def apply(self, *paths: Path, caps: Caps | None = None) -> Any:
        return await apply(load(paths), store=self.store, clock=self.clock,
                           approve=lambda p: True, caps=caps)

    def runner(self) -> Runner:
        client = httpx.AsyncClient(
            transport=self.sandbox.transport,
            base_url=self.sandbox.base_url("edges") + "/",
            headers=self.sandbox.headers("edges"),
        )
        return Runner(self.store, {"edges": EdgesProvider(client)}, self.clock)

    def done(self, *actions: str) -> int:
        return len(self.store.action_times_across(actions, EPOCH))

    def states(self, sequence: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.store.enrollments(sequence=sequence):
            out[e.state] = out.get(e.state, 0) + 1
        return out


def sequence(name: str, csv: str, identities: str, action: str, extra: str = "") -> str:
    return f"""apiVersion: seqrun/v1
kind: Sequence
metadata: {{name: {name}}}
spec:
  provider: edges
  identities: [{identities}]
  leads: {{csv: {csv}}}
{extra}  steps:
    - {{id: act, action: {action}}}
"""


ROLLOUT = "  rollout: {canary: 20, hold: 2d, promote_if: {failed_rate_below: 0.05}}\n"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# ---- rollout ---------------------------------------------------------------------------------


async def test_a_healthy_canary_of_20_over_200_leads_is_promoted(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(200)])
    path = world.manifest("s.yaml", sequence("canary", csv, "ident-alice, ident-bob",
                                             "visit_profile", ROLLOUT))
    await world.apply(path)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(days=1))
    assert world.done("visit_profile") == 20  # the canary only; the rest wait the hold
    assert rollout_state(world.store, "canary")["stage"] == "canary"  # type: ignore[index]
    await runner.run_until(MONDAY_8 + timedelta(days=6))
    assert rollout_state(world.store, "canary")["stage"] == "promoted"  # type: ignore[index]
    assert world.states("canary") == {"completed": 200}


async def test_a_failing_canary_pauses_the_sequence_with_the_reason(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # the sandbox refuses the canary's profiles (PROFILE_NOT_ACCESSIBLE, routed to failed)
    csv = world.leads("leads.csv", [url(i) for i in range(200)], inaccessible=20)
    path = world.manifest("s.yaml", sequence(
        "canary", csv, "ident-alice, ident-bob", "visit_profile",
        ROLLOUT + '  "on": {PROFILE_NOT_ACCESSIBLE: failed}\n'))
    await world.apply(path)
    await world.runner().run_until(MONDAY_8 + timedelta(days=6))
    state = rollout_state(world.store, "canary")
    assert state is not None and state["stage"] == "held"
    assert "failed rate 100% is not below 5%" in state["reason"]
    row = world.store.get_sequence("canary")
    assert row is not None and row.paused
    assert world.states("canary") == {"failed": 20, "act": 180}  # the rest never went
    # status shows the stage and the reason
    report = status(world.store, "canary", now=world.clock.now())
    canary = report.sequences[0].to_json()["guardrails"]["canary"]
    assert canary["stage"] == "held" and "failed rate 100%" in canary["reason"]
    render_status(report)
    assert "rollout: held (canary of 20): canary of 20: failed rate 100%" in capsys.readouterr().out


async def test_promote_by_hand_lets_the_rest_go_and_rollback_pauses(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(60)])
    path = world.manifest("s.yaml", sequence("canary", csv, "ident-alice", "visit_profile",
                                             ROLLOUT))
    await world.apply(path)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(hours=12))
    assert world.done("visit_profile") == 20
    result = promote(world.store, "canary", now=world.clock.now())
    assert result.stage == "promoted" and result.released == 40
    await runner.run_until(MONDAY_8 + timedelta(hours=20))
    assert world.states("canary") == {"completed": 60}
    rolled = rollback(world.store, "canary", now=world.clock.now())
    assert rolled.stage == "rolled_back"
    row = world.store.get_sequence("canary")
    assert row is not None and row.paused


# ---- caps and budgets ------------------------------------------------------------------------


async def test_a_send_cap_is_honoured_to_the_unit_across_identities(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(40)])
    path = world.manifest("s.yaml", sequence("capped", csv, "ident-alice, ident-bob", "connect",
                                             "  caps: {max_sends_per_day: 7}\n"))
    await world.apply(path)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(hours=23))
    assert world.done("connect") == 7
    await runner.run_until(MONDAY_8 + timedelta(hours=47))
    assert world.done("connect") == 14


async def test_apply_max_sends_per_day_tightens_the_manifest(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(20)])
    path = world.manifest("s.yaml", sequence("capped", csv, "ident-alice, ident-bob", "connect",
                                             "  caps: {max_sends_per_day: 7}\n"))
    await world.apply(path, caps=Caps(max_sends_per_day=3))
    await world.runner().run_until(MONDAY_8 + timedelta(hours=23))
    assert world.done("connect") == 3


async def test_max_enroll_enrolls_at_most_n_and_plans_the_rest_as_capped(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(10)])
    path = world.manifest("s.yaml", sequence("capped", csv, "ident-alice", "visit_profile"))
    result = await world.apply(path, caps=Caps(max_enroll=4))
    (sp,) = result.plan.sequences
    assert len(sp.enroll) == 4
    assert [s.reason for s in sp.skipped] == ["cap"] * 6
    assert result.sequences[0].enrolled == 4


POLICY = """apiVersion: seqrun/v1
kind: Policy
metadata: {{name: org}}
spec:
{body}"""


async def test_the_organisation_budget_binds_across_identities(world: World) -> None:
    a = world.leads("a.csv", [url(i, "a") for i in range(10)])
    b = world.leads("b.csv", [url(i, "b") for i in range(10)])
    policy = world.manifest("policy.yaml", POLICY.format(body="  budgets: {connect: 5}\n"))
    s1 = world.manifest("s1.yaml", sequence("one", a, "ident-alice", "connect"))
    s2 = world.manifest("s2.yaml", sequence("two", b, "ident-bob", "connect"))
    await world.apply(policy, s1, s2)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(hours=23))
    assert world.done("connect") == 5  # not 10 + 10, not 5 per identity
    await runner.run_until(MONDAY_8 + timedelta(hours=47))
    assert world.done("connect") == 10


async def test_two_sequences_with_overlapping_leads_enroll_each_person_once(
    world: World,
) -> None:
    shared = [url(i) for i in range(10)]
    a = world.leads("a.csv", shared + [url(i, "a") for i in range(5)])
    b = world.leads("b.csv", shared + [url(i, "b") for i in range(5)])
    policy = world.manifest(
        "policy.yaml", POLICY.format(body="  one_lead_one_voice: {lookback: 30d}\n"))
    s1 = world.manifest("s1.yaml", sequence("one", a, "ident-alice", "connect"))
    s2 = world.manifest("s2.yaml", sequence("two", b, "ident-bob", "connect"))
    result = await world.apply(policy, s1, s2)
    one, two = result.plan.sequences
    assert len(one.enroll) == 15 and len(two.enroll) == 5
    assert {s.reason for s in two.skipped} == {"one_voice"}
    assert "in flight in sequence 'one'" in two.skipped[0].detail
    await world.runner().run_until(MONDAY_8 + timedelta(days=2))
    # a later sequence on a third run: the contacted people stay out within the lookback
    s3 = world.manifest("s3.yaml", sequence("three", a, "ident-bob", "visit_profile"))
    plan = (await world.apply(s3)).plan  # the applied Policy still holds
    assert plan.sequences[0].enroll == ()
    assert {s.reason for s in plan.sequences[0].skipped} == {"one_voice"}
    assert "contacted by identity 'ident-alice' (sequence 'one') on 2026-01-05, within the " \
        "30d lookback of policy 'org'" in plan.sequences[0].skipped[0].detail
    persons = [e.lead_id for e in world.store.enrollments()]
    assert len(persons) == len(set(persons)) == 20


async def test_a_policy_dnc_domain_skips_every_lead_of_that_company(world: World) -> None:
    acme = world.leads("acme.csv", [url(i, "acme") for i in range(6)],
                       company_domain="acme.com")
    other = world.leads("other.csv", [url(i, "other") for i in range(3)],
                        email="x@other.org")
    (world.tmp / "acme-subsidiaries.txt").write_text("# lawyers asked\nsub.example.com\n")
    policy = world.manifest("policy.yaml", POLICY.format(
        body="  do_not_contact:\n    domains: [acme.com]\n    files: [acme-subsidiaries.txt]\n"))
    s1 = world.manifest("s1.yaml", sequence("one", acme, "ident-alice", "visit_profile"))
    s2 = world.manifest("s2.yaml", sequence("two", other, "ident-bob", "visit_profile"))
    result = await world.apply(policy, s1, s2)
    one, two = result.plan.sequences
    assert one.enroll == () and len(one.skipped) == 6
    assert {s.reason for s in one.skipped} == {"do_not_contact"}
    assert "company domain acme.com" in one.skipped[0].detail
    assert len(two.enroll) == 3
    assert result.plan.policy is not None
    assert result.plan.policy.policy.dnc_domains == {"acme.com", "sub.example.com"}


async def test_plan_shows_the_drift_between_seqrun_dnc_and_the_policy(world: World) -> None:
    world.store.add_do_not_contact(url(1), "asked by phone")
    policy = world.manifest("policy.yaml", POLICY.format(
        body=f"  do_not_contact:\n    urls: [{url(2)}]\n"))
    result = await world.apply(policy)
    assert result.plan.policy is not None
    assert result.plan.policy.db_only == (url(1),)
    assert result.plan.policy.policy_only == (url(2),)


# ---- identity tiers --------------------------------------------------------------------------


def test_sales_navigator_capacity_is_accepted_where_the_identity_has_it(tmp_path: Path) -> None:
    seq = sequence("sn", "x.csv", "ident-alice", "visit_profile",
                   "  limits: {message: 200, visit: 400}\n").replace("  leads: {csv: x.csv}\n", "")
    (tmp_path / "s.yaml").write_text(seq)
    with pytest.raises(ManifestError) as refused:  # no Policy: a classic account
        load([tmp_path / "s.yaml"])
    assert "above the edges smart limit of 50" in str(refused.value)
    (tmp_path / "policy.yaml").write_text(POLICY.format(
        body="  identities: {ident-alice: sales_navigator}\n"))
    assert [m.kind for m in load([tmp_path])] == ["Policy", "Sequence"]
    (tmp_path / "policy.yaml").write_text(POLICY.format(
        body="  identities: {ident-alice: classic}\n"))
    with pytest.raises(ManifestError) as classic:
        load([tmp_path])
    assert "on identity 'ident-alice' (classic); sales_navigator allows 250" in str(
        classic.value)


def test_a_second_policy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY.format(body="  timezone: UTC\n"))
    (tmp_path / "b.yaml").write_text(
        POLICY.format(body="  timezone: UTC\n").replace("name: org", "name: other"))
    with pytest.raises(ManifestError, match="a second Policy"):
        load([tmp_path])


# ---- the runner's other guardrails -------------------------------------------------------------


async def test_quiet_days_hold_everything_until_the_next_open_day(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(5)])
    policy = world.manifest("policy.yaml", POLICY.format(
        body='  quiet_days: ["2026-01-05", "2026-01-06"]\n  timezone: Europe/Paris\n'))
    s1 = world.manifest("s1.yaml", sequence("one", csv, "ident-alice", "visit_profile"))
    await world.apply(policy, s1)
    runner = world.runner()
    await runner.run_until(datetime(2026, 1, 6, 22, 59, tzinfo=UTC))  # 23:59 in Paris
    assert world.done("visit_profile") == 0
    assert {e.waiting for e in world.store.enrollments(sequence="one")} == {"quiet_day"}
    await runner.run_until(datetime(2026, 1, 7, 0, 0, tzinfo=UTC))  # Wednesday 01:00 Paris
    assert world.done("visit_profile") == 5


async def test_the_frequency_cap_counts_touches_across_sequences(world: World) -> None:
    lead = [url(1)]
    csv = world.leads("leads.csv", lead)
    policy = world.manifest("policy.yaml", POLICY.format(
        body="  frequency: {max_touches: 1, per: 3d}\n"))
    s1 = world.manifest("s1.yaml", sequence("one", csv, "ident-alice", "connect"))
    s2 = world.manifest("s2.yaml", sequence("two", csv, "ident-bob", "connect"))
    await world.apply(policy, s1, s2)  # no one-lead-one-voice: both enroll the person
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(days=1))
    assert world.done("connect") == 1
    (waiting,) = [e for e in world.store.enrollments() if e.state == "act"]
    assert waiting.waiting == "frequency"
    await runner.run_until(MONDAY_8 + timedelta(days=3, hours=1))
    assert world.done("connect") == 2


async def test_a_lead_in_flight_whose_company_joins_the_policy_dnc_is_stopped(
    world: World,
) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(3)], company_domain="acme.com")
    s1 = world.manifest("s1.yaml", sequence(
        "one", csv, "ident-alice", "visit_profile",
        "  rollout: {canary: 1, hold: 5d}\n"))
    await world.apply(s1)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(hours=2))
    assert world.states("one") == {"completed": 1, "act": 2}
    policy = world.manifest("policy.yaml", POLICY.format(
        body="  do_not_contact: {domains: [acme.com]}\n"))
    await world.apply(policy)
    promote(world.store, "one", now=world.clock.now())
    await runner.run_until(MONDAY_8 + timedelta(hours=4))
    assert world.states("one") == {"completed": 1, "stopped": 2}
    assert world.done("visit_profile") == 1


# ---- the CLI: plan, apply --max-enroll, leads import --dry-run, promote, status --------------


def test_the_cli_states_the_guardrails(cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{url(i)},Lead,acme.com" if i < 2 else f"{url(i)},Lead,ok.org" for i in range(12)]
    (cli_dir / "leads.csv").write_text("linkedin_profile_url,first_name,company_domain\n"
                                       + "\n".join(rows) + "\n")
    (cli_dir / "more.csv").write_text("linkedin_profile_url,first_name\n"
                                      + "\n".join(f"{url(i, 'more')},M" for i in range(4)) + "\n")
    (cli_dir / "policy.yaml").write_text(POLICY.format(
        body=f"  do_not_contact:\n    domains: [acme.com]\n    urls: [{url(5)}]\n"
        "  budgets: {visit: 100}\n"))
    (cli_dir / "s.yaml").write_text(sequence(
        "cli", "leads.csv", "ident-alice", "visit_profile",
        "  caps: {max_sends_per_day: 10}\n  rollout: {canary: 2, hold: 1d}\n"))
    code, out, _ = invoke(capsys, "plan", "policy.yaml", "s.yaml", "--max-enroll", "4")
    assert code == 0, out
    assert "+ Policy org: do-not-contact 1 URL(s), 1 domain(s)" in out
    assert f"drift (Policy only): 1 URL(s) on the Policy, not the `seqrun dnc` list: {url(5)}" \
        in out
    assert "over --max-enroll 4: waits for a later apply" in out
    assert "guardrail: rollout: the first 2 lead(s) go; the rest wait 1d" in out
    assert "guardrail: policy org: organisation budget visit_profile 100 per 24 h" in out
    code, out, _ = invoke(capsys, "apply", "policy.yaml", "s.yaml", "--sandbox",
                          "--virtual-clock", "--auto-approve", "--max-enroll", "4")
    assert code == 0, out
    assert "enrolled 4" in out
    code, out, _ = invoke(capsys, "leads", "import", "more.csv", "--sequence", "cli",
                          "--dry-run")
    assert code == 0 and "would enroll 4 in cli" in out and "Nothing changed" in out
    code, out, _ = invoke(capsys, "status", "cli", "--virtual-clock", "-o", "json")
    seq = json.loads(out)["sequences"][0]
    assert seq["total"] == 4
    assert seq["guardrails"]["canary"]["stage"] == "canary"
    assert seq["guardrails"]["caps"]["max_sends_per_day"] == 10
    assert json.loads(out)["budgets"] == {"visit_profile": {"budget": 100, "used": 2}}
    code, out, _ = invoke(capsys, "promote", "cli", "--virtual-clock")
    assert code == 0 and "promoted; 2 lead(s) that waited for the canary go now" in out
    code, _, err = invoke(capsys, "rollback", "nope")
    assert code != 0 and "no applied sequence named 'nope'" in err


async def test_a_sales_navigator_identity_runs_and_shows_its_tier_limits(world: World) -> None:
    world.sandbox.world.add_identity("ident-sn", kind="sales_navigator", provider="edges")
    csv = world.leads("leads.csv", [url(i) for i in range(100)])
    policy = world.manifest("policy.yaml", POLICY.format(
        body="  identities: {ident-sn: sales_navigator}\n"))
    s1 = world.manifest("s1.yaml", sequence("sn", csv, "ident-sn", "visit_profile"))
    await world.apply(policy, s1)
    await world.runner().run_until(MONDAY_8 + timedelta(hours=23))
    assert world.done("visit_profile") == 100  # a classic account stops at Edges' 80
    report = status(world.store, "sn", now=world.clock.now())
    (sn,) = report.to_json()["identities"]
    assert sn["limits_24h"]["visit_profile"] == {"used": 100, "limit": 500, "unverified": 0}


async def test_leads_imported_later_fill_the_canary_up_to_its_size(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(5)])
    more = world.leads("more.csv", [url(i, "more") for i in range(30)])
    path = world.manifest("s.yaml", sequence("canary", csv, "ident-alice", "visit_profile",
                                             ROLLOUT))
    await world.apply(path)
    runner = world.runner()
    await runner.run_until(MONDAY_8 + timedelta(hours=1))
    assert world.done("visit_profile") == 5
    import_leads(world.tmp / more, "canary", store=world.store, now=world.clock.now())
    await runner.run_until(MONDAY_8 + timedelta(hours=12))
    assert world.done("visit_profile") == 20  # the canary filled up; 15 wait the hold
    state = rollout_state(world.store, "canary")
    assert state is not None and len(state["canary"]) == 20
    assert state["started_at"] == MONDAY_8.isoformat()  # the hold counts from the start


async def test_caps_max_enroll_bounds_the_sequence_in_all(world: World) -> None:
    csv = world.leads("leads.csv", [url(i) for i in range(10)])
    path = world.manifest("s.yaml", sequence("ceiling", csv, "ident-alice", "visit_profile",
                                             "  caps: {max_enroll: 3}\n"))
    first = await world.apply(path, caps=Caps(max_enroll=2))  # the tighter of the two
    assert first.sequences[0].enrolled == 2
    assert first.plan.sequences[0].skipped[0].detail == (
        "over --max-enroll 2: waits for a later apply")
    second = await world.apply(path)
    assert second.sequences[0].enrolled == 1
    assert second.plan.sequences[0].skipped[0].detail == (
        "over caps.max_enroll 3 (the sequence holds 2): waits until the cap is raised")
    assert len(world.store.enrollments(sequence="ceiling")) == 3
