"""The store's SQLite fast path (driver-level statements for the runner's hot writes and
reads) stores exactly what the SQLAlchemy path stores, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import StoreError
from engine.store import Store
from engine.store import tables as t
from engine.store.codecs import db_time, py_time

T = datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


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


def dump(store: Store) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with store.engine.connect() as c:
        for table in (t.leads, t.enrollments, t.action_log, t.events, t.conversation_cache,
                      t.connection_cache):
            text = sa.text(f"SELECT * FROM {table.name} ORDER BY 1, 2")
            out[table.name] = [tuple(r) for r in c.execute(text)]
    return out


def test_fast_path_stores_what_sqlalchemy_stores(tmp_path: Path) -> None:
    fast = Store.open(None, tmp_path / "fast")
    slow = Store.open(None, tmp_path / "slow")
    slow.fast = None  # the SQLAlchemy path
    assert fast.fast
    exercise(fast)
    exercise(slow)
    assert dump(fast) == dump(slow)
    for s in (fast, slow):
        due = s.due_enrollments(T + timedelta(days=1))
        assert [(e.state, e.next_due_at) for e in due] == [("hello", T + timedelta(hours=1))]
        assert due[0].next_due_at is not None and due[0].next_due_at.tzinfo is UTC
        assert s.due_enrollments(T + timedelta(minutes=59)) == []
        assert {lead.profile_url: dict(lead.data) for lead in s.leads_by_ids([1, 2]).values()} == {
            "https://www.linkedin.com/in/ana": {"first_name": "Ana"},
            "https://www.linkedin.com/in/bob": {},
        }
    assert fast.due_enrollments(T + timedelta(days=1)) == slow.due_enrollments(
        T + timedelta(days=1)
    )
    (pending,) = fast.pending_intents()
    assert pending == slow.pending_intents()[0]
    assert (pending.step, pending.created_at) == ("hello", T + timedelta(hours=1))
    assert pending.created_at.tzinfo is UTC
    def identities(store: Store) -> list[tuple[object, ...]]:
        return [(i.id, i.provider, i.profile_id, i.status, i.updated_at is not None)
                for i in store.list_identities()]

    assert identities(fast) == identities(slow) == [
        ("id-1", "edges", "me-1", "active", True), ("id-2", "edges", None, "active", True)]
    one = fast.get_identity("id-1")
    assert one == fast.list_identities()[0] and one.updated_at is not None
    assert one.updated_at.tzinfo is UTC
    assert fast.get_identity("nobody") is None
    assert fast.kv_get("runtime", "paused_all") == slow.kv_get("runtime", "paused_all") == {
        "by": "ops"}
    assert fast.kv_get("runtime", "nothing") is None
    urls = ["https://www.linkedin.com/in/ana", "https://www.linkedin.com/in/bob"]
    assert fast.do_not_contact(urls) == slow.do_not_contact(urls) == {urls[1]: "asked"}
    since = T - timedelta(days=1)
    assert fast.action_times("id-1", "visit_profile", since) == slow.action_times(
        "id-1", "visit_profile", since
    ) == [T + timedelta(hours=1)]
    assert fast.conversations("id-1") == slow.conversations("id-1")
    assert fast.conversations("id-1")["https://www.linkedin.com/in/ana"].first_sender_is_us
    # attempt numbers continue from what is logged, on both paths
    for s in (fast, slow):
        again = s.log_intents([{"enrollment_id": 1, "sequence": "s", "revision": "rev",
                                "step": "visit", "identity": "id-1", "action": "visit_profile",
                                "at": T}])
        assert again == ["1:visit:1"]


@pytest.mark.parametrize("fast", [True, False])
def test_both_paths_refuse_a_reused_key_and_naive_times(tmp_path: Path, fast: bool) -> None:
    store = Store.open(None, tmp_path)
    if not fast:
        store.fast = None  # the SQLAlchemy path
    lead = store.upsert_lead("https://www.linkedin.com/in/ana", {})
    eid = store.enroll(lead, "s", "rev", "id-1", "visit", T)
    assert eid is not None
    row = {"enrollment_id": eid, "sequence": "s", "revision": "rev", "step": "visit",
           "identity": "id-1", "action": "visit_profile", "at": T}
    store.log_intents([row])
    with store.engine.begin() as c:  # a key taken behind the store's back
        c.execute(t.action_log.update().values(step="moved"))
    with pytest.raises(StoreError):
        store.log_intents([row, row])
    with pytest.raises((ValueError, sa.exc.StatementError)):
        store.write_batch(reschedules=[{"id": eid, "next_due_at": datetime(2026, 1, 1),
                                        "attempts": 0, "last_error": None}])


def test_grouped_updates_store_what_one_update_a_row_stores(tmp_path: Path) -> None:
    """A wave's transitions and reschedules with equal values go out as one UPDATE ... IN
    (padded to a power of two); the rows end up exactly as the SQLAlchemy path leaves them."""
    stores = {name: Store.open(None, tmp_path / name) for name in ("fast", "slow")}
    stores["slow"].fast = None  # the SQLAlchemy path
    later = T + timedelta(hours=1)
    for s in stores.values():
        ids = []
        for i in range(11):
            lead = s.upsert_lead(f"https://www.linkedin.com/in/p{i}", {})
            eid = s.enroll(lead, "s", "rev", "id-1", "visit", T)
            assert eid is not None
            ids.append(eid)
        done = {"state": "completed", "next_due_at": None, "step_entered_at": later,
                "attempts": 0, "last_error": None}
        s.write_batch(
            transitions=[{"id": e, **done} for e in ids[:5]]  # a group of 5 (padded to 8)
            + [{"id": ids[5], **done, "state": "failed", "last_error": "x"}],  # a single
            reschedules=[{"id": e, "next_due_at": later, "attempts": 1, "last_error": "wait"}
                         for e in ids[6:9]]  # a group of 3 (padded to 4)
            + [{"id": e, "next_due_at": later + timedelta(minutes=e), "attempts": 0,
                "last_error": None} for e in ids[9:]],  # all different
        )
    assert dump(stores["fast"]) == dump(stores["slow"])
    states = [e.state for e in stores["fast"].enrollments()]
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
