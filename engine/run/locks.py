"""The ``run`` lock: one runner at a time, refreshed in the background while it is held."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from engine.errors import LockError
from engine.run.state import RunState
from engine.store import LockHandle

log = logging.getLogger(__name__)

RUN_LOCK = "run"  # one runner at a time (hold_run_lock)


class RunLock:
    """Holds the ``run`` lock for a runner; its holder goes into the shared state (the
    intents written meanwhile carry it) and a lost lock is remembered for :meth:`check`."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.lost: str | None = None

    @contextlib.asynccontextmanager
    async def hold(self, ttl: timedelta) -> AsyncIterator[LockHandle]:
        with self.state.store.lock(RUN_LOCK, ttl=ttl) as held:
            self.state.holder, self.lost = held.holder, None
            keeper = asyncio.ensure_future(self._keep(held))
            try:
                yield held
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                self.state.holder = None

    async def _keep(self, held: LockHandle) -> None:
        period = max(held.ttl.total_seconds() / 4, 0.01)
        while True:
            await asyncio.sleep(period)  # wall time: the lock expires on the wall clock
            try:
                held.refresh()
            except LockError as exc:
                self.lost = str(exc)
                log.error("stopping: %s", exc)
                return
            except Exception as exc:  # the store is briefly unreachable: try again soon
                log.warning("could not refresh the run lock: %s", exc)

    def check(self) -> None:
        """Raise :class:`LockError` once the lock was lost (not one more provider call)."""
        if self.lost is not None:
            raise LockError(self.lost)
