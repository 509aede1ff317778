"""LinkedAPI accounts as identities: the admin API (only the ``linked-api-token``)
``accounts.getAll`` lists them, ``limits.getUsage`` gives each account's limits and usage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.providers.base import IdentityInfo
from engine.providers.linkedapi.client import WorkflowClient

# the admin API's limit categories that are canonical actions (daily entries are rolling 24 h)
CATEGORIES: Mapping[str, str] = {
    "stPersonProfileViews": "visit_profile",
    "stConnectionRequests": "connect",
    "stMessages": "send_message",
    "nvMessages": "send_inmail",
}
# account statuses (active / frozen / reconnection_required): only active can act
_HEALTH = {"active": "active", "reconnection_required": "auth_expired"}


def _usage(result: Any) -> tuple[dict[str, int], dict[str, int]]:
    caps: dict[str, int] = {}
    used: dict[str, int] = {}
    entries = result.get("usage") if isinstance(result, Mapping) else None
    for e in entries or []:
        if not isinstance(e, Mapping) or e.get("period") != "daily":
            continue
        action = CATEGORIES.get(str(e.get("category")))
        if action is None or not e.get("isEnabled", True):
            continue
        if isinstance(e.get("maxValue"), int):
            caps[action] = e["maxValue"]
        if isinstance(e.get("currentUsage"), int):
            used[action] = e["currentUsage"]
    return caps, used


async def identity_infos(workflows: WorkflowClient) -> list[IdentityInfo]:
    result = await workflows.request("POST", "/admin/accounts.getAll", None, json={})
    accounts = result.get("accounts") if isinstance(result, Mapping) else None
    out = []
    for account in accounts or []:
        if not isinstance(account, Mapping) or not account.get("id"):
            continue
        uid = str(account["id"])
        usage = await workflows.request("POST", "/admin/limits.getUsage", None,
                                        json={"accountId": uid})
        caps, used = _usage(usage)
        health = _HEALTH.get(str(account.get("status")), str(account.get("status") or ""))
        out.append(IdentityInfo(id=uid, provider="linkedapi", name=str(account.get("name") or ""),
                                health=health, limits=caps, used_24h=used))
    return out
