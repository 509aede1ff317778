"""Edges errors: label -> (HTTP status, error scope), and the world's labels translated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.sandbox.world import (
    WorldError,
)

# error label -> (HTTP status, error_scope)
ERRORS: dict[str, tuple[int, str]] = {
    "BAD_INPUT": (400, "input"),
    "INVALID_INPUT": (400, "input"),
    "BAD_PARAMETERS": (400, "parameters"),
    "MISSING_PARAMETER": (424, "parameters"),
    "UNAUTHORIZED": (401, "request"),
    "NOT_FOUND": (404, "request"),
    "LIMIT_REACHED": (429, "input"),
    "STATUS_429": (429, "request"),
    "NOT_CONNECTED": (424, "input"),
    "ALREADY_CONNECTED": (424, "input"),
    "INVITATION_PENDING": (424, "input"),
    "NOT_PENDING": (424, "input"),
    "PROFILE_NOT_ACCESSIBLE": (424, "input"),
    "AUTH_EXPIRED": (424, "identity"),
    "NO_VALID_ACCOUNT_CONFIGURED": (424, "identity"),
    "SN_ACCOUNT_UPGRADE": (424, "identity"),
    "NO_RESULT": (424, "input"),
    "INTERNAL_ERROR": (500, "request"),
    "TIMEOUT": (504, "request"),
}


class EdgesError(Exception):
    def __init__(self, label: str, message: str, params: Mapping[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.message = message
        self.params = dict(params or {})
        self.status = status or ERRORS.get(label, (424, "input"))[0]


def from_world(exc: WorldError) -> EdgesError:
    if exc.label == "NOTE_TOO_LONG":
        return EdgesError("BAD_PARAMETERS",
                          "parameters/message must NOT have more than 300 characters",
                          exc.params)
    return EdgesError(exc.label, exc.message, exc.params)
