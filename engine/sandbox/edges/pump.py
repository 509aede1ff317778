"""The lazy background: due schedules, queued runs and webhooks, processed on each request."""

from __future__ import annotations

from starlette.requests import Request

from engine.sandbox.common import JSON
from engine.sandbox.edges.schedules import Schedules


class Pump(Schedules):
    """Advances runs and schedules at the start of every request and on tick."""

    async def tick(self) -> int:
        """Start due schedule iterations and process queued runs; returns runs started."""
        return await self.pump()

    async def pump(self) -> int:
        """Due schedule iterations (skipped while the previous run is unfinished), then every
        runnable run. Called at the start of each Edges request and by :meth:`tick`. A pump
        already under way (awaiting a callback POST) is not re-entered: the next one catches up.
        """
        st = self.state
        if self._pumping:
            return 0
        if not (st["active"] or st["schedules"] or st.get("integration_webhooks")
                or st.get("callback_retries")):
            return 0
        self._pumping = True
        try:
            if st.get("callback_retries"):
                await self._retry_callbacks()
            if st.get("integration_webhooks"):
                await self._integration_webhooks()
            started = self._due_schedules()
            if st["active"]:
                await self._process_runs()
        finally:
            self._pumping = False
        return started

    async def _prelude(self, request: Request) -> JSON | None:
        denied = self._auth(request)
        if denied is not None:
            return denied
        await self.pump()
        return None
