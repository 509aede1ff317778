"""Workflows executed over the world once their simulated time has passed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from engine.sandbox.linkedapi import catalog
from engine.sandbox.linkedapi.actions import HANDLERS, ITERATORS
from engine.sandbox.linkedapi.bodies import account_body
from engine.sandbox.linkedapi.state import LinkedApiState, WorkflowRecord, state
from engine.sandbox.linkedapi.wire import ACTION_ERRORS, ACTIONS, KEEP_FINISHED, ActionSpec
from engine.sandbox.world import World, WorldError, iso, normalize_url

STATS_KEPT = timedelta(days=31)  # /stats/actions answers at most 30 days


class _SignedOut(Exception):
    pass


def _execute(world: World, st: LinkedApiState, account: str, body: Any) -> Any:
    """Run a validated workflow now; its completion (raises _SignedOut)."""
    if isinstance(body, list):
        return [_run_node(world, st, account, node, None) for node in body]
    return _run_node(world, st, account, body, None)


def _target(world: World, account: str, node: Mapping[str, Any], spec: ActionSpec,
            context: Any) -> Any:
    """What the action acts on: its target parameter at the root, else the parent's context."""
    ident = world.identity(account)
    if spec.nv and ident.kind != "sales_navigator":
        raise WorldError("SN_ACCOUNT_UPGRADE", "this account has no Sales Navigator")
    value = node.get(spec.target) if spec.target else None
    if spec.needs == "person":
        url = str(value if value is not None else context)
        if normalize_url(url) == ident.profile_url:
            raise WorldError("SELF", "this is your own profile")
        return url
    if spec.needs == "company" and value is not None:
        return catalog.company_at(world, str(value))
    return value if value is not None else context


def _run_node(world: World, st: LinkedApiState, account: str, node: Mapping[str, Any],
              context: Any) -> dict[str, Any]:
    kind = str(node["actionType"])
    spec = ACTIONS[kind]
    item: dict[str, Any] = {"actionType": kind}
    if "label" in node:
        item["label"] = node["label"]
    if kind in ITERATORS:
        item["success"] = True
        item["data"] = [_children(world, st, account, node, one) for one in context or []]
        return item
    try:
        target = _target(world, account, node, spec, context)
        data, child_context = HANDLERS[kind](world, st, account, node, target)
    except WorldError as exc:
        if exc.label == "AUTH_EXPIRED":
            raise _SignedOut(exc.message) from exc
        _log(world, st, account, kind, False)
        item["success"] = False
        item["error"] = {"type": _error_type(kind, exc.label), "message": exc.message}
        return item
    _log(world, st, account, kind, True)
    item["success"] = True
    if node.get("then") is not None:
        results = _children(world, st, account, node, child_context)
        if isinstance(data, list):
            item["then"] = results  # [inferred] a list's children (doForPeople) beside it
        else:
            data = {**(data or {}), "then": results}
    if data is not None:
        item["data"] = data
    return item


def _children(world: World, st: LinkedApiState, account: str, node: Mapping[str, Any],
              context: Any) -> Any:
    then = node["then"]
    children = then if isinstance(then, list) else [then]
    results = [_run_node(world, st, account, child, context) for child in children]
    return results if isinstance(then, list) else results[0]


def _error_type(kind: str, label: str) -> str:
    if label == "LIMIT_REACHED" and kind == "st.sendConnectionRequest":
        return "dailyConnectionAttemptsExceeded"
    if label == "ALREADY_CONNECTED" and kind == "st.withdrawConnectionRequest":
        return "notPending"
    if label == "NOT_CONNECTED" and kind == "st.removeConnection":
        return "connectionNotFound"
    return ACTION_ERRORS.get(label, "unknownError")


def _log(world: World, st: LinkedApiState, account: str, kind: str, ok: bool) -> None:
    """One row of ``/stats/actions``."""
    st.stats.append([world.identity(account).uid, kind, ok, iso(world.now)])
    st.dirty = True


def finish(world: World, st: LinkedApiState, record: WorkflowRecord) -> None:
    try:
        record.completion = _execute(world, st, record.account, record.body)
        record.status = "completed"
    except _SignedOut as exc:
        record.status = "failed"
        record.failure = {"reason": "linkedinAccountSignedOut", "message": str(exc)}
    st.touch(record)
    if record.result_handling == "hook" and record.webhook:
        st.outbox.append(
            {
                "url": record.webhook,
                "at": iso(world.clock.now()),
                "payload": account_body(record, ""),
            }
        )


def run_due(world: World) -> None:
    """Execute every running workflow whose finish time has passed, in finish order; forget
    finished ones after :data:`KEEP_FINISHED` (checked once per simulated hour)."""
    st = state(world)
    now = world.clock.now()
    due = sorted(
        (st.workflows[wid] for wid in st.running if st.workflows[wid].finish_at <= now),
        key=lambda r: (r.finish_at, r.seq),
    )
    for record in due:
        finish(world, st, record)
    if st.pruned_at is not None and now - st.pruned_at < timedelta(hours=1):
        return
    st.pruned_at = now
    old = [
        r.workflow_id
        for r in st.workflows.values()
        if r.status != "running" and r.finish_at < now - KEEP_FINISHED
    ]
    cutoff = iso(now - STATS_KEPT)
    if st.stats and st.stats[0][3] < cutoff:
        st.stats = [row for row in st.stats if row[3] >= cutoff]
        st.dirty = True
    for wid in old:
        record = st.workflows.pop(wid)
        if record.result_hash:
            st.results.pop(record.result_hash, None)
        st.changed.add(wid)
