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

from starlette.routing import BaseRoute, Route

from engine.sandbox.connectsafely.actions import Actions
from engine.sandbox.connectsafely.inbox import Inbox

__all__ = ["ConnectSafelyAPI"]


class ConnectSafelyAPI(Inbox, Actions):
    """Routes of the sandbox's ConnectSafely API; state in ``world.api_state["connectsafely"]``."""

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
