"""Edges identities: list them (``GET /identities?retrieve_accounts=true``, paginated), read
their limits (``GET /identities/{uid}/actions/{slug}/limits``) and create one
(``POST /identities``, seed 001: ``type: engagement`` for credit-free outreach).

The adapter's health check reads the same listing: one way to read an identity's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from engine import vocab
from engine.errors import ProviderError
from engine.providers.base import IdentityInfo, NewIdentity
from engine.providers.edges.http import list_items, request
from engine.providers.http import json_answer

_MAX_PAGES = 500  # a runaway cursor must not loop forever
# Account statuses that mean "this identity cannot act"; anything else counts as healthy so that
# an unfamiliar status name does not keep an identity paused forever (a real failure comes
# back as AUTH_EXPIRED on the next call anyway).
UNHEALTHY = frozenset(
    {"AUTH_EXPIRED", "EXPIRED", "DISCONNECTED", "INVALID", "ERROR", "FAILED", "REVOKED",
     "DELETED", "SIGNED_OUT", "RECONNECTION_REQUIRED", "FROZEN", "BLOCKED", "UNAUTHORIZED"}
)
# the actions whose limits the identity reports (canonical -> Edges slug)
LIMITED: Mapping[str, str] = {
    "visit_profile": "linkedin-visit-profile",
    "connect": "linkedin-connect-profile",
    "send_message": "linkedin-message-profile",
}



async def raw_identities(client: httpx.AsyncClient) -> AsyncIterator[Mapping[str, Any]]:
    """Every identity object of the workspace, page by page."""
    page = 1
    while page <= _MAX_PAGES:
        response = await request(client, "GET", "identities",
                                 params={"retrieve_accounts": "true", "page": page},
                                 call="identities")
        payload = json_answer(response, "identities", "edges")
        items = list_items(payload)
        for ident in items:
            if isinstance(ident, dict):
                yield ident
        if not items or not (response.headers.get("X-Pagination-Next")
                             or (isinstance(payload, dict) and payload.get("has_more"))):
            return
        page += 1


def _linkedin(ident: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    accounts = [a for a in ident.get("accounts") or [] if isinstance(a, dict)]
    return [a for a in accounts if str(a.get("type", "linkedin")).lower() == "linkedin"]


def identity_ok(ident: Mapping[str, Any]) -> bool:
    """Healthy: one LinkedIn account not in an unhealthy state (or, without accounts, the
    identity's own status)."""
    linkedin = _linkedin(ident)
    if not linkedin:
        return str(ident.get("status", "")).upper() not in UNHEALTHY
    return any(str(a.get("status", "")).upper() not in UNHEALTHY for a in linkedin)


def uid_of(ident: Mapping[str, Any]) -> str:
    return str(ident.get("uid") or ident.get("id") or "")


async def limits(client: httpx.AsyncClient, uid: str) -> tuple[dict[str, int], dict[str, int]]:
    """The identity's 24 h limits and usage per canonical action, where Edges reports them."""
    caps: dict[str, int] = {}
    used: dict[str, int] = {}
    for action, slug in LIMITED.items():
        response = await request(client, "GET", f"identities/{uid}/actions/{slug}/limits",
                                 call="identity limits")
        body = json_answer(response, "identity limits", "edges")
        if not isinstance(body, dict):
            continue
        if isinstance(body.get("limit"), int):
            caps[action] = body["limit"]
        if isinstance(body.get("used"), int):
            used[action] = body["used"]
    return caps, used


async def identity_infos(client: httpx.AsyncClient) -> list[IdentityInfo]:
    out = []
    async for ident in raw_identities(client):
        uid = uid_of(ident)
        if not uid:
            continue
        caps, used = await limits(client, uid)
        navigator = any(a.get("sales_navigator") for a in _linkedin(ident))
        out.append(IdentityInfo(
            id=uid, provider="edges", name=str(ident.get("name") or ""),
            tier="sales_navigator" if navigator else "classic",
            health="active" if identity_ok(ident) else "auth_expired",
            limits=caps, used_24h=used))
    return out


async def create_identity(client: httpx.AsyncClient, name: str, *,
                          engagement: bool = True) -> NewIdentity:
    """``POST /identities``; the LinkedIn integration link where the answer carries one."""
    response = await request(client, "POST", "identities",
                             json={"name": name,
                                   "type": "engagement" if engagement else "standard"},
                             call="create identity")
    body = json_answer(response, "create identity", "edges")
    if not isinstance(body, dict) or not uid_of(body):
        raise ProviderError(vocab.SERVER_ERROR, "create identity: no uid in the answer")
    link = body.get("integration_link") or body.get("login_link")
    return NewIdentity(uid_of(body), str(body.get("name") or name),
                       str(link) if link else None)
