"""The Edges schedule endpoints: list, get, create and cancel schedules, and list identities.
Every call goes through :func:`engine.providers.edges.http.request` (one error mapping).

    >>> # uid = await create_schedule(client, desired_config(schedule))
    >>> # await cancel_schedule(client, uid)   # True: it was live
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from engine.errors import ProviderError
from engine.providers.edges.http import list_items, request
from engine.providers.edges.schedule_config import request_body
from engine.providers.http import json_answer


def schedule_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of a schedule object (Edges names it ``scheduled_run_uid``, ``uid`` or ``id``)."""
    for key in ("scheduled_run_uid", "uid", "id"):
        if obj.get(key):
            return str(obj[key])
    return None


async def paginate(
    client: httpx.AsyncClient, url: str, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every item of a list endpoint, following ``X-Pagination-Next`` (a cursor or a URL)."""
    out: list[dict[str, Any]] = []
    query: dict[str, Any] = dict(params)
    seen: set[str] = set()
    next_url: str | None = url
    while next_url is not None:
        resp = await request(client, "GET", next_url, params=query or None)
        out.extend(d for d in list_items(json_answer(resp, f"GET {next_url}", "edges"))
                   if isinstance(d, dict))
        nxt = resp.headers.get("X-Pagination-Next")
        if not nxt or nxt in seen:
            break
        seen.add(nxt)
        if nxt.startswith(("http://", "https://", "/")):
            # A full next URL: httpx keeps the base URL's path when given a relative one.
            next_url, query = _relative_to_base(client, nxt), {}
        else:  # a bare cursor
            next_url, query = url, {**dict(params), "cursor": nxt}
    return out


def _relative_to_base(client: httpx.AsyncClient, nxt: str) -> str:
    base = str(client.base_url).rstrip("/")
    if nxt.startswith(base):
        return nxt[len(base):] or "/"
    base_path = client.base_url.path.rstrip("/")
    target = httpx.URL(nxt)
    path = target.path if nxt.startswith("http") else nxt.split("?", 1)[0]
    query = target.query.decode() if nxt.startswith("http") else nxt.partition("?")[2]
    if base_path and path.startswith(base_path):
        path = path[len(base_path):]
    return path + (f"?{query}" if query else "")


async def list_active_schedules(client: httpx.AsyncClient, action: str) -> list[dict[str, Any]]:
    """Every ACTIVE schedule of one action (all pages)."""
    return await paginate(
        client, "/schedules", {"action_name": action, "status": "ACTIVE", "limit": 100}
    )


async def get_schedule(client: httpx.AsyncClient, uid: str) -> dict[str, Any] | None:
    """Details of one schedule, ``None`` when Edges no longer knows it."""
    resp = await request(client, "GET", f"/schedules/{uid}", allow=(404,))
    if resp.status_code == 404:
        return None
    data = json_answer(resp, f"GET /schedules/{uid}", "edges")
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping):
        data = data["data"]
    return dict(data) if isinstance(data, Mapping) else None


def is_active(detail: Mapping[str, Any] | None) -> bool:
    """True for a known schedule whose status is ACTIVE (or not given)."""
    return detail is not None and str(detail.get("status") or "ACTIVE").upper() == "ACTIVE"


async def create_schedule(client: httpx.AsyncClient, config: Mapping[str, Any]) -> str:
    """Create a schedule for a normalized config; returns its ``scheduled_run_uid``."""
    resp = await request(
        client, "POST", f"/actions/{config['action']}/run/schedule", json=request_body(config)
    )
    data = json_answer(resp, f"POST /actions/{config['action']}/run/schedule", "edges")
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping):
        data = data["data"]
    uid = schedule_uid(data) if isinstance(data, Mapping) else None
    if uid is None:
        raise ProviderError("SERVER_ERROR", "schedule created but no scheduled_run_uid returned")
    return uid


async def cancel_schedule(client: httpx.AsyncClient, uid: str) -> bool:
    """Cancel, idempotently (unknown or already cancelled is fine). True if it was live."""
    detail = await get_schedule(client, uid)
    if not is_active(detail):
        return False
    await request(client, "POST", f"/schedules/{uid}/cancel", allow=(404, 409))
    return True


async def list_identities(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every identity of the account, by uid."""
    items = await paginate(client, "/identities", {"limit": 100})
    return {str(i.get("uid") or i.get("id")): i for i in items if i.get("uid") or i.get("id")}
