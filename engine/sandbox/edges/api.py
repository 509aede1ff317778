"""The Edges API (``/v1``) of the sandbox, over the simulated LinkedIn (:mod:`.world`).

Live runs answer with the action's result JSON; async runs and schedules keep run and schedule
objects in ``world.api_state["edges"]`` (so they persist with the world) and are processed
lazily: at the start of every Edges request and on :meth:`EdgesAPI.tick`. Where the docs
disagree the sandbox accepts and emits both (run objects carry ``uid`` and ``run_uid``).
Shapes not found in the docs are marked *inferred* below (among them: an async or schedule
run of ``linkedin-extract-messages`` with no thread input is an inbox sync, see ``_list_raw``).

Example::

    api = EdgesAPI(world)
    app = Starlette(routes=[Mount("/v1", routes=api.routes())])
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from croniter import croniter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.sandbox.common import CREDENTIALS, FAULT_HEADER, JSON, inject, iso, parse_iso, read_json
from engine.sandbox.world import (
    IdentityState,
    Invitation,
    Message,
    Profile,
    Thread,
    World,
    WorldError,
)

log = logging.getLogger(__name__)

WORKSPACE_UID = "ws-sandbox-0001"
USER_UID = "usr-sandbox-0001"
#: live page sizes (providers.md §1.2)
PAGE_SIZES = {
    "linkedin-extract-conversations": 20,
    "linkedin-extract-messages": 20,
    "linkedin-extract-connections": 40,
    "linkedin-extract-sent-invitations": 20,
    "linkedin-search-people": 25,
}
LIST_ACTIONS = frozenset(PAGE_SIZES)
#: actions whose results can be fetched incrementally (need an engagement identity)
INCREMENTAL = frozenset({"linkedin-extract-conversations", "linkedin-extract-messages",
                         "linkedin-extract-connections"})
LIVE_KEYS = frozenset({"input", "parameters", "identity_ids", "identity_mode", "custom_data"})
ASYNC_KEYS = frozenset({"inputs", "parameters", "identity_ids", "identity_mode", "callback",
                        "max_results", "custom_data"})
SCHEDULE_KEYS = ASYNC_KEYS | {"cron", "timezone", "schedule_at", "name"}
FINAL = frozenset({"SUCCEEDED", "FAILED", "PARTIAL_SUCCEEDED", "INVALID", "CANCELLED"})
CURSOR_TTL = timedelta(hours=24)

# error label -> (HTTP status, error_scope)
_ERRORS: dict[str, tuple[int, str]] = {
    "BAD_INPUT": (400, "input"),
    "INVALID_INPUT": (400, "input"),
    "BAD_PARAMETERS": (400, "parameters"),
    "MISSING_PARAMETER": (424, "parameters"),
    "UNAUTHORIZED": (401, "request"),
    "NOT_FOUND": (404, "request"),
    "LIMIT_REACHED": (429, "input"),
    "STATUS_429": (429, "request"),
    "NOT_CONNECTED": (424, "input"),
    "ALREADY_CONNECTED": (424, "input"),
    "INVITATION_PENDING": (424, "input"),
    "NOT_PENDING": (424, "input"),
    "PROFILE_NOT_ACCESSIBLE": (424, "input"),
    "AUTH_EXPIRED": (424, "identity"),
    "NO_VALID_ACCOUNT_CONFIGURED": (424, "identity"),
    "SN_ACCOUNT_UPGRADE": (424, "identity"),
    "NO_RESULT": (424, "input"),
    "INTERNAL_ERROR": (500, "request"),
    "TIMEOUT": (504, "request"),
}


class EdgesError(Exception):
    def __init__(self, label: str, message: str, params: Mapping[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.message = message
        self.params = dict(params or {})
        self.status = status or _ERRORS.get(label, (424, "input"))[0]


def _from_world(exc: WorldError) -> EdgesError:
    if exc.label == "NOTE_TOO_LONG":
        return EdgesError("BAD_PARAMETERS",
                          "parameters/message must NOT have more than 300 characters",
                          exc.params)
    return EdgesError(exc.label, exc.message, exc.params)


class EdgesAPI:
    """Routes and state of the sandbox's Edges API. ``callback_client`` POSTs run callbacks;
    without one they are queued in ``state["callbacks"]`` (see the inspection API)."""

    def __init__(self, world: World, *, callback_client: httpx.AsyncClient | None = None,
                 api_keys: frozenset[str] | None = None) -> None:
        self.world = world
        self.callback_client = callback_client
        self.api_keys = api_keys or frozenset({CREDENTIALS["edges"]["EDGES_API_KEY"]})
        self._actions: dict[str, Callable[[IdentityState | None, dict[str, Any],
                                           dict[str, Any]], Any]] = {
            "linkedin-me": self._me,
            "linkedin-visit-profile": self._visit,
            "linkedin-connect-profile": self._connect,
            "linkedin-message-profile": self._message,
            "linkedin-inmail-profile": self._inmail,
            "linkedin-withdraw-invitation": self._withdraw,
        }
        self._conv_cache: dict[str, tuple[int, dict[str, Any], bytes]] = {}
        self._pumping = False

    # ------------------------------------------------------------------------------ state

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

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/actions/{action}/run/live", self.run_live, methods=["POST"]),
            Route("/actions/{action}/run/async", self.run_async, methods=["POST"]),
            Route("/actions/{action}/run/schedule", self.run_schedule, methods=["POST"]),
            Route("/identities", self.list_identities, methods=["GET"]),
            Route("/identities/{uid}/actions/{action}/limits", self.identity_limits,
                  methods=["GET"]),
            Route("/workspaces", self.workspaces, methods=["GET"]),
            Route("/runs", self.list_runs, methods=["GET"]),
            Route("/runs/callbacks/{uid}", self.get_callback, methods=["GET"]),
            Route("/runs/{uid}", self.get_run, methods=["GET"]),
            Route("/runs/{uid}/status", self.get_run_status, methods=["GET"]),
            Route("/runs/{uid}/outputs", self.get_run_outputs, methods=["GET"]),
            Route("/runs/{uid}/continue", self.continue_run, methods=["POST"]),
            Route("/schedules", self.list_schedules, methods=["GET"]),
            Route("/schedules/{uid}", self.get_schedule, methods=["GET"]),
            Route("/schedules/{uid}/cancel", self.cancel_schedule, methods=["POST"]),
        ]

    # ------------------------------------------------------------------------- responses

    def _error(self, label: str, message: str, params: Mapping[str, Any] | None = None,
               status: int | None = None, headers: Mapping[str, str] | None = None) -> JSON:
        code, scope = _ERRORS.get(label, (status or 424, "input"))
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

    # -------------------------------------------------------------------------- identities

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

    # ----------------------------------------------------------------------- result shapes

    @staticmethod
    def _profile_out(p: Profile) -> dict[str, Any]:
        return {
            "linkedin_profile_id": p.profile_id,
            "sales_navigator_profile_id": p.sales_navigator_profile_id,
            "linkedin_profile_url": p.url,
            "linkedin_profile_handle": p.handle,
            "first_name": p.first_name,
            "last_name": p.last_name,
            "full_name": p.full_name,
            "job_title": p.job_title,
            "headline": p.headline,
            "company_name": p.company,
            "location": p.location,
        }

    def _participant(self, ident: IdentityState, url: str) -> dict[str, Any]:
        p = self.world.profiles[url]
        return {"linkedin_profile_id": p.profile_id, "linkedin_profile_url": p.url,
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "first_name": p.first_name, "last_name": p.last_name, "full_name": p.full_name,
                "job_title": p.job_title}

    def _me_participant(self, ident: IdentityState) -> dict[str, Any]:
        first, _, last = ident.name.partition(" ")
        return {"linkedin_profile_id": ident.profile_id,
                "linkedin_profile_url": ident.profile_url, "first_name": first,
                "last_name": last, "full_name": ident.name, "job_title": ""}

    def _message_out(self, ident: IdentityState, t: Thread, m: Message,
                     position: int) -> dict[str, Any]:
        who = self._me_participant(ident) if m.from_us else self._participant(ident,
                                                                               t.profile_url)
        return {
            "content": m.text, "first_name": who["first_name"], "last_name": who["last_name"],
            "linkedin_profile_id": m.sender_profile_id,
            "sales_navigator_profile_id": who.get("sales_navigator_profile_id"),
            "job_title": who["job_title"], "delivered_at": iso(m.created_at),
            "created_at": iso(m.created_at), "message_id": m.message_id,
            "linkedin_thread_id": t.thread_id, "position": position, "attachments": [],
        }

    def _conversation_out(self, ident: IdentityState, t: Thread) -> dict[str, Any]:
        # threads only grow, so (thread, message count) identifies a rendering
        return self._conversation_cached(ident, t)[0]

    def _conversation_cached(self, ident: IdentityState, t: Thread,
                             ) -> tuple[dict[str, Any], bytes]:
        cached = self._conv_cache.get(t.thread_id)
        if cached is not None and cached[0] == len(t.messages):
            return cached[1], cached[2]
        out = self._render_conversation(ident, t)
        raw = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
        self._conv_cache[t.thread_id] = (len(t.messages), out, raw)
        return out, raw

    def _render_conversation(self, ident: IdentityState, t: Thread) -> dict[str, Any]:
        last, first = t.messages[-1], t.messages[0]
        received = sum(1 for m in t.messages if not m.from_us)
        unread = t.unread_count
        return {
            "linkedin_thread_id": t.thread_id,
            "linkedin_thread_url": t.thread_url,
            "participants": [self._participant(ident, t.profile_url),
                             self._me_participant(ident)],
            "last_message": {"linkedin_profile_id": last.sender_profile_id, "content": last.text,
                             "text": last.text, "created_at": iso(last.created_at),
                             "delivered_at": iso(last.created_at),
                             "message_id": last.message_id},
            # inferred: who opened the conversation ("lead messaged first" in the guide)
            "first_message": {"linkedin_profile_id": first.sender_profile_id,
                              "created_at": iso(first.created_at)},
            "last_activity_at": iso(t.last_activity_at),
            "read": unread == 0,
            "unread_count": unread,
            "total_received_messages": received,
            "created_at": iso(t.created_at),
            "sponsored": False,
        }

    # ------------------------------------------------------------------------ the actions

    @staticmethod
    def _url(input: Mapping[str, Any], key: str = "linkedin_profile_url") -> str:
        url = input.get(key)
        if not url and input.get("sales_navigator_profile_id"):
            url = f"https://www.linkedin.com/sales/lead/{input['sales_navigator_profile_id']}"
        if not isinstance(url, str) or not url:
            raise EdgesError("BAD_INPUT", f"input must have required property '{key}'")
        return url

    @staticmethod
    def _text(params: Mapping[str, Any], limit: int, required: bool) -> str | None:
        text = params.get("message")
        if text is None:
            if required:
                raise EdgesError("BAD_PARAMETERS",
                                 "parameters must have required property 'message'")
            return None
        if not isinstance(text, str):
            raise EdgesError("BAD_PARAMETERS", "parameters/message must be string")
        if len(text) > limit:
            raise EdgesError("BAD_PARAMETERS",
                             f"parameters/message must NOT have more than {limit} characters")
        return text

    def _me(self, ident: IdentityState | None, input: dict[str, Any],
            params: dict[str, Any]) -> Any:
        assert ident is not None
        self.world.me(ident.uid)
        first, _, last = ident.name.partition(" ")
        return {"linkedin_profile_id": ident.profile_id, "linkedin_profile_url": ident.profile_url,
                "linkedin_profile_handle": ident.profile_url.rsplit("/", 1)[-1],
                "first_name": first, "last_name": last, "full_name": ident.name,
                "sales_navigator": ident.kind == "sales_navigator"}

    def _visit(self, ident: IdentityState | None, input: dict[str, Any],
               params: dict[str, Any]) -> Any:
        assert ident is not None
        p = self.world.visit(ident.uid, self._url(input))
        return {"sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_id": p.profile_id}

    def _connect(self, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        assert ident is not None
        note = self._text(params, 300, required=False)
        inv = self.world.connect(ident.uid, self._url(input), note)
        p = self.world.profiles[inv.profile_url]
        return {"connected": False, "pending": True, "message": note or "",
                "connection_sent_date": iso(inv.sent_at),
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_id": p.profile_id}

    def _message(self, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        assert ident is not None
        text = self._text(params, 8000, required=True)
        assert text is not None
        t = self.world.message(ident.uid, self._url(input), text)
        m = t.messages[-1]
        p = self.world.profiles[t.profile_url]
        return {"message": text, "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_id": p.profile_id, "linkedin_thread_id": t.thread_id,
                "linkedin_thread_url": t.thread_url, "is_sent": True, "reply": False,
                "delivered_at": iso(m.created_at), "linkedin_message_id": m.message_id,
                "attachments": []}

    def _inmail(self, ident: IdentityState | None, input: dict[str, Any],
                params: dict[str, Any]) -> Any:
        # inferred: parameters.subject + parameters.message, result like message-profile
        assert ident is not None
        text = self._text(params, 8000, required=True)
        assert text is not None
        subject = params.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise EdgesError("BAD_PARAMETERS", "parameters/subject must be string")
        t = self.world.inmail(ident.uid, self._url(input), subject or "", text)
        m = t.messages[-1]
        p = self.world.profiles[t.profile_url]
        return {"message": text, "subject": subject or "", "linkedin_profile_id": p.profile_id,
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_thread_id": t.thread_id, "linkedin_thread_url": t.thread_url,
                "is_sent": True, "delivered_at": iso(m.created_at),
                "linkedin_message_id": m.message_id}

    def _withdraw(self, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any]) -> Any:
        # inferred result shape
        assert ident is not None
        inv = self.world.withdraw(ident.uid, self._url(input))
        p = self.world.profiles[inv.profile_url]
        return {"withdrawn": True, "linkedin_profile_id": p.profile_id,
                "sales_navigator_profile_id": p.sales_navigator_profile_id,
                "linkedin_profile_url": p.url, "connection_sent_date": iso(inv.sent_at)}

    def _list(self, action: str, ident: IdentityState | None, input: dict[str, Any],
              params: dict[str, Any], since: datetime | None, *, inbox: bool = False,
              ) -> list[dict[str, Any]]:
        """Every item of a list action (newest first), only those after ``since`` if given."""
        raw, render = self._list_raw(action, ident, input, params, since, inbox=inbox)
        return [render(x) for x in raw]

    def _list_raw(self, action: str, ident: IdentityState | None, input: dict[str, Any],
                  params: dict[str, Any], since: datetime | None, *, inbox: bool = False,
                  ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        """The items of a list action unrendered, and how to render one (so that a live page
        renders only its own 20 or 40 items).

        ``inbox`` (async and schedule runs): ``linkedin-extract-messages`` without a thread
        reference is an inbox sync, the identity's messages across all its conversations,
        newest first, only those after ``since`` (the incremental watermark) if given.
        *Inferred*: the docs show the action with a thread input only, yet a Schedule of it
        with no ``inputs`` (``../shared/examples/inbox-sync.yaml``, seed 000's inbox sync) is
        the documented use; a live run without a thread stays ``BAD_INPUT``."""
        w = self.world
        if action == "linkedin-search-people":
            url = input.get("linkedin_people_search_url")
            if not isinstance(url, str) or not url:
                raise EdgesError("BAD_INPUT",
                                 "input must have required property 'linkedin_people_search_url'")
            query = parse_qs(urlsplit(url).query).get("keywords", [""])[0]
            limit = int(params.get("max_results") or 1000)
            if ident is not None:
                found = w.search_people(query, limit, identity=ident.uid)
            else:
                found = w.search_people(query, limit)
            network = w.network[ident.uid] if ident is not None else {}

            def person(p: Profile) -> dict[str, Any]:
                return {**self._profile_out(p),
                        "connection_degree": "1st" if p.url in network else "2nd"}

            return found, person
        assert ident is not None
        if action == "linkedin-extract-connections":
            def connection(item: tuple[Profile, datetime]) -> dict[str, Any]:
                p, at = item
                return {**self._profile_out(p), "connected_at": iso(at),
                        "profile_image_url": None}

            return [c for c in w.connections(ident.uid) if since is None or c[1] > since], \
                connection
        if action == "linkedin-extract-sent-invitations":  # inferred shape
            def invitation(i: Invitation) -> dict[str, Any]:
                return {**self._profile_out(w.profiles[i.profile_url]),
                        "sent_at": iso(i.sent_at), "created_at": iso(i.sent_at),
                        "message": i.note or ""}

            return w.pending_invitations(ident.uid), invitation
        if action == "linkedin-extract-conversations":
            only_unread = params.get("read") is False
            threads = [t for t in w.conversations(ident.uid)
                       if (since is None or t.last_activity_at > since)
                       and (not only_unread or t.unread_count > 0)]
            return threads, lambda t: self._conversation_out(ident, t)
        if action == "linkedin-extract-messages":
            ref = (input.get("linkedin_thread_url") or input.get("linkedin_conversation_url")
                   or input.get("linkedin_thread_id") or input.get("conversation_id"))
            if not ref and inbox:
                mail = [(t, i, m) for t in w.conversations(ident.uid)
                        for i, m in enumerate(t.messages)
                        if since is None or m.created_at > since]
                mail.sort(key=lambda tim: (tim[2].created_at, tim[2].message_id), reverse=True)
                return mail, lambda tim: self._message_out(ident, tim[0], tim[2], tim[1])
            if not isinstance(ref, str) or not ref:
                raise EdgesError("BAD_INPUT",
                                 "input must have required property 'linkedin_thread_url'")
            thread = self._resolve_thread(ident, ref)
            msgs = [(i, m) for i, m in enumerate(thread.messages)
                    if since is None or m.created_at > since]
            msgs.reverse()
            return msgs, lambda im: self._message_out(ident, thread, im[1], im[0])
        raise EdgesError("NOT_FOUND", f"unknown action {action!r}")

    def _resolve_thread(self, ident: IdentityState, ref: str) -> Thread:
        w = self.world
        try:
            return w.thread(ident.uid, ref)
        except WorldError:
            pass
        # a profile (URL or id) instead of a thread: its conversation, if any
        profile = w.profile_by_id(ref) if "/" not in ref else None
        url = profile.url if profile else ref
        try:
            found = w.thread_with(ident.uid, url)
        except WorldError:
            found = None
        if found is None or not found.messages:
            raise EdgesError("BAD_INPUT", f"conversation not found: {ref}")
        return found

    def _perform(self, action: str, ident: IdentityState | None, input: dict[str, Any],
                 params: dict[str, Any]) -> Any:
        handler = self._actions.get(action)
        if handler is None:
            raise EdgesError("NOT_FOUND", f"unknown action {action!r}")
        try:
            return handler(ident, input, params)
        except WorldError as exc:
            raise _from_world(exc) from None

    def _check_sync_mode(self, action: str, ident: IdentityState | None,
                         params: Mapping[str, Any]) -> bool:
        mode = params.get("sync_mode")
        if mode in (None, "full"):
            return False
        if mode != "incremental":
            raise EdgesError("BAD_PARAMETERS",
                             "parameters/sync_mode must be equal to one of the allowed values")
        if action not in INCREMENTAL:
            raise EdgesError("BAD_PARAMETERS", f"{action} does not support sync_mode")
        if ident is None or ident.type != "engagement":
            raise EdgesError("BAD_PARAMETERS",
                             "sync_mode incremental requires an Engagement Identity "
                             "(type: engagement)")
        return True

    # ------------------------------------------------------------------------------ live

    def _cursor(self, offset: int, since: datetime | None) -> str:
        raw = json.dumps({"o": offset, "s": iso(since) if since else None,
                          "t": iso(self.world.now)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _uncursor(self, cursor: str) -> tuple[int, datetime | None]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            offset, since, made = int(raw["o"]), raw.get("s"), parse_iso(raw["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgesError("BAD_PARAMETERS", "invalid cursor") from exc
        if self.world.now - made > CURSOR_TTL:
            raise EdgesError("BAD_PARAMETERS", "cursor expired (24 h)")
        return offset, parse_iso(since) if since else None

    async def _prelude(self, request: Request) -> JSON | None:
        denied = self._auth(request)
        if denied is not None:
            return denied
        await self.pump()
        return None

    async def run_live(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        action = request.path_params["action"]
        try:
            body = await read_json(request)
        except ValueError:
            return self._error("BAD_INPUT", "body must be valid JSON")
        if not isinstance(body, dict):
            return self._error("BAD_INPUT", "body must be object")
        extra = sorted(set(body) - LIVE_KEYS)
        if extra:
            return self._error("BAD_INPUT",
                               f"body must NOT have additional properties ({extra[0]})")
        if action not in self._actions and action not in LIST_ACTIONS:
            return self._error("NOT_FOUND", f"unknown action {action!r}")
        input = body.get("input", {})
        params = body.get("parameters") or {}
        if not isinstance(input, dict):
            return self._error("BAD_INPUT", "body/input must be object")
        if not isinstance(params, dict):
            return self._error("BAD_PARAMETERS", "body/parameters must be object")
        plan = await inject(self.world, "edges", action)
        if plan is not None and not plan.after:
            return self._fault_response(plan.kind)
        try:
            ident = self._pick_identity(action, body)
            incremental = self._check_sync_mode(action, ident, params)
            if action in LIST_ACTIONS:
                response = self._live_page(request, action, ident, input, params, incremental)
            else:
                response = JSON(self._perform(action, ident, input, params))
        except EdgesError as exc:
            if plan is not None:
                return self._fault_response(plan.kind)
            return self._error(exc.label, exc.message, exc.params, exc.status)
        except WorldError as exc:
            if plan is not None:
                return self._fault_response(plan.kind)
            err = _from_world(exc)
            return self._error(err.label, err.message, err.params, err.status)
        if plan is not None:  # performed, then "timed out"
            return self._fault_response(plan.kind)
        return response

    def _live_page(self, request: Request, action: str, ident: IdentityState | None,
                   input: dict[str, Any], params: dict[str, Any], incremental: bool) -> Response:
        cursor = request.query_params.get("cursor")
        size = PAGE_SIZES[action]
        try:
            size = max(1, min(size, int(request.query_params.get("page_size", size))))
        except ValueError:
            raise EdgesError("BAD_PARAMETERS", "page_size must be an integer") from None
        if cursor:
            offset, since = self._uncursor(cursor)
        else:
            offset, since = 0, None
            if incremental:
                assert ident is not None
                key = self._watermark_key("live", ident.uid, action, input)
                marks = self.state["watermarks"]
                since = parse_iso(marks[key]) if key in marks else None
                marks[key] = iso(self.world.now)
        items, render = self._list_raw(action, ident, input, params, since)
        headers = {}
        if offset + size < len(items):
            nxt = request.url.include_query_params(cursor=self._cursor(offset + size, since))
            headers["X-Pagination-Next"] = str(nxt)
        if action == "linkedin-extract-conversations":
            assert ident is not None
            raw = b",".join(self._conversation_cached(ident, t)[1]
                            for t in items[offset:offset + size])
            return Response(b"[" + raw + b"]", 200, headers, media_type="application/json")
        return JSON([render(x) for x in items[offset:offset + size]], 200, headers)

    @staticmethod
    def _watermark_key(scope: str, uid: str, action: str, input: Mapping[str, Any]) -> str:
        ref = (input.get("linkedin_thread_url") or input.get("linkedin_conversation_url")
               or input.get("linkedin_thread_id") or input.get("conversation_id") or "")
        return f"{scope}|{uid}|{action}|{ref}"

    # ---------------------------------------------------------------- async and schedules

    def _validate_batch(self, action: str, body: Any, allowed: frozenset[str],
                        ) -> tuple[list[dict[str, Any]], dict[str, Any], IdentityState | None,
                                   dict[str, Any] | None]:
        if not isinstance(body, dict):
            raise EdgesError("BAD_INPUT", "body must be object")
        if "input" in body and "inputs" not in body:
            raise EdgesError("BAD_INPUT", "body must NOT have additional properties (input)")
        extra = sorted(set(body) - allowed)
        if extra:
            raise EdgesError("BAD_INPUT", f"body must NOT have additional properties ({extra[0]})")
        if action not in self._actions and action not in LIST_ACTIONS:
            raise EdgesError("NOT_FOUND", f"unknown action {action!r}")
        inputs = body.get("inputs")
        if inputs is None:
            inputs = [{}] if action in LIST_ACTIONS or action == "linkedin-me" else None
        if not isinstance(inputs, list) or not inputs:
            raise EdgesError("BAD_INPUT", "body must have required property 'inputs' "
                             "(a non-empty array)")
        if len(inputs) > 100_000:
            raise EdgesError("BAD_INPUT", "body/inputs must NOT have more than 100000 items")
        if not all(isinstance(i, dict) for i in inputs):
            raise EdgesError("BAD_INPUT", "body/inputs/items must be object")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise EdgesError("BAD_PARAMETERS", "body/parameters must be object")
        if body.get("max_results") is not None:
            params = {**params, "max_results": body["max_results"]}
        ident = self._pick_identity(action, body)
        self._check_sync_mode(action, ident, params)
        callback = body.get("callback")
        if callback is not None:
            if not isinstance(callback, dict) or not isinstance(callback.get("url"), str):
                raise EdgesError("BAD_PARAMETERS", "body/callback must have required property "
                                 "'url'")
            if callback.get("on", "all") not in ("all", "final"):
                raise EdgesError("BAD_PARAMETERS", "body/callback/on must be 'all' or 'final'")
            if not isinstance(callback.get("headers", {}), dict):
                raise EdgesError("BAD_PARAMETERS", "body/callback/headers must be object")
        return inputs, params, ident, callback

    def _new_run(self, action: str, mode: str, inputs: list[dict[str, Any]],
                 params: dict[str, Any], ident: IdentityState | None,
                 callback: dict[str, Any] | None, schedule_uid: str | None = None,
                 since: str | None = None) -> dict[str, Any]:
        st = self.state
        uid = self._uid("run")
        now = iso(self.world.now)
        run = {
            "id": len(st["run_order"]) + 1,
            "uid": uid, "run_uid": uid, "batch_uid": f"batch-{uid[4:]}",
            "workspace_uid": WORKSPACE_UID, "user_uid": USER_UID,
            "action_name": action, "execution_mode": mode, "status": "QUEUED",
            "postponed_until": None, "created_at": now, "updated_at": now, "synced_at": None,
            "identity_ids": [ident.uid] if ident else [], "inputs": inputs,
            "parameters": params, "callback": callback, "schedule_uid": schedule_uid,
            "retry_count": 0, "last_error": None, "iteration": 1,
            "next_index": 0, "outputs": [], "since": since,
            "sync_mode": params.get("sync_mode", "full"),
        }
        st["runs"][uid] = run
        st["run_order"].append(uid)
        st["active"].append(uid)
        return run

    @staticmethod
    def _run_out(run: Mapping[str, Any]) -> dict[str, Any]:
        hidden = ("outputs", "next_index", "since")
        out = {k: v for k, v in run.items() if k not in hidden}
        out["inputs_count"] = len(run["inputs"])
        out["outputs_count"] = len(run["outputs"])
        return out

    async def run_async(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        action = request.path_params["action"]
        plan = await inject(self.world, "edges", f"async:{action}")
        if plan is not None:
            return self._fault_response(plan.kind)
        try:
            body = await read_json(request)
            inputs, params, ident, callback = self._validate_batch(action, body, ASYNC_KEYS)
        except ValueError:
            return self._error("BAD_INPUT", "body must be valid JSON")
        except EdgesError as exc:
            return self._error(exc.label, exc.message, exc.params, exc.status)
        run = self._new_run(action, "ASYNC", inputs, params, ident, callback)
        return JSON(self._run_out(run), 201)

    async def run_schedule(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        action = request.path_params["action"]
        try:
            body = await read_json(request)
            inputs, params, ident, callback = self._validate_batch(action, body, SCHEDULE_KEYS)
            assert isinstance(body, dict)
            cron, tz_name, at = body.get("cron"), body.get("timezone") or "UTC", \
                body.get("schedule_at")
            try:
                tz = ZoneInfo(str(tz_name))
            except (ZoneInfoNotFoundError, ValueError):
                raise EdgesError("BAD_PARAMETERS", f"unknown timezone {tz_name!r}") from None
            if cron is None and at is None:
                raise EdgesError("BAD_PARAMETERS",
                                 "body must have required property 'cron' or 'schedule_at'")
            if cron is not None and (not isinstance(cron, str) or not croniter.is_valid(cron)):
                raise EdgesError("BAD_PARAMETERS", f"invalid cron expression {cron!r}")
            at_dt = None
            if at is not None:
                try:
                    at_dt = parse_iso(str(at))
                except ValueError:
                    raise EdgesError("BAD_PARAMETERS", "schedule_at must be an ISO date") from None
        except ValueError:
            return self._error("BAD_INPUT", "body must be valid JSON")
        except EdgesError as exc:
            return self._error(exc.label, exc.message, exc.params, exc.status)
        st = self.state
        uid = self._uid("sch")
        now = self.world.now
        if at_dt is not None and (cron is None or at_dt > now):
            first = at_dt
        else:
            first = self._next_cron(str(cron), str(tz_name), now)
        sched = {
            "uid": uid, "scheduled_run_uid": uid, "action_name": action,
            "identity_ids": [ident.uid] if ident else [], "inputs": inputs,
            "callback": callback, "cron": cron, "timezone": str(tz.key),
            "schedule_at": at, "parameters": {k: v for k, v in params.items()
                                              if k != "max_results"},
            "max_results": params.get("max_results"), "status": "ACTIVE",
            "created_at": iso(now), "updated_at": iso(now), "next_run_at": iso(first),
            "last_run_uid": None, "run_uids": [], "iterations": 0, "skipped_iterations": 0,
            "workspace_uid": WORKSPACE_UID, "since": None,
        }
        st["schedules"][uid] = sched
        st["schedule_order"].append(uid)
        return JSON(self._schedule_out(sched), 201)

    @staticmethod
    def _next_cron(cron: str, tz: str, after: datetime) -> datetime:
        local = after.astimezone(ZoneInfo(tz))
        nxt: datetime = croniter(cron, local).get_next(datetime)
        return nxt.astimezone(after.tzinfo)

    @staticmethod
    def _schedule_out(s: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k not in ("since",)}

    # ------------------------------------------------------------------ the background pump

    async def tick(self) -> int:
        """Start due schedule iterations and process queued runs; returns runs started."""
        return await self.pump()

    async def pump(self) -> int:
        """Due schedule iterations (skipped while the previous run is unfinished), then every
        runnable run. Called at the start of each Edges request and by :meth:`tick`. A pump
        already under way (awaiting a callback POST) is not re-entered: the next one catches up.
        """
        st = self.state
        if self._pumping:
            return 0
        if not st["active"] and not st["schedules"] and not st.get("integration_webhooks"):
            return 0
        self._pumping = True
        try:
            if st.get("integration_webhooks"):
                await self._integration_webhooks()
            started = self._due_schedules()
            if st["active"]:
                await self._process_runs()
        finally:
            self._pumping = False
        return started

    def add_integration_webhook(self, url: str, headers: Mapping[str, str] | None = None,
                                ) -> None:
        """Receive the LinkedIn integration events (AUTH_EXPIRED, AUTH_SUCCESS) of the Edges
        identities at ``url`` (payload inferred: ``{event, identity_uid, integration, at}``)."""
        st = self.state
        st.setdefault("integration_webhooks", []).append({"url": url,
                                                          "headers": dict(headers or {})})
        st.setdefault("integration_sent", len(self.world.integration_events))

    async def _integration_webhooks(self) -> None:
        st = self.state
        self.world.advance()
        events = self.world.integration_events
        sent = st.setdefault("integration_sent", 0)
        if sent >= len(events):
            return
        st["integration_sent"] = len(events)
        for event in events[sent:]:
            if self._edges_identity(str(event.get("identity_uid"))) is None:
                continue
            for hook in st["integration_webhooks"]:
                entry: dict[str, Any] = {
                    "uid": self._uid("iwh"), "kind": "integration", "callback_url": hook["url"],
                    "headers": hook["headers"], "payload": event, "status": "PENDING",
                    "http_status": None, "created_at": iso(self.world.now)}
                st["callbacks"].append(entry)
                await self._post(entry)

    async def _post(self, entry: dict[str, Any]) -> None:
        if self.callback_client is None:
            return
        try:
            resp = await self.callback_client.post(entry["callback_url"], json=entry["payload"],
                                                   headers=entry["headers"])
            entry["http_status"] = resp.status_code
            entry["status"] = "SUCCESS" if resp.status_code < 300 else "FAILED"
        except httpx.HTTPError as exc:
            entry["status"] = "FAILED"
            entry["http_response"] = type(exc).__name__

    def _due_schedules(self) -> int:
        st = self.state
        now = self.world.now
        started = 0
        for uid in st["schedule_order"]:
            s = st["schedules"][uid]
            if s["status"] != "ACTIVE" or not s["next_run_at"]:
                continue
            due = parse_iso(s["next_run_at"])
            if due > now:
                continue
            last = st["runs"].get(s["last_run_uid"]) if s["last_run_uid"] else None
            if last is not None and last["status"] not in FINAL:
                s["skipped_iterations"] += 1  # the previous run is still going
            else:
                ident = self._edges_identity(s["identity_ids"][0]) if s["identity_ids"] else None
                params = dict(s["parameters"])
                if s.get("max_results") is not None:
                    params["max_results"] = s["max_results"]
                since = s["since"] if params.get("sync_mode") == "incremental" else None
                run = self._new_run(s["action_name"], "SCHEDULE", s["inputs"], params, ident,
                                    s["callback"], schedule_uid=uid, since=since)
                s["since"] = iso(now)
                s["last_run_uid"] = run["uid"]
                s["run_uids"].append(run["uid"])
                s["iterations"] += 1
                started += 1
            if s["cron"]:
                s["next_run_at"] = iso(self._next_cron(s["cron"], s["timezone"], now))
            else:
                s["next_run_at"] = None
                s["status"] = "COMPLETED"
            s["updated_at"] = iso(now)
        return started

    async def _process_runs(self) -> None:
        st = self.state
        now = self.world.now
        still: list[str] = []
        snapshot = list(st["active"])
        for uid in snapshot:
            run = st["runs"][uid]
            if run["status"] == "BLOCKED" and run["postponed_until"] and \
                    parse_iso(run["postponed_until"]) > now:
                still.append(uid)
                continue
            await self._process(run)
            if run["status"] not in FINAL:
                still.append(uid)
        # runs queued (appended) by other requests while callbacks were being POSTed
        st["active"] = still + st["active"][len(snapshot):]

    async def _process(self, run: dict[str, Any]) -> None:
        w = self.world
        action = run["action_name"]
        ident = self._edges_identity(run["identity_ids"][0]) if run["identity_ids"] else None
        params = run["parameters"]
        if run["next_index"] == 0:
            run["iteration_started_at"] = iso(w.now)
        run["status"] = "RUNNING"
        run["postponed_until"] = None
        since = parse_iso(run["since"]) if run.get("since") else None
        cap = params.get("max_results")
        while run["next_index"] < len(run["inputs"]):
            i = run["next_index"]
            item = run["inputs"][i]
            custom = item.get("custom_data", {})
            output: dict[str, Any] = {"index": i, "custom_data": custom, "input": item}
            try:
                if action in LIST_ACTIONS:
                    data: Any = self._list(action, ident, item, params, since, inbox=True)
                    if isinstance(cap, int) and cap > 0:
                        data = data[:cap]
                else:
                    data = self._perform(action, ident, item, params)
                output.update(status="SUCCEEDED", data=data, error=None)
            except (EdgesError, WorldError) as raw:
                exc = _from_world(raw) if isinstance(raw, WorldError) else raw
                err = {"error_label": exc.label, "error_scope": _ERRORS.get(
                    exc.label, (424, "input"))[1], "message": exc.message,
                    "status_code": exc.status, "params": exc.params}
                if exc.label == "LIMIT_REACHED":
                    # async/schedule: postponed and retried by the platform
                    run["status"] = "BLOCKED"
                    run["postponed_until"] = exc.params.get("postponed_until")
                    run["retry_count"] += 1
                    run["last_error"] = {**err, "params": {**exc.params,
                                                           "appendix": "smart limit"}}
                    run["updated_at"] = iso(w.now)
                    return
                output.update(status="FAILED", data=None, error=err)
            run["next_index"] = i + 1
            run["outputs"].append(output)
            run["updated_at"] = iso(w.now)
            done = run["next_index"] >= len(run["inputs"])
            if done:
                self._finish(run)
            cb = run.get("callback")
            if cb and cb.get("on", "all") == "all":
                await self._callback(run, output)
        if run["status"] not in FINAL:
            self._finish(run)
        cb = run.get("callback")
        if cb and cb.get("on", "all") == "final":
            await self._callback(run, None)

    def _finish(self, run: dict[str, Any]) -> None:
        outs = run["outputs"][-len(run["inputs"]):] if run["inputs"] else []
        ok = sum(1 for o in outs if o["status"] == "SUCCEEDED")
        run["status"] = ("SUCCEEDED" if ok == len(outs) else "FAILED" if ok == 0
                         else "PARTIAL_SUCCEEDED")
        run["synced_at"] = iso(self.world.now)
        run["updated_at"] = iso(self.world.now)
        failed = [o for o in outs if o["status"] == "FAILED"]
        if failed:
            run["last_error"] = failed[-1]["error"]

    async def _callback(self, run: dict[str, Any], output: dict[str, Any] | None) -> None:
        st = self.state
        cb = run["callback"]
        ref = self._uid("cbr")
        payload: dict[str, Any] = {
            "callback_ref_uid": ref,
            "run": {"run_uid": run["uid"], "uid": run["uid"], "batch_uid": run["batch_uid"],
                    "status": run["status"], "action_name": run["action_name"],
                    "schedule_uid": run.get("schedule_uid")},
        }
        if output is not None:
            payload["custom_data"] = output["custom_data"]
            payload["input"] = output["input"]
            payload["data"] = output["data"]
            payload["error"] = output["error"]
        else:
            outs = run["outputs"]
            payload["custom_data"] = outs[0]["custom_data"] if len(run["inputs"]) == 1 else {}
            payload["results"] = outs
        entry: dict[str, Any] = {
            "uid": self._uid("cb"), "callback_ref_uid": ref, "run_uid": run["uid"],
            "batch_uid": run["batch_uid"], "callback_url": cb["url"],
            "headers": dict(cb.get("headers") or {}), "payload": payload,
            "status": "PENDING", "http_status": None, "created_at": iso(self.world.now),
            "retry_count": 0, "workspace_uid": WORKSPACE_UID,
        }
        st["callbacks"].append(entry)
        await self._post(entry)

    # ------------------------------------------------------------------- read endpoints

    async def list_identities(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        q = request.query_params
        items = self._identities()
        if q.get("type"):
            items = [i for i in items if i.type == q["type"]]
        if q.get("query"):
            needle = q["query"].lower()
            items = [i for i in items if needle in i.name.lower() or needle in i.uid.lower()]
        try:
            limit = max(1, min(100, int(q.get("limit", 50))))
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            return self._error("BAD_PARAMETERS", "limit and page must be integers")
        now = self.world.now
        chunk = items[(page - 1) * limit: page * limit]
        out = []
        for i in chunk:
            ok = i.auth_ok(now)
            out.append({
                "uid": i.uid, "id": i.uid, "name": i.name, "type": i.type,
                "is_engagement": i.type == "engagement", "workspace_uid": WORKSPACE_UID,
                "created_at": iso(i.created_at or self.world.started_at),
                "accounts": [{"type": "linkedin", "status": "ACTIVE" if ok else "AUTH_EXPIRED",
                              "linkedin_profile_id": i.profile_id,
                              "linkedin_profile_url": i.profile_url,
                              "sales_navigator": i.kind == "sales_navigator"}],
            })
        headers = {}
        if page * limit < len(items):
            headers["X-Pagination-Next"] = str(request.url.include_query_params(page=page + 1))
        return JSON(out, 200, headers)

    async def identity_limits(self, request: Request) -> Response:
        # inferred response shape
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        ident = self._edges_identity(request.path_params["uid"])
        if ident is None:
            return self._error("NOT_FOUND", "identity not found")
        slug = request.path_params["action"]
        key = {"linkedin-visit-profile": "visit", "linkedin-connect-profile": "connect",
               "linkedin-message-profile": "message", "linkedin-inmail-profile": "inmail",
               "linkedin-search-people": "search"}.get(slug)
        if key is None:
            return JSON({"action_name": slug, "limit": None, "used": 0, "remaining": None})
        limit = self.world.limit_for(ident.uid, key)
        used = self.world.usage(ident.uid, key)
        return JSON({"action_name": slug, "identity_uid": ident.uid, "window": "24h",
                     "limit": limit, "used": used,
                     "remaining": None if limit is None else max(0, limit - used)})

    async def workspaces(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        return JSON([{"uid": WORKSPACE_UID, "name": "seqrun sandbox"}])

    async def list_runs(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        q = request.query_params
        st = self.state
        runs = [st["runs"][u] for u in reversed(st["run_order"])]
        for key in ("status", "action_name", "execution_mode", "uid"):
            if q.get(key):
                runs = [r for r in runs if str(r.get(key)).upper() == q[key].upper()]
        if q.get("sort") == "created_at":
            runs.reverse()
        try:
            limit = max(1, min(100, int(q.get("limit", 10))))
            offset = max(0, int(q.get("offset", 0)))
        except ValueError:
            return self._error("BAD_PARAMETERS", "limit and offset must be integers")
        headers = {"X-Total-Count": str(len(runs))}
        if offset + limit < len(runs):
            headers["X-Pagination-Next"] = str(
                request.url.include_query_params(offset=offset + limit, limit=limit))
        return JSON([self._run_out(r) for r in runs[offset:offset + limit]], 200, headers)

    async def _found(self, request: Request, table: str, what: str) -> dict[str, Any] | Response:
        """After the prelude, the ``runs`` or ``schedules`` row the path's uid names, or 404."""
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        row: dict[str, Any] | None = self.state[table].get(request.path_params["uid"])
        if row is None:
            return self._error("NOT_FOUND", f"{what} not found")
        return row

    async def get_run(self, request: Request) -> Response:
        run = await self._found(request, "runs", "run")
        if isinstance(run, Response):
            return run
        return JSON(self._run_out(run))

    async def get_run_status(self, request: Request) -> Response:
        run = await self._found(request, "runs", "run")
        if isinstance(run, Response):
            return run
        return JSON({"uid": run["uid"], "run_uid": run["uid"], "status": run["status"],
                     "postponed_until": run["postponed_until"],
                     "updated_at": run["updated_at"]})

    async def get_run_outputs(self, request: Request) -> Response:
        run = await self._found(request, "runs", "run")
        if isinstance(run, Response):
            return run
        outs = run["outputs"][-len(run["inputs"]):] if run["outputs"] else []
        return JSON(outs)

    async def get_callback(self, request: Request) -> Response:
        """One callback delivery (providers.md §1.4 shape)."""
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        uid = request.path_params["uid"]
        for cb in self.state["callbacks"]:
            if cb["uid"] == uid:
                return JSON({
                    "uid": cb["uid"], "parent_uid": None, "retry_count": cb.get("retry_count", 0),
                    "created_at": cb["created_at"], "status": cb["status"],
                    "callback_url": cb["callback_url"], "http_status": cb["http_status"],
                    "http_response": cb.get("http_response"), "batch_uid": cb.get("batch_uid"),
                    "run_uid": cb.get("run_uid"), "error": None, "workspace_uid": WORKSPACE_UID,
                })
        return self._error("NOT_FOUND", "callback not found")

    async def continue_run(self, request: Request) -> Response:
        """Incremental continuation: run the same inputs again, fetching only what is new
        since the previous iteration started."""
        run = await self._found(request, "runs", "run")
        if isinstance(run, Response):
            return run
        if run["status"] not in FINAL:
            return self._error("BAD_PARAMETERS", f"run is {run['status']}, not finished",
                               status=409)
        if run.get("sync_mode") != "incremental":
            return self._error("BAD_PARAMETERS",
                               "only runs with parameters.sync_mode incremental can continue")
        run["since"] = run.get("iteration_started_at") or run["created_at"]
        run["iteration"] += 1
        run["next_index"] = 0
        run["status"] = "QUEUED"
        run["updated_at"] = iso(self.world.now)
        self.state["active"].append(run["uid"])
        return JSON(self._run_out(run))

    async def list_schedules(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        q = request.query_params
        st = self.state
        items = [st["schedules"][u] for u in st["schedule_order"]]
        if q.get("action_name") or q.get("action_slug"):
            name = q.get("action_name") or q.get("action_slug")
            items = [s for s in items if s["action_name"] == name]
        if q.get("status"):
            items = [s for s in items if s["status"] == q["status"].upper()]
        try:
            limit = max(1, min(100, int(q.get("limit", 20))))
        except ValueError:
            return self._error("BAD_PARAMETERS", "limit must be an integer")
        offset = 0
        if q.get("cursor"):
            try:
                offset, _ = self._uncursor(q["cursor"])
            except EdgesError as exc:
                return self._error(exc.label, exc.message)
        headers = {}
        if offset + limit < len(items):
            headers["X-Pagination-Next"] = str(
                request.url.include_query_params(cursor=self._cursor(offset + limit, None)))
        return JSON([self._schedule_out(s) for s in items[offset:offset + limit]], 200, headers)

    async def get_schedule(self, request: Request) -> Response:
        s = await self._found(request, "schedules", "schedule")
        if isinstance(s, Response):
            return s
        return JSON(self._schedule_out(s))

    async def cancel_schedule(self, request: Request) -> Response:
        s = await self._found(request, "schedules", "schedule")
        if isinstance(s, Response):
            return s
        s["status"] = "CANCELLED"
        s["next_run_at"] = None
        s["updated_at"] = iso(self.world.now)
        return JSON(self._schedule_out(s))
