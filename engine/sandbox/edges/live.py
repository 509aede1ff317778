"""The three ways to run an action: live (answered at once), async and schedule."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.common import JSON, inject, iso, parse_iso, read_json
from engine.sandbox.edges.errors import EdgesError, from_world
from engine.sandbox.edges.pump import Pump
from engine.sandbox.edges.wire import (
    ASYNC_KEYS,
    LIST_ACTIONS,
    LIVE_KEYS,
    PAGE_SIZES,
    SCHEDULE_KEYS,
    WORKSPACE_UID,
)
from engine.sandbox.world import (
    IdentityState,
    WorldError,
)


class Live(Pump):
    """``run/live``, ``run/async`` and ``run/schedule``."""

    async def _object_body(self, request: Request, allowed: frozenset[str],
                           ) -> dict[str, Any] | Response:
        """The body as a JSON object with only ``allowed`` keys, else the error answer."""
        try:
            body = await read_json(request)
        except ValueError:
            return self._error("BAD_INPUT", "body must be valid JSON")
        if not isinstance(body, dict):
            return self._error("BAD_INPUT", "body must be object")
        extra = sorted(set(body) - allowed)
        if extra:
            return self._error("BAD_INPUT",
                               f"body must NOT have additional properties ({extra[0]})")
        return body

    async def run_live(self, request: Request) -> Response:
        denied = await self._prelude(request)
        if denied is not None:
            return denied
        action = request.path_params["action"]
        body = await self._object_body(request, LIVE_KEYS)
        if isinstance(body, Response):
            return body
        if action not in self._actions and action not in LIST_ACTIONS:
            return self._error("NOT_FOUND", f"unknown action {action!r}")
        input = body.get("input", {})
        params = body.get("parameters") or {}
        if not isinstance(input, dict):
            return self._error("BAD_INPUT", "body/input must be object")
        if not isinstance(params, dict):
            return self._error("BAD_PARAMETERS", "body/parameters must be object")
        ids = body.get("identity_ids")
        if not (isinstance(ids, list) and ids and isinstance(ids[0], str)):
            return await self._live(request, action, body, input, params)
        with self.world.calling(ids[0], action):  # ground truth: one identity's calls at once
            return await self._live(request, action, body, input, params)

    async def _live(self, request: Request, action: str, body: dict[str, Any],
                    input: dict[str, Any], params: dict[str, Any]) -> Response:
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
            err = from_world(exc)
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
        since: int | None = None
        upto: int | None = None
        if cursor:
            offset, since, upto = self._uncursor(cursor)
        else:
            offset = 0
            if incremental:
                assert ident is not None
                key = self._watermark_key("live", ident.uid, action, input)
                marks = self.state["watermarks"]
                since = self._mark(marks.get(key))
                upto = marks[key] = self.world.write_mark()
        items, render = self._list_raw(action, ident, input, params, since, upto)
        headers = {}
        if offset + size < len(items):
            nxt = request.url.include_query_params(
                cursor=self._cursor(offset + size, since, upto))
            headers["X-Pagination-Next"] = str(nxt)
        if action == "linkedin-extract-conversations":
            assert ident is not None
            raw = b",".join(self._conversation_cached(ident, t)[1]
                            for t in items[offset:offset + size])
            return Response(b"[" + raw + b"]", 200, headers, media_type="application/json")
        return JSON([render(x) for x in items[offset:offset + size]], 200, headers)

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
            except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a directory
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
            "workspace_uid": WORKSPACE_UID,
        }
        st["schedules"][uid] = sched
        st["schedule_order"].append(uid)
        return JSON(self._schedule_out(sched), 201)
