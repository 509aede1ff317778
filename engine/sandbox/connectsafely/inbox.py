"""Conversations as ConnectSafely serves them: from its "local database", as of the account's
last ``POST /conversations/sync``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.common import JSON, iso, parse_iso
from engine.sandbox.connectsafely.base import ConnectSafelyBase
from engine.sandbox.world import IdentityState, Thread

RECENT_SYNC = timedelta(minutes=1)  # without ``force``, a sync this recent does nothing
#: a sync record's thread id -> number of its messages synced: counted, not compared by time,
#: so a message written in the same (virtual) instant as a sync is still new to the next one
SEEN = "seen"



class Inbox(ConnectSafelyBase):
    """Sync, sync status, the conversation listing and a conversation's messages."""

    def _synced_view(self, ident: IdentityState) -> list[tuple[Thread, int]]:
        """(thread, number of messages visible) as of the account's last sync."""
        rec = self.state["syncs"].get(ident.uid)
        if rec is None:
            return []
        out = []
        for t in self.world.conversations(ident.uid):
            n = _synced_count(rec, t)
            if n:
                out.append((t, n))
        out.sort(key=lambda item: item[0].messages[item[1] - 1].created_at, reverse=True)
        return out

    async def sync(self, request: Request) -> Response:
        opened = await self._open(request, "sync")
        if isinstance(opened, Response):
            return opened
        body, ident = opened
        now = self.world.now
        if not self.world.auth_ok(ident.uid):
            return self._after(request, JSON({
                "success": False, "accountId": ident.uid, "conversationsProcessed": 0,
                "messagesProcessed": 0, "durationMs": 0, "durationSeconds": "0.00",
                "error": "LinkedIn session expired; reconnect the account"}))
        rec = self.state["syncs"].get(ident.uid)
        last = parse_iso(rec["lastSyncAt"]) if rec else None
        threads = self.world.conversations(ident.uid)
        seen = {t.thread_id: _synced_count(rec, t) for t in threads}
        convs = msgs = 0
        # seed 002: `force` syncs "even if recently synced"; a recent sync without it is
        # skipped (nothing processed, and the sync status keeps the sync that ran)
        skipped = last is not None and not body.get("force") and now - last < RECENT_SYNC
        if not skipped:
            for t in threads:
                new = len(t.messages) - seen[t.thread_id]
                if new:
                    convs += 1
                    msgs += new
                seen[t.thread_id] = len(t.messages)
        duration = 120 + 15 * convs + 2 * msgs
        if not skipped:
            self.state["syncs"][ident.uid] = {
                "accountId": ident.uid, "status": "completed", "lastSyncAt": iso(now),
                "conversationsProcessed": convs, "messagesProcessed": msgs,
                "durationMs": duration, SEEN: {tid: n for tid, n in seen.items() if n},
            }
        return self._after(request, JSON({
            "success": True, "accountId": ident.uid, "conversationsProcessed": convs,
            "messagesProcessed": msgs, "durationMs": duration,
            "durationSeconds": f"{duration / 1000:.2f}",
        }))

    async def sync_status(self, request: Request) -> Response:
        denied = await self._begin(request, "sync_status")
        if denied is not None:
            return denied
        account_id = request.query_params.get("accountId")

        def status(ident: IdentityState) -> dict[str, Any]:
            rec = self.state["syncs"].get(ident.uid)
            if rec is None:
                return {"accountId": ident.uid, "status": "never_synced", "lastSyncAt": None,
                        "conversationsProcessed": 0, "messagesProcessed": 0}
            return {k: v for k, v in rec.items() if k != SEEN}

        if account_id:
            ident = self._account(account_id)
            if ident is None:
                return self._error(404, "Account not found", "account_not_found")
            return self._after(request, JSON({"success": True, **status(ident)}))
        return self._after(request, JSON({"success": True,
                                          "accounts": [status(i) for i in self._accounts()]}))

    async def conversations(self, request: Request) -> Response:
        denied = await self._begin(request, "conversations")
        if denied is not None:
            return denied
        q = request.query_params
        ident = self._account(q.get("accountId"))
        if ident is None:
            return self._error(404, "Account not found", "account_not_found")
        try:
            limit = max(1, min(1000, int(q.get("limit", 100))))
            offset = max(0, int(q.get("offset", 0)))
        except ValueError:
            return self._error(400, "limit and offset must be integers", "validation_error")
        since = None
        if q.get("since"):
            try:
                since = parse_iso(q["since"])
            except ValueError:
                return self._error(400, "since must be an ISO date", "validation_error")
        rows = []
        for t, n in self._synced_view(ident):
            visible = t.messages[:n]
            last = visible[-1]
            if since is not None and last.created_at < since:
                continue  # at or after `since`: activity in that very instant is in
            p = self.world.profiles[t.profile_url]
            rows.append({
                "conversationId": t.thread_id,
                "participantProfileId": p.handle,
                "participantProfileUrn": f"urn:li:fsd_profile:{p.sales_navigator_profile_id}",
                "participantProfileUrl": p.url,
                "participantName": p.full_name,
                "lastMessage": {"text": last.text, "fromMe": last.from_us,
                                "senderProfileId": ident.uid if last.from_us else p.handle,
                                "sentAt": iso(last.created_at), "messageId": last.message_id},
                "firstMessageFromMe": visible[0].from_us,
                "lastActivityAt": iso(last.created_at),
                "unreadCount": sum(1 for _ in _trailing_theirs(visible)),
                "messageCount": n,
            })
        page = rows[offset:offset + limit]
        rec = self.state["syncs"].get(ident.uid)
        return self._after(request, JSON({
            "success": True, "accountId": ident.uid, "total": len(rows),
            "hasMore": offset + limit < len(rows), "conversations": page,
            "lastSyncAt": rec["lastSyncAt"] if rec else None,
        }))

    async def messages(self, request: Request) -> Response:
        denied = await self._begin(request, "messages")
        if denied is not None:
            return denied
        ident = self._account(request.query_params.get("accountId"))
        if ident is None:
            return self._error(404, "Account not found", "account_not_found")
        cid = request.path_params["conversationId"]
        for t, n in self._synced_view(ident):
            if t.thread_id == cid:
                p = self.world.profiles[t.profile_url]
                return self._after(request, JSON({
                    "success": True, "accountId": ident.uid, "conversationId": cid,
                    "messages": [{"messageId": m.message_id, "text": m.text, "fromMe": m.from_us,
                                  "senderProfileId": ident.uid if m.from_us else p.handle,
                                  "sentAt": iso(m.created_at)} for m in t.messages[:n]],
                }))
        return self._error(404, "Conversation not found", "conversation_not_found")



def _synced_count(rec: Mapping[str, Any] | None, thread: Thread) -> int:
    """How many of ``thread``'s messages the sync record ``rec`` took in."""
    if rec is None:
        return 0
    if SEEN in rec:
        return int(rec[SEEN].get(thread.thread_id, 0))
    at = parse_iso(rec["lastSyncAt"])  # a record saved before the counts were kept
    return sum(1 for m in thread.messages if m.created_at <= at)


def _trailing_theirs(messages: list[Any]) -> list[Any]:
    out = []
    for m in reversed(messages):
        if m.from_us:
            break
        out.append(m)
    return out
