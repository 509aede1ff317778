"""``seqrun identities list|show|check``: every provider's identities, as the provider reports
them (tier, health, its limits and 24 h usage) joined with what the store knows (a pause, an
AUTH_EXPIRED seen by the runner, the actions done in the last 24 h and 7 days).

Health is one word: ``paused`` (ours, by ``seqrun pause --identity``), ``AUTH_EXPIRED`` (the
provider's or the runner's), or ``active``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.providers import REGISTRY
from engine.providers.base import IdentityInfo, Provider
from engine.store import Store
from engine.store.rows import IdentityRow
from engine.views.status import NotFoundError

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class IdentityView:
    id: str
    provider: str
    name: str
    tier: str
    health: str  # active | AUTH_EXPIRED | paused
    listed: bool  # the provider listed it (False: known only to the store)
    limits: Mapping[str, int]  # per 24 h: the provider's figure, else its smart limit
    used_24h: Mapping[str, int]  # done actions in the store
    used_7d: Mapping[str, int]
    provider_used_24h: Mapping[str, int] = field(default_factory=dict)
    reason: str | None = None
    checked: str | None = None  # `check`: the provider's answer now (healthy | unhealthy)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "name": self.name,
                "tier": self.tier or None, "health": self.health, "listed": self.listed,
                "reason": self.reason, "limits": dict(self.limits),
                "used_24h": dict(self.used_24h), "used_7d": dict(self.used_7d),
                "provider_used_24h": dict(self.provider_used_24h),
                **({"checked": self.checked} if self.checked is not None else {})}


@dataclass(frozen=True)
class IdentitiesReport:
    identities: list[IdentityView]
    #: providers left out: provider -> why (no credential)
    skipped: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"identities": [i.to_json() for i in self.identities],
                "skipped": dict(self.skipped)}


def _health(info: IdentityInfo | None, row: IdentityRow | None) -> str:
    """Ours first (a pause, an AUTH_EXPIRED the runner holds sends on), then the provider's."""
    if row is not None and row.status in ("paused", "auth_expired"):
        return "paused" if row.status == "paused" else "AUTH_EXPIRED"
    if info is None or info.health == "active":
        return "active"
    return "AUTH_EXPIRED" if info.health == "auth_expired" else info.health


def _usage(store: Store, identity: str, provider: str, now: datetime,
           span: timedelta) -> dict[str, int]:
    spec = REGISTRY.get(provider)
    actions = sorted(spec.capabilities - {"check_connection"}) if spec else []
    counts = {a: len(store.action_times(identity, a, now - span)) for a in actions}
    return {a: n for a, n in counts.items() if n}


def _view(store: Store, provider: str, ident: str, info: IdentityInfo | None,
          row: IdentityRow | None, now: datetime) -> IdentityView:
    spec = REGISTRY.get(provider)
    limits = dict(spec.smart_limits) if spec else {}
    if info is not None:
        limits.update(info.limits)
    return IdentityView(
        id=ident, provider=provider, name=info.name if info else "",
        tier=info.tier if info else "", health=_health(info, row), listed=info is not None,
        limits=limits, used_24h=_usage(store, ident, provider, now, DAY),
        used_7d=_usage(store, ident, provider, now, WEEK),
        provider_used_24h=dict(info.used_24h) if info else {},
        reason=row.reason if row is not None else None)


async def list_identities(store: Store, providers: Mapping[str, Provider], now: datetime,
                          *, skipped: Mapping[str, str] | None = None) -> IdentitiesReport:
    """Every identity the providers list, then those only the store knows."""
    rows = {(r.provider, r.id): r for r in store.list_identities()}
    seen: set[tuple[str, str]] = set()
    views: list[IdentityView] = []
    for name in sorted(providers):
        for info in await providers[name].identities():
            key = (name, info.id)
            seen.add(key)
            views.append(_view(store, name, info.id, info, rows.get(key), now))
    for (provider, ident), row in sorted(rows.items()):
        if (provider, ident) not in seen:
            views.append(_view(store, provider, ident, None, row, now))
    return IdentitiesReport(views, dict(skipped or {}))


async def check_identities(report: IdentitiesReport,
                           providers: Mapping[str, Provider]) -> IdentitiesReport:
    """Ask each identity's provider for its health now (``identity_healthy``)."""
    out = []
    for view in report.identities:
        provider = providers.get(view.provider)
        if provider is None:
            out.append(view)
            continue
        healthy = await provider.identity_healthy(view.id)
        checked = "healthy" if healthy else "unhealthy"
        health = view.health
        if not healthy and health == "active":
            health = "AUTH_EXPIRED"
        out.append(IdentityView(**{**view.__dict__, "checked": checked, "health": health}))
    return IdentitiesReport(out, report.skipped)


def one(report: IdentitiesReport, identity: str) -> IdentityView:
    """The identity named ``identity`` (NotFoundError naming the known ones)."""
    for view in report.identities:
        if view.id == identity:
            return view
    known = ", ".join(v.id for v in report.identities) or "none"
    raise NotFoundError(f"no identity {identity!r} (known: {known})")
