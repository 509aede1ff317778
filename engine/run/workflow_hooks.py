"""A ``result_handling: hook`` workflow settled by its delivered result (what ``seqrun serve``
received; :mod:`engine.run.inbound` hands it over).

Example::

    complete_from_hook(store, {"status": "completed", "completion": {...}}, name="check")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine.model import Metadata, Workflow, WorkflowNode
from engine.providers.linkedapi.errors import request_error
from engine.run.workflow_record import UNFINISHED_STATES
from engine.run.workflow_results import WorkflowResult, node_results
from engine.store import Store
from engine.store.workflows import put_workflow_run, workflow_run, workflow_run_by_id


def complete_from_hook(
    store: Store,
    payload: Mapping[str, Any],
    *,
    name: str | None = None,
    wf: Workflow | None = None,
    now: datetime | None = None,
) -> WorkflowResult | None:
    """Settle a ``hook`` workflow from a delivered result. Accepts the account API's body
    (``{status, completion | error}``, with ``name``) and the current API's webhook event
    (``{type: "workflow.completed", data: {workflowId, status, result?}}``). Idempotent:
    a finished workflow is left as it is. None when no waiting workflow matches."""
    data = payload.get("data") if isinstance(payload.get("data"), Mapping) else None
    record: Mapping[str, Any] | None = None
    if data is not None:
        wid = data.get("workflowId")
        candidate = workflow_run_by_id(store, wid) if wid is None or isinstance(wid, str) else None
        record = candidate if isinstance(candidate, Mapping) else None
        body: Mapping[str, Any] = {"status": data.get("status"), "completion": data.get("result")}
    else:
        found = workflow_run(store, name) if name else None
        record = found if isinstance(found, Mapping) else None
        body = payload
    if record is None or record.get("state") not in UNFINISHED_STATES:
        return None
    if wf is None:  # the receiver has no manifest: the tree of the body that was submitted
        root = _tree(record.get("body"))
        if root:
            wf = Workflow(Metadata(str(record.get("name"))), "linkedapi", root)
    updated = _settled_by_hook(record, body, wf, now or datetime.now(UTC))
    put_workflow_run(store, str(record.get("name")), updated)
    return WorkflowResult.from_record(updated)


def _settled_by_hook(
    record: Mapping[str, Any], body: Mapping[str, Any], wf: Workflow | None, at: datetime
) -> dict[str, Any]:
    status = str(body.get("status"))
    updated = dict(record)
    now = at.isoformat()
    updated.setdefault("history", []).append(
        {"at": now, "from": record.get("state"), "to": status, "note": "webhook"}
    )
    if status == "completed":
        updated.update(state="completed", completion=body.get("completion"), phase="done",
                       finished_at=now)
        if wf is not None:
            updated["nodes"] = [n.to_json() for n in node_results(wf, body.get("completion"))]
        return updated
    err: Mapping[str, Any] = body["error"] if isinstance(body.get("error"), Mapping) else {}
    mapped = request_error(str(err.get("type") or "unknownError"), str(err.get("message") or ""))
    updated.update(
        state="failed",
        phase="done",
        finished_at=now,
        error={"label": mapped.label, "type": mapped.params.get("type"), "message": mapped.message},
    )
    return updated


def _tree(body: Any) -> tuple[WorkflowNode, ...]:
    """The nodes of a submitted LinkedAPI body (``actionType``, ``label``, ``then``), in the
    compiler's order; empty when any node is not one (no guessing at node ids)."""
    nodes = body if isinstance(body, list) else [body]
    out: list[WorkflowNode] = []
    for node in nodes:
        if not isinstance(node, Mapping) or not isinstance(node.get("actionType"), str):
            return ()
        then = node.get("then")
        children = _tree(then) if then else ()
        if then and not children:
            return ()
        label = node.get("label")
        out.append(WorkflowNode(node["actionType"], label=label if isinstance(label, str)
                                else None, then=children))
    return tuple(out)
