"""GroupCommit (engine/run/commits.py): the commits that identities ask for together are one
transaction; one identity's failing commit fails only that identity; a stopped identity's
outcomes are written, its intent is not. On both databases (grouping forced on SQLite, which
commits at once by default)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.run.commits import GroupCommit
from engine.run.state import Writes
from engine.store import Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


@pytest.fixture
def commits(store: Store) -> GroupCommit:
    grouped = GroupCommit(store)
    grouped.at_once = False  # SQLite's default: its tests group as PostgreSQL does
    return grouped


def enrolled(store: Store, name: str, identity: str) -> int:
    lead = store.upsert_lead(f"https://www.linkedin.com/in/{name}", {})
    eid = store.enroll(lead, "s", "rev1", identity, "visit", T0)
    assert eid is not None
    return eid


def intent(eid: int, identity: str) -> dict[str, Any]:
    return {"enrollment_id": eid, "sequence": "s", "revision": "rev1", "step": "visit",
            "identity": identity, "action": "visit_profile", "at": T0, "holder": None,
            "request": {}, "variant": None}


def noted(eid: int, subject: str | None) -> Writes:
    """Buffered writes of one event (``subject`` None: a row the database refuses)."""
    w = Writes()
    w.events.append({"kind": "note", "subject": subject, "at": T0, "enrollment_id": eid,
                     "data": {"n": eid}})
    return w


def stored_keys(store: Store) -> set[str]:
    return {a.idempotency_key for a in store.actions()}


def notes(store: Store, eid: int) -> int:
    return sum(e.kind == "note" for e in store.events(enrollment_id=eid))


async def test_commits_asked_for_together_are_one_transaction(
    store: Store, commits: GroupCommit
) -> None:
    eids = [enrolled(store, f"l{i}", f"id_{i}") for i in range(3)]
    keys = await asyncio.gather(*(commits.commit(noted(e, f"s{e}"), (intent(e, f"id_{i}"),))
                                  for i, e in enumerate(eids)))
    assert keys == [[f"{e}:visit:0"] for e in eids]  # each identity its own key
    assert commits.transactions == 1
    assert stored_keys(store) == {f"{e}:visit:0" for e in eids}
    assert all(notes(store, e) == 1 for e in eids)


async def test_a_failing_commit_fails_only_its_identity(store: Store, commits: GroupCommit) -> None:
    good, bad = enrolled(store, "good", "id_a"), enrolled(store, "bad", "id_b")
    results = await asyncio.gather(
        commits.commit(noted(good, "fine"), (intent(good, "id_a"),)),
        commits.commit(noted(bad, None), (intent(bad, "id_b"),)),
        return_exceptions=True,
    )
    assert results[0] == [f"{good}:visit:0"]
    assert isinstance(results[1], Exception)
    assert commits.transactions == 3  # the group, then each alone
    assert stored_keys(store) == {f"{good}:visit:0"}  # the refused one wrote nothing
    assert notes(store, bad) == 0 and notes(store, good) == 1


async def test_a_stopped_identity_has_its_outcomes_written_not_its_intent(
    store: Store, commits: GroupCommit
) -> None:
    kept, stopped = enrolled(store, "kept", "id_a"), enrolled(store, "stop", "id_b")
    first = asyncio.ensure_future(commits.commit(noted(kept, "k"), (intent(kept, "id_a"),)))
    second = asyncio.ensure_future(commits.commit(noted(stopped, "s"),
                                                  (intent(stopped, "id_b"),)))
    await asyncio.sleep(0)  # both wait for the writer
    second.cancel()
    assert await first == [f"{kept}:visit:0"]
    with pytest.raises(asyncio.CancelledError):
        await second
    assert stored_keys(store) == {f"{kept}:visit:0"}  # no intent for a call never made
    assert notes(store, stopped) == 1  # its buffered writes are


async def test_sqlite_commits_at_once(tmp_path: Any) -> None:
    store = Store.open(None, tmp_path)
    try:
        commits = GroupCommit(store)
        assert commits.at_once
        eids = [enrolled(store, f"l{i}", f"id_{i}") for i in range(2)]
        await asyncio.gather(*(commits.commit(noted(e, "x"), (intent(e, "id"),)) for e in eids))
        assert commits.transactions == 2
        assert stored_keys(store) == {f"{e}:visit:0" for e in eids}
    finally:
        store.close()
