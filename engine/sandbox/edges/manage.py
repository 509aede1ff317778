"""The Edges endpoints that change the workspace: create an identity, register the LinkedIn
integration webhooks (the Edges API layer above the read endpoints)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.common import JSON, iso
from engine.sandbox.edges.callbacks import callback_url_problem
from engine.sandbox.edges.reads import Reads
from engine.sandbox.edges.wire import WORKSPACE_UID

_IDENTITY_KEYS = frozenset({"name", "is_engagement", "type", "uid"})


class Manage(Reads):
    """``POST /identities`` and ``/integrations/linkedin/webhooks``."""

    async def create_identity(self, request: Request) -> Response:
        """Create an identity (seed 001: ``is_engagement: true``); its LinkedIn account is
        connected at once (the integration step is not simulated)."""
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        body = await self._object_body(request, _IDENTITY_KEYS)
        if isinstance(body, Response):
            return body
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            return self._error("BAD_INPUT", "body must have required property 'name'")
        kind = body.get("type")
        engagement = body.get("is_engagement")
        if kind is not None and kind not in ("engagement", "standard"):
            return self._error("BAD_INPUT", "body/type must be 'engagement' or 'standard'")
        if engagement is not None and not isinstance(engagement, bool):
            return self._error("BAD_INPUT", "body/is_engagement must be boolean")
        kind = kind or ("engagement" if engagement else "standard")
        uid = body.get("uid") or self._uid("idt")
        if not isinstance(uid, str) or self.world.find_identity(uid) is not None:
            return self._error("BAD_INPUT", "body/uid must be a new identity uid")
        ident = self.world.add_identity(uid, name=name.strip()[:200], type=kind,
                                        provider="edges")
        ident.created_at = self.world.now
        # the link its owner opens to connect the LinkedIn integration (inferred: the
        # sandbox connects the account at once; the link leads nowhere)
        link = f"https://app.edges.run/identities/{uid}/integrations/linkedin?sandbox=1"
        return JSON({**self._identity_out(ident), "integration_link": link}, 201)

    async def add_integration_webhook_route(self, request: Request) -> Response:
        """Receive the LinkedIn integration events (AUTH_EXPIRED, AUTH_SUCCESS) of the
        workspace's identities at ``url`` (path and payload inferred, see docs/sandbox.md)."""
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        body = await self._object_body(request, frozenset({"url", "headers"}))
        if isinstance(body, Response):
            return body
        problem = callback_url_problem(body.get("url"))
        if problem is not None:
            return self._error("BAD_INPUT", f"body/url {problem}")
        headers = body.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str)
                                                    for v in headers.values()):
            return self._error("BAD_INPUT", "body/headers must be an object of strings")
        self.add_integration_webhook(body["url"], headers)
        return JSON(self._webhooks()[-1], 201)

    async def list_integration_webhooks(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        return JSON(self._webhooks())

    def _webhooks(self) -> list[dict[str, Any]]:
        return [{"url": h["url"], "integration": "linkedin", "workspace_uid": WORKSPACE_UID,
                 "events": ["AUTH_EXPIRED", "AUTH_SUCCESS"],
                 "created_at": h.get("created_at") or iso(self.world.started_at)}
                for h in self.state.get("integration_webhooks", [])]
