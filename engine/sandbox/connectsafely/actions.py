"""The ConnectSafely actions: message (or InMail), connect, follow, and the relationship check."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.common import JSON, iso
from engine.sandbox.connectsafely.base import ConnectSafelyBase
from engine.sandbox.world import WorldError


class Actions(ConnectSafelyBase):
    """Real effects on LinkedIn, each answered as ConnectSafely does."""

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
