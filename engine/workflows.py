"""Workflow manifests on LinkedAPI: the exact JSON body, and submitting + following it.

``workflow_json(wf)`` turns a :class:`engine.model.Workflow` into the body LinkedAPI expects
(seed 003): each node becomes ``{"actionType": ..., **with, "label"?: ..., "then"?: ...}`` and a
root list becomes an array workflow. ``run_workflow`` submits it once and follows it to the end,
persisting its state in ``store.kv_*("workflows", name)`` so that a crash never leads to a
second submission of a workflow that may still be running.

Example::

    >>> from engine.model import Metadata, Workflow, WorkflowNode
    >>> node = WorkflowNode("check_connection", {"personUrl": "https://www.linkedin.com/in/x"})
    >>> workflow_json(Workflow(Metadata("w"), "linkedapi", (node,)))
    {'actionType': 'st.checkConnectionStatus', 'personUrl': 'https://www.linkedin.com/in/x'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.model import Workflow, WorkflowNode

# Canonical actions -> LinkedAPI action types, for canonical actions used in a workflow tree.
ACTION_TYPES: Mapping[str, str] = {
    "visit_profile": "st.openPersonPage",
    "connect": "st.sendConnectionRequest",
    "send_message": "st.sendMessage",
    "withdraw_invitation": "st.withdrawConnectionRequest",
    "check_connection": "st.checkConnectionStatus",
}

# Parameter spellings of canonical actions (as in Sequences) -> LinkedAPI's.
_PARAM_ALIASES: Mapping[str, str] = {
    "profile_url": "personUrl",
    "linkedin_profile_url": "personUrl",
}
_MESSAGE_ALIASES: Mapping[str, str] = {"message": "text"}


def action_type(action: str) -> str:
    """The LinkedAPI action type of a node's action (canonical names are translated)."""
    return ACTION_TYPES.get(action, action)


def _params(node: WorkflowNode) -> dict[str, Any]:
    if node.action not in ACTION_TYPES:
        return dict(node.with_)
    out: dict[str, Any] = {}
    for key, value in node.with_.items():
        key = _PARAM_ALIASES.get(key, key)
        if node.action == "send_message":
            key = _MESSAGE_ALIASES.get(key, key)
        out[key] = value
    return out


def node_json(node: WorkflowNode) -> dict[str, Any]:
    """One node (and its subtree) as LinkedAPI JSON, keys in LinkedAPI's documented order."""
    body: dict[str, Any] = {"actionType": action_type(node.action)}
    body.update(_params(node))
    if node.label is not None:
        body["label"] = node.label
    if node.then:
        children = [node_json(child) for child in node.then]
        body["then"] = children if (node.then_is_list or len(children) > 1) else children[0]
    return body


def workflow_json(wf: Workflow) -> Any:
    """The exact LinkedAPI workflow body for ``wf``: an object, or an array workflow."""
    nodes = [node_json(node) for node in wf.root]
    if wf.root_is_list or len(nodes) != 1:
        return nodes
    return nodes[0]
