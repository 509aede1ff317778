"""The store: migrations, locks, rows, on SQLite (always) and PostgreSQL (when CI gives a URL)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from engine.errors import LockError, StoreError
from engine.store import HEAD, Store
from engine.store import tables as t
from engine.store.db import MIGRATIONS
from engine.store.locks import _pid_ns
from engine.store.rows import Columns
from engine.store.tables import metadata

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


def test_fresh_sqlite_is_migrated_to_head_with_wal(tmp_path: Path) -> None:
    s = Store.open(None, tmp_path / "state")
    db = tmp_path / "state" / "state.db"
    assert db.exists()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert set(metadata.tables) <= tables
    s.close()


def test_migrations_match_the_metadata_and_head_constant(store: Store) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        assert compare_metadata(ctx, metadata) == []


def test_reopen_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(None, tmp_path).close()

    def upgrade(*_: object) -> None:
        raise AssertionError("a store at head must not run the migrations again")

    monkeypatch.setattr(command, "upgrade", upgrade)
    s = Store.open(None, tmp_path)  # one version query, no alembic run
    s.kv_put("ns", "k", 1)
    assert s.kv_get("ns", "k") == 1


def test_env_url_overrides_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQRUN_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    Store.open(None, tmp_path / "state").close()
    assert (tmp_path / "other.db").exists()
    assert not (tmp_path / "state" / "state.db").exists()


def test_bad_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store.open("nosuchdialect://x", tmp_path)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:secret@db.example/seqrun", "psycopg"),
        ("postgres+psycopg://u:secret@db.example/seqrun", "psycopg"),
        ("postgresql://u:secret@db.example/seqrun", "psycopg"),
    ],
)
def test_postgres_urls_open_like_postgresql_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, driver: str
) -> None:
    """SQLAlchemy refuses ``postgres://`` (what many hosts hand out); the store reads it as
    ``postgresql://``. No server: the migration and naming (the first connection) are left
    out."""
    monkeypatch.setattr(Store, "_started", lambda self, **_: self)
    s = Store.open(url, tmp_path)
    try:
        assert (s.engine.dialect.name, s.engine.dialect.driver) == ("postgresql", driver)
        assert s.url.startswith("postgresql") and "secret" not in s.url
        assert s.fast.d.name == "postgresql"  # the one fast path, in its PostgreSQL layer
    finally:
        s.close()


def test_kv_roundtrip(store: Store) -> None:
    assert store.kv_get("schedules", "a") is None
    store.kv_put("schedules", "a", {"id": "s1", "n": [1, 2]})
    store.kv_put("schedules", "b", "x")
    store.kv_put("schedules", "a", {"id": "s2"})
    store.kv_put("other", "a", 3)
    assert store.kv_get("schedules", "a") == {"id": "s2"}
    assert store.kv_items("schedules") == {"a": {"id": "s2"}, "b": "x"}
    assert store.kv_delete("schedules", "a") is True
    assert store.kv_delete("schedules", "a") is False
    assert store.kv_items("schedules") == {"b": "x"}


def test_lock_is_exclusive_across_store_instances(tmp_path: Path) -> None:
    a = Store.open(None, tmp_path)
    b = Store.open(None, tmp_path)
    with a.lock("apply"):
        with pytest.raises(LockError, match="apply"), b.lock("apply"):
            pass
        with b.lock("run"):  # another name is independent
            pass
    with b.lock("apply"):  # released
        pass


def test_expired_lock_is_taken_over_and_refresh_detects_loss(store: Store) -> None:
    with store.lock("apply", ttl=timedelta(seconds=-1)) as dead, store.lock("apply") as fresh:
        assert fresh.holder != dead.holder
        with pytest.raises(LockError):
            dead.refresh()
        fresh.refresh()


def test_enrollments_due_by_index(store: Store) -> None:
    store.put_sequence("s", "Sequence", "edges", "rev1")
    store.put_sequence("t", "Sequence", "edges", "rev1")
    lead = store.upsert_lead("https://www.linkedin.com/in/a", {"first_name": "A"})
    lead2 = store.upsert_lead("https://www.linkedin.com/in/b", {})
    assert store.upsert_lead("https://www.linkedin.com/in/a", {"x": 1}) == lead
    assert store.get_lead(lead).data == {"first_name": "A", "x": 1}  # type: ignore[union-attr]
    e1 = store.enroll(lead, "s", "rev1", "id_a", "visit", T0)
    assert e1 is not None
    assert store.enroll(lead, "s", "rev1", "id_a", "visit", T0) is None
    e2 = store.enroll(lead2, "s", "rev1", "id_a", "visit", T0 + timedelta(hours=1))
    e3 = store.enroll(lead, "t", "rev1", "id_b", "visit", T0)
    assert e2 and e3
    assert [e.id for e in store.due_enrollments(T0)] == [e1, e3]
    due = store.due_enrollments(T0 + timedelta(hours=2))
    assert [e.id for e in due] == [e1, e3, e2]
    assert due[0].next_due_at == T0 and due[0].next_due_at.tzinfo is not None
    store.set_sequence_paused("t", True)
    store.update_enrollment(e2, state="completed", next_due_at=None)
    assert [e.id for e in store.due_enrollments(T0 + timedelta(hours=2))] == [e1]
    store.set_enrollments_paused(True, identity="id_a")
    assert store.due_enrollments(T0 + timedelta(hours=2)) == []
    assert store.next_due_at() is None
    store.set_enrollments_paused(False, identity="id_a")
    assert store.next_due_at() == T0
    with pytest.raises(StoreError):
        store.update_enrollment(e1, nonsense=1)


def test_action_log_intent_then_outcome(store: Store) -> None:
    common = dict(sequence="s", revision="r", identity="id_a", action="send_message")
    key = store.log_intent(enrollment_id=7, step="msg", attempt=0, at=T0, **common)  # type: ignore[arg-type]
    assert key == "7:msg:0"
    with pytest.raises(StoreError):
        store.log_intent(enrollment_id=7, step="msg", attempt=0, at=T0, **common)  # type: ignore[arg-type]
    assert [a.idempotency_key for a in store.pending_intents()] == ["7:msg:0"]
    store.log_outcome(key, "done", at=T0 + timedelta(minutes=1), label="ok", response={"a": 1})
    assert store.pending_intents() == []
    (row,) = store.actions(enrollment_id=7)
    assert (row.status, row.label, row.response) == ("done", "ok", {"a": 1})
    assert store.action_times("id_a", "send_message", T0) == [T0 + timedelta(minutes=1)]
    assert store.action_times("id_a", "send_message", T0 + timedelta(minutes=1)) == []


def test_a_workflow_s_actions_count_once_per_key_in_the_action_log(store: Store) -> None:
    # a fan-out child taken twice for the same run (a crash before its record) counts once;
    # its next attempt counts again; the runner's limit usage reads them beside a sequence's
    for _ in range(2):
        store.log_workflow_actions("fan[ada]", "abc123:1", "acct-alice", {"connect": 1},
                                   at=T0)
    store.log_workflow_actions("fan[ada]", "abc123:2", "acct-alice", {"connect": 1},
                               at=T0 + timedelta(minutes=1))
    store.log_workflow_actions("fan[bob]", "def456:1", "acct-alice", {}, at=T0)
    assert store.action_times("acct-alice", "connect", T0 - timedelta(hours=1)) == [
        T0, T0 + timedelta(minutes=1)]
    assert store.pending_intents() == []  # done: nothing for recovery to settle


def test_action_log_bounds_a_large_provider_answer(store: Store) -> None:
    common = dict(sequence="s", revision="r", identity="id_a", action="visit_profile")
    small = store.log_intent(enrollment_id=1, step="v", attempt=0, at=T0, **common)  # type: ignore[arg-type]
    large = store.log_intent(enrollment_id=2, step="v", attempt=0, at=T0, **common)  # type: ignore[arg-type]
    answer = {"id": 7, "nested": {"a": [1, 2]}, "text": "é" * 20}
    store.write_batch(outcomes=[
        {"key": small, "status": "done", "label": "ok", "response": answer, "finished_at": T0},
        {"key": large, "status": "done", "label": "ok", "finished_at": T0,
         "response": {f"k{i}": "x" * 1000 for i in range(40)}},
    ])
    kept = {a.idempotency_key: a.response for a in store.actions()}
    assert kept[small] == answer  # small answers are kept as they came
    assert len(kept[large]) == 20 and all(len(v) == 500 for v in kept[large].values())


def test_outcome_and_transition_commit_together(store: Store) -> None:
    lead = store.upsert_lead("https://www.linkedin.com/in/a", {})
    e = store.enroll(lead, "s", "r", "id_a", "visit", T0)
    assert e is not None
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.update_enrollment(e, state="connect", conn=conn)
        store.record_event("transition", "u", enrollment_id=e, conn=conn)
        raise RuntimeError("crash mid-transaction")
    assert store.get_enrollment(e).state == "visit"  # type: ignore[union-attr]
    assert store.events() == []


def test_events_caches_identities_dnc(store: Store) -> None:
    store.record_event(
        "transition",
        "https://www.linkedin.com/in/a",
        {"label": "ok"},
        at=T0,
        enrollment_id=1,
        from_state="visit",
        to_state="connect",
        trigger="ok",
        revision="r",
    )
    store.record_event("note", "other")
    (ev,) = store.events("https://www.linkedin.com/in/a")
    assert (ev.from_state, ev.to_state, ev.trigger, ev.data, ev.at) == (
        "visit",
        "connect",
        "ok",
        {"label": "ok"},
        T0,
    )
    store.put_conversation("id_a", "u1", last_sender_is_us=True, last_activity_at=T0)
    store.put_conversation(
        "id_a", "u1", last_sender_is_us=False, last_activity_at=T0, first_sender_is_us=True
    )
    conv = store.conversations("id_a")["u1"]
    assert (conv.last_sender_is_us, conv.first_sender_is_us) == (False, True)
    store.put_connection("id_a", "u1", "pending", at=T0)
    assert store.connection("id_a", "u1") == ("pending", T0)
    store.put_identity("id_a", "edges")
    store.put_identity("id_a", "edges", profile_id="me_1")
    store.set_identity_status("id_a", "auth_expired", "AUTH_EXPIRED")
    ident = store.get_identity("id_a")
    assert ident is not None and (ident.profile_id, ident.status) == ("me_1", "auth_expired")
    with pytest.raises(StoreError):
        store.set_identity_status("id_a", "weird")
    store.add_do_not_contact("u2", "asked")
    assert store.is_do_not_contact("u2") and not store.is_do_not_contact("u1")
    assert store.do_not_contact() == {"u2": "asked"}
    # a tick asks only for its due leads (chunked past 500 URLs)
    assert store.do_not_contact([f"u{i}" for i in range(1200)]) == {"u2": "asked"}
    assert store.do_not_contact(["u1", "u3"]) == {}
    assert store.remove_do_not_contact("u2")


def test_batched_intents_and_writes(store: Store) -> None:
    lead = store.upsert_lead("https://www.linkedin.com/in/a", {})
    e = store.enroll(lead, "s", "r", "id_a", "visit", T0)
    assert e is not None
    base = {
        "enrollment_id": e,
        "sequence": "s",
        "revision": "r",
        "identity": "id_a",
        "action": "visit_profile",
        "at": T0,
    }
    keys = store.log_intents(
        [
            {**base, "step": "visit"},
            {**base, "step": "visit"},
            {**base, "step": "connect", "request": {"note": "hi"}},
        ]
    )
    assert keys == [f"{e}:visit:0", f"{e}:visit:1", f"{e}:connect:0"]
    assert store.log_intents([{**base, "step": "visit"}]) == [f"{e}:visit:2"]
    later = T0 + timedelta(hours=1)
    store.write_batch(
        outcomes=[
            {
                "key": keys[0],
                "status": "done",
                "label": "ok",
                "response": {"x": 1},
                "finished_at": later,
            }
        ],
        transitions=[
            {
                "id": e,
                "state": "connect",
                "next_due_at": later,
                "step_entered_at": later,
                "attempts": 0,
                "last_error": None,
            }
        ],
        events=[
            {
                "kind": "transition",
                "subject": "u",
                "at": later,
                "enrollment_id": e,
                "from_state": "visit",
                "to_state": "connect",
                "trigger": "ok",
            }
        ],
        conversations=[
            {
                "identity": "id_a",
                "profile_url": "u",
                "last_sender_is_us": True,
                "last_activity_at": later,
                "first_sender_is_us": None,
            }
        ],
        connections=[
            {"identity": "id_a", "profile_url": "u", "status": "pending", "checked_at": later}
        ],
    )
    store.write_batch(
        reschedules=[{"id": e, "next_due_at": None, "attempts": 2, "last_error": "x"}]
    )
    row = store.get_enrollment(e)
    assert row is not None and (row.state, row.next_due_at, row.attempts) == ("connect", None, 2)
    assert [a.status for a in store.actions(enrollment_id=e)] == [
        "done",
        "intent",
        "intent",
        "intent",
    ]
    assert store.connection_statuses("id_a") == {"u": "pending"}
    assert store.conversations("id_a")["u"].last_sender_is_us
    assert store.events(enrollment_id=e)[0].to_state == "connect"


def test_upgrade_from_0001_keeps_open_intents_and_events(tmp_path: Path) -> None:
    """A store made before the partial indexes migrates in place and loses nothing."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(sa.text(
            "INSERT INTO action_log (idempotency_key, enrollment_id, sequence, revision, step, "
            "attempt, identity, action, status, created_at) VALUES "
            "('7:visit:0', 7, 's', 'r', 'visit', 0, 'id-1', 'visit_profile', 'intent', "
            "'2026-01-05 09:00:00.000000')"))
        conn.execute(sa.text(
            "INSERT INTO events (at, enrollment_id, subject, kind) VALUES "
            "('2026-01-05 09:00:00.000000', NULL, 'identity:id-1', 'identity_paused')"))
    engine.dispose()
    s = Store.open(url)
    try:
        assert [a.idempotency_key for a in s.pending_intents()] == ["7:visit:0"]
        assert [e.kind for e in s.events("identity:id-1", unlinked=True)] == ["identity_paused"]
        with s.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    finally:
        s.close()


def test_recover_and_why_read_through_the_partial_indexes(tmp_path: Path) -> None:
    """The queries recover and `why` run are served by the partial indexes (query plans)."""
    s = Store.open(None, tmp_path)
    seen: list[str] = []

    def capture(statement: str) -> None:  # what reaches SQLite, fast path or not
        if "action_log" in statement or "FROM events" in statement:
            seen.append(statement)

    s.engine.dispose()  # new connections, each traced
    sa.event.listen(s.engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(capture))
    try:
        key = s.log_intent(enrollment_id=1, sequence="seq", revision="rev", step="visit",
                           attempt=None, identity="id-1", action="visit_profile", at=T0)
        seen.clear()
        assert [a.idempotency_key for a in s.pending_intents()] == [key]
        s.events("identity:id-1", unlinked=True)
        queries = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
        with s.engine.connect() as conn:
            db = conn.connection.driver_connection
            plans = [" ".join(str(r) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
                     for sql in queries]
        assert "ix_action_log_open_intents" in plans[0]
        assert "ix_events_unlinked_subject" in plans[1]
        s.log_outcome(key, status="done", label="ok", response={}, at=T0)
        assert s.pending_intents() == []  # it left the partial index with its outcome
    finally:
        s.close()


def _held_by(store: Store, holder: str) -> None:
    now = datetime.now(UTC)
    with store.transaction() as conn:
        conn.execute(t.locks.insert().values(name="run", holder=holder, acquired_at=now,
                                             expires_at=now + timedelta(minutes=30)))


def test_a_lock_held_by_a_dead_process_of_this_host_is_free_at_once(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    store = Store.open(None, tmp_path / ".seqrun")
    dead = f"{socket.gethostname()}:{gone.pid}:dead0000:{_pid_ns()}"
    _held_by(store, dead)
    assert store.live_lock_holder("run") is None
    with store.lock("run") as held:  # not "held by HOST:PID" for the TTL's 30 minutes
        assert held.holder != dead
    store.close()


def gone_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_lock_of_a_live_process_or_another_host_waits_for_its_ttl(tmp_path: Path) -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        here = socket.gethostname()
        for holder in (
            f"{here}:{alive.pid}:live0000:{_pid_ns()}",  # alive
            "elsewhere:1:far00000:1",  # another host
            f"{here}:{gone_pid()}:ctr00000:other-namespace",  # same name, another container
        ):
            store = Store.open(None, tmp_path / holder.replace(":", "_"))
            _held_by(store, holder)
            assert store.live_lock_holder("run") == holder
            with pytest.raises(LockError, match="held by"), store.lock("run"):
                pass
            store.close()
    finally:
        alive.kill()
        alive.wait()


def test_enrollment_ids_of_many_leads_in_one_pass(store: Store) -> None:
    # more than 5,000 ids (an import) are looked up in one pass over the sequence; the
    # answer is the same as the IN queries': only the asked leads, only this sequence
    store.put_sequence("s", "Sequence", "edges", "rev1")
    store.put_sequence("t", "Sequence", "edges", "rev1")
    urls = [f"https://www.linkedin.com/in/m{i}" for i in range(1, 6_003)]
    assert list(store.insert_leads(urls, ["{}"] * len(urls))) == list(range(1, 6_003))
    same = {"sequence": "s", "revision": "rev1", "identity": "id_a", "state": "visit",
            "next_due_at": T0, "attempts": 0, "step_entered_at": T0, "paused": False,
            "last_error": None}
    store.insert_enrollments(Columns(same, {"lead_id": range(1, 6_002)}))
    store.insert_enrollments(Columns({**same, "sequence": "t"}, {"lead_id": [1]}))
    asked = list(range(2, 6_003))  # 6,002 is not enrolled
    many = store.enrollment_ids("s", asked)
    few = store.enrollment_ids("s", asked[:100])
    assert len(many) == 6_000 and 1 not in many and 6_002 not in many
    assert all(many[k] == v for k, v in few.items()) and len(few) == 100
    assert store.enrollment_ids("t", range(1, 6_003)) == {1: 6_002}


def test_a_missing_database_driver_names_the_extra(tmp_path: Path) -> None:
    """A URL whose driver is not installed says what to install, not a bare ImportError."""
    import importlib.util

    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here")
    with pytest.raises(StoreError, match=r"pip install 'seqrun\[postgres\]'"):
        Store.open("postgresql+psycopg2://u@db.example/seqrun", tmp_path)


def test_noted_waits_rewrite_the_entering_event_or_fall_back(store: Store) -> None:
    """write_batch(notes=...): a wait is noted on the event that put the enrollment at its
    step (found by enrollment, time and destination; its other data kept), no row added;
    a note whose event is not there writes its fallback event instead (nothing lost)."""
    lead = store.upsert_lead("https://www.linkedin.com/in/n", {})
    eid = store.enroll(lead, "s", "rev1", "id_a", "visit", T0)
    assert eid is not None
    moved = {"kind": "transition", "subject": "https://www.linkedin.com/in/n", "at": T0,
             "enrollment_id": eid, "from_state": "visit", "to_state": "connect",
             "trigger": "done", "revision": "rev1", "data": {"action": "visit_profile"}}
    other = {**moved, "at": T0 + timedelta(seconds=1), "from_state": "connect",
             "to_state": "accepted", "data": None}
    store.write_batch(events=[moved, other])
    before = len(store.events(enrollment_id=eid))
    fallback = {"kind": "postponed", "subject": "https://www.linkedin.com/in/n",
                "at": T0 + timedelta(hours=1), "enrollment_id": eid, "from_state": "x",
                "data": {"reason": "limit"}}
    store.write_batch(notes=[
        {"enrollment_id": eid, "at": T0, "to_state": "connect",
         "waiting": {"reason": "limit"}, "fallback": fallback}])
    events = store.events(enrollment_id=eid)
    assert len(events) == before
    by_state = {e.to_state: e.data for e in events if e.kind == "transition"}
    assert by_state["connect"] == {"action": "visit_profile", "waiting": {"reason": "limit"}}
    assert by_state["accepted"] is None
    store.write_batch(notes=[  # no event entered "x" at that time: the fallback is written
        {"enrollment_id": eid, "at": T0, "to_state": "x", "waiting": {"reason": "limit"},
         "fallback": fallback}])
    assert [e.data for e in store.events(enrollment_id=eid) if e.kind == "postponed"] == [
        {"reason": "limit"}]


def test_bulk_inserts_return_the_ids_stored_and_later_rows_take_new_ones(store: Store) -> None:
    """insert_leads / insert_enrollments give their rows ids themselves (Store.new_ids:
    SQLite's next rowids, PostgreSQL's sequence): the ids returned are the rows' own, and a
    row inserted afterwards with a default id takes another one."""
    store.put_sequence("s", "Sequence", "edges", "rev1")
    first = store.upsert_lead("https://www.linkedin.com/in/before", {})
    urls = [f"https://www.linkedin.com/in/b{i}" for i in range(5)]
    ids = store.insert_leads(urls, [f'{{"n": {i}}}' for i in range(5)])
    assert store.lead_ids(urls) == dict(zip(urls, ids, strict=True)) and first not in ids
    assert store.leads_by_ids([ids[3]])[ids[3]].data == {"n": 3}
    after = store.upsert_lead("https://www.linkedin.com/in/after", {})
    assert after not in (first, *ids)
    same = {"sequence": "s", "revision": "rev1", "state": "visit", "next_due_at": T0,
            "attempts": 0, "step_entered_at": T0, "paused": False, "last_error": None}
    eids = store.insert_enrollments(Columns(same, {"lead_id": ids, "identity": ["a"] * 5}))
    assert store.enrollment_ids("s", ids) == dict(zip(ids, eids, strict=True))
    later = store.enroll(after, "s", "rev1", "a", "visit", T0)
    assert later is not None and later not in eids
