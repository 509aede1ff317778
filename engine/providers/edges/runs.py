"""The Edges run endpoints ``mode: async`` Schedules use: start ``run/async``, read a run,
continue a finished run. Every call goes through :func:`engine.providers.edges.http.request`
(one error mapping). Bodies are returned decoded, as Edges sent them.

    >>> # data = await start_async_run(client, "linkedin-extract-messages", body)
    >>> # run_uid(data)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from engine.providers.edges.http import request
from engine.providers.http import json_answer

# Run statuses after which a run can be continued (Edges uses both casings; compared upper-case).
RUN_FINISHED = frozenset({"SUCCEEDED", "COMPLETED", "PARTIAL_SUCCEEDED", "FAILED", "INVALID"})


def run_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of a run object (Edges names it ``run_uid``, ``uid`` or ``id``)."""
    for key in ("run_uid", "uid", "id"):
        if obj.get(key):
            return str(obj[key])
    return None


async def start_async_run(client: httpx.AsyncClient, action: str, body: Mapping[str, Any]) -> Any:
    """``POST /actions/{action}/run/async``; the new run."""
    call = f"POST /actions/{action}/run/async"
    resp = await request(client, "POST", f"/actions/{action}/run/async", json=dict(body))
    return json_answer(resp, call, "edges")


async def get_run(client: httpx.AsyncClient, uid: str) -> Any:
    """``GET /runs/{uid}``."""
    resp = await request(client, "GET", f"/runs/{uid}")
    return json_answer(resp, f"GET /runs/{uid}", "edges")


async def continue_run(client: httpx.AsyncClient, uid: str) -> Any:
    """``POST /runs/{uid}/continue``; the new run, or ``{}`` when Edges answers no body."""
    resp = await request(client, "POST", f"/runs/{uid}/continue")
    data = json_answer(resp, f"POST /runs/{uid}/continue", "edges")
    return {} if data is None else data


async def run_outputs(client: httpx.AsyncClient, uid: str) -> Any:
    """``GET /runs/{uid}/outputs``: the outputs of a finished run."""
    resp = await request(client, "GET", f"/runs/{uid}/outputs")
    return json_answer(resp, f"GET /runs/{uid}/outputs", "edges")
