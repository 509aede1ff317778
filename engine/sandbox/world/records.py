"""The world as rows, and the rows changed since the last write: what lets the sandbox write
its world through after every call (engine/sandbox/durable.py) at the cost of what changed.

A row is ``(section, key, body)``, ``body`` the record's JSON (``None``: delete it), in the
shape :meth:`World.to_json` gives it (orjson writes the dataclasses: the same keys, and the
same ``...Z`` times as :func:`iso`). Finding what changed costs little because every change
the world makes to its big tables leaves a trace: a new :class:`Delivery` names the
(identity, profile) pair whose invitation, connection, thread or follows it changed; the
world's ``event_log`` names the events scheduled, and the ones applied with the pair each
changed; the other tables are small and compared whole (the counters, an identity, the API
state of a provider) or by a cheap fingerprint (each action-time window).

Example::

    tracker = RowTracker(world)           # after loading the world, or writing it whole
    world.connect("ident-alice", url)
    rows = tracker.changes()              # [("delivered", ...), ("invitations", ...), ...]
    clock, doc = assemble(rows_in_the_database)  # the to_json() shape, for from_json()
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import orjson

from engine.sandbox.world import World
from engine.sandbox.world.times import iso

Row = tuple[str, str, bytes | None]

_SEP = "\x1f"  # between the parts of a composite key (never in a uid or a URL)


def _dump(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    except TypeError:  # what orjson refuses and JSON allows: an integer past 64 bits
        return json.dumps(value, default=_plain, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to the sandbox database")


def _pair(uid: str, url: str) -> str:
    return f"{uid}{_SEP}{url}"


def all_rows(world: World, clock: str | None) -> Iterator[tuple[str, str, bytes]]:
    """Every row of ``world`` (``clock``: the saved virtual time, or None)."""
    yield "meta", "clock", _dump(clock)
    yield "meta", "scalars", _dump(world.scalars_json())
    yield "meta", "config", _dump(world.config_json())
    for i in world.identities.values():
        yield "identities", i.uid, _dump(i)
    for p in world.profiles.values():
        yield "profiles", p.url, _dump(p)
    for uid, conns in world.network.items():
        for url, at in conns.items():
            yield "connections", _pair(uid, url), _dump([at, world.connection_seq(uid, url)])
    for uid, invs in world.invitations.items():
        for url, inv in invs.items():
            yield "invitations", _pair(uid, url), _dump(inv)
    for uid, threads in world.threads.items():
        for url, t in threads.items():
            yield "threads", _pair(uid, url), _dump(t)
    for e in world._events:
        yield "events", str(e.seq), _dump(e)
    for (uid, action), times in world._action_times.items():
        yield "action_times", _pair(uid, action), _dump(list(times))
    for n, d in enumerate(world.delivered):
        yield "delivered", f"{n:010d}", _dump(d)
    for n, ev in enumerate(world.integration_events):
        yield "integration_events", f"{n:010d}", _dump(ev)
    for name, st in world.api_state.items():
        yield "api_state", name, _dump(st)
    for uid, urls in world.follows.items():
        yield "follows", uid, _dump(urls)


def assemble(rows: Iterable[tuple[str, str, bytes]]) -> tuple[str | None, dict[str, Any]]:
    """The saved clock and the :meth:`World.to_json` document the rows hold (rows in the order
    they were first written)."""
    doc: dict[str, Any] = {"identities": [], "profiles": [], "connections": {},
                           "invitations": [], "threads": [], "events": [], "action_times": [],
                           "api_state": {}, "follows": {}}
    clock: str | None = None
    indexed: dict[str, list[tuple[str, Any]]] = {"delivered": [], "integration_events": []}
    for section, key, body in rows:
        # the API state holds clients' JSON, which may hold integers past 64 bits (orjson
        # would read them as floats)
        value = json.loads(body) if section == "api_state" else orjson.loads(body)
        if section == "meta":
            if key == "clock":
                clock = value
            elif key == "scalars":
                doc.update(value)
            else:
                doc[key] = value
        elif section == "connections":
            uid, url = key.split(_SEP, 1)
            doc["connections"].setdefault(uid, {})[url] = value
        elif section == "action_times":
            uid, action = key.split(_SEP, 1)
            doc["action_times"].append([uid, action, value])
        elif section in indexed:
            indexed[section].append((key, value))
        elif section in ("api_state", "follows"):
            doc[section][key] = value
        else:
            doc[section].append(value)
    for section, items in indexed.items():
        doc[section] = [v for _, v in sorted(items, key=lambda kv: kv[0])]
    return clock, doc


class RowTracker:
    """What was last written of one world, to find the rows changed since. It listens to the
    world's ``event_log`` (one tracker per world)."""

    def __init__(self, world: World) -> None:
        self.world = world
        world.event_log = []
        self._delivered = len(world.delivered)
        self._integration = len(world.integration_events)
        self._profiles = len(world.profiles)
        self._blobs: dict[tuple[str, str], bytes] = {}
        self._windows = {k: (len(ts), ts[-1] if ts else None)
                         for k, ts in world._action_times.items()}
        for section, key, body in self._compared_rows():
            self._blobs[section, key] = body

    def changes(self) -> list[Row]:
        """The rows changed since the last call (or since the tracker was made), and the
        deletions. Not the config, nor a profile changed in place: only the control API
        (``/_sandbox``) changes those, and the sandbox writes the whole world after it."""
        w = self.world
        rows: list[Row] = []
        # the pairs whose records changed, in the order the world changed them: a record
        # first written keeps that place when the world is read back
        pairs: dict[tuple[str, str], None] = {}
        log = w.event_log or []
        w.event_log = []
        for scheduled, e in log:
            rows.append(("events", str(e.seq), _dump(e) if scheduled else None))
            if not scheduled:
                pairs[e.identity, e.profile_url] = None
        for n in range(self._delivered, len(w.delivered)):
            d = w.delivered[n]
            rows.append(("delivered", f"{n:010d}", _dump(d)))
            pairs[d.identity, d.profile_url] = None
        self._delivered = len(w.delivered)
        rows.extend(self._pair_rows(pairs))
        if len(w.profiles) != self._profiles:
            for p in islice(w.profiles.values(), self._profiles, None):
                rows.append(("profiles", p.url, _dump(p)))
            self._profiles = len(w.profiles)
        for n in range(self._integration, len(w.integration_events)):
            rows.append(("integration_events", f"{n:010d}", _dump(w.integration_events[n])))
        self._integration = len(w.integration_events)
        rows.extend(self._window_rows())
        for section, key, body in self._compared_rows():
            if self._blobs.get((section, key)) != body:
                rows.append((section, key, body))
                self._blobs[section, key] = body
        return rows

    def _pair_rows(self, pairs: dict[tuple[str, str], None]) -> Iterator[Row]:
        w = self.world
        uids: dict[str, None] = {}
        for uid, url in pairs:
            uids[uid] = None
            key = _pair(uid, url)
            at = w.network.get(uid, {}).get(url)
            yield "connections", key, \
                None if at is None else _dump([at, w.connection_seq(uid, url)])
            inv = w.invitations.get(uid, {}).get(url)
            yield "invitations", key, None if inv is None else _dump(inv)
            thread = w.threads.get(uid, {}).get(url)
            yield "threads", key, None if thread is None else _dump(thread)
        for uid in uids:
            urls = w.follows.get(uid)
            yield "follows", uid, None if urls is None else _dump(urls)

    def _window_rows(self) -> Iterator[Row]:
        """Action-time windows whose length or newest time moved (a window only grows at its
        end and shrinks at its start)."""
        for key, ts in self.world._action_times.items():
            mark = (len(ts), ts[-1] if ts else None)
            if self._windows.get(key) != mark:
                self._windows[key] = mark
                yield "action_times", _pair(*key), _dump(list(ts))

    def _compared_rows(self) -> Iterator[tuple[str, str, bytes]]:
        """The small tables, compared whole: the counters, identities, each API's state."""
        w = self.world
        yield "meta", "scalars", _dump(w.scalars_json())
        for i in w.identities.values():
            yield "identities", i.uid, _dump(i)
        for name, st in w.api_state.items():
            yield "api_state", name, _dump(st)
