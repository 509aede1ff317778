"""The world as JSON and back (the clock is saved by its owner)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any, Self

from engine.clock import Clock
from engine.sandbox.world.config import FaultConfig, TextRule, WorldConfig
from engine.sandbox.world.model import (
    Delivery,
    Event,
    IdentityState,
    Invitation,
    Message,
    Profile,
    Thread,
)
from engine.sandbox.world.times import iso, parse_iso
from engine.sandbox.world.truth import GroundTruth

# IdentityState fields saved in a form of their own (tuples and datetimes)
_IDENTITY_SPECIAL = ("auth_history", "created_at", "aliases")


class Persistence(GroundTruth):
    """:meth:`to_json` and :meth:`from_json`: everything needed to rebuild a world."""

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild this world (the clock is saved by its owner)."""
        return {
            **self.scalars_json(),
            "config": self.config_json(),
            "identities": [_identity_json(i) for i in self.identities.values()],
            "profiles": [_profile_json(p) for p in self.profiles.values()],
            "connections": {u: {url: [iso(a), self.connection_seq(u, url)]
                                for url, a in c.items()}
                            for u, c in self.network.items()},
            "invitations": [
                {**asdict(inv), "sent_at": iso(inv.sent_at)}
                for invs in self.invitations.values() for inv in invs.values()
            ],
            "threads": [_thread_json(t) for ts in self.threads.values() for t in ts.values()],
            "events": [
                {"at": iso(e.at), "seq": e.seq, "kind": e.kind, "identity": e.identity,
                 "profile_url": e.profile_url, "data": e.data}
                for e in sorted(self._events)
            ],
            "action_times": [[u, a, [iso(t) for t in ts]]
                             for (u, a), ts in self._action_times.items()],
            "delivered": [{**asdict(d), "at": iso(d.at)} for d in self.delivered],
            "integration_events": self.integration_events,
            "api_state": self.api_state,
            "follows": self.follows,
        }

    def scalars_json(self) -> dict[str, Any]:
        """The counters and small tables of :meth:`to_json` (the rest is per record, or the
        config; see engine/sandbox/world/records.py, which writes them apart)."""
        return {
            "version": 1,
            "seed": self.seed,
            "started_at": iso(self.started_at),
            "seq": self._seq,
            "ids": self._ids,
            "writes": self._writes,
            "week_counts": [[u, a, iso(week), n]
                            for (u, a), (week, n) in self._week_counts.items()],
            "holds": [[u, a, iso(until)] for (u, a), until in self._holds.items()],
            "month_counts": [[u, a, iso(month), n]
                             for (u, a), (month, n) in self._month_counts.items()],
            "auth_reported": self._auth_reported,
            "fault_counts": self._fault_counts,
            "faults_injected": self.faults_injected,
            "call_count": self.call_count,
        }

    def config_json(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        faults = self.config.faults
        cfg["faults"]["auth_expire_at"] = {k: iso(v) for k, v in faults.auth_expire_at.items()}
        cfg["faults"]["reauth_at"] = {k: iso(v) for k, v in faults.reauth_at.items()}
        return cfg

    @classmethod
    def from_json(cls, data: Mapping[str, Any], clock: Clock) -> Self:
        """Rebuild a world saved by :meth:`to_json` on ``clock``."""
        w = cls(clock, seed=int(data["seed"]), config=_config(data["config"]))
        w.started_at = parse_iso(data["started_at"])
        for raw in data["identities"]:
            w._load_identity(raw)
        for raw in data["profiles"]:
            w._load_profile(raw)
        for uid, conns in data["connections"].items():
            w._load_connections(uid, conns)
        for raw in data["invitations"]:
            inv = Invitation(**{**raw, "sent_at": parse_iso(raw["sent_at"])})
            w.invitations.setdefault(inv.identity, {})[inv.profile_url] = inv
        for raw in data["threads"]:
            w._load_thread(raw)
        w._events = [Event(parse_iso(e["at"]), e["seq"], e["kind"], e["identity"],
                           e["profile_url"], dict(e["data"])) for e in data["events"]]
        heapq.heapify(w._events)
        w._load_counters(data)
        w.delivered = [Delivery(**{**d, "at": parse_iso(d["at"])}) for d in data["delivered"]]
        w.integration_events = list(data["integration_events"])
        w.api_state = dict(data.get("api_state") or {})
        w.follows = {k: list(v) for k, v in (data.get("follows") or {}).items()}
        w._rebuild_indexes()
        w._resequence()
        return w

    def _load_connections(self, uid: str, conns: Mapping[str, Any]) -> None:
        """``{url: [connected_at, write number]}``, or (saved before the numbers) ``{url:
        connected_at}``: those are numbered by :meth:`_resequence`."""
        network = self.network.setdefault(uid, {})
        seqs = self.connection_seqs.setdefault(uid, {})
        for url, raw in conns.items():
            if isinstance(raw, str):
                network[url] = parse_iso(raw)
            else:
                network[url], seqs[url] = parse_iso(raw[0]), int(raw[1])

    def _resequence(self) -> None:
        """Number the messages and connections of a world saved before the write numbers,
        in the order of their times (a message's id breaks a tie: ids go up as they are
        given), after the numbers already given; ``resequenced`` tells the sandbox to write
        the whole world again, so that no row keeps a record without its number."""
        unnumbered: list[tuple[datetime, str, Any]] = []
        for uid, conns in self.network.items():
            seqs = self.connection_seqs.setdefault(uid, {})
            unnumbered.extend((at, url, (seqs, url)) for url, at in conns.items()
                              if url not in seqs)
        for threads in self.threads.values():
            for t in threads.values():
                unnumbered.extend((m.created_at, m.message_id, m) for m in t.messages
                                  if not m.seq)
        if not unnumbered:
            return
        unnumbered.sort(key=lambda item: (item[0], item[1]))
        for _, _, record in unnumbered:
            if isinstance(record, Message):
                record.seq = self._next_write()
            else:
                seqs, url = record
                seqs[url] = self._next_write()
        self.resequenced = True

    def _load_identity(self, raw: Mapping[str, Any]) -> None:
        i = dict(raw)
        ident = IdentityState(
            **{k: v for k, v in i.items() if k not in _IDENTITY_SPECIAL},
            aliases=tuple(i["aliases"]),
            created_at=parse_iso(i["created_at"]) if i.get("created_at") else None,
            auth_history=[(parse_iso(a), bool(ok)) for a, ok in i["auth_history"]],
        )
        self.identities[ident.uid] = ident
        for alias in ident.aliases:
            self._alias[alias] = ident.uid
        self._by_profile_id[ident.profile_id] = ident.profile_url
        self.network.setdefault(ident.uid, {})
        self.invitations.setdefault(ident.uid, {})
        self.threads.setdefault(ident.uid, {})

    def _load_profile(self, raw: Mapping[str, Any]) -> None:
        p = dict(raw)
        for key in ("already_connected_with", "writes_first_to"):
            p[key] = None if p[key] is None else tuple(p[key])
        prof = Profile(**p)
        self.profiles[prof.url] = prof
        self._by_sn[prof.sales_navigator_profile_id.lower()] = prof
        self._by_profile_id[prof.profile_id] = prof.url

    def _load_thread(self, raw: Mapping[str, Any]) -> None:
        t = Thread(thread_id=raw["thread_id"], identity=raw["identity"],
                   profile_url=raw["profile_url"], created_at=parse_iso(raw["created_at"]),
                   inmail=bool(raw.get("inmail")),
                   messages=[Message(**{**m, "created_at": parse_iso(m["created_at"])})
                             for m in raw["messages"]])
        self.threads.setdefault(t.identity, {})[t.profile_url] = t
        self._thread_index[t.thread_id] = (t.identity, t.profile_url)

    def _load_counters(self, data: Mapping[str, Any]) -> None:
        self._seq = int(data["seq"])
        self._ids = int(data["ids"])
        self._writes = int(data.get("writes", 0))  # absent: saved before the write numbers
        self._action_times = {(u, a): deque(parse_iso(t) for t in ts)
                              for u, a, ts in data["action_times"]}
        self._week_counts = {(u, a): [parse_iso(week), int(n)]
                             for u, a, week, n in data.get("week_counts", [])}
        self._holds = {(u, a): parse_iso(until) for u, a, until in data.get("holds", [])}
        self._month_counts = {(u, a): [parse_iso(month), int(n)]
                              for u, a, month, n in data.get("month_counts", [])}
        self._auth_reported = dict(data["auth_reported"])
        self._fault_counts = dict(data["fault_counts"])
        self.faults_injected = dict(data["faults_injected"])
        self.call_count = int(data.get("call_count", 0))

    def _rebuild_indexes(self) -> None:
        """The tables derived from events and deliveries (not saved)."""
        self._pending_replies = {(e.identity, e.profile_url) for e in self._events
                                 if e.kind == "reply"}
        for d in self.delivered:
            if d.kind == "invite":
                pair = (d.identity, d.profile_url)
                self._invite_counts[pair] = self._invite_counts.get(pair, 0) + 1


def _config(raw: Mapping[str, Any]) -> WorldConfig:
    cfg = dict(raw)
    fcfg = dict(cfg.pop("faults"))
    fcfg["auth_expire_at"] = {k: parse_iso(v) for k, v in fcfg["auth_expire_at"].items()}
    fcfg["reauth_at"] = {k: parse_iso(v) for k, v in fcfg["reauth_at"].items()}
    for key in ("accept_delay_hours", "reply_delay_hours", "writes_first_delay_hours"):
        cfg[key] = tuple(cfg[key])
    cfg["by_text"] = tuple(TextRule(**r) for r in cfg.get("by_text", ()))
    return WorldConfig(**cfg, faults=FaultConfig(**fcfg))


def _identity_json(i: IdentityState) -> dict[str, Any]:
    return {**{f.name: getattr(i, f.name) for f in fields(i) if f.name not in _IDENTITY_SPECIAL},
            "aliases": list(i.aliases),
            "created_at": iso(i.created_at) if i.created_at else None,
            "auth_history": [[iso(a), ok] for a, ok in i.auth_history]}


def _profile_json(p: Profile) -> dict[str, Any]:
    return {**asdict(p),
            "already_connected_with": None if p.already_connected_with is None
            else list(p.already_connected_with),
            "writes_first_to": None if p.writes_first_to is None else list(p.writes_first_to)}


def _thread_json(t: Thread) -> dict[str, Any]:
    return {"thread_id": t.thread_id, "identity": t.identity, "profile_url": t.profile_url,
            "created_at": iso(t.created_at), "inmail": t.inmail,
            "messages": [{**asdict(m), "created_at": iso(m.created_at)} for m in t.messages]}
