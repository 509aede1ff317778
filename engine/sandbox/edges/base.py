"""The Edges API's state, auth, error bodies and identity selection: the layer the others
build on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from starlette.requests import Request

from engine.sandbox.common import CREDENTIALS, FAULT_HEADER, JSON
from engine.sandbox.edges.errors import ERRORS, EdgesError
from engine.sandbox.edges.wire import (
    LIST_ACTIONS,
    NO_IDENTITY,
)
from engine.sandbox.world import (
    IdentityState,
    World,
)


class EdgesBase:
    """State in ``world.api_state["edges"]``, auth by ``X-API-Key``, error responses, identities."""

    def __init__(self, world: World, *, callback_client: httpx.AsyncClient | None = None,
                 api_keys: frozenset[str] | None = None) -> None:
        self.world = world
        self.callback_client = callback_client
        self.api_keys = api_keys or frozenset({CREDENTIALS["edges"]["EDGES_API_KEY"]})
        self._conv_cache: dict[str, tuple[int, dict[str, Any], bytes]] = {}
        self._pumping = False

    @property
    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = self.world.api_state.setdefault("edges", {})
        if not st:
            st.update({"runs": {}, "run_order": [], "active": [], "schedules": {},
                       "schedule_order": [], "callbacks": [], "watermarks": {}, "counter": 0})
        return st

    def _uid(self, prefix: str) -> str:
        st = self.state
        st["counter"] += 1
        n = st["counter"]
        return f"{prefix}-{self.world.seed:04x}-{n:08d}"

    def _error(self, label: str, message: str, params: Mapping[str, Any] | None = None,
               status: int | None = None, headers: Mapping[str, str] | None = None) -> JSON:
        code, scope = ERRORS.get(label, (status or 424, "input"))
        code = status or code
        st = self.state
        st["counter"] += 1
        body = {"error_label": label, "error_scope": scope, "error_ref": f"ERR-{st['counter']:05d}",
                "message": message, "status_code": code, "params": dict(params or {})}
        return JSON(body, code, headers)

    def _fault_response(self, kind: str) -> JSON:
        if kind == "429":
            retry = str(self.world.config.faults.retry_after_s)
            return self._error("STATUS_429", "Too many requests, retry later",
                               {"retry_after": int(retry)}, headers={"Retry-After": retry})
        if kind == "5xx":
            return self._error("INTERNAL_ERROR", "Internal server error", status=500)
        return self._error("TIMEOUT", "Gateway timeout", status=504,
                           headers={FAULT_HEADER: "timeout"})

    def _auth(self, request: Request) -> JSON | None:
        if request.headers.get("x-api-key") not in self.api_keys:
            return self._error("UNAUTHORIZED", "Invalid or missing API key (X-API-Key)")
        return None

    def _edges_identity(self, uid: str) -> IdentityState | None:
        ident = self.world.find_identity(uid)
        if ident is None or ident.provider not in (None, "edges"):
            return None
        return ident

    def _identities(self) -> list[IdentityState]:
        return [i for i in self.world.identities.values() if i.provider in (None, "edges")]

    def _pick_identity(self, action: str, body: Mapping[str, Any]) -> IdentityState | None:
        ids = body.get("identity_ids")
        mode = body.get("identity_mode")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str)
                                                                      for i in ids)):
            raise EdgesError("BAD_PARAMETERS", "body/identity_ids must be an array of strings")
        if action in NO_IDENTITY and not ids:
            return None
        if action == "linkedin-search-people" and not ids and mode in ("auto", "managed"):
            pool = self._identities()
            return pool[0] if pool else None
        if not ids:
            if mode in ("auto", "managed"):
                raise EdgesError("BAD_PARAMETERS",
                                 f"{action} needs identity_ids (direct mode); "
                                 f"identity_mode {mode!r} is for extraction actions only")
            raise EdgesError("BAD_PARAMETERS", "body must have required property 'identity_ids'")
        if action in LIST_ACTIONS and len(ids) > 1:
            raise EdgesError("BAD_PARAMETERS", f"{action} takes exactly one identity")
        ident = self._edges_identity(ids[0])
        if ident is None:
            raise EdgesError("BAD_PARAMETERS", f"identity {ids[0]!r} not found in workspace")
        return ident
