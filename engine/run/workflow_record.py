"""The persisted record of one workflow run: saved (:mod:`engine.store.workflows`) at every
step so that a crash never leads to a second submission of a workflow that may still be
running.

A record is a JSON object: ``name``, ``provider``, ``identity``, ``revision`` and ``body`` of
what was run, its ``state`` (pending -> running -> completed | failed) with a ``history`` of
the transitions, the provider's ``workflow_id``, the ``phase`` of a LinkedAPI submission
(submitting, queued, unknown, submitted, hook, done), or the ``node_states`` of a run done
node by node, and at the end its ``completion``, ``error`` and ``nodes``.

Example::

    run = RunRecord(wf, store, clock)
    run.record = {"name": wf.name, "provider": wf.provider, "body": body, "history": []}
    run.save(state="pending")
    result = run.finish("completed", completion=completion)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.clock import Clock
from engine.compile.machine import workflow_state_ids
from engine.errors import ProviderError
from engine.model import Workflow
from engine.providers.linkedapi.workflows import action_type
from engine.run.workflow_results import NodeResult, WorkflowResult, node_results
from engine.store import Store
from engine.store.workflows import put_workflow_run, workflow_run

UNFINISHED_STATES = frozenset({"pending", "running"})


def body_revision(body: Any) -> str:
    """12 hex of sha256 over the body (the planner's WorkflowPlan.revision)."""
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def parse_time(value: Any) -> datetime | None:
    """An ISO time of a record or a provider answer (``Z`` accepted); None when absent or
    unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class RunRecord:
    """One workflow's record while a run works on it, and the result it becomes."""

    wf: Workflow
    store: Store
    clock: Clock
    record: dict[str, Any] = field(default_factory=dict)
    result: WorkflowResult = field(init=False)
    foreign: bool = False  # settling a record of another revision of this workflow

    def __post_init__(self) -> None:
        self.result = WorkflowResult(self.wf.name, "pending")

    @property
    def identity(self) -> str | None:
        """The identity the workflow runs as (its first), None when it names none."""
        return self.wf.identities[0] if self.wf.identities else None

    def previous(self) -> Any | None:
        """The record an earlier run left for this workflow, if any."""
        return workflow_run(self.store, self.wf.name)

    def save(self, **changes: Any) -> None:
        """Apply ``changes`` to the record (a state change joins the history) and persist it."""
        now = self.clock.now().isoformat()
        state = changes.get("state")
        if state and state != self.record.get("state"):
            self.record.setdefault("history", []).append(
                {
                    "at": now,
                    "from": self.record.get("state"),
                    "to": state,
                    "note": changes.get("note", ""),
                }
            )
        self.record.update(changes)
        self.record["updated_at"] = now
        put_workflow_run(self.store, self.wf.name, self.record)

    def running(self, note: str) -> WorkflowResult:
        """The result of a run that is not over: followed, or checked again, next time."""
        self.result.state = "running"
        self.result.note = note
        return self.result

    def finish(
        self,
        state: str,
        *,
        completion: Any = None,
        error: ProviderError | None = None,
        note: str = "",
    ) -> WorkflowResult:
        """Persist the end of the run (``completed`` or ``failed``) and return its result."""
        nodes = (
            []  # an older revision's tree: the completion is kept, not mapped onto this one
            if self.foreign
            else node_results(self.wf, completion)
            if completion is not None
            else [
                NodeResult(sid, action_type(node.action), node.label, "skipped")
                for sid, node in workflow_state_ids(self.wf.root)
            ]
        )
        err = None
        if error is not None:
            err = {"label": error.label, "type": error.params.get("type"), "message": error.message}
        self.save(
            state=state,
            completion=completion,
            error=err,
            nodes=[n.to_json() for n in nodes],
            note=note,
            finished_at=self.clock.now().isoformat(),
        )
        self.result.state = state
        self.result.completion = completion
        self.result.error = err
        self.result.nodes = nodes
        self.result.note = note
        self.result.workflow_id = self.record.get("workflow_id")
        self.result.reconciled = bool(self.record.get("reconciled"))
        return self.result
