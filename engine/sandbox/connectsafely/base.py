"""What every ConnectSafely endpoint shares: Bearer auth, injected faults, error bodies, the
account and the target profile of a request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.common import CREDENTIALS, FAULT_HEADER, JSON, inject, parse_iso, read_json
from engine.sandbox.world import IdentityState, Profile, World, WorldError

# world label -> (HTTP status, code)
STATUS: dict[str, tuple[int, str]] = {
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



class ConnectSafelyBase:
    """State in ``world.api_state["connectsafely"]`` and request plumbing."""

    def __init__(self, world: World, *, api_keys: frozenset[str] | None = None) -> None:
        self.world = world
        self.api_keys = api_keys or frozenset(
            {CREDENTIALS["connectsafely"]["CONNECTSAFELY_API_KEY"]})

    @property
    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = self.world.api_state.setdefault("connectsafely", {})
        st.setdefault("syncs", {})
        return st

    @staticmethod
    def _error(status: int, message: str, code: str,
               headers: Mapping[str, str] | None = None, **extra: Any) -> JSON:
        return JSON({"success": False, "error": message, "code": code, "message": message,
                     **extra}, status, headers)

    def _world_error(self, exc: WorldError) -> JSON:
        status, code = STATUS.get(exc.label, (400, exc.label.lower()))
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
            return ConnectSafelyBase._error(504, "Gateway timeout", "timeout",
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
