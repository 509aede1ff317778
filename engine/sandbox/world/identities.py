"""Identities (the LinkedIn accounts that act) and their authentication over time."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from engine.sandbox.world.config import DEFAULT_LIMITS
from engine.sandbox.world.model import IdentityState
from engine.sandbox.world.profiles import Profiles


class Identities(Profiles):
    """Identities, their aliases and their auth history."""

    def add_identity(
        self,
        uid: str,
        *,
        profile_id: int | None = None,
        name: str | None = None,
        kind: str = "classic",
        type: str = "engagement",  # the Edges field name
        aliases: Iterable[str] = (),
        provider: str | None = None,
        limits: Mapping[str, int] | None = None,
        handle: str | None = None,
        weekly_limits: Mapping[str, int] | None = None,
    ) -> IdentityState:
        """Add a LinkedIn account. ``aliases`` (e.g. a LinkedAPI identification token or a
        ConnectSafely account id) resolve to it in :meth:`identity`."""
        self._advance()
        if kind not in DEFAULT_LIMITS:
            raise ValueError(f"identity kind must be classic or sales_navigator, not {kind!r}")
        if type not in ("engagement", "standard"):
            raise ValueError(f"identity type must be engagement or standard, not {type!r}")
        if uid in self.identities or uid in self._alias:
            raise ValueError(f"identity {uid!r} exists")
        pid = profile_id if profile_id is not None else self._profile_id_for(f"identity:{uid}")
        slug = handle or re.sub(r"[^a-z0-9-]+", "-", uid.lower()).strip("-") or "me"
        ident = IdentityState(
            uid=uid, profile_id=pid, profile_url=f"https://www.linkedin.com/in/{slug}",
            name=name or uid, kind=kind, type=type, aliases=tuple(aliases), provider=provider,
            limits=dict(limits or {}), weekly_limits=dict(weekly_limits or {}),
            created_at=self.now,
        )
        self.identities[uid] = ident
        for alias in ident.aliases:
            self._alias[alias] = uid
        self._by_profile_id[pid] = ident.profile_url
        self.network.setdefault(uid, {})
        self.invitations.setdefault(uid, {})
        self.threads.setdefault(uid, {})
        self._auth_reported[uid] = True
        faults = self.config.faults
        if uid in faults.auth_expire_at:
            self._set_auth_at(ident, faults.auth_expire_at[uid], False)
        if uid in faults.reauth_at:
            self._set_auth_at(ident, faults.reauth_at[uid], True)
        for profile in self.profiles.values():
            self._seed_pair(ident, profile)
        return ident

    def identity(self, uid_or_alias: str) -> IdentityState:
        """The identity by uid or alias; ``KeyError`` when unknown."""
        uid = self._alias.get(uid_or_alias, uid_or_alias)
        return self.identities[uid]

    def find_identity(self, uid_or_alias: str) -> IdentityState | None:
        uid = self._alias.get(uid_or_alias, uid_or_alias)
        return self.identities.get(uid)

    def _set_auth_at(self, ident: IdentityState, at: datetime, ok: bool) -> None:
        ident.auth_history.append((at, ok))
        ident.auth_history.sort(key=lambda item: item[0])
        self._schedule(at, "auth", ident.uid, ok=ok)

    def set_auth(self, identity: str, ok: bool, at: datetime | None = None) -> None:
        """Expire (``ok=False``) or re-authenticate an identity, now or at a future time."""
        ident = self.identity(identity)
        self._set_auth_at(ident, at or self.now, ok)
        self._advance()

    def auth_ok(self, identity: str) -> bool:
        self._advance()
        return self.identity(identity).auth_ok(self.now)
