"""A workflow run as text: its state, then the completion tree, one node per line.

Example::

    >>> from engine.run.workflow_results import NodeResult, WorkflowResult
    >>> node = NodeResult("n0", "st.checkConnectionStatus", "check", "ok", {"name": "Ada"})
    >>> workflow_lines(WorkflowResult("w", "completed", "wf-1", nodes=[node]))
    ['Workflow w: completed (wf-1)', '  n0 check st.checkConnectionStatus: ok name=Ada']
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.run.workflow_results import WorkflowResult

# The keys of a node's data worth a glance; the rest is in `-o json`.
_SHOWN_KEYS = frozenset({"name", "connectionStatus", "publicUrl"})


def workflow_lines(result: WorkflowResult) -> list[str]:
    """The completion tree as text, one node per line, indented by depth::

    Workflow check-then-message: completed (wf-ef134f2a180ba05d)
      n0 open st.openPersonPage: ok name=Ada Lovelace
        n0.0 check st.checkConnectionStatus: ok connectionStatus=notConnected
    """
    head = f"Workflow {result.name}: {result.state}"
    if result.workflow_id:
        head += f" ({result.workflow_id})"
    out = [head]
    if result.error:
        out.append(f"  error {result.error.get('label')}: {result.error.get('message')}")
    if result.note:
        out.append(f"  note: {result.note}")
    for node in result.nodes:
        depth = node.id.count(".")
        label = f" {node.label}" if node.label else ""
        text = f"{'  ' * (depth + 1)}{node.id}{label} {node.action_type}: {node.status}"
        if node.error:
            text += f" {node.error.get('label')} ({node.error.get('type')})"
        elif isinstance(node.data, Mapping):
            shown = [f"{k}={v}" for k, v in node.data.items() if k in _SHOWN_KEYS]
            text += (" " + " ".join(shown)) if shown else ""
        elif isinstance(node.data, list):
            text += f" {len(node.data)} item(s)"
        out.append(text)
    return out
