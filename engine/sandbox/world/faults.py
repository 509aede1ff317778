"""Injected failures: a seeded draw per API call."""

from __future__ import annotations

from collections.abc import Collection

from engine.sandbox.world.model import FaultPlan
from engine.sandbox.world.reads import Reads

ALL_FAULTS = ("429", "5xx", "timeout")


class Faults(Reads):
    """Draws the 429s, 5xx and timeouts the provider APIs answer with."""

    def fault_plan(self, api: str, op: str, kinds: Collection[str] = ALL_FAULTS,
                   ) -> FaultPlan | None:
        """A seeded draw per (api, op, call number): None, 429, 5xx or timeout (before or after
        the action; the API layer performs the action first when ``after``). A drawn kind not
        in ``kinds`` (the ways this endpoint of the real API can fail) is no fault."""
        f = self.config.faults
        if not (f.rate_429 or f.rate_5xx or f.rate_timeout):
            return None
        key = f"{api}:{op}"
        n = self._fault_counts.get(key, 0)
        self._fault_counts[key] = n + 1
        rng = self._rng("fault", api, op, n)
        x = rng.random()
        plan: FaultPlan | None = None
        if x < f.rate_429:
            plan = FaultPlan("429")
        elif x < f.rate_429 + f.rate_5xx:
            plan = FaultPlan("5xx")
        elif x < f.rate_429 + f.rate_5xx + f.rate_timeout:
            plan = FaultPlan("timeout", after=rng.random() < 0.5)
        if plan is not None and plan.kind not in kinds:
            return None
        if plan is not None:
            self.faults_injected[plan.kind] += 1
        return plan

    def maybe_fault(self, api: str, op: str) -> str | None:
        """``None`` or ``"429"``/``"5xx"``/``"timeout"`` (see :meth:`fault_plan`)."""
        plan = self.fault_plan(api, op)
        return plan.kind if plan else None
