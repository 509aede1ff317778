"""The sandbox LinkedAPI's tables (workflows, result links, synced conversations, webhook outbox),
live on the world object and written through to ``world.api_state["linkedapi"]``."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from engine.sandbox.common import identification_env_var
from engine.sandbox.linkedapi.wire import IDENT_PREFIX, SANDBOX_TOKEN
from engine.sandbox.world import World, iso, parse_iso


@dataclass
class WorkflowRecord:
    workflow_id: str
    account: str  # world identity uid
    body: Any
    api: str  # current | account
    submitted_at: datetime
    finish_at: datetime
    seq: int
    result_handling: str = "long"
    result_hash: str | None = None
    webhook: str | None = None
    status: str = "running"  # running | completed | failed
    completion: Any = None
    failure: dict[str, str] | None = None
    cancelled: bool = False


@dataclass
class LinkedApiState:
    """The sandbox LinkedAPI's own tables, kept on the world object."""

    workflows: dict[str, WorkflowRecord] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)  # result hash -> workflow id
    synced: set[tuple[str, str]] = field(default_factory=set)  # (account, person url)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # hook deliveries to make
    seq: int = 0
    api_token: str = SANDBOX_TOKEN
    base_seconds: float = 1.0
    seconds_per_action: float = 1.0
    dirty: bool = False  # something besides workflows changed (outbox)
    changed: set[str] = field(default_factory=set)  # workflow ids to write through
    running: set[str] = field(default_factory=set)  # ids of unfinished workflows
    pruned_at: datetime | None = None
    # posts identities created: url -> {account, text, time}
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # reactions and comments identities made: {account, kind, postUrl, time, type | text}
    engagements: list[dict[str, Any]] = field(default_factory=list)
    # every action executed, for /stats/actions: [account, actionType, success, time]
    stats: list[list[Any]] = field(default_factory=list)
    # admin API: account -> limits set by limits.set ({category, period, maxValue, isEnabled})
    admin_limits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # account -> regenerated token
    disconnected: list[str] = field(default_factory=list)  # accounts disconnected by admin
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)  # connection sessions
    admin_calls: list[datetime] = field(default_factory=list)  # admin rate limit window

    def touch(self, record: WorkflowRecord) -> None:
        self.changed.add(record.workflow_id)
        if record.status == "running" and record.workflow_id in self.workflows:
            self.running.add(record.workflow_id)
        else:
            self.running.discard(record.workflow_id)

    def unfinished(self, account: str) -> int:
        return sum(1 for wid in self.running if self.workflows[wid].account == account)


_LIVE: weakref.WeakKeyDictionary[World, LinkedApiState] = weakref.WeakKeyDictionary()


def state(world: World) -> LinkedApiState:
    """The LinkedAPI tables of ``world``: live, or rebuilt from ``world.api_state``."""
    st = _LIVE.get(world)
    if st is None:
        st = LinkedApiState()
        _LIVE[world] = st
        saved = world.api_state.get("linkedapi")
        if isinstance(saved, Mapping):
            load_state(world, saved)
    return st


def save(world: World) -> None:
    """Write changes through to ``world.api_state["linkedapi"]`` (only the changed records)."""
    st = state(world)
    doc = world.api_state.get("linkedapi")
    if not isinstance(doc, dict) or not isinstance(doc.get("workflows"), dict):
        world.api_state["linkedapi"] = dump_state(world)
        st.changed.clear()
        st.dirty = False
        return
    if not (st.changed or st.dirty or len(doc.get("synced", ())) != len(st.synced)):
        return
    table = doc["workflows"]
    for wid in st.changed:
        record = st.workflows.get(wid)
        if record is None:
            table.pop(wid, None)
        else:
            table[wid] = _record_json(record)
    st.changed.clear()
    st.dirty = False
    if len(doc.get("synced", ())) != len(st.synced):
        doc["synced"] = sorted([a, u] for a, u in st.synced)
    doc.update(results=st.results, outbox=st.outbox, seq=st.seq, **_tables(st))


def _tables(st: LinkedApiState) -> dict[str, Any]:
    return {"base_seconds": st.base_seconds, "seconds_per_action": st.seconds_per_action,
            "posts": st.posts, "engagements": st.engagements, "stats": st.stats,
            "admin_limits": st.admin_limits, "tokens": st.tokens,
            "disconnected": st.disconnected, "sessions": st.sessions}


def _record_json(r: WorkflowRecord) -> dict[str, Any]:
    out = asdict(r)
    out["submitted_at"] = iso(r.submitted_at)
    out["finish_at"] = iso(r.finish_at)
    return out


def dump_state(world: World) -> dict[str, Any]:
    """The LinkedAPI tables as JSON (what :func:`save` keeps in ``world.api_state``)."""
    st = state(world)
    return {
        "workflows": {wid: _record_json(r) for wid, r in st.workflows.items()},
        "results": st.results,
        "synced": sorted([a, u] for a, u in st.synced),
        "outbox": st.outbox,
        "seq": st.seq,
        "api_token": st.api_token,
        **_tables(st),
    }


def load_state(world: World, data: Mapping[str, Any]) -> LinkedApiState:
    """Restore tables saved by :func:`dump_state` onto ``world``."""
    st = state(world)
    st.workflows = {}
    st.running = set()
    raw_workflows = data.get("workflows", {})
    rows = raw_workflows.values() if isinstance(raw_workflows, Mapping) else raw_workflows
    for raw in rows:
        r = dict(raw)
        r["submitted_at"] = parse_iso(r["submitted_at"])
        r["finish_at"] = parse_iso(r["finish_at"])
        record = WorkflowRecord(**r)
        st.workflows[record.workflow_id] = record
        if record.status == "running":
            st.running.add(record.workflow_id)
    st.results = dict(data.get("results", {}))
    st.synced = {(a, u) for a, u in data.get("synced", [])}
    st.outbox = list(data.get("outbox", []))
    st.seq = int(data.get("seq", 0))
    st.api_token = str(data.get("api_token", SANDBOX_TOKEN))
    st.base_seconds = float(data.get("base_seconds", st.base_seconds))
    st.seconds_per_action = float(data.get("seconds_per_action", st.seconds_per_action))
    st.posts = dict(data.get("posts", {}))
    st.engagements = list(data.get("engagements", []))
    st.stats = [list(row) for row in data.get("stats", [])]
    st.admin_limits = {k: list(v) for k, v in data.get("admin_limits", {}).items()}
    st.tokens = dict(data.get("tokens", {}))
    st.disconnected = list(data.get("disconnected", []))
    st.sessions = dict(data.get("sessions", {}))
    return st


def sandbox_credentials(world: World, identity: str | None = None) -> dict[str, str]:
    """Environment variables a client needs to talk to this sandbox: the main token, the
    plain identification token for ``identity`` (default: the first identity open to
    LinkedAPI) and a per-identity ``LINKEDAPI_IDENTIFICATION_TOKEN__<ID>`` for every identity."""
    out = {"LINKEDAPI_TOKEN": state(world).api_token}
    for uid, ident in world.identities.items():
        if ident.provider in (None, "linkedapi"):
            identity = identity or uid
            out[identification_env_var(uid)] = IDENT_PREFIX + uid
    if identity is not None:
        out["LINKEDAPI_IDENTIFICATION_TOKEN"] = IDENT_PREFIX + world.identity(identity).uid
    return out
