"""The world's tables and its seeded draws: the base every layer of :class:`World` builds on."""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
from collections import deque
from datetime import datetime
from typing import Any

from engine.clock import Clock
from engine.sandbox.world.config import WorldConfig
from engine.sandbox.world.model import Delivery, Event, IdentityState, Invitation, Profile, Thread

Connection = tuple[Profile, datetime]  # a 1st-degree connection and when it was made


class ConnectionOrder:
    """One identity's connections in (time, write number) order, kept up to date as they
    are made and removed: a campaign's lists read them newest first many times a day, and
    sorting tens of thousands on every read cost most of a 100k-lead simulation."""

    def __init__(self, keyed: list[tuple[tuple[datetime, int], Connection]]) -> None:
        keyed.sort(key=lambda kc: kc[0])
        self.keys = [k for k, _ in keyed]
        self.items = [c for _, c in keyed]

    def add(self, key: tuple[datetime, int], item: Connection) -> None:
        at = bisect.bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.items.insert(at, item)

    def remove(self, key: tuple[datetime, int]) -> None:
        at = bisect.bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            del self.keys[at], self.items[at]

    def newest_first(self) -> list[Connection]:
        return self.items[::-1]


def digest(*key: object) -> bytes:
    """The hash every seeded draw starts from: the same key gives the same bytes."""
    return hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()


class WorldState:
    """The tables of the simulated LinkedIn and the seeded RNG every decision is drawn from."""

    def __init__(self, clock: Clock, seed: int = 0, config: WorldConfig | None = None) -> None:
        self.clock = clock
        self.seed = seed
        self.config = config or WorldConfig()
        self.started_at = clock.now()
        self.identities: dict[str, IdentityState] = {}
        self._alias: dict[str, str] = {}
        self.profiles: dict[str, Profile] = {}
        self._by_profile_id: dict[int, str] = {}
        #: identity uid -> profile url -> connected_at
        self.network: dict[str, dict[str, datetime]] = {}
        #: identity uid -> profile url -> the connection's write number (see next_write)
        self.connection_seqs: dict[str, dict[str, int]] = {}
        self.invitations: dict[str, dict[str, Invitation]] = {}
        self.threads: dict[str, dict[str, Thread]] = {}
        self._thread_index: dict[str, tuple[str, str]] = {}
        self._events: list[Event] = []
        self._seq = 0
        self._ids = 0
        #: the last write number given: every message and connection takes the next one, so
        #: the incremental lists (the Edges watermarks) can tell apart writes that share one
        #: virtual instant, which times cannot
        self._writes = 0
        #: set by from_json when it numbered the messages and connections of a world saved
        #: before the numbers: the whole world must be written again (records.py)
        self.resequenced = False
        self._action_times: dict[tuple[str, str], deque[datetime]] = {}
        # weekly caps: (identity, action) -> [Monday of the week counted, actions that week]
        self._week_counts: dict[tuple[str, str], list[Any]] = {}
        self._holds: dict[tuple[str, str], datetime] = {}  # (identity, action) -> hold ends
        # monthly caps: (identity, action) -> [1st of the month counted, actions that month]
        self._month_counts: dict[tuple[str, str], list[Any]] = {}
        self.delivered: list[Delivery] = []
        self.integration_events: list[dict[str, Any]] = []
        self._auth_reported: dict[str, bool] = {}
        self._fault_counts: dict[str, int] = {}
        self.faults_injected: dict[str, int] = {"429": 0, "5xx": 0, "timeout": 0}
        self.call_count = 0
        self._pending_replies: set[tuple[str, str]] = set()
        self._invite_counts: dict[tuple[str, str], int] = {}
        self._by_sn: dict[str, Profile] = {}
        self.follows: dict[str, list[str]] = {}  # identity uid -> followed profile urls
        self._thread_versions: dict[str, int] = {}  # bumped on every message: sort cache key
        self._sorted_threads: dict[str, tuple[int, list[Thread]]] = {}
        # bumped on every connection made or removed: with the network's size (a load adds
        # rows without a bump), what tells that an identity's ConnectionOrder is current
        self._network_versions: dict[str, int] = {}
        self._orders: dict[str, tuple[tuple[int, int], ConnectionOrder]] = {}
        #: JSON-ready state of each provider API (runs, schedules, workflows...), persisted
        #: with the world; each API owns its key ("edges", "linkedapi", "connectsafely")
        self.api_state: dict[str, Any] = {}
        #: (scheduled?, event) since its reader last emptied it, when one listens (not None):
        #: how writing the world through finds the events scheduled and applied (records.py)
        self.event_log: list[tuple[bool, Event]] | None = None
        #: ground truth of concurrency (not persisted): the calls being answered now per
        #: identity (their operations), and every call that began while another call of the
        #: same identity was still being answered (truth.py's ``calling``)
        self.in_flight: dict[str, list[str]] = {}
        self.overlaps: list[dict[str, Any]] = []

    def _uniform(self, *key: object) -> float:
        """One seeded draw in [0, 1) keyed like :meth:`_rng`, without building a Random."""
        return int.from_bytes(digest(self.seed, *key)[:7], "big") / float(1 << 56)

    def _rng(self, *key: object) -> random.Random:
        return random.Random(int.from_bytes(digest(self.seed, *key)[:8], "big"))

    def rng_for(self, *key: object) -> random.Random:
        """A generator seeded by the world's seed and ``key`` (the API layer's draws)."""
        return self._rng(*key)

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids:08d}"

    def _next_write(self) -> int:
        self._writes += 1
        return self._writes

    def _connect(self, identity: str, url: str, at: datetime) -> None:
        """Record a connection made (or dated) ``at``, with its write number."""
        network, seqs = self.network[identity], self.connection_seqs.setdefault(identity, {})
        order = self._current_order(identity)
        if order is not None and url in network:
            order.remove((network[url], seqs.get(url, 0)))
        network[url] = at
        seqs[url] = self._next_write()
        if order is not None:
            order.add((at, seqs[url]), (self.profiles[url], at))
        self._network_changed(identity, order)

    def _disconnect(self, identity: str, url: str) -> bool:
        """Remove a connection; False when there was none."""
        network, seqs = self.network[identity], self.connection_seqs.get(identity, {})
        if url not in network:
            return False
        order = self._current_order(identity)
        at, seq = network.pop(url), seqs.pop(url, 0)
        if order is not None:
            order.remove((at, seq))
        self._network_changed(identity, order)
        return True

    def _network_key(self, identity: str) -> tuple[int, int]:
        return self._network_versions.get(identity, 0), len(self.network[identity])

    def _current_order(self, identity: str) -> ConnectionOrder | None:
        """``identity``'s kept order when it still matches its network, else None."""
        kept = self._orders.get(identity)
        return kept[1] if kept is not None and kept[0] == self._network_key(identity) else None

    def _network_changed(self, identity: str, order: ConnectionOrder | None) -> None:
        self._network_versions[identity] = self._network_versions.get(identity, 0) + 1
        if order is not None:  # kept up to date above: still current
            self._orders[identity] = (self._network_key(identity), order)

    def _schedule(self, at: datetime, kind: str, identity: str, url: str = "",
                  **data: Any) -> None:
        self._seq += 1
        event = Event(at, self._seq, kind, identity, url, data)
        heapq.heappush(self._events, event)
        if self.event_log is not None:
            self.event_log.append((True, event))

    @property
    def now(self) -> datetime:
        return self.clock.now()
