"""The admin API (``POST /admin/{accounts,limits,subscription}.<method>``, only the
``linked-api-token``) and ``GET /stats/actions`` (the SDK's ``getApiUsage``).

Accounts are the world's identities open to LinkedAPI; their ``accountId`` is the identity
uid. Limits set here become the identity's limits in the world (daily: rolling 24 h, weekly:
calendar week, monthly: calendar month; each refuses the action once used up). The admin
API allows
100 requests a minute (``tooManyRequests`` beyond), as documented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.sandbox.linkedapi.base import ApiBase, envelope_error
from engine.sandbox.linkedapi.wire import IDENT_PREFIX, LIMIT_CATEGORIES
from engine.sandbox.world import PROVIDER_LIMITS, IdentityState, iso, parse_iso

ADMIN_RATE = (100, timedelta(seconds=60))
NO_LIMIT = 2**31 - 1  # a disabled limit: the identity's override lifts the provider's
PERIODS = ("daily", "weekly", "monthly")
MAX_STATS_SPAN = timedelta(days=30)

Method = Callable[["AdminApi", IdentityState | None, Mapping[str, Any]], Any]


def default_limits(tier: str = "classic") -> list[dict[str, Any]]:
    """LinkedAPI's documented default account limits (``limits.getDefaults``)."""
    daily, weekly = PROVIDER_LIMITS["linkedapi"][tier]
    out = []
    for category, action in LIMIT_CATEGORIES.items():
        for period, table in (("daily", daily), ("weekly", weekly)):
            if action in table:
                out.append({"category": category, "period": period,
                            "maxValue": table[action], "isEnabled": True})
    return out


def _ok(result: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"success": True}
    if result is not None:
        body["result"] = result
    return JSONResponse(body)


class AdminApi(ApiBase):
    """Admin endpoints and the usage statistics."""

    link_base = "https://app.linkedapi.io"  # the sandbox's mount URL once a request came

    async def connect_session(self, request: Request) -> JSONResponse:
        """``POST /connect/{sessionId}`` (the session's ``connectionLink``; sandbox only): the
        LinkedIn user signs in through the link. A pending session succeeds and a new
        account (body ``{"name"}``, optional) is connected: ``accounts.getAll`` lists it and
        its identification token works for workflows from then on."""
        sid = request.path_params["session_id"]
        session = self.st.sessions.get(sid)
        if session is None:
            return envelope_error("sessionNotFound", "no such session", 404)
        if session["status"] != "pending":
            return envelope_error("invalidRequestPayload",
                                  f"the session is {session['status']}, not pending", 409)
        body = await self._body(request)
        name = body.get("name") if isinstance(body, Mapping) else None
        uid = f"acct-{sid}"
        self.world.add_identity(uid, name=str(name or f"Account {sid}")[:200],
                                aliases=(IDENT_PREFIX + uid,), provider="linkedapi")
        self.world.identity(uid).created_at = self.world.now
        session.update(status="success", accountId=uid)
        self.st.dirty = True
        return _ok({"session": {"sessionId": sid, **session}})

    async def admin(self, request: Request) -> JSONResponse:
        token = request.headers.get("linked-api-token")
        if not token:
            return envelope_error("linkedApiTokenRequired", "linked-api-token is required", 401)
        if token != self.st.api_token:
            return envelope_error("invalidLinkedApiToken", "the linked-api-token is not valid",
                                  401)
        if self._admin_rate_exceeded():
            return envelope_error("tooManyRequests", "at most 100 admin requests a minute", 429,
                                  **{"Retry-After": "60"})
        fault, _ = await self._fault("admin", envelope_error)
        if fault is not None:
            return fault
        self.link_base = str(request.url).split("/admin/", 1)[0]
        method = ADMIN_METHODS.get(request.path_params["method"])
        if method is None:
            return envelope_error("invalidRequestPayload", "no such admin method", 404)
        body = await self._body(request)
        params: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        ident = None
        if "accountId" in params:
            ident = self._account(str(params["accountId"]))
            if ident is None:
                return envelope_error("accountNotFound", "no such account", 404)
        try:
            return _ok(method(self, ident, params))
        except _Refused as exc:
            return envelope_error(exc.kind, str(exc), 400)

    def _admin_rate_exceeded(self) -> bool:
        limit, window = ADMIN_RATE
        now = self.world.now
        calls = [t for t in self.st.admin_calls if t > now - window]
        calls.append(now)
        self.st.admin_calls = calls
        return len(calls) > limit

    def _account(self, uid: str) -> IdentityState | None:
        ident = self.world.find_identity(uid)
        if ident is None or ident.provider not in (None, "linkedapi"):
            return None
        return None if ident.uid in self.st.disconnected else ident

    async def stats_actions(self, request: Request) -> JSONResponse:
        account = self._auth(request, envelope_error)
        if isinstance(account, JSONResponse):
            return account
        fault, _ = await self._fault("stats", envelope_error)
        if fault is not None:
            return fault
        try:
            start = parse_iso(request.query_params["start"])
            end = parse_iso(request.query_params["end"])
        except (KeyError, ValueError):
            return envelope_error("invalidRequestPayload", "start and end must be ISO times",
                                  400)
        if end < start or end - start > MAX_STATS_SPAN:
            return envelope_error("invalidRequestPayload", "the span must be 0 to 30 days", 400)
        lo, hi = iso(start), iso(end)
        rows = [{"actionType": kind, "success": ok, "time": at}
                for uid, kind, ok, at in self.st.stats if uid == account and lo <= at <= hi]
        return _ok(rows)


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _need(ident: IdentityState | None) -> IdentityState:
    if ident is None:
        raise _Refused("accountIdRequired", "accountId is required")
    return ident


# ---- accounts ----------------------------------------------------------------------------


def _token(api: AdminApi, ident: IdentityState) -> str:
    return api.st.tokens.get(ident.uid) or next(
        (a for a in ident.aliases if a.startswith(IDENT_PREFIX)), IDENT_PREFIX + ident.uid)


def _get_all(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    accounts = []
    for i in api.world.identities.values():
        if api._account(i.uid) is None:
            continue
        accounts.append({
            "id": i.uid, "name": i.name, "url": i.profile_url, "countryCode": "us",
            "identificationToken": _token(api, i),
            "status": "active" if api.world.auth_ok(i.uid) else "reconnection_required",
            "connectedAt": iso(i.created_at or api.world.started_at),
        })
    pending = [{"sessionId": s, "status": v["status"]} for s, v in api.st.sessions.items()
               if v["status"] == "pending"]
    return {"accounts": accounts, "pendingConnectionSessions": pending}


def _disconnect(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    api.st.disconnected.append(_need(ident).uid)
    api.st.dirty = True
    return None


def _regenerate(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    uid = _need(ident).uid
    api.st.seq += 1
    token = IDENT_PREFIX + hashlib.sha256(f"{api.world.seed}:{uid}:{api.st.seq}".encode()
                                          ).hexdigest()[:20]
    api.st.tokens[uid] = token
    api.st.dirty = True
    return {"token": token}


def _create_session(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    api.st.seq += 1
    sid = f"sess-{api.st.seq:06d}"
    api.st.sessions[sid] = {"status": "pending", "type": "connection"}
    api.st.dirty = True
    # the link a LinkedIn user opens to sign in: here the sandbox's own (see connect_session)
    return {"sessionId": sid, "connectionLink": f"{api.link_base}/connect/{sid}"}


def _session(api: AdminApi, p: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    sid = str(p.get("sessionId", ""))
    if sid not in api.st.sessions:
        raise _Refused("sessionNotFound", "no such session")
    return sid, api.st.sessions[sid]


def _get_session(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    sid, session = _session(api, p)
    return {"session": {"sessionId": sid, **session}}


def _cancel_session(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    _, session = _session(api, p)
    session["status"] = "cancelled"
    api.st.dirty = True
    return None


# ---- limits ------------------------------------------------------------------------------


def _limits_of(api: AdminApi, ident: IdentityState) -> list[dict[str, Any]]:
    saved = api.st.admin_limits.get(ident.uid)
    return [dict(e) for e in saved] if saved is not None else default_limits(ident.kind)


def _apply(api: AdminApi, ident: IdentityState, entries: list[dict[str, Any]]) -> None:
    """Make ``entries`` the account's limits in the world (replacing its overrides)."""
    api.st.admin_limits[ident.uid] = entries
    api.st.dirty = True
    for action in LIMIT_CATEGORIES.values():
        ident.limits.pop(action, None)
        ident.weekly_limits.pop(action, None)
        ident.monthly_limits.pop(action, None)
    for e in entries:
        action = LIMIT_CATEGORIES[e["category"]]
        value = int(e["maxValue"]) if e.get("isEnabled", True) else NO_LIMIT
        if e["period"] == "daily":
            ident.limits[action] = value
        elif e["period"] == "weekly":
            ident.weekly_limits[action] = value
        elif value != NO_LIMIT:  # monthly (a disabled one is no cap at all)
            ident.monthly_limits[action] = value


def _entries(p: Mapping[str, Any], *, with_value: bool) -> list[dict[str, Any]]:
    raw = p.get("limits")
    if not isinstance(raw, list):
        raise _Refused("invalidRequestPayload", "limits must be an array")
    out = []
    for e in raw:
        if not isinstance(e, Mapping) or e.get("category") not in LIMIT_CATEGORIES or e.get(
                "period") not in PERIODS:
            raise _Refused("invalidRequestPayload", f"not a limit: {e!r}")
        if with_value and not isinstance(e.get("maxValue"), int):
            raise _Refused("invalidRequestPayload", "maxValue must be an integer")
        out.append(dict(e))
    return out


def _set(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    ident = _need(ident)
    new = {(e["category"], e["period"]): {"isEnabled": True, **e}
           for e in _entries(p, with_value=True)}
    kept = [e for e in _limits_of(api, ident) if (e["category"], e["period"]) not in new]
    _apply(api, ident, kept + list(new.values()))
    return None


def _delete(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    ident = _need(ident)
    gone = {(e["category"], e["period"]) for e in _entries(p, with_value=False)}
    _apply(api, ident, [e for e in _limits_of(api, ident)
                        if (e["category"], e["period"]) not in gone])
    return None


def _reset(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    ident = _need(ident)
    _apply(api, ident, default_limits(ident.kind))
    api.st.admin_limits.pop(ident.uid, None)
    return None


def _usage(api: AdminApi, ident: IdentityState | None, p: Mapping[str, Any]) -> Any:
    ident = _need(ident)
    out = []
    for e in _limits_of(api, ident):
        action = LIMIT_CATEGORIES[e["category"]]
        used = {"weekly": api.world.week_usage, "monthly": api.world.month_usage}.get(
            e["period"], api.world.usage)(ident.uid, action)
        out.append({**e, "currentUsage": used})
    return {"usage": out}


# ---- subscription (a fixed, active one) --------------------------------------------------


def _static(result: Any) -> Method:
    return lambda api, ident, p: result


ADMIN_METHODS: Mapping[str, Method] = {
    "accounts.getAll": _get_all,
    "accounts.disconnect": _disconnect,
    "accounts.regenerateIdentificationToken": _regenerate,
    "accounts.createConnectionSession": _create_session,
    "accounts.getConnectionSession": _get_session,
    "accounts.cancelConnectionSession": _cancel_session,
    "limits.getDefaults": lambda api, ident, p: {"limits": default_limits()},
    "limits.get": lambda api, ident, p: {"limits": _limits_of(api, _need(ident))},
    "limits.getUsage": _usage,
    "limits.set": _set,
    "limits.delete": _delete,
    "limits.resetToDefaults": _reset,
    "subscription.getStatus": _static(
        {"status": "active", "eligibleForTrial": False, "cancelAtPeriodEnd": False}),
    "subscription.getSeats": _static(
        {"seats": [{"seatType": "core", "quantity": 1, "billingPeriod": "month"}]}),
    "subscription.getPricing": _static({"products": [
        {"id": "core-month", "seatType": "core", "billingPeriod": "month", "unitPrice": 49,
         "currency": "usd"}]}),
    "subscription.setSeats": _static({"status": "complete"}),
    "subscription.getBillingLink": _static({"stripeLink": "https://billing.example.com/sbx"}),
    "subscription.cancel": _static({"cancelAtDate": "2099-01-01T00:00:00Z"}),
}
