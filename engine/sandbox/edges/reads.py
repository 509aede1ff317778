"""The Edges read endpoints: identities and limits, workspaces, runs, callbacks, schedules."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.common import JSON, iso
from engine.sandbox.edges.errors import EdgesError
from engine.sandbox.edges.live import Live
from engine.sandbox.edges.wire import (
    FINAL,
    WORKSPACE_UID,
)
from engine.sandbox.world import IdentityState


class Reads(Live):
    """GET endpoints (and the run continuation and schedule cancellation)."""

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
        chunk = items[(page - 1) * limit: page * limit]
        out = [self._identity_out(i) for i in chunk]
        headers = {}
        if page * limit < len(items):
            headers["X-Pagination-Next"] = str(request.url.include_query_params(page=page + 1))
        return JSON(out, 200, headers)

    def _identity_out(self, i: IdentityState) -> dict[str, Any]:
        ok = i.auth_ok(self.world.now)
        return {
            "uid": i.uid, "id": i.uid, "name": i.name, "type": i.type,
            "is_engagement": i.type == "engagement", "workspace_uid": WORKSPACE_UID,
            "created_at": iso(i.created_at or self.world.started_at),
            "accounts": [{"type": "linkedin", "status": "ACTIVE" if ok else "AUTH_EXPIRED",
                          "linkedin_profile_id": i.profile_id,
                          "linkedin_profile_url": i.profile_url,
                          "sales_navigator": i.kind == "sales_navigator"}],
        }

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
        """Incremental continuation: run the same inputs again, fetching only what was
        written after what the previous iteration listed (see Runs._next_since)."""
        run = await self._found(request, "runs", "run")
        if isinstance(run, Response):
            return run
        if run["status"] not in FINAL:
            return self._error("BAD_PARAMETERS", f"run is {run['status']}, not finished",
                               status=409)
        if run.get("sync_mode") != "incremental":
            return self._error("BAD_PARAMETERS",
                               "only runs with parameters.sync_mode incremental can continue")
        run["since"] = self._next_since(run)
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
                offset, _, _ = self._uncursor(q["cursor"])
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
