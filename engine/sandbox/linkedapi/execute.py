"""Workflows executed over the world once their simulated time has passed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from engine.sandbox.linkedapi.bodies import account_body
from engine.sandbox.linkedapi.state import LinkedApiState, WorkflowRecord, state
from engine.sandbox.linkedapi.wire import ACTION_ERRORS, KEEP_FINISHED, PERSON_ACTIONS
from engine.sandbox.world import World, WorldError, iso, normalize_url, parse_iso


class _SignedOut(Exception):
    pass


def _execute(world: World, st: LinkedApiState, account: str, body: Any) -> Any:
    """Run a validated workflow now; its completion (raises _SignedOut)."""
    if isinstance(body, list):
        return [_run_node(world, st, account, node, None) for node in body]
    return _run_node(world, st, account, body, None)


def _person_data(world: World, url: str) -> dict[str, Any]:
    p = world.profile(url)
    return {
        "name": p.full_name,
        "publicUrl": p.url,
        "hashedUrl": f"https://www.linkedin.com/in/ACoAA{p.profile_id}",
        "headline": p.headline,
        "location": p.location,
        "countryCode": "us",
        "position": p.job_title,
        "about": "",
        "companyName": p.company,
        "companyHashedUrl": "",
        "followersCount": 100 + p.profile_id % 5000,
    }


def _run_node(
    world: World, st: LinkedApiState, account: str, node: Mapping[str, Any], person: str | None
) -> dict[str, Any]:
    kind = str(node["actionType"])
    url = str(node.get("personUrl", person or ""))
    item: dict[str, Any] = {"actionType": kind}
    if "label" in node:
        item["label"] = node["label"]
    try:
        data = _perform(world, st, account, kind, node, url)
    except WorldError as exc:
        if exc.label == "AUTH_EXPIRED":
            raise _SignedOut(exc.message) from exc
        item["success"] = False
        error_type = ACTION_ERRORS.get(exc.label, "unknownError")
        if exc.label == "LIMIT_REACHED" and kind == "st.sendConnectionRequest":
            error_type = "dailyConnectionAttemptsExceeded"
        if exc.label == "ALREADY_CONNECTED" and kind == "st.withdrawConnectionRequest":
            error_type = "notPending"
        item["error"] = {"type": error_type, "message": exc.message}
        return item
    item["success"] = True
    then = node.get("then")
    if then is not None:
        children = then if isinstance(then, list) else [then]
        results = [_run_node(world, st, account, child, url) for child in children]
        if data is None:
            data = {}
        if isinstance(data, dict):
            data["then"] = results if isinstance(then, list) else results[0]
    if data is not None:
        item["data"] = data
    return item


def _perform(
    world: World, st: LinkedApiState, account: str, kind: str, node: Mapping[str, Any], url: str
) -> Any:
    if kind in PERSON_ACTIONS:
        return _perform_on_person(world, st, account, kind, node, url)
    if kind == "st.retrieveConnections":
        items = world.connections_of(account)
        since = node.get("since")
        if since:
            cutoff = parse_iso(str(since))
            items = [(p, at) for p, at in items if at >= cutoff]
        limit = int(node.get("limit") or len(items) or 1)
        return [
            {
                "name": p.full_name,
                "publicUrl": p.url,
                "headline": p.headline,
                "location": p.location,
                "connectedAt": iso(at),
            }
            for p, at in items[:limit]
        ]
    if kind == "st.retrievePendingRequests":
        out = []
        for inv in world.pending_invitations(account):
            p = world.profile(inv.profile_url)
            out.append(
                {
                    "name": p.full_name,
                    "publicUrl": p.url,
                    "headline": p.headline,
                    "sentTime": iso(inv.sent_at),
                }
            )
        return out
    if kind == "st.searchPeople":
        found = world.search_people(
            str(node.get("term", "")), int(node.get("limit") or 10), identity=account
        )
        return [
            {
                "name": p.full_name,
                "publicUrl": p.url,
                "headline": p.headline,
                "location": p.location,
            }
            for p in found
        ]
    raise WorldError("INVALID_INPUT", f"unsupported action {kind}")


def _perform_on_person(
    world: World, st: LinkedApiState, account: str, kind: str, node: Mapping[str, Any], url: str
) -> Any:
    ident = world.identity(account)
    norm = normalize_url(url)
    if norm == ident.profile_url:
        raise WorldError("SELF", "this is your own profile")
    if kind == "st.openPersonPage":
        world.visit(account, url)
        return _person_data(world, url) if node.get("basicInfo", True) else {}
    if kind == "st.checkConnectionStatus":
        rel = world.relationship(account, url)
        return {"connectionStatus": {"none": "notConnected"}.get(rel, rel)}
    if kind == "st.sendConnectionRequest":
        note = node.get("note")
        world.connect(account, url, note=str(note) if note else None)
        return None
    if kind == "st.withdrawConnectionRequest":
        world.withdraw(account, url)
        return None
    if kind == "st.sendMessage":
        world.message(account, url, str(node["text"]))
        st.synced.add((ident.uid, normalize_url(url)))
        return None
    if kind == "st.syncConversation":
        world.relationship(account, url)  # auth + access checks
        st.synced.add((ident.uid, normalize_url(url)))
        return None
    raise WorldError("INVALID_INPUT", f"unsupported action {kind}")


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
    for wid in old:
        record = st.workflows.pop(wid)
        if record.result_hash:
            st.results.pop(record.result_hash, None)
        st.changed.add(wid)
