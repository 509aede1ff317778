"""A workflow on a provider without workflows (Edges, ConnectSafely), run node by node.

The tree is walked in order, one canonical action per node, children only after their parent
succeeded. Each node's intent is saved before its call; a node left ``sent`` (crash, timeout)
is reconciled against the provider (relationship, conversation) before it is sent again. The
nodes' answers are assembled into a completion shaped like LinkedAPI's, so the result reads
the same whichever provider ran it.

Example::

    result = await run_nodes(wf, provider, store, clock, reconcile_after=3600.0)
    [(n.id, n.status) for n in result.nodes]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.clock import Clock
from engine.errors import ProviderError
from engine.model import Workflow, WorkflowNode
from engine.providers.base import Lead, Provider
from engine.providers.http import NOT_SENT
from engine.providers.linkedapi.workflows import action_type, workflow_json
from engine.run.workflow_record import UNFINISHED_STATES, RunRecord, body_revision, parse_time
from engine.run.workflow_results import WorkflowResult
from engine.run.workflows import normalize_text
from engine.store import Store
from engine.vocab import AUTH_EXPIRED, INVALID_INPUT, LINKEDAPI_ACTIONS, TIMEOUT, TRANSIENT_LABELS

_CANONICAL: Mapping[str, str] = {v: k for k, v in LINKEDAPI_ACTIONS.items()}
NODE_ATTEMPTS = 6


@dataclass
class _Walk:
    """What every node of one run needs: its record, the provider and the identity."""

    run: RunRecord
    provider: Provider
    identity: str
    reconcile_after: float

    def done(self, nid: str, value: dict[str, Any]) -> dict[str, Any]:
        """Record a node's state (intent ``sent``, ``ok`` or ``error``) and persist it."""
        states: dict[str, Any] = self.run.record.setdefault("node_states", {})
        states[nid] = value
        self.run.save(node_states=states)
        return value


def _reconciled() -> dict[str, Any]:
    return {"status": "ok", "data": {"reconciled": True}}


def _error(label: str, message: str) -> dict[str, Any]:
    return {"status": "error", "error": {"type": label, "label": label, "message": message}}


async def run_nodes(
    wf: Workflow, provider: Provider, store: Store, clock: Clock, reconcile_after: float
) -> WorkflowResult:
    """Run ``wf`` node by node on ``provider``, resuming a run of the same body left
    unfinished; the record is persisted as for a LinkedAPI run, with ``mode: nodes``."""
    run = RunRecord(wf, store, clock)
    body = workflow_json(wf)
    previous = run.previous()
    revision = body_revision(body)
    if (
        isinstance(previous, Mapping)
        and previous.get("state") in UNFINISHED_STATES
        and previous.get("revision") == revision
        and previous.get("mode") == "nodes"
    ):
        run.record = dict(previous)
        run.result.resumed = True
    else:
        run.record = {
            "name": wf.name,
            "provider": wf.provider,
            "mode": "nodes",
            "identity": run.identity,
            "revision": revision,
            "body": body,
            "attempt": int((previous or {}).get("attempt", 0)) + 1,
            "history": [],
            "workflow_id": None,
            "reconciled": False,
            "node_states": {},
        }
        run.save(state="pending")
    if run.identity is None:
        return run.finish(
            "failed",
            error=ProviderError(INVALID_INPUT, f"a workflow on {wf.provider} needs `identities`"),
        )
    return await _walk_root(_Walk(run, provider, run.identity, reconcile_after))


async def _walk_root(walk: _Walk) -> WorkflowResult:
    wf = walk.run.wf
    walk.run.save(state="running")
    try:
        items = [await _node(walk, f"n{i}", n, None) for i, n in enumerate(wf.root)]
    except ProviderError as exc:  # the identity cannot act (AUTH_EXPIRED...)
        return walk.run.finish("failed", error=exc)
    completion: Any = items if (wf.root_is_list or len(items) != 1) else items[0]
    return walk.run.finish("completed", completion=completion)


async def _node(walk: _Walk, nid: str, node: WorkflowNode, person: str | None) -> dict[str, Any]:
    """One node's completion item (LinkedAPI's shape), its children's after it."""
    params = dict(node.with_)
    url = str(params.pop("personUrl", None) or params.pop("profile_url", None) or person or "")
    done = walk.run.record.setdefault("node_states", {}).get(nid)
    if done is None or done.get("status") in ("pending", "sent"):
        done = await _perform(walk, nid, node, url, params)
    item: dict[str, Any] = {"actionType": action_type(node.action)}
    if node.label is not None:
        item["label"] = node.label
    item["success"] = done["status"] == "ok"
    if item["success"]:
        data = dict(done.get("data") or {})
        if node.then:
            children = [
                await _node(walk, f"{nid}.{j}", child, url) for j, child in enumerate(node.then)
            ]
            data["then"] = children if node.then_is_list or len(children) > 1 else children[0]
        if data:
            item["data"] = data
    else:
        item["error"] = done.get("error")
    return item


async def _perform(
    walk: _Walk, nid: str, node: WorkflowNode, url: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Do one node's action, unless a crash left it ``sent`` and it took effect."""
    action = _CANONICAL.get(node.action, node.action)
    lead = Lead(url)
    previous = walk.run.record.setdefault("node_states", {}).get(nid) or {}
    if previous.get("status") == "sent" and await _happened(walk, action, lead, params, previous):
        walk.run.record["reconciled"] = True
        return walk.done(nid, _reconciled())
    if action not in walk.provider.spec.capabilities or not url:
        why = f"{walk.run.wf.provider} cannot {node.action}" if url else "no personUrl"
        return walk.done(nid, _error(INVALID_INPUT, why))
    return await _attempts(walk, nid, action, lead, params)


async def _attempts(
    walk: _Walk, nid: str, action: str, lead: Lead, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Call the provider until an answer: transient failures back off, a timeout is
    reconciled after ``reconcile_after`` before the next try, AUTH_EXPIRED propagates."""
    clock = walk.run.clock
    delay = 30.0
    for attempt in range(NODE_ATTEMPTS):
        sent_at = clock.now().isoformat()
        walk.done(nid, {"status": "sent", "at": sent_at})
        try:
            result = await walk.provider.perform(walk.identity, action, lead, params)
        except ProviderError as exc:
            if exc.label == TIMEOUT:
                await clock.sleep(walk.reconcile_after)
                if await _happened(walk, action, lead, params, {"at": sent_at}):
                    walk.run.record["reconciled"] = True
                    return walk.done(nid, _reconciled())
                continue
            if exc.params.get(NOT_SENT):  # the provider cannot be reached: no use waiting
                return walk.done(nid, _error(exc.label, exc.message))
            if exc.label in TRANSIENT_LABELS and attempt < NODE_ATTEMPTS - 1:
                await clock.sleep(max(delay, exc.retry_after or 0.0))
                delay *= 2
                continue
            if exc.label == AUTH_EXPIRED:
                raise
            return walk.done(nid, _error(exc.label, exc.message))
        data = dict(result.data)
        if result.status is not None:
            data["connectionStatus"] = result.status
        return walk.done(nid, {"status": "ok", "data": data})
    return walk.done(nid, _error(TIMEOUT, "no answer after retries"))


async def _happened(
    walk: _Walk, action: str, lead: Lead, params: Mapping[str, Any], intent: Mapping[str, Any]
) -> bool:
    """Did an action whose answer was lost take effect? Asked of the provider."""
    if action == "connect":
        rel = await walk.provider.relationship(walk.identity, lead)
        return rel.status in ("pending", "connected")
    if action == "withdraw_invitation":
        rel = await walk.provider.relationship(walk.identity, lead)
        return rel.status != "pending"
    if action == "send_message":
        text = str(params.get("text", params.get("message", "")))
        since = parse_time(intent.get("at"))
        for conv in await walk.provider.sync_conversations(walk.identity):
            if conv.profile_url.rstrip("/") != lead.profile_url.rstrip("/"):
                continue
            if conv.our_texts:
                wanted = normalize_text(text)
                return any(normalize_text(t) == wanted for t in conv.our_texts)
            return conv.last_sender_is_us and (
                since is None or conv.last_activity_at >= since - timedelta(minutes=5)
            )
        return False
    return False  # visits and checks: doing them again duplicates nothing
