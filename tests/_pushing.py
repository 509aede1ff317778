"""Managed Edges schedules whose results `seqrun serve` receives, for tests and benchmarks:
a virtual clock during whose sleeps the sandbox runs its schedules at their instants, and the
hourly incremental connections and conversations schedules applied as `seqrun apply` does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta

import httpx

from engine.apply.schedules import apply_schedule_plan, plan_schedules
from engine.clock import VirtualClock
from engine.model import Callback, Metadata, Schedule
from engine.sandbox import Sandbox
from engine.serve.config import ServeConfig, edges_run_callback
from engine.store import Store


class EdgesTime(VirtualClock):
    """The virtual clock of a runner beside Edges: while the runner sleeps, Edges runs its
    schedules at their instants (with ``edges`` set, the sandbox is pumped at every full hour
    the sleep crosses, as the real one runs them whether or not seqrun calls)."""

    edges: Sandbox | None = None

    async def sleep(self, seconds: float) -> None:
        end = self._now + timedelta(seconds=max(0.0, seconds))
        while self.edges is not None:
            hour = self._now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            if hour > end:
                break
            self._now = hour
            await self.edges.tick()
        self._now = end
        await asyncio.sleep(0)


async def apply_pushing_schedules(client: httpx.AsyncClient, store: Store, config: ServeConfig,
                                  identities: Iterable[str]) -> None:
    """Per identity, hourly incremental schedules of its connections and conversations with
    their results by callback to the receiver, planned and applied as `seqrun apply` does."""
    hook = edges_run_callback(config)
    assert hook is not None
    callback = Callback(hook["url"], hook["headers"])
    wanted = [
        Schedule(Metadata(f"{short}-{ident}"), "edges", action, (ident,), cron="0 * * * *",
                 parameters={"sync_mode": "incremental"}, callback=callback)
        for ident in identities
        for short, action in (("connections", "linkedin-extract-connections"),
                              ("inbox", "linkedin-extract-conversations"))
    ]
    plan = await plan_schedules(wanted, client=client, store=store)
    await apply_schedule_plan(plan, client=client, store=store)
