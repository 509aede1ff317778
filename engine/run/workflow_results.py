"""Where a workflow run ended: each node's result and the run's, as the CLI and views read them.

Example::

    result = WorkflowResult.from_record(record)  # a record persisted by a run
    [(n.id, n.status) for n in result.nodes]      # [("n0", "ok"), ("n0.0", "skipped")]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.model import Workflow, WorkflowNode
from engine.providers.linkedapi.errors import action_error
from engine.providers.linkedapi.workflows import action_type


@dataclass(frozen=True)
class NodeResult:
    """One node of a workflow after a run: ``ok``, ``error`` (an action error) or ``skipped``
    (its parent failed, or the workflow did not complete)."""

    id: str  # n0, n0.1 ... (the compiler's node states)
    action_type: str
    label: str | None
    status: str
    data: Any = None
    error: Mapping[str, Any] | None = None  # {type, message, label}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "actionType": self.action_type,
            "label": self.label,
            "status": self.status,
            "data": self.data,
            "error": dict(self.error) if self.error else None,
        }


@dataclass
class WorkflowResult:
    """Where a workflow run ended: its state, LinkedAPI's completion tree and each node."""

    name: str
    state: str  # pending | running | completed | failed
    workflow_id: str | None = None
    completion: Any = None
    error: Mapping[str, Any] | None = None  # {label, type?, message}
    nodes: list[NodeResult] = field(default_factory=list)
    submissions: int = 0  # POSTs made by this call (0 when it resumed or reconciled)
    resumed: bool = False  # followed a workflow submitted earlier instead of submitting
    reconciled: bool = False  # outcome established from the world, the id having been lost
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "completed"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "workflowId": self.workflow_id,
            "completion": self.completion,
            "error": dict(self.error) if self.error else None,
            "nodes": [n.to_json() for n in self.nodes],
            "submissions": self.submissions,
            "resumed": self.resumed,
            "reconciled": self.reconciled,
            "note": self.note,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> WorkflowResult:
        """The result view of a persisted workflow record."""
        return cls(
            name=str(record.get("name")),
            state=str(record.get("state")),
            workflow_id=record.get("workflow_id"),
            completion=record.get("completion"),
            error=record.get("error"),
            nodes=[
                NodeResult(
                    id=n["id"],
                    action_type=n["actionType"],
                    label=n.get("label"),
                    status=n["status"],
                    data=n.get("data"),
                    error=n.get("error"),
                )
                for n in record.get("nodes") or []
            ],
            reconciled=bool(record.get("reconciled")),
            note=str(record.get("note") or ""),
        )


def node_results(wf: Workflow, completion: Any) -> list[NodeResult]:
    """Each node of ``wf`` (pre-order, ids as the compiler's) with its completion item."""
    items = completion if isinstance(completion, list) else [completion]
    out: list[NodeResult] = []
    _walk(wf.root, items, "n", out)
    return out


def _walk(
    nodes: tuple[WorkflowNode, ...], items: list[Any], prefix: str, out: list[NodeResult]
) -> None:
    for i, node in enumerate(nodes):
        nid = f"{prefix}{i}"
        item = items[i] if i < len(items) and isinstance(items[i], Mapping) else None
        children: list[Any] = []
        if item is None:
            out.append(NodeResult(nid, action_type(node.action), node.label, "skipped"))
        elif item.get("success"):
            data = item.get("data")
            if isinstance(data, Mapping):
                then = data.get("then")
                children = then if isinstance(then, list) else ([then] if then else [])
                data = {k: v for k, v in data.items() if k != "then"}
            out.append(NodeResult(nid, action_type(node.action), node.label, "ok", data))
        else:
            out.append(_failed_node(nid, node, item))
        _walk(node.then, children, f"{nid}.", out)


def _failed_node(nid: str, node: WorkflowNode, item: Mapping[str, Any]) -> NodeResult:
    err: Mapping[str, Any] = item["error"] if isinstance(item.get("error"), Mapping) else {}
    mapped = action_error(err)
    return NodeResult(
        nid,
        action_type(node.action),
        node.label,
        "error",
        error={
            "type": mapped.params.get("type"),
            "message": mapped.message,
            "label": err.get("label") or mapped.label,
        },
    )
