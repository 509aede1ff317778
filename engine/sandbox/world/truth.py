"""Ground truth for tests: what was really delivered, counted and summarised."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from engine.sandbox.world.faults import Faults
from engine.sandbox.world.model import Delivery
from engine.sandbox.world.times import iso
from engine.sandbox.world.urls import normalize_url


class GroundTruth(Faults):
    """Queries over the real effects (never through a provider API)."""

    def messages_to(self, identity: str, url: str) -> list[Delivery]:
        uid = self.identity(identity).uid
        norm = normalize_url(url)
        return [d for d in self.delivered
                if d.identity == uid and d.profile_url == norm and d.kind in ("message", "inmail")]

    def count(self, identity: str | None = None, kind: str | None = None,
              since: datetime | None = None) -> int:
        uid = self.identity(identity).uid if identity else None
        return sum(1 for d in self.delivered
                   if (uid is None or d.identity == uid) and (kind is None or d.kind == kind)
                   and (since is None or d.at >= since))

    def deliveries(self, identity: str | None = None, url: str | None = None,
                   kind: str | None = None) -> list[Delivery]:
        uid = self.identity(identity).uid if identity else None
        norm = normalize_url(url) if url else None
        return [d for d in self.delivered
                if (uid is None or d.identity == uid) and (norm is None or d.profile_url == norm)
                and (kind is None or d.kind == kind)]

    def duplicates(self, kind: str = "message") -> list[tuple[str, str, str, int]]:
        """(identity, profile, text, count) for every text delivered more than once."""
        seen: dict[tuple[str, str, str], int] = {}
        for d in self.delivered:
            if d.kind == kind:
                k = (d.identity, d.profile_url, d.text or "")
                seen[k] = seen.get(k, 0) + 1
        return [(*k, n) for k, n in sorted(seen.items()) if n > 1]

    @contextmanager
    def calling(self, identity: str, op: str) -> Iterator[None]:
        """While the block runs, a call of ``identity`` is being answered (from its arrival,
        through the latency, to its answer). A call arriving while another of the same
        identity is still answered is recorded in ``overlaps``: what one worker per identity
        must never cause (the multi-worker tests read it from ``/_sandbox/overlaps``)."""
        calls = self.in_flight.setdefault(identity, [])
        if calls:
            self.overlaps.append({"identity": identity, "op": op, "during": list(calls),
                                  "at": iso(self.now)})
        calls.append(op)
        try:
            yield
        finally:
            calls.remove(op)

    def inspect(self) -> dict[str, Any]:
        """A JSON-ready summary of the world (what tests and the inspection API report)."""
        self._advance()
        per: dict[str, dict[str, int]] = {}
        for d in self.delivered:
            c = per.setdefault(d.identity, {})
            c[d.kind] = c.get(d.kind, 0) + 1
        return {
            "now": iso(self.now),
            "seed": self.seed,
            "identities": {
                uid: {
                    "auth_ok": i.auth_ok(self.now), "kind": i.kind, "type": i.type,
                    "connections": len(self.network[uid]),
                    "pending_invitations": len(self.invitations[uid]),
                    "conversations": sum(1 for t in self.threads[uid].values() if t.messages),
                    "delivered": per.get(uid, {}),
                    "usage_24h": {a: len(self._window(uid, a))
                                  for (u, a) in list(self._action_times) if u == uid},
                    "usage_week": {
                        a: {"cap": cap, "used": self._week_count(uid, a),
                            "hold_until": iso(h) if (h := self._holds.get((uid, a)))
                            and h > self.now else None}
                        for a, cap in i.weekly_limits.items()},
                }
                for uid, i in self.identities.items()
            },
            "profiles": len(self.profiles),
            "delivered": len(self.delivered),
            "pending_events": len(self._events),
            "faults_injected": dict(self.faults_injected),
            "integration_events": len(self.integration_events),
            "calls": self.call_count,
        }
