"""Incremental conversation sync (engine.providers.convsync) in the Edges and ConnectSafely
adapters: after the first sweep only the top of the newest-first list is read, yet every
conversation is returned and a reply anywhere in the list is seen."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engine.errors import ProviderError
from engine.providers.connectsafely import ConnectSafelyProvider
from engine.providers.convsync import ConversationSync
from engine.providers.edges.actions import EdgesProvider

ME = 1001
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PAGE = 20


class Inbox:
    """A fake Edges conversation list: newest first, 20 a page, cursor = offset."""

    def __init__(self, n: int) -> None:
        # handle -> (last activity, last sender is us)
        self.convs: dict[str, tuple[datetime, bool]] = {
            f"lead-{i}": (T0 + timedelta(minutes=i), True) for i in range(n)
        }
        self.requests: list[int] = []  # offsets asked for
        self.fail_at: int | None = None
        self.shuffled = False

    def write(self, handle: str, at: datetime, *, us: bool) -> None:
        self.convs[handle] = (at, us)

    def ordered(self) -> list[tuple[str, datetime, bool]]:
        rows = sorted(((h, at, us) for h, (at, us) in self.convs.items()),
                      key=lambda r: (r[1], r[0]), reverse=True)
        if self.shuffled:
            rows.reverse()  # oldest first
        return rows

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("linkedin-me/run/live"):
            return httpx.Response(200, json={"linkedin_profile_id": ME})
        assert "linkedin-extract-conversations" in request.url.path
        offset = int(request.url.params.get("cursor") or 0)
        self.requests.append(offset)
        if self.fail_at is not None and offset >= self.fail_at:
            return httpx.Response(503, json={"error_label": "LK_524", "message": "down"})
        rows = self.ordered()
        page = [
            {
                "participants": [
                    {"linkedin_profile_id": 5000 + i,
                     "linkedin_profile_url": f"https://www.linkedin.com/in/{h}"},
                    {"linkedin_profile_id": ME},
                ],
                "last_message": {"linkedin_profile_id": ME if us else 5000 + i,
                                 "content": "hi", "created_at": at.isoformat()},
                "last_activity_at": at.isoformat(),
            }
            for i, (h, at, us) in enumerate(rows[offset:offset + PAGE])
        ]
        headers = {}
        if offset + PAGE < len(rows):
            headers["X-Pagination-Next"] = (
                f"https://edges.test/v1/actions/linkedin-extract-conversations/run/live"
                f"?cursor={offset + PAGE}"
            )
        return httpx.Response(200, json=page, headers=headers)


def edges(inbox: Inbox) -> EdgesProvider:
    return EdgesProvider(httpx.AsyncClient(base_url="https://edges.test/v1/",
                                           transport=httpx.MockTransport(inbox.handler)))


def by_url(summaries: list[Any]) -> dict[str, Any]:
    return {s.profile_url.rsplit("/", 1)[-1]: s for s in summaries}


async def test_incremental_sync_reads_only_the_top_and_returns_everything() -> None:
    inbox = Inbox(100)
    provider = edges(inbox)
    first = await provider.sync_conversations("id-1")
    assert len(first) == 100 and inbox.requests == [0, 20, 40, 60, 80]  # the first is full
    inbox.requests.clear()
    # nothing moved: one page
    assert len(await provider.sync_conversations("id-1")) == 100
    assert inbox.requests == [0]
    inbox.requests.clear()
    # the oldest conversation gets a reply: it moves to the top and is seen in one page
    inbox.write("lead-0", T0 + timedelta(days=1), us=False)
    convs = by_url(await provider.sync_conversations("id-1"))
    assert inbox.requests == [0]
    assert len(convs) == 100
    assert not convs["lead-0"].last_sender_is_us
    assert convs["lead-0"].last_activity_at == T0 + timedelta(days=1)
    assert convs["lead-99"].last_sender_is_us  # kept from the earlier sweeps


async def test_incremental_sync_pages_until_it_passes_the_mark() -> None:
    inbox = Inbox(100)
    provider = edges(inbox)
    await provider.sync_conversations("id-1")
    later = T0 + timedelta(days=1)
    for i in range(30):  # 30 new conversations, then a reply from an old one
        inbox.write(f"new-{i}", later + timedelta(seconds=i), us=True)
    inbox.write("lead-3", later + timedelta(minutes=5), us=False)
    inbox.requests.clear()
    convs = by_url(await provider.sync_conversations("id-1"))
    assert inbox.requests == [0, 20]  # 31 fresh ones span two pages; the third is not read
    assert len(convs) == 130
    assert not convs["lead-3"].last_sender_is_us


async def test_activity_at_the_mark_or_slightly_before_is_read_again() -> None:
    """A conversation indexed late (its time a little before the last mark) is not missed."""
    inbox = Inbox(100)
    provider = edges(inbox)
    await provider.sync_conversations("id-1")
    newest = T0 + timedelta(minutes=99)
    inbox.write("lead-50", newest - timedelta(minutes=2), us=False)  # within the overlap
    inbox.write("lead-60", newest, us=False)  # the same instant as the mark
    convs = by_url(await provider.sync_conversations("id-1"))
    assert not convs["lead-50"].last_sender_is_us
    assert not convs["lead-60"].last_sender_is_us


async def test_a_list_not_newest_first_is_read_to_its_end() -> None:
    inbox = Inbox(100)
    provider = edges(inbox)
    await provider.sync_conversations("id-1")
    inbox.shuffled = True
    inbox.write("lead-1", T0 + timedelta(days=1), us=False)
    inbox.requests.clear()
    convs = by_url(await provider.sync_conversations("id-1"))
    assert inbox.requests == [0, 20, 40, 60, 80]
    assert not convs["lead-1"].last_sender_is_us


async def test_full_sweep_every_n_syncs_and_on_demand() -> None:
    inbox = Inbox(50)
    provider = edges(inbox)
    provider._conv_sync = ConversationSync(full_every=3)
    pages = []
    for _ in range(6):
        inbox.requests.clear()
        await provider.sync_conversations("id-1")
        pages.append(len(inbox.requests))
    assert pages == [3, 1, 1, 1, 3, 1]
    inbox.requests.clear()
    await provider.sync_conversations("id-1", full=True)
    assert len(inbox.requests) == 3
    # a full sweep forgets conversations that left the list
    del inbox.convs["lead-7"]
    await provider.sync_conversations("id-1", full=True)
    assert "lead-7" not in by_url(await provider.sync_conversations("id-1"))


async def test_a_failed_sync_keeps_the_previous_mark() -> None:
    inbox = Inbox(100)
    provider = edges(inbox)
    await provider.sync_conversations("id-1")
    later = T0 + timedelta(days=1)
    for i in range(25):
        inbox.write(f"new-{i}", later + timedelta(seconds=i), us=True)
    inbox.fail_at = 20
    with pytest.raises(ProviderError):
        await provider.sync_conversations("id-1")
    inbox.fail_at = None
    inbox.write("lead-9", later - timedelta(hours=1), us=False)  # older than the new ones
    convs = by_url(await provider.sync_conversations("id-1"))
    assert not convs["lead-9"].last_sender_is_us
    assert len(convs) == 125


async def test_identities_are_kept_apart() -> None:
    inbox = Inbox(30)
    provider = edges(inbox)
    await provider.sync_conversations("id-1")
    inbox.requests.clear()
    await provider.sync_conversations("id-2")  # first sync of id-2: full
    assert inbox.requests == [0, 20]


# ---- ConnectSafely ------------------------------------------------------------------------


class CsInbox(Inbox):
    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("conversations/sync"):
            return httpx.Response(200, json={"success": True})
        if request.url.path.endswith("conversations/sync/status"):
            return httpx.Response(200, json={"success": True, "status": "completed"})
        assert request.url.path.endswith("/conversations")
        limit = int(request.url.params["limit"])
        offset = int(request.url.params["offset"])
        self.requests.append(offset)
        rows = self.ordered()
        page = [
            {"participantProfileUrl": f"https://www.linkedin.com/in/{h}",
             "lastMessage": {"text": "hi", "fromMe": us, "sentAt": at.isoformat()},
             "lastActivityAt": at.isoformat()}
            for h, at, us in rows[offset:offset + limit]
        ]
        return httpx.Response(200, content=json.dumps(
            {"success": True, "conversations": page, "hasMore": offset + limit < len(rows)}))


async def test_connectsafely_sync_is_incremental_too() -> None:
    inbox = CsInbox(250)  # 100 a page
    provider = ConnectSafelyProvider(httpx.AsyncClient(
        base_url="https://cs.test/linkedin/", transport=httpx.MockTransport(inbox.handler)))
    assert len(await provider.sync_conversations("acc")) == 250
    assert inbox.requests == [0, 100, 200]
    inbox.requests.clear()
    inbox.write("lead-2", T0 + timedelta(days=2), us=False)
    convs = by_url(await provider.sync_conversations("acc"))
    assert inbox.requests == [0]
    assert len(convs) == 250 and not convs["lead-2"].last_sender_is_us
