"""What every action checks first (auth, profile access, smart limits) and what it records."""

from __future__ import annotations

from collections import deque
from datetime import datetime

from engine.sandbox.world.config import PROVIDER_LIMITS
from engine.sandbox.world.identities import Identities
from engine.sandbox.world.model import Delivery, IdentityState, Profile, WorldError
from engine.sandbox.world.times import DAY, iso, month_start, next_month, week_start


class Limits(Identities):
    """The checks LinkedIn makes before an action, in its order, and the usage counters."""

    def _check(self, identity: str, url: str | None, action: str | None) -> tuple[
            IdentityState, Profile | None]:
        """auth -> profile access -> smart limit, in that order (as LinkedIn fails them)."""
        self._advance()
        self.call_count += 1
        ident = self.find_identity(identity)
        if ident is None:
            raise WorldError("NO_VALID_ACCOUNT_CONFIGURED", f"unknown identity {identity!r}")
        if not ident.auth_ok(self.now):
            raise WorldError("AUTH_EXPIRED", "the identity's LinkedIn session expired",
                             {"identity_uid": ident.uid})
        profile = self._profile(url) if url is not None else None
        if action is not None:
            self._check_limit(ident, action)
        return ident, profile

    def _scripted_fault(self, op: str) -> None:
        """The next scripted error of ``op`` (``faults.scripted``), consumed as it is raised."""
        queue = self.config.faults.scripted.get(op)
        if queue:
            raise WorldError(queue.pop(0), f"a scripted {op} failure (faults.scripted)")

    def limit_for(self, identity: str, action: str) -> int | None:
        """The rolling 24 h limit of ``action``: the identity's own override, else its
        provider's documented limit for its tier (:data:`PROVIDER_LIMITS`), else Edges'."""
        ident = self.identity(identity)
        if action in ident.limits:
            return ident.limits[action]
        provider = PROVIDER_LIMITS.get(ident.provider or "")
        if provider is not None:
            return provider[ident.kind][0].get(action)
        return self.config.limit(ident.kind, action)

    def weekly_limit_for(self, ident: IdentityState, action: str) -> int | None:
        """The calendar-week cap of ``action`` (own override, else the provider's)."""
        if action in ident.weekly_limits:
            return ident.weekly_limits[action]
        provider = PROVIDER_LIMITS.get(ident.provider or "")
        return provider[ident.kind][1].get(action) if provider is not None else None

    def _window(self, uid: str, action: str) -> deque[datetime]:
        times = self._action_times.setdefault((uid, action), deque())
        cutoff = self.now - DAY
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def _check_limit(self, ident: IdentityState, action: str) -> None:
        limit = self.limit_for(ident.uid, action)
        if limit is not None:
            times = self._window(ident.uid, action)
            if len(times) >= limit:
                until = times[0] + DAY if times else self.now + DAY
                raise WorldError(
                    "LIMIT_REACHED", f"smart limit of {limit} {action} per 24 h reached",
                    {"postponed_until": iso(until), "appendix": f"rolling 24h window, {action}",
                     "limit": limit, "action": action},
                )
        self._check_month(ident, action)
        cap = self.weekly_limit_for(ident, action)
        if cap is None:
            return
        hold = self._holds.get((ident.uid, action))
        if hold is None or hold <= self.now:
            if self._week_count(ident.uid, action) < cap:
                return
            hold = self._holds[(ident.uid, action)] = self.now + DAY  # going over: a hold
        raise WorldError(
            "LIMIT_REACHED", f"weekly cap of {cap} {action} reached: the account is on hold",
            {"postponed_until": iso(hold), "limit": cap, "action": action,
             "appendix": f"calendar week from Monday 00:00 UTC, {action}; 24 h hold"},
        )

    def _check_month(self, ident: IdentityState, action: str) -> None:
        """A monthly cap (set through LinkedAPI's admin API) reached: refused until the 1st."""
        cap = ident.monthly_limits.get(action)
        if cap is None or self._month_count(ident.uid, action) < cap:
            return
        raise WorldError(
            "LIMIT_REACHED", f"monthly limit of {cap} {action} reached",
            {"postponed_until": iso(next_month(self.now)), "limit": cap, "action": action,
             "appendix": f"calendar month from the 1st 00:00 UTC, {action}"},
        )

    def _month_count(self, uid: str, action: str) -> int:
        counted = self._month_counts.get((uid, action))
        if counted is None or counted[0] != month_start(self.now):
            return 0
        return int(counted[1])

    def month_usage(self, identity: str, action: str) -> int:
        """Actions of this kind this calendar month (counted only while a monthly cap is set)."""
        self._advance()
        return self._month_count(self.identity(identity).uid, action)

    def _week_count(self, uid: str, action: str) -> int:
        counted = self._week_counts.get((uid, action))
        if counted is None or counted[0] != week_start(self.now):
            return 0
        return int(counted[1])

    def count_action(self, identity: str, action: str) -> IdentityState:
        """Check auth and the limit of ``action``, then count one: for actions that leave no
        delivery (company page views, reactions, comments, posts, Sales Navigator views)."""
        ident, _ = self._check(identity, None, action)
        self._count(ident, action)
        return ident

    def usage(self, identity: str, action: str) -> int:
        """Actions of this kind in the rolling 24 h window."""
        self._advance()
        return len(self._window(self.identity(identity).uid, action))

    def week_usage(self, identity: str, action: str) -> int:
        """Actions of this kind this calendar week (counted only while a weekly cap is set)."""
        self._advance()
        return self._week_count(self.identity(identity).uid, action)

    def _deliver(self, ident: IdentityState, profile: Profile, kind: str,
                 action: str | None, text: str | None = None) -> Delivery:
        d = Delivery(ident.uid, profile.url, kind, self.now, text)
        self.delivered.append(d)
        if action is not None:
            self._count(ident, action)
        return d

    def _count(self, ident: IdentityState, action: str) -> None:
        """One more ``action`` in its rolling 24 h window (and its week, when capped)."""
        self._action_times.setdefault((ident.uid, action), deque()).append(self.now)
        if self.weekly_limit_for(ident, action) is not None:
            self._week_counts[(ident.uid, action)] = [
                week_start(self.now), self._week_count(ident.uid, action) + 1]
        if action in ident.monthly_limits:
            self._month_counts[(ident.uid, action)] = [
                month_start(self.now), self._month_count(ident.uid, action) + 1]
