"""The ConnectSafely API (``/linkedin``, Bearer auth) of the sandbox.

Documented: ``POST /conversations/sync`` (seed 002 response), ``POST /message``,
``POST /connect``, ``POST /follow`` (its response inferred), ``GET /relationship/{profileId}``
and ``/relationship/{accountId}/{profileId}``.
Inferred (shapes not in the docs): ``GET /conversations/sync/status``, ``GET /conversations``
and ``GET /conversations/{conversationId}/messages``. Like the real service, the conversation
listing reads the "local database": it shows conversations as of the account's last sync, so a
reader must ``POST /conversations/sync`` first. Error bodies carry ``{"error": ...}`` (the
endpoint pages) plus ``success: false`` and a snake_case ``code`` (the overview page).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.sandbox.common import CREDENTIALS, FAULT_HEADER, JSON, inject, iso, parse_iso, read_json
from engine.sandbox.world import IdentityState, Profile, Thread, World, WorldError

RECENT_SYNC = timedelta(minutes=1)  # without ``force``, a sync this recent does nothing

# world label -> (HTTP status, code)
_STATUS: dict[str, tuple[int, str]] = {
    "ALREADY_CONNECTED": (400, "already_connected"),
    "INVITATION_PENDING": (400, "invitation_pending"),
    "NOT_CONNECTED": (400, "not_connected"),
    "NOT_PENDING": (400, "not_pending"),
    "INVALID_INPUT": (400, "validation_error"),
    "NOTE_TOO_LONG": (400, "validation_error"),
    "SN_ACCOUNT_UPGRADE": (400, "inmail_not_allowed"),
    "PROFILE_NOT_ACCESSIBLE": (404, "profile_not_found"),
    "LIMIT_REACHED": (429, "limit_reached"),
    "AUTH_EXPIRED": (403, "account_session_expired"),
    "NO_VALID_ACCOUNT_CONFIGURED": (404, "account_not_found"),
}


class ConnectSafelyAPI:
    """Routes of the sandbox's ConnectSafely API; state in ``world.api_state["connectsafely"]``."""

    def __init__(self, world: World, *, api_keys: frozenset[str] | None = None) -> None:
        self.world = world
        self.api_keys = api_keys or frozenset(
            {CREDENTIALS["connectsafely"]["CONNECTSAFELY_API_KEY"]})

    @property
    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = self.world.api_state.setdefault("connectsafely", {})
        st.setdefault("syncs", {})
        return st

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/conversations/sync", self.sync, methods=["POST"]),
            Route("/conversations/sync/status", self.sync_status, methods=["GET"]),
            Route("/conversations", self.conversations, methods=["GET"]),
            Route("/conversations/{conversationId}/messages", self.messages, methods=["GET"]),
            Route("/message", self.message, methods=["POST"]),
            Route("/connect", self.connect, methods=["POST"]),
            Route("/follow", self.follow, methods=["POST"]),
            Route("/relationship/{profileId}", self.relationship, methods=["GET"]),
            Route("/relationship/{accountId}/{profileId}", self.relationship, methods=["GET"]),
        ]

    # ------------------------------------------------------------------------- plumbing

    @staticmethod
    def _error(status: int, message: str, code: str,
               headers: Mapping[str, str] | None = None, **extra: Any) -> JSON:
        return JSON({"success": False, "error": message, "code": code, "message": message,
                     **extra}, status, headers)

    def _world_error(self, exc: WorldError) -> JSON:
        status, code = _STATUS.get(exc.label, (400, exc.label.lower()))
        headers: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if exc.label == "LIMIT_REACHED":
            until = exc.params.get("postponed_until")
            if until:
                wait = max(0, int((parse_iso(until) - self.world.now).total_seconds()))
                headers["Retry-After"] = str(wait)
                extra["retryAt"] = until
            headers["X-RateLimit-Action"] = str(exc.params.get("action", ""))
            headers["X-RateLimit-Limit"] = str(exc.params.get("limit", ""))
        return self._error(status, exc.message, code, headers, **extra)

    async def _begin(self, request: Request, op: str) -> JSON | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.api_keys:
            return self._error(401, "Unauthorized: missing or invalid API key", "unauthorized")
        plan = await inject(self.world, "connectsafely", op)
        if plan is None:
            return None
        if plan.kind == "429":
            retry = str(self.world.config.faults.retry_after_s)
            return self._error(429, "Too many requests", "rate_limited",
                               {"Retry-After": retry, "X-RateLimit-Limit": "60",
                                "X-RateLimit-Remaining": "0"})
        if plan.kind == "5xx":
            return self._error(500, "Internal server error", "server_error")
        if plan.after:
            request.state.fault_after = True
            return None
        return self._error(504, "Gateway timeout", "timeout", {FAULT_HEADER: "timeout"})

    @staticmethod
    def _after(request: Request, response: Response) -> Response:
        if getattr(request.state, "fault_after", False):
            return ConnectSafelyAPI._error(504, "Gateway timeout", "timeout",
                                           {FAULT_HEADER: "timeout"})
        return response

    def _accounts(self) -> list[IdentityState]:
        return [i for i in self.world.identities.values()
                if i.provider in (None, "connectsafely")]

    def _account(self, account_id: Any) -> IdentityState | None:
        if account_id in (None, ""):
            accounts = self._accounts()
            return accounts[0] if accounts else None
        ident = self.world.find_identity(str(account_id))
        if ident is None or ident.provider not in (None, "connectsafely"):
            return None
        return ident

    async def _body(self, request: Request) -> dict[str, Any] | JSON:
        try:
            body = await read_json(request)
        except ValueError:
            return self._error(400, "Invalid JSON body", "validation_error")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return self._error(400, "Body must be a JSON object", "validation_error")
        return body

    async def _open(
        self, request: Request, op: str
    ) -> tuple[dict[str, Any], IdentityState] | Response:
        """A POST's common start: auth and faults, then the JSON body and its account."""
        denied = await self._begin(request, op)
        if denied is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, JSON):
            return body
        ident = self._account(body.get("accountId"))
        if ident is None:
            return self._error(404, "Account not found", "account_not_found")
        return body, ident

    def _target(self, ref: Any) -> Profile:
        """A profile from a public id (handle), numeric id, ``ACo…`` id, URN or URL."""
        if not isinstance(ref, str | int) or ref == "":
            raise WorldError("INVALID_INPUT", "profileId or profileUrn is required")
        text = str(ref).strip()
        if text.startswith("urn:li:"):
            text = text.rsplit(":", 1)[-1]
        if "linkedin.com/" in text:
            return self.world.profile(text)
        found = self.world.profile_by_id(text)
        if found is not None:
            return found
        return self.world.profile(f"https://www.linkedin.com/in/{text}")

    # --------------------------------------------------------------------------- sync

    def _synced_view(self, ident: IdentityState) -> list[tuple[Thread, int]]:
        """(thread, number of messages visible) as of the account's last sync."""
        rec = self.state["syncs"].get(ident.uid)
        if rec is None:
            return []
        at = parse_iso(rec["lastSyncAt"])
        out = []
        for t in self.world.conversations(ident.uid):
            n = sum(1 for m in t.messages if m.created_at <= at)
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
        convs = msgs = 0
        if not (last is not None and not body.get("force") and now - last < RECENT_SYNC):
            for t in self.world.conversations(ident.uid):
                new = [m for m in t.messages if last is None or m.created_at > last]
                if new:
                    convs += 1
                    msgs += len(new)
            last = now
        duration = 120 + 15 * convs + 2 * msgs
        self.state["syncs"][ident.uid] = {
            "accountId": ident.uid, "status": "completed", "lastSyncAt": iso(last or now),
            "conversationsProcessed": convs, "messagesProcessed": msgs, "durationMs": duration,
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
            return dict(rec)

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
            if since is not None and last.created_at <= since:
                continue
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

    # ------------------------------------------------------------------------- actions

    async def message(self, request: Request) -> Response:
        opened = await self._open(request, "message")
        if isinstance(opened, Response):
            return opened
        body, ident = opened
        text = body.get("message")
        ref = body.get("recipientProfileId") or body.get("recipientProfileUrn")
        if not isinstance(text, str) or not text or not ref:
            return self._error(400, "recipientProfileId (or recipientProfileUrn) and message "
                               "are required", "validation_error")
        kind = body.get("messageType") or "normal"
        if kind not in ("normal", "inmail"):
            return self._error(400, "messageType must be normal or inmail", "validation_error")
        try:
            profile = self._target(ref)
            if kind == "inmail":
                thread = self.world.inmail(ident.uid, profile.url, str(body.get("subject") or ""),
                                           text)
            else:
                thread = self.world.message(ident.uid, profile.url, text)
        except WorldError as exc:
            return self._world_error(exc)
        m = thread.messages[-1]
        return self._after(request, JSON({
            "success": True, "message": "Message sent", "accountId": ident.uid,
            "messageId": m.message_id, "conversationId": thread.thread_id,
            "recipientProfileId": profile.handle, "sentAt": iso(m.created_at),
            "messageType": kind,
        }))

    async def connect(self, request: Request) -> Response:
        opened = await self._open(request, "connect")
        if isinstance(opened, Response):
            return opened
        body, ident = opened
        ref = body.get("profileId") or body.get("profileUrn")
        if not ref:
            return self._error(400, "profileId or profileUrn is required", "validation_error")
        note = body.get("customMessage")
        if note is not None and not isinstance(note, str):
            return self._error(400, "customMessage must be a string", "validation_error")
        if note and len(note) > 300:
            return self._error(400, "customMessage must be at most 300 characters",
                               "validation_error")
        try:
            profile = self._target(ref)
            inv = self.world.connect(ident.uid, profile.url, note or None)
        except WorldError as exc:
            return self._world_error(exc)
        return self._after(request, JSON({
            "success": True, "message": "Connection request sent", "accountId": ident.uid,
            "profileId": profile.handle, "invitationId": inv.invitation_id,
            "sentAt": iso(inv.sent_at),
        }))

    async def follow(self, request: Request) -> Response:
        """``POST /follow {accountId?, profileId | profileUrn}`` (response shape inferred)."""
        opened = await self._open(request, "follow")
        if isinstance(opened, Response):
            return opened
        body, ident = opened
        ref = body.get("profileId") or body.get("profileUrn")
        if not ref:
            return self._error(400, "profileId or profileUrn is required", "validation_error")
        try:
            profile = self.world.follow(ident.uid, self._target(ref).url)
        except WorldError as exc:
            return self._world_error(exc)
        return self._after(request, JSON({"success": True, "message": "Profile followed",
                                          "accountId": ident.uid, "profileId": profile.handle,
                                          "following": True}))

    async def relationship(self, request: Request) -> Response:
        denied = await self._begin(request, "relationship")
        if denied is not None:
            return denied
        ident = self._account(request.path_params.get("accountId")
                              or request.query_params.get("accountId"))
        if ident is None:
            return self._error(404, "Account not found", "account_not_found")
        try:
            profile = self._target(request.path_params["profileId"])
            rel = self.world.relationship(ident.uid, profile.url)
        except WorldError as exc:
            return self._world_error(exc)
        connected = rel == "connected"
        following = connected or self.world.following(ident.uid, profile.url)
        return self._after(request, JSON({
            "success": True, "accountId": ident.uid, "profileId": profile.handle,
            "connected": connected, "following": following, "follower": connected,
            "connectionDegree": "1st" if connected else "2nd",
            "invitationPending": rel == "pending",  # inferred extension
        }))


def _trailing_theirs(messages: list[Any]) -> list[Any]:
    out = []
    for m in reversed(messages):
        if m.from_us:
            break
        out.append(m)
    return out


__all__ = ["ConnectSafelyAPI"]
