"""A worker's identity leases: many ``seqrun run`` processes on one store, each identity's
actions in one of them at a time.

The worker registers a heartbeat row, then at the start of every tick :meth:`balance`
renews what it holds, keeps a fair share (``ceil(identities / live workers)``: a worker
holding more releases the extra, one holding fewer claims free identities) and returns the
identities it just took; the runner drops what it cached about them and reconciles their open
intents (the existing recovery) before anything of theirs is sent. A tick of a big campaign can
last long, so the heartbeat also finds the identities above the share while a tick runs (a
worker joined) and the runner gives each up at its next call (:meth:`yielding`). A heartbeat in the
background renews the leases while a tick runs or the worker sleeps. Before each provider
call the runner asks :meth:`check`: a lease lost (expired and taken over) or not renewed
for too long (the store unreachable) stops that identity before the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from engine.errors import LockError, StoreError
from engine.run.state import RunState
from engine.store.codecs import utcnow
from engine.store.db import HEAD, known_revisions, newer_schema
from engine.store.leases import Claimed
from engine.store.locks import _pid_ns

log = logging.getLogger(__name__)

#: how long a lease lives without a heartbeat (``SEQRUN_LEASE_TTL``, seconds)
DEFAULT_TTL = timedelta(seconds=60)


class LeaseLost(LockError):
    """This worker no longer holds the identity (no call is made for it)."""


def lease_ttl() -> timedelta:
    """``$SEQRUN_LEASE_TTL`` (seconds), else 60 s: how long a dead worker's identities wait."""
    raw = os.environ.get("SEQRUN_LEASE_TTL")
    if not raw:
        return DEFAULT_TTL
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        from engine.errors import ConfigError

        raise ConfigError(f"SEQRUN_LEASE_TTL={raw!r}: expected a number of seconds > 0")
    return timedelta(seconds=value)


class IdentityLeases:
    """The identities this worker holds (``state.owned``) and the heartbeat that keeps them."""

    def __init__(self, state: RunState, ttl: timedelta) -> None:
        self.state = state
        self.store = state.store
        self.ttl = ttl
        self.host, self.pid = socket.gethostname(), os.getpid()
        # the same shape as a lock holder, so a dead process of this host is seen at once
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}:{_pid_ns()}"
        self.started_at = utcnow()
        self._renewed = 0.0  # time.monotonic() of the last heartbeat that succeeded
        self._balanced: float | None = None  # time.monotonic() of the last balance
        # ticks on a virtual clock come many a second: the shares are kept at most this often
        self.rebalance_every = ttl.total_seconds() / 8
        self.fatal: str | None = None  # a newer schema: the worker stops
        self._candidates = 0  # how many identities the last balance saw
        #: identities above the fair share found while a tick runs (a worker joined): each
        #: is given up at its next call (:meth:`yielding`), not at the end of a long tick
        self.leaving: set[str] = set()
        #: the daemon's ticks (run_forever) end at a call (each identity makes one call a
        #: tick at least, as a sync before its calls may take long), their leads left due
        #: for the next tick, when the heartbeat found leases to claim (a dead worker's) and
        #: the tick ran this long (seconds): identities are claimed at a tick's start, and a
        #: big campaign's tick could otherwise last hours. None (a virtual clock's run,
        #: --once): a tick runs to its end, as a simulation must
        self.tick_budget: float | None = None
        self.tick_started = 0.0  # time.monotonic() at the start of this tick
        self.to_claim = False  # the heartbeat found free leases while this worker is short

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[IdentityLeases]:
        """Registered as a live worker while the block runs (holding nothing yet; the
        runner's tick calls :meth:`balance`); every lease released at the end."""
        self.state.owned, self.state.holder = set(), self.id
        self._beat()
        keeper = asyncio.ensure_future(self._keep())
        try:
            yield self
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(StoreError):  # a store gone: the leases expire
                self.store.retire_worker(self.id)
            self.state.owned, self.state.holder = None, None

    def _beat(self) -> None:
        """Renew the worker's row and its leases; forget a lease that expired meanwhile."""
        held, revision = self.store.heartbeat(self.id, self.ttl, host=self.host, pid=self.pid,
                                    started_at=self.started_at)
        self._renewed = time.monotonic()
        owned = self.state.owned
        if owned is not None:
            lost = owned - held
            if lost:
                log.warning("lost the lease of %s (expired, taken over)", ", ".join(sorted(lost)))
            owned &= held
        if revision is not None and revision != HEAD and revision not in known_revisions():
            self.fatal = newer_schema(self.store.path or self.store.url, revision)

    async def _keep(self) -> None:
        period = max(self.ttl.total_seconds() / 4, 0.01)
        while True:
            await asyncio.sleep(period)  # wall time: leases expire on the wall clock
            try:
                self._beat()
                self._find_extra()
            except Exception as exc:  # the store briefly unreachable: try again soon
                log.warning("could not renew the worker's leases: %s", exc)

    def _share(self, identities: int) -> int:
        return math.ceil(identities / max(1, len(self.store.live_workers())))

    def _find_extra(self) -> None:
        """While a tick runs (a big campaign's can last long): mark the identities above
        the fair share (a worker joined: it must not wait for the tick's end), and note
        free leases when this worker is short of its share (a worker died: the tick ends
        soon, see :attr:`tick_budget`). A dead process of this host is reaped on the way."""
        owned = self.state.owned
        if owned is None or not self._candidates:
            return
        self.store.reap_dead_workers()
        share = self._share(self._candidates)
        self.leaving = set(sorted(owned)[share:]) if len(owned) > share else set()
        self.to_claim = len(owned) < share and self.store.free_leases() > 0

    def tick_spent(self) -> bool:
        """Whether this tick ends at this call: leases wait to be claimed and it ran for
        :attr:`tick_budget`."""
        budget = self.tick_budget
        return (budget is not None and self.to_claim
                and time.monotonic() - self.tick_started > budget)

    def yielding(self, identity: str) -> bool:
        """Whether this worker gives ``identity`` up at this call (see :meth:`give_up`)."""
        return identity in self.leaving

    def give_up(self, identity: str) -> None:
        """Release ``identity`` between two of its calls (the caller flushed its writes and
        has nothing of it in flight): another worker may claim it at once."""
        self.store.release_identities(self.id, [identity])
        self.leaving.discard(identity)
        if self.state.owned is not None:
            self.state.owned.discard(identity)
        log.info("released %s (a fair share for a worker that joined)", identity)

    def balance(self) -> list[Claimed]:
        """Renew, release the identities above a fair share, claim free ones up to it;
        the identities just claimed (their previous holder is in each). At most every
        ``rebalance_every`` seconds, unless the heartbeat saw leases to claim."""
        now = time.monotonic()
        if (self._balanced is not None and now - self._balanced < self.rebalance_every
                and not self.to_claim):  # leases wait (the heartbeat saw them): claim now
            return []
        self._balanced = now
        self.store.reap_dead_workers()
        self._beat()
        if self.fatal is not None:
            raise StoreError(self.fatal)
        owned = self.state.owned
        assert owned is not None, "balance() outside hold()"
        identities = self.store.lease_candidates()
        self._candidates = len(identities)
        share = self._share(len(identities))
        self.leaving, self.to_claim = set(), False
        if len(owned) > share:  # at a tick's start: nothing of theirs is in flight here
            extra = sorted(owned)[share:]
            self.store.release_identities(self.id, extra)
            owned.difference_update(extra)
            log.info("released %s (fair share %d of %d)", ", ".join(extra), share,
                     len(identities))
        claimed = self.store.claim_identities(
            self.id, [i for i in identities if i not in owned], share - len(owned), self.ttl)
        owned.update(c.identity for c in claimed)
        return claimed

    def check(self, identity: str) -> None:
        """Raise :class:`LeaseLost` unless this worker still holds ``identity`` with a lease
        renewed recently enough that it cannot have expired (a margin of a quarter TTL)."""
        owned = self.state.owned
        if owned is None or identity not in owned:
            raise LeaseLost(f"identity {identity}: its lease was lost (taken over)")
        if time.monotonic() - self._renewed > self.ttl.total_seconds() * 0.75:
            raise LeaseLost(f"identity {identity}: its lease could not be renewed")
