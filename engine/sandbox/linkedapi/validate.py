"""Workflow validation: the constraints each action puts on its parameters, its place in the
workflow (root start, parent context) and its children."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.sandbox.linkedapi.wire import ACTIONS, MAX_TEXT, ActionSpec


class InvalidWorkflow(Exception):
    """The workflow does not meet the constraints of one of its actions."""


def count_actions(body: Any) -> int:
    if isinstance(body, list):
        return sum(count_actions(item) for item in body)
    if isinstance(body, Mapping):
        return 1 + count_actions(body.get("then", []))
    return 0


def validate(body: Any) -> None:
    """Raise InvalidWorkflow when ``body`` breaks the constraints of one of its actions."""
    if isinstance(body, list):
        if not body:
            raise InvalidWorkflow("an array workflow needs at least one action")
        for item in body:
            _validate_node(item, context=None, path="$[]")
    else:
        _validate_node(body, context=None, path="$")


def _validate_node(node: Any, *, context: str | None, path: str) -> None:
    if not isinstance(node, Mapping):
        raise InvalidWorkflow(f"{path}: an action must be an object")
    kind = str(node.get("actionType"))
    spec = ACTIONS.get(kind)
    if spec is None:
        raise InvalidWorkflow(f"{path}: unknown actionType {kind!r}")
    extra = set(node) - spec.params - {"actionType", "label", "then"}
    if extra:
        raise InvalidWorkflow(f"{path}: {kind} does not take {', '.join(sorted(extra))}")
    if "label" in node and not isinstance(node["label"], str):
        raise InvalidWorkflow(f"{path}: label must be a string")
    _check_place(node, kind, spec, context, path)
    _check_params(node, kind, path)
    then = node.get("then")
    if then is None:
        return
    if spec.provides is None:
        raise InvalidWorkflow(f"{path}: {kind} cannot have child actions")
    children = then if isinstance(then, list) else [then]
    for i, child in enumerate(children):
        _validate_node(child, context=spec.provides, path=f"{path}.then[{i}]")


def _check_place(
    node: Mapping[str, Any], kind: str, spec: ActionSpec, context: str | None, path: str
) -> None:
    """Root start needs the target parameter; a parent's context forbids it."""
    if context is None:
        if spec.child_only:
            raise InvalidWorkflow(f"{path}: {kind} cannot start a workflow")
        if spec.target and not isinstance(node.get(spec.target), str):
            raise InvalidWorkflow(f"{path}: {kind} needs {spec.target}")
        return
    if spec.needs != context:
        raise InvalidWorkflow(f"{path}: {kind} cannot run in a {context} context")
    if spec.target and spec.target in node:
        raise InvalidWorkflow(
            f"{path}: {spec.target} is forbidden when the parent opens the {context}"
        )


def _check_params(node: Mapping[str, Any], kind: str, path: str) -> None:
    if kind in ("st.sendMessage", "nv.sendMessage", "st.commentOnPost", "st.createPost"):
        text = node.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise InvalidWorkflow(f"{path}: text must be 1 to {MAX_TEXT} characters")
    if kind == "nv.sendMessage" and not isinstance(node.get("subject"), str):
        raise InvalidWorkflow(f"{path}: nv.sendMessage needs a subject")
    if kind == "st.reactToPost" and node.get("type") not in REACTION_TYPES:
        raise InvalidWorkflow(f"{path}: type must be one of {', '.join(REACTION_TYPES)}")
    if "note" in node and not isinstance(node["note"], str):
        raise InvalidWorkflow(f"{path}: note must be a string")
    if "limit" in node and (not isinstance(node["limit"], int) or node["limit"] < 1):
        raise InvalidWorkflow(f"{path}: limit must be a positive integer")
    if "filter" in node and not isinstance(node["filter"], Mapping):
        raise InvalidWorkflow(f"{path}: filter must be an object")


REACTION_TYPES = ("like", "celebrate", "support", "love", "insightful", "funny")
