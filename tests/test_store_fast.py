"""The store's fast path (driver-level statements for the runner's hot writes and reads,
one path with a thin layer per database) stores the same rows on SQLite and on PostgreSQL,
and what it writes reads back as SQLAlchemy's path writes it (times, JSON)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import StoreError
from engine.store import Store
from engine.store import tables as t
from engine.store.codecs import db_time, py_time
from engine.store.db import throwaway_store
from engine.store.rows import Columns

T = datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


@pytest.fixture
def pg_store(pg_url: str, tmp_path: Path) -> Iterator[Store]:
    """A store on PostgreSQL in a schema of its own (skipped without a server)."""
    s = Store.open(pg_url, tmp_path)
    yield s
    s.close()


def exercise(store: Store) -> None:
    lead = store.upsert_lead("https://www.linkedin.com/in/ana", {"first_name": "Ana"})
    other = store.upsert_lead("https://www.linkedin.com/in/bob", {})
    e1 = store.enroll(lead, "s", "rev", "id-1", "visit", T)
    e2 = store.enroll(other, "s", "rev", "id-1", "visit", T.replace(microsecond=0))
    assert e1 is not None and e2 is not None
    keys = store.log_intents(
        [
            {"enrollment_id": e1, "sequence": "s", "revision": "rev", "step": "visit",
             "identity": "id-1", "action": "visit_profile", "at": T, "request": {}},
            {"enrollment_id": e2, "sequence": "s", "revision": "rev", "step": "visit",
             "identity": "id-1", "action": "visit_profile", "at": T.astimezone(PARIS),
             "request": {"text": "Hi"}},
        ]
    )
    assert keys == [f"{e1}:visit:0", f"{e2}:visit:0"]
    later = T + timedelta(hours=1)
    store.write_batch(
        outcomes=[
            {"key": keys[0], "status": "done", "label": "ok", "response": {"a": 1},
             "finished_at": later},
            {"key": keys[1], "status": "failed", "label": "X", "response": None,
             "finished_at": later.astimezone(PARIS)},
        ],
        transitions=[
            {"id": e1, "state": "hello", "next_due_at": later, "step_entered_at": later,
             "attempts": 0, "last_error": None},
        ],
        reschedules=[{"id": e2, "next_due_at": None, "attempts": 2, "last_error": "boom"}],
        events=[
            {"kind": "transition", "subject": "https://www.linkedin.com/in/ana",
             "data": {"key": keys[0]}, "at": later, "enrollment_id": e1,
             "from_state": "visit", "to_state": "hello", "trigger": "ok", "revision": "rev"},
        ],
        conversations=[
            {"identity": "id-1", "profile_url": "https://www.linkedin.com/in/ana",
             "last_sender_is_us": True, "last_activity_at": later, "first_sender_is_us": None},
        ],
        connections=[
            {"identity": "id-1", "profile_url": "https://www.linkedin.com/in/bob",
             "status": "pending", "checked_at": later},
        ],
    )
    store.write_batch(  # upserts update in place
        conversations=[
            {"identity": "id-1", "profile_url": "https://www.linkedin.com/in/ana",
             "last_sender_is_us": False, "last_activity_at": later + timedelta(minutes=1),
             "first_sender_is_us": True},
        ],
    )
    store.record_events([{"kind": "note", "subject": "x", "at": later}])
    store.log_intents([{"enrollment_id": e1, "sequence": "s", "revision": "rev",  # left open
                        "step": "hello", "identity": "id-1", "action": "send_message",
                        "at": later.astimezone(PARIS), "request": {"text": "Hi"}}])
    store.put_identity("id-1", "edges", profile_id="me-1")
    store.put_identity("id-2", "edges")
    store.kv_put("runtime", "paused_all", {"by": "ops"})
    store.add_do_not_contact("https://www.linkedin.com/in/bob", "asked")


def _plain(value: object) -> object:
    """A column value as SQLite holds it (PostgreSQL's timestamps as the same naive UTC
    text, its booleans as 0/1), so the two databases' rows compare."""
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    if isinstance(value, bool):
        return int(value)
    return value


def dump(store: Store) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with store.engine.connect() as c:
        for table in (t.leads, t.enrollments, t.action_log, t.events, t.conversation_cache,
                      t.connection_cache):
            text = sa.text(f"SELECT * FROM {table.name} ORDER BY 1, 2")
            out[table.name] = [tuple(_plain(v) for v in r) for r in c.execute(text)]
    return out


def check(s: Store) -> None:
    """What ``exercise`` wrote, read back through the store (fast path and SQLAlchemy's)."""
    due = s.due_enrollments(T + timedelta(days=1))
    assert [(e.state, e.next_due_at) for e in due] == [("hello", T + timedelta(hours=1))]
    assert due[0].next_due_at is not None and due[0].next_due_at.tzinfo is UTC
    assert s.due_enrollments(T + timedelta(minutes=59)) == []
    assert {lead.profile_url: dict(lead.data) for lead in s.leads_by_ids([1, 2]).values()} == {
        "https://www.linkedin.com/in/ana": {"first_name": "Ana"},
        "https://www.linkedin.com/in/bob": {},
    }
    (pending,) = s.pending_intents()
    assert (pending.step, pending.created_at) == ("hello", T + timedelta(hours=1))
    assert pending.created_at.tzinfo is UTC
    identities = [(i.id, i.provider, i.profile_id, i.status, i.updated_at is not None)
                  for i in s.list_identities()]
    assert identities == [
        ("id-1", "edges", "me-1", "active", True), ("id-2", "edges", None, "active", True)]
    one = s.get_identity("id-1")
    assert one == s.list_identities()[0] and one.updated_at is not None
    assert one.updated_at.tzinfo is UTC
    assert s.get_identity("nobody") is None
    assert s.kv_get("runtime", "paused_all") == {"by": "ops"}
    assert s.kv_get("runtime", "nothing") is None
    urls = ["https://www.linkedin.com/in/ana", "https://www.linkedin.com/in/bob"]
    assert s.do_not_contact(urls) == {urls[1]: "asked"}
    since = T - timedelta(days=1)
    assert s.action_times("id-1", "visit_profile", since) == [T + timedelta(hours=1)]
    conv = s.conversations("id-1")["https://www.linkedin.com/in/ana"]
    assert conv.first_sender_is_us and not conv.last_sender_is_us
    assert conv.last_activity_at == T + timedelta(hours=1, minutes=1)
    # what SQLAlchemy's path reads of the fast path's rows: aware UTC times, the same values
    ana = s.actions(enrollment_id=1)[0]
    assert (ana.status, ana.finished_at) == ("done", T + timedelta(hours=1))


def test_the_fast_path_reads_back_what_it_writes(any_store: Store) -> None:
    exercise(any_store)
    check(any_store)
    # attempt numbers continue from what is logged (the insert numbers them)
    again = any_store.log_intents([{"enrollment_id": 1, "sequence": "s", "revision": "rev",
                                    "step": "visit", "identity": "id-1",
                                    "action": "visit_profile", "at": T}])
    assert again == ["1:visit:1"]


def test_sqlite_and_postgresql_store_the_same_rows(tmp_path: Path, pg_store: Store) -> None:
    lite = Store.open(None, tmp_path / "sqlite")
    exercise(lite)
    exercise(pg_store)
    assert dump(lite) == dump(pg_store)
    at = T + timedelta(days=1)
    assert lite.due_enrollments(at) == pg_store.due_enrollments(at)
    assert lite.pending_intents() == pg_store.pending_intents()
    assert lite.conversations("id-1") == pg_store.conversations("id-1")
    lite.close()


def test_a_reused_key_and_naive_times_are_refused(any_store: Store) -> None:
    store = any_store
    lead = store.upsert_lead("https://www.linkedin.com/in/ana", {})
    eid = store.enroll(lead, "s", "rev", "id-1", "visit", T)
    assert eid is not None
    row = {"enrollment_id": eid, "sequence": "s", "revision": "rev", "step": "visit",
           "identity": "id-1", "action": "visit_profile", "at": T}
    store.log_intents([row])
    with store.engine.begin() as c:  # a key taken behind the store's back
        c.execute(t.action_log.update().values(step="moved"))
    outcome = {"key": f"{eid}:moved:0", "status": "done", "label": "ok", "response": None,
               "finished_at": T}
    with pytest.raises(StoreError):  # and nothing of the batch is written
        store.write_batch(outcomes=[outcome], intents=[row, row])
    assert [a.status for a in store.actions(enrollment_id=eid)] == ["intent"]
    with pytest.raises((ValueError, sa.exc.StatementError)):
        store.write_batch(reschedules=[{"id": eid, "next_due_at": datetime(2026, 1, 1),
                                        "attempts": 0, "last_error": None}])


def test_grouped_updates_store_what_one_update_a_row_stores(tmp_path: Path) -> None:
    """A wave's transitions and reschedules with equal values go out as one UPDATE ... IN
    (padded to a power of two); the rows end up exactly as one SQLAlchemy UPDATE a row
    leaves them."""
    stores = {name: Store.open(None, tmp_path / name) for name in ("grouped", "one_a_row")}
    later = T + timedelta(hours=1)
    for name, s in stores.items():
        ids = []
        for i in range(11):
            lead = s.upsert_lead(f"https://www.linkedin.com/in/p{i}", {})
            eid = s.enroll(lead, "s", "rev", "id-1", "visit", T)
            assert eid is not None
            ids.append(eid)
        done = {"state": "completed", "next_due_at": None, "step_entered_at": later,
                "attempts": 0, "last_error": None}
        transitions = ([{"id": e, **done} for e in ids[:5]]  # a group of 5 (padded to 8)
                       + [{"id": ids[5], **done, "state": "failed", "last_error": "x"}])
        reschedules = ([{"id": e, "next_due_at": later, "attempts": 1, "last_error": "wait"}
                        for e in ids[6:9]]  # a group of 3 (padded to 4)
                       + [{"id": e, "next_due_at": later + timedelta(minutes=e), "attempts": 0,
                           "last_error": None} for e in ids[9:]])  # all different
        if name == "grouped":
            s.write_batch(transitions=transitions, reschedules=reschedules)
            continue
        for row in transitions + reschedules:
            values = {k: v for k, v in row.items() if k != "id"}
            s.update_enrollment(row["id"], **values, waiting=None)
    assert dump(stores["grouped"]) == dump(stores["one_a_row"])
    states = [e.state for e in stores["grouped"].enrollments()]
    assert states == ["completed"] * 5 + ["failed"] + ["visit"] * 5
    for s in stores.values():
        s.close()


def test_json_columns_read_what_the_stdlib_wrote_and_write_what_orjson_refuses(
    tmp_path: Path,
) -> None:
    s = Store.open(None, tmp_path)
    try:
        s.kv_put("ns", "big", {"n": 2**70, "ok": [1, 2]})  # beyond orjson's 64-bit integers
        assert s.kv_get("ns", "big") == {"n": 2**70, "ok": [1, 2]}
        with s.engine.begin() as conn:  # a row the standard encoder wrote: NaN and Infinity
            conn.execute(sa.text("UPDATE kv SET value_json = :v WHERE key = 'big'"),
                         {"v": '{"x": NaN, "y": Infinity}'})
        value = s.kv_get("ns", "big")
        assert value["y"] == float("inf") and value["x"] != value["x"]
    finally:
        s.close()


@given(st.datetimes(timezones=st.sampled_from([UTC, PARIS, timezone(timedelta(hours=-7))])))
def test_fast_time_text_is_sqlalchemys(value: datetime) -> None:
    """The fast path's time text is exactly what the SQLAlchemy path stores (naive UTC)."""
    try:
        expected = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    except OverflowError:  # pragma: no cover - a time at the edge of the calendar
        return
    assert db_time(value) == expected
    back = py_time(expected)
    assert back == value and back is not None and back.tzinfo is UTC  # and back, aware UTC


def test_transactions_reuse_one_connection_and_others_take_their_own(any_store: Store) -> None:
    """The opening thread's transactions reuse one connection (the runner commits once a
    call); another thread, or a transaction opened inside one, takes its own as before."""
    import threading

    store = any_store
    with store.transaction() as first:
        pass
    with store.transaction() as again:
        assert again is first
        store.kv_put("ns", "outer", 1, conn=again)
    done: list[object] = []

    def elsewhere() -> None:
        with store.transaction() as other:
            done.append(other)
            store.kv_put("ns", "thread", 2, conn=other)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert done and done[0] is not first
    with pytest.raises(RuntimeError), store.transaction() as conn:  # rolled back
        store.kv_put("ns", "rolled", 3, conn=conn)
        raise RuntimeError("boom")
    assert (store.kv_get("ns", "outer"), store.kv_get("ns", "thread"),
            store.kv_get("ns", "rolled")) == (1, 2, None)
    store.close()  # the kept connection is closed with the store
    assert store._held is None


def test_reads_take_no_transaction_of_their_own_on_postgresql(any_store: Store) -> None:
    """A span of reads (Store.read) on PostgreSQL sends no BEGIN and no COMMIT: between
    its statements the connection is outside any transaction, each statement reads what
    was committed before it; the store's next transaction is an ordinary one again (its
    failure rolls back all it wrote). SQLite's reads take an ordinary transaction."""
    store = any_store
    store.kv_put("ns", "k", 1)
    with store.read() as c:
        db = c.connection.dbapi_connection
        assert store.kv_get("ns", "k", conn=c) == 1
        if store.fast.d.name == "postgresql":
            assert db.info.transaction_status == db.info.transaction_status.IDLE
            with store.transaction() as other:  # committed meanwhile: the next read sees it
                store.kv_put("ns", "k", 2, conn=other)
        else:
            assert c.in_transaction()
    if store.fast.d.name == "postgresql":
        assert store.kv_get("ns", "k") == 2
        assert not db.autocommit
    with pytest.raises(RuntimeError), store.transaction() as c:
        store.kv_put("ns", "a", 1, conn=c)
        store.kv_put("ns", "b", 2, conn=c)
        raise RuntimeError("boom")
    assert (store.kv_get("ns", "a"), store.kv_get("ns", "b")) == (None, None)


def test_a_pipelined_transaction_is_all_or_nothing(any_store: Store) -> None:
    """A batch of writes in one round trip on PostgreSQL (the statements in one pipeline,
    one transaction up to its Sync): what failed, in the block or in the database, leaves
    nothing written, a read inside included (it does not end the transaction), and the store
    goes on."""
    store = any_store
    lead = store.upsert_lead("https://www.linkedin.com/in/ana", {})
    eid = store.enroll(lead, "s", "rev", "id-1", "visit", T)
    assert eid is not None
    event = {"subject": "u", "kind": "note", "enrollment_id": eid, "at": T}
    with pytest.raises(RuntimeError), store.transaction(pipelined=True) as c:
        store.fast.insert_events(c, [event])  # queued, then the block fails
        raise RuntimeError("crash mid-batch")
    assert store.events() == []
    row = {"enrollment_id": eid, "sequence": "s", "revision": "rev", "step": "visit",
           "identity": "id-1", "action": "visit_profile", "at": T}
    (key,) = store.log_intents([row])
    taken = Columns(
        {"enrollment_id": eid, "sequence": "s", "revision": "rev", "step": "visit",
         "attempt": 0, "identity": "id-1", "action": "visit_profile", "status": "intent",
         "created_at": T},
        {"idempotency_key": [key]})
    # the key taken (SQLite's driver says so at once, PostgreSQL at the pipeline's end), with
    # or without a read between the writes (a Flush, not a Sync): nothing written
    for read_between in (False, True):
        with pytest.raises((StoreError, sqlite3.IntegrityError)), store.transaction(
                pipelined=True) as c:
            store.fast.insert_events(c, [event])
            if read_between:
                assert store.lead_ids(["https://www.linkedin.com/in/ana"], conn=c) == {
                    "https://www.linkedin.com/in/ana": lead}
            store.fast.insert_columns(c, t.action_log, taken)
        assert store.events() == []
    assert store.write_batch(events=[event], intents=[row]) == [f"{eid}:visit:1"]
    assert [e.kind for e in store.events()] == ["note"]


def test_pull_forward_moves_a_lead_only_while_it_waits_so(any_store: Store) -> None:
    store = any_store
    lead = store.upsert_lead("https://www.linkedin.com/in/ana", {})
    eid = store.enroll(lead, "s", "rev", "id-1", "visit", T)
    assert eid is not None
    later = T + timedelta(hours=5)
    store.write_batch(reschedules=[{"id": eid, "next_due_at": later, "attempts": 0,
                                    "last_error": None, "waiting": "limit"}])
    assert not store.pull_forward(eid, "window", later, T)  # waits for something else
    assert not store.pull_forward(eid, "limit", T, T)  # not at that instant
    assert store.get_enrollment(eid).next_due_at == later  # type: ignore[union-attr]
    assert store.pull_forward(eid, "limit", later, T + timedelta(hours=1))
    assert store.get_enrollment(eid).next_due_at == T + timedelta(hours=1)  # type: ignore[union-attr]
    # committed, not left open: the next transaction on the kept connection sees it
    with store.transaction(pipelined=True) as c:
        assert store.lead_ids(["https://www.linkedin.com/in/ana"], conn=c) == {
            "https://www.linkedin.com/in/ana": lead}
    assert store.get_enrollment(eid).waiting == "limit"  # type: ignore[union-attr]
    if store.engine.dialect.name == "postgresql":  # a hint's commit alone skips the fsync
        def setting(c: sa.Connection) -> Any:
            driver = c.connection.driver_connection
            assert driver is not None
            return driver.execute("SELECT current_setting('synchronous_commit')").fetchone()

        with store.transaction(pipelined=True, durable=False) as c:
            assert setting(c) == ("off",)
        with store.transaction(pipelined=True) as c:
            assert setting(c) == ("on",)


def test_an_intents_commit_waits_for_the_disk_on_sqlite_too(tmp_path: Path) -> None:
    """Commits flush the WAL on SQLite (``synchronous=FULL``), as PostgreSQL's wait for
    theirs: in WAL's NORMAL mode a power cut may lose the last commits, and with them an
    intent whose call was made (a call's commit, :meth:`Store.write_batch`). A hint
    (``durable=False``) and a simulation's store keep NORMAL."""
    def mode(c: sa.Connection) -> int:
        driver = c.connection.driver_connection
        assert driver is not None
        return int(driver.execute("PRAGMA synchronous").fetchone()[0])

    full, normal = 2, 1
    store = Store.open(None, tmp_path / "real")
    lead = store.upsert_lead("https://www.linkedin.com/in/ana", {})
    eid = store.enroll(lead, "s", "rev", "id-1", "visit", T)
    row = {"enrollment_id": eid, "sequence": "s", "revision": "rev", "step": "visit",
           "identity": "id-1", "action": "visit_profile", "at": T}
    with store.transaction(pipelined=True, durable=False) as c:
        assert mode(c) == normal
    assert store.write_batch(intents=[row]) == [f"{eid}:visit:0"]
    with store.read() as c:  # the intent's commit left the kept connection in FULL
        assert mode(c) == full
    with store.transaction(pipelined=True, durable=False) as c:
        assert mode(c) == normal
    with store.transaction() as c:  # any other write: a workflow's record, an import
        assert mode(c) == full
    store.close()
    with throwaway_store():  # seqrun simulate, seqrun test: the store goes with the process
        simulated = Store.open(None, tmp_path / "simulated")
    with simulated.transaction(pipelined=True) as c:
        assert mode(c) == normal
    with simulated.transaction() as c:
        assert mode(c) == normal
    simulated.close()


def test_bulk_inserts_keep_awkward_text_and_shared_times(any_store: Store) -> None:
    """An apply's bulk rows (COPY on PostgreSQL) read back as written: tabs, newlines,
    backslashes, a literal \\N, quotes, non-ASCII; rows sharing one time keep it."""
    store = any_store
    awkward = {"note": "a\tb\nc\\d \\N 'q' \"dq\" é ✓", "empty": "", "none": None}
    urls = [f"https://www.linkedin.com/in/awk-{i}" for i in range(3)]
    ids = store.insert_leads(urls, [json.dumps(awkward)] * 3)
    assert [store.get_lead(i).data for i in ids] == [awkward] * 3  # type: ignore[union-attr]
    store.insert_enrollments(Columns(
        {"sequence": "s", "revision": "r", "identity": "id-1", "state": "visit",
         "next_due_at": T, "attempts": 0, "step_entered_at": T, "paused": False},
        {"lead_id": ids}))
    store.record_events([{"kind": "enrolled", "subject": u, "at": T, "data": awkward}
                         for u in urls])
    assert [e.data for e in store.events()] == [awkward] * 3
    assert {e.at for e in store.events()} == {T}
    assert [e.next_due_at for e in store.due_enrollments(T)] == [T] * 3


def test_the_ticks_reads_on_the_fast_path_read_what_was_written(any_store: Store) -> None:
    """Read every tick on the fast path (issue 19): the pending inbound events (oldest
    first, the consumed ones left out, at most ``limit``, times aware UTC, payload decoded)
    and the sequences (by name, ``paused`` a bool), on SQLite and PostgreSQL alike."""
    from engine.store.inbound import consume_inbound, pending_inbound, record_inbound

    for n in range(3):
        assert record_inbound(any_store, source="edges", kind="integration",
                              dedupe_key=f"edges:int:{n}", subject="ident-a",
                              payload={"event": "AUTH_EXPIRED", "n": n},
                              at=T + timedelta(seconds=n))
    first = pending_inbound(any_store)[0]
    consume_inbound(any_store, first.id, "done", at=T)
    pending = pending_inbound(any_store)
    assert [(r.payload["n"], r.received_at, r.consumed_at) for r in pending] == [
        (1, T + timedelta(seconds=1), None), (2, T + timedelta(seconds=2), None)]
    assert [r.payload["n"] for r in pending_inbound(any_store, limit=1)] == [1]
    any_store.put_sequence("b-seq", "Sequence", "edges", "rev-b")
    any_store.put_sequence("a-seq", "Sequence", "edges", "rev-a")
    any_store.set_sequence_paused("b-seq", True)
    assert [(s.name, s.current_revision, s.paused) for s in any_store.list_sequences()] == [
        ("a-seq", "rev-a", False), ("b-seq", "rev-b", True)]
