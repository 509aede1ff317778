from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.apply.leads import import_leads
from engine.apply.plan import make_plan
from engine.apply.sequences import apply
from engine.clock import VirtualClock
from engine.errors import LockError, PlanError
from engine.model import ActionStep, LeadsSource, Metadata, Sequence, WaitStep
from engine.store import Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def seq(
    csv: Path | None,
    *,
    name: str = "founders",
    steps: tuple[str, ...] = ("visit", "connect", "message"),
    identities: tuple[str, ...] = ("id_a", "id_b"),
    migrate: dict[str, str] | None = None,
) -> Sequence:
    actions = {"visit": "visit_profile", "connect": "connect", "message": "send_message",
               "hello": "send_message", "follow_up": "send_message"}
    built: list[Any] = []
    for s in steps:
        if s == "pause":
            built.append(WaitStep(s, timedelta(days=1)))
        else:
            built.append(ActionStep(s, actions.get(s, "visit_profile")))
    normalized = {"apiVersion": "seqrun/v1", "kind": "Sequence", "metadata": {"name": name},
                  "spec": {"provider": "edges", "identities": list(identities),
                           "steps": [{"id": s} for s in steps], "migrate": migrate or {}}}
    return Sequence(
        metadata=Metadata(name),
        provider="edges",
        identities=identities,
        steps=tuple(built),
        leads=LeadsSource(csv),
        migrate=migrate or {},
        normalized=normalized,
    )


def write_csv(path: Path, handles: list[str]) -> Path:
    rows = ["linkedin_profile_url,full_name"]
    rows += [f"https://www.linkedin.com/in/{h},{h.title()} Person" for h in handles]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def yes(plan: Any) -> bool:
    return True


async def test_plan_then_apply_enrolls_round_robin(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b", "c", "d", "e"])
    plan = await make_plan([seq(csv)], store=store, now=T0)
    (sp,) = plan.sequences
    assert plan.has_changes and sp.action == "create"
    assert [(e.profile_url.rsplit("/", 1)[1], e.identity) for e in sp.enroll] == [
        ("a", "id_a"), ("b", "id_b"), ("c", "id_a"), ("d", "id_b"), ("e", "id_a")]
    assert sp.enroll[0].data == {"full_name": "A Person", "first_name": "A", "last_name": "Person"}

    result = await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    assert result.applied and result.sequences[0].enrolled == 5
    rows = store.enrollments(sequence="founders")
    assert {r.state for r in rows} == {"visit"} and {r.revision for r in rows} == {sp.revision}
    assert all(r.next_due_at == T0 for r in rows)
    assert store.get_sequence("founders").current_revision == sp.revision  # type: ignore[union-attr]

    again = await make_plan([seq(csv)], store=store, now=T0)
    assert not again.has_changes
    assert again.sequences[0].already_enrolled == 5
    assert again.to_json()["changes"] is False


async def test_new_leads_continue_the_rotation(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b", "c"])
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    write_csv(csv, ["a", "b", "c", "d", "e"])
    plan = await make_plan([seq(csv)], store=store, now=T0)
    assert [e.identity for e in plan.sequences[0].enroll] == ["id_b", "id_a"]


async def test_changed_manifest_new_revision_in_flight_keep_theirs(
    store: Store, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b"])
    first = await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    old_rev = first.sequences[0].revision
    write_csv(csv, ["a", "b", "c"])
    changed = seq(csv, steps=("visit", "hello", "message"))
    plan = await make_plan([changed], store=store, now=T0)
    (sp,) = plan.sequences
    assert sp.action == "update" and sp.previous_revision == old_rev != sp.revision
    assert [(g.revision, g.state, g.count, g.moves) for g in sp.in_flight] == [
        (old_rev, "visit", 2, False)]
    await apply([changed], store=store, clock=VirtualClock(T0), approve=yes)
    revs = {r.lead_id: r.revision for r in store.enrollments(sequence="founders")}
    assert sorted(revs.values()) == sorted([old_rev, old_rev, sp.revision])
    assert store.get_revision(old_rev) is not None and store.get_revision(sp.revision) is not None


async def test_migrate_mapping_moves_in_flight(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b"])
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    for row in store.enrollments(sequence="founders"):
        store.update_enrollment(row.id, state="connect")
    changed = seq(csv, steps=("visit", "hello", "message"), migrate={"connect": "hello"})
    plan = await make_plan([changed], store=store, now=T0)
    (group,) = plan.sequences[0].in_flight
    assert (group.state, group.to_state, group.to_revision) == (
        "connect", "hello", plan.sequences[0].revision)
    assert plan.to_json()["sequences"][0]["migrate"] == {"connect": "hello"}
    result = await apply([changed], store=store, clock=VirtualClock(T0), approve=yes)
    assert result.sequences[0].migrated == 2
    rows = store.enrollments(sequence="founders")
    assert {(r.state, r.revision) for r in rows} == {("hello", plan.sequences[0].revision)}
    events = store.events("https://www.linkedin.com/in/a", kind="migrated")
    assert [(e.from_state, e.to_state, e.trigger) for e in events] == [
        ("connect", "hello", "migrate")]
    assert not (await make_plan([changed], store=store, now=T0)).has_changes


async def test_removed_step_with_leads_and_no_mapping_is_refused(
    store: Store, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a"])
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    for row in store.enrollments(sequence="founders"):
        store.update_enrollment(row.id, state="connect")
    changed = seq(csv, steps=("visit", "hello"), migrate={"visit": "hello"})
    with pytest.raises(PlanError, match=r"'connect'.*1 lead"):
        await make_plan([changed], store=store, now=T0)
    bad_target = seq(csv, steps=("visit", "hello"), migrate={"connect": "nowhere"})
    with pytest.raises(PlanError, match="unknown steps"):
        await make_plan([bad_target], store=store, now=T0)


async def test_do_not_contact_and_held_leads_are_skipped(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b", "c"])
    other = write_csv(tmp_path / "other.csv", ["b"])
    await apply([seq(other, name="other", identities=("id_b",))], store=store,
                clock=VirtualClock(T0), approve=yes)
    store.add_do_not_contact("https://www.linkedin.com/in/c", "asked us to stop")
    plan = await make_plan([seq(csv)], store=store, now=T0)
    sp = plan.sequences[0]
    assert [e.profile_url for e in sp.enroll] == ["https://www.linkedin.com/in/a"]
    assert [(s.profile_url.rsplit("/", 1)[1], s.reason) for s in sp.skipped] == [
        ("b", "held"), ("c", "do_not_contact")]
    assert "other" in sp.skipped[0].detail and "id_b" in sp.skipped[0].detail
    # a sequence on another identity may take the held lead
    plan2 = await make_plan([seq(csv, name="third", identities=("id_z",))], store=store, now=T0)
    assert [e.profile_url[-1] for e in plan2.sequences[0].enroll] == ["a", "b"]


async def test_two_sequences_in_one_plan_do_not_share_a_lead(
    store: Store, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a"])
    plan = await make_plan([seq(csv, name="one"), seq(csv, name="two")], store=store, now=T0)
    assert len(plan.sequences[0].enroll) == 1
    assert [s.reason for s in plan.sequences[1].skipped] == ["held"]


async def test_refused_rows_are_reported(store: Store, tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url\nhttps://example.com/x\nlinkedin.com/in/a\n")
    plan = await make_plan([seq(csv)], store=store, now=T0)
    assert len(plan.sequences[0].enroll) == 1
    assert [p.line for p in plan.sequences[0].leads_refused] == [2]


async def test_not_approved_writes_nothing(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a"])
    with pytest.raises(PlanError, match="not approved"):
        await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=lambda p: False)
    assert store.enrollments() == [] and store.get_sequence("founders") is None


async def test_concurrent_apply_is_blocked_by_the_lock(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a"])
    with store.lock("apply"), pytest.raises(LockError, match="apply"):
        await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    assert store.enrollments() == []


async def test_import_leads_enrolls_into_applied_sequence(store: Store, tmp_path: Path) -> None:
    await apply([seq(write_csv(tmp_path / "a.csv", ["a"]))], store=store,
                clock=VirtualClock(T0), approve=yes)
    more = tmp_path / "more.csv"
    more.write_text("linkedin_profile_url,timezone\nlinkedin.com/in/a,\nlinkedin.com/in/b,\n"
                    "linkedin.com/in/c,Nowhere/City\n")
    result = import_leads(more, "founders", store=store, now=T0)
    assert (result.taken, len(result.refused), result.enrolled, result.already_enrolled) == (
        2, 1, 1, 1)
    assert len(store.enrollments(sequence="founders")) == 2
    with pytest.raises(PlanError, match="no applied sequence"):
        import_leads(more, "ghost", store=store, now=T0)


def test_lock_is_exclusive_across_threads(store: Store) -> None:
    errors: list[Exception] = []

    def other() -> None:
        try:
            with store.lock("apply"):
                pass
        except LockError as exc:
            errors.append(exc)

    with store.lock("apply"):
        th = threading.Thread(target=other)
        th.start()
        th.join()
    assert len(errors) == 1


async def test_new_leads_on_a_paused_identity_start_paused(store: Store, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b"])
    store.set_identity_status("id_b", "paused", "paused by the user", provider="edges")
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    paused = {r.identity: r.paused for r in store.enrollments(sequence="founders")}
    assert paused == {"id_a": False, "id_b": True}


async def test_migrated_leads_are_scheduled_for_their_new_step(
    store: Store, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b"])
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    rows = store.enrollments(sequence="founders")
    store.update_enrollment(rows[0].id, state="connect", attempts=2)
    store.update_enrollment(rows[1].id, state="message")
    later = VirtualClock(T0 + timedelta(hours=5))
    changed = seq(csv, steps=("visit", "pause", "message"),
                  migrate={"connect": "pause", "message": "completed"})
    await apply([changed], store=store, clock=later, approve=yes)
    by_id = {r.id: r for r in store.enrollments(sequence="founders")}
    paused_lead, done_lead = by_id[rows[0].id], by_id[rows[1].id]
    assert (paused_lead.state, paused_lead.attempts) == ("pause", 0)
    assert paused_lead.next_due_at == later.now() + timedelta(days=1)
    assert paused_lead.step_entered_at == later.now()
    assert (done_lead.state, done_lead.next_due_at) == ("completed", None)


async def test_a_changed_csv_row_updates_the_enrolled_leads_data(
    store: Store, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a", "b"])
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    csv.write_text("linkedin_profile_url,full_name,company\n"
                   "https://www.linkedin.com/in/a,Alma Person,Acme\n"
                   "https://www.linkedin.com/in/b,B Person,\n", encoding="utf-8")
    plan = await make_plan([seq(csv)], store=store, now=T0)
    (sp,) = plan.sequences
    assert plan.has_changes and sp.action == "unchanged" and not sp.enroll
    changes = {u.profile_url.rsplit("/", 1)[1]: dict(u.changes) for u in sp.update}
    assert changes == {
        "a": {"full_name": ("A Person", "Alma Person"), "first_name": ("A", "Alma"),
              "company": (None, "Acme")},
    }  # b: an empty cell is no value, so nothing changed
    assert plan.to_json()["sequences"][0]["update"][0]["changes"]["first_name"] == ["A", "Alma"]

    result = await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    assert result.sequences[0].updated == 1 and result.sequences[0].enrolled == 0
    lead = store.lead_by_url("https://www.linkedin.com/in/a")
    assert lead is not None and lead.data["first_name"] == "Alma" and lead.data["company"] == "Acme"
    (event,) = store.events("https://www.linkedin.com/in/a", kind="lead_updated")
    assert event.data == {"columns": ["company", "first_name", "full_name"]}
    again = await make_plan([seq(csv)], store=store, now=T0)
    assert not again.has_changes  # applied: nothing left to update


async def test_leads_import_updates_the_data_of_leads_already_enrolled(
    store: Store, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "leads.csv", ["a"])
    await apply([seq(csv)], store=store, clock=VirtualClock(T0), approve=yes)
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("linkedin_profile_url,first_name\nhttps://www.linkedin.com/in/a,Ann\n",
                     encoding="utf-8")
    result = import_leads(fixed, "founders", store=store, now=T0)
    assert (result.enrolled, result.already_enrolled, result.updated) == (0, 1, 1)
    lead = store.lead_by_url("https://www.linkedin.com/in/a")
    assert lead is not None and lead.data["first_name"] == "Ann"
