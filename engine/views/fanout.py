"""The results of a fan-out Workflow (``for_each``): one row per lead, read from the children's
workflow records (``seqrun workflows results NAME``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.run.workflow_results import WorkflowResult
from engine.store import Store
from engine.store.workflows import workflow_runs
from engine.views.status import NotFoundError

COLUMNS = ("lead", "workflow", "state", "workflow_id", "nodes_ok", "nodes", "error", "attempt")


@dataclass(frozen=True)
class LeadResult:
    lead: str  # the personUrl the lead's workflow acted on
    workflow: str  # NAME[handle]: `seqrun why workflow/NAME[handle]`
    state: str
    workflow_id: str | None
    nodes_ok: int
    nodes: int
    error: str
    attempt: int

    def to_json(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in COLUMNS}


def _person(body: Any) -> str:
    root = body[0] if isinstance(body, list) and body else body
    return str(root.get("personUrl") or "") if isinstance(root, Mapping) else ""


def _error(result: WorkflowResult) -> str:
    if result.error:
        return str(result.error.get("label") or result.error.get("message") or "")
    failed = [n for n in result.nodes if n.status == "error"]
    if failed and failed[0].error:
        return f"{failed[0].label or failed[0].id}: {failed[0].error.get('label')}"
    return ""


def fan_out_results(store: Store, name: str) -> list[LeadResult]:
    """Each lead's run of the fan-out Workflow ``name``, in lead-handle order."""
    prefix = f"{name}["
    out = []
    for child, record in workflow_runs(store).items():
        if not child.startswith(prefix) or not isinstance(record, Mapping):
            continue
        result = WorkflowResult.from_record(record)
        out.append(LeadResult(
            lead=_person(record.get("body")), workflow=child, state=result.state,
            workflow_id=result.workflow_id,
            nodes_ok=sum(1 for n in result.nodes if n.status == "ok"),
            nodes=len(result.nodes), error=_error(result),
            attempt=int(record.get("attempt") or 0)))
    if not out:
        raise NotFoundError(f"no fan-out workflow {name!r} has run (a Workflow with for_each)")
    return out
