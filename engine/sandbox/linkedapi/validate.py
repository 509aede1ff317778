"""Workflow validation: the constraints each action puts on its parameters and children."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.sandbox.linkedapi.wire import MAX_TEXT, PARAMS, PERSON_ACTIONS


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
            _validate_node(item, parent_person=False, path="$[]")
    else:
        _validate_node(body, parent_person=False, path="$")


def _validate_node(node: Any, *, parent_person: bool, path: str) -> None:
    if not isinstance(node, Mapping):
        raise InvalidWorkflow(f"{path}: an action must be an object")
    kind = str(node.get("actionType"))
    if kind not in PARAMS:
        raise InvalidWorkflow(f"{path}: unknown actionType {kind!r}")
    extra = set(node) - PARAMS[kind] - {"actionType", "label", "then"}
    if extra:
        raise InvalidWorkflow(f"{path}: {kind} does not take {', '.join(sorted(extra))}")
    if "label" in node and not isinstance(node["label"], str):
        raise InvalidWorkflow(f"{path}: label must be a string")
    if kind in PERSON_ACTIONS:
        if parent_person and "personUrl" in node:
            raise InvalidWorkflow(
                f"{path}: personUrl is forbidden when the parent opens the person"
            )
        if not parent_person and not isinstance(node.get("personUrl"), str):
            raise InvalidWorkflow(f"{path}: {kind} needs personUrl")
    elif parent_person:
        raise InvalidWorkflow(f"{path}: {kind} cannot run in a person context")
    if kind == "st.sendMessage":
        text = node.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise InvalidWorkflow(f"{path}: text must be 1 to {MAX_TEXT} characters")
    if "note" in node and not isinstance(node["note"], str):
        raise InvalidWorkflow(f"{path}: note must be a string")
    if "limit" in node and (not isinstance(node["limit"], int) or node["limit"] < 1):
        raise InvalidWorkflow(f"{path}: limit must be a positive integer")
    then = node.get("then")
    if then is None:
        return
    if kind not in PERSON_ACTIONS:
        raise InvalidWorkflow(f"{path}: {kind} cannot have child actions")
    children = then if isinstance(then, list) else [then]
    for i, child in enumerate(children):
        _validate_node(child, parent_person=True, path=f"{path}.then[{i}]")
