"""LinkedAPI workflow bodies: a Workflow manifest, or one canonical action, as the exact JSON
LinkedAPI expects.

``workflow_json(wf)`` turns a :class:`engine.model.Workflow` into the body (seed 003): each
node becomes ``{"actionType": ..., **with, "label"?: ..., "then"?: ...}`` and a root list
becomes an array workflow. ``action_body`` is the one-node workflow the adapter sends for a
canonical action of a Sequence step.

Example::

    >>> from engine.model import Metadata, Workflow, WorkflowNode
    >>> node = WorkflowNode("check_connection", {"personUrl": "https://www.linkedin.com/in/x"})
    >>> workflow_json(Workflow(Metadata("w"), "linkedapi", (node,)))
    {'actionType': 'st.checkConnectionStatus', 'personUrl': 'https://www.linkedin.com/in/x'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ProviderError
from engine.model import Workflow, WorkflowNode
from engine.vocab import INVALID_INPUT, LINKEDAPI_ACTIONS

# Parameter spellings of canonical actions (as in Sequences) -> LinkedAPI's.
_PARAM_ALIASES: Mapping[str, str] = {
    "profile_url": "personUrl",
    "linkedin_profile_url": "personUrl",
}
_MESSAGE_ALIASES: Mapping[str, str] = {"message": "text"}


def action_type(action: str) -> str:
    """The LinkedAPI action type of a node's action (canonical names are translated)."""
    return LINKEDAPI_ACTIONS.get(action, action)


def _params(node: WorkflowNode) -> dict[str, Any]:
    if node.action not in LINKEDAPI_ACTIONS:
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


def action_body(action: str, person_url: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The one-node workflow for a canonical action."""
    if action not in LINKEDAPI_ACTIONS:
        raise ProviderError(INVALID_INPUT, f"linkedapi cannot {action}")
    body: dict[str, Any] = {"actionType": LINKEDAPI_ACTIONS[action], "personUrl": person_url}
    if action == "visit_profile":
        body["basicInfo"] = bool(params.get("basicInfo", True))
    elif action == "connect":
        note = params.get("note", params.get("message"))
        if note:
            body["note"] = str(note)
        if params.get("email"):
            body["email"] = str(params["email"])
    elif action == "send_message":
        text = params.get("text", params.get("message"))
        if not text:
            raise ProviderError(INVALID_INPUT, "send_message needs a text")
        body["text"] = str(text)
    elif action == "withdraw_invitation" and params.get("unfollow") is not None:
        body["unfollow"] = bool(params["unfollow"])
    return body
