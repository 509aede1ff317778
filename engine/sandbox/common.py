"""Pieces shared by the sandbox's provider APIs: credentials, JSON responses, injected faults.

The sandbox credentials are fixed, public values: they only open the simulator.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.sandbox.latency import call_delay
from engine.sandbox.world import FaultPlan, World, iso, parse_iso

__all__ = [
    "CREDENTIALS",
    "FAULT_HEADER",
    "JSON",
    "add_default_identities",
    "identification_env_var",
    "inject",
    "iso",
    "parse_iso",
    "read_json",
]

#: the variable a LinkedAPI client reads the identification token from; one identity's own
#: token is in ``<this>__<UID>`` (see :func:`identification_env_var`)
IDENTIFICATION_ENV = "LINKEDAPI_IDENTIFICATION_TOKEN"

#: provider -> environment variable -> the sandbox's value (see Sandbox.credentials)
CREDENTIALS: dict[str, dict[str, str]] = {
    "edges": {"EDGES_API_KEY": "sbx-edges-key"},
    "linkedapi": {
        "LINKEDAPI_TOKEN": "sbx-linkedapi-token",
        IDENTIFICATION_ENV: "sbx-idt-acct-alice",
    },
    "connectsafely": {"CONNECTSAFELY_API_KEY": "sbx-connectsafely-key"},
}

#: the scope key where BodyGuard (engine/sandbox/guard.py) leaves the parsed request body
PARSED_BODY = "sandbox.json"

#: header a sandbox response carries when it simulates a timeout; the in-process transport
#: turns such a response into ``httpx.ReadTimeout``
FAULT_HEADER = "x-sandbox-fault"


class JSON(Response):
    """A compact JSON response (faster than Starlette's JSONResponse for our payloads)."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, status_code, dict(headers) if headers else None)

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def identification_env_var(uid: str) -> str:
    """``LINKEDAPI_IDENTIFICATION_TOKEN__<UID>``: upper-cased, non-alphanumerics -> ``_``."""
    return f"{IDENTIFICATION_ENV}__{re.sub(r'[^A-Z0-9]', '_', uid.upper())}"


async def read_json(request: Request) -> Any:
    """The decoded body; ``None`` for an empty body; raises ``ValueError`` on bad JSON. Behind
    the app's BodyGuard (engine/sandbox/guard.py) the body was parsed, and checked, once."""
    if PARSED_BODY in request.scope:
        return request.scope[PARSED_BODY]
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


async def inject(world: World, api: str, op: str,
                 kinds: Collection[str] = ("429", "5xx", "timeout")) -> FaultPlan | None:
    """Apply the configured latency (real seconds) and draw a fault for this call among
    ``kinds``, the ways this endpoint of the real API can fail."""
    faults = world.config.faults
    delay = faults.latency_s + call_delay(world, api, op)
    if delay > 0:
        await asyncio.sleep(delay)
    plan = world.fault_plan(api, op, kinds)
    if plan is not None and plan.kind == "timeout" and faults.timeout_hang_s > 0:
        await asyncio.sleep(faults.timeout_hang_s)
    return plan


def add_default_identities(world: World) -> None:
    """``ident-alice`` (Edges, engagement), ``ident-bob`` (Edges, standard), ``acct-alice``
    (LinkedAPI, identification token ``sbx-idt-acct-alice``), ``acc_12345`` (ConnectSafely):
    the ids of the shared examples."""
    world.add_identity("ident-alice", name="Alice Martin", type="engagement", provider="edges")
    world.add_identity("ident-bob", name="Bob Durand", type="standard", provider="edges")
    world.add_identity("acct-alice", name="Alice Martin", provider="linkedapi",
                       aliases=(CREDENTIALS["linkedapi"][IDENTIFICATION_ENV],))
    # its limits are ConnectSafely's (world.config.PROVIDER_LIMITS): 100 messages a day, 90
    # connection requests a calendar week
    world.add_identity("acc_12345", name="Carol Smith", provider="connectsafely")
