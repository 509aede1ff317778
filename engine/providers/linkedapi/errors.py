"""LinkedAPI's errors as canonical labels: the one mapping every LinkedAPI call goes through.

Action errors (one failed action inside a completion) map through :data:`ACTION_ERRORS`,
request-level errors (the envelope's ``error.type``, or a failed workflow's reason) through
:data:`REQUEST_ERRORS`, HTTP statuses and transport failures by their kind. :func:`call` is
the one way to make a request: the adapter, the workflow client and the runs built on them
all use it, so a 401 means the same everywhere.

Example::

    >>> action_error({"type": "alreadyPending", "message": "x"}).label
    'INVITATION_PENDING'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import httpx

from engine.errors import ProviderError
from engine.providers.http import json_answer, json_or_none, not_sent, parse_retry_after
from engine.vocab import (
    ALREADY_CONNECTED,
    AUTH_EXPIRED,
    INVALID_INPUT,
    INVITATION_PENDING,
    LIMIT_REACHED,
    NOT_CONNECTED,
    NOT_PENDING,
    NOTE_TOO_LONG,
    PROFILE_NOT_ACCESSIBLE,
    SERVER_ERROR,
    STATUS_429,
    TIMEOUT,
)

# Errors of one action inside a completion (`{success: false, error: {type, message}}`).
ACTION_ERRORS: Mapping[str, str] = {
    "alreadyConnected": ALREADY_CONNECTED,
    "alreadyPending": INVITATION_PENDING,
    "personNotFound": PROFILE_NOT_ACCESSIBLE,
    "messagingNotAllowed": NOT_CONNECTED,
    "noteTooLong": NOTE_TOO_LONG,
    "noteLimitExceeded": LIMIT_REACHED,  # free accounts: monthly quota of notes used up
    "requestNotAllowed": LIMIT_REACHED,  # LinkedIn refuses more invitations for now
    "notPending": NOT_PENDING,
    "connectionNotFound": NOT_CONNECTED,
    "selfProfileNotAllowed": INVALID_INPUT,
    "emailRequired": INVALID_INPUT,
    "retrievingNotAllowed": INVALID_INPUT,
    "searchingNotAllowed": INVALID_INPUT,
    "noSalesNavigator": INVALID_INPUT,
    "dailyConnectionAttemptsExceeded": LIMIT_REACHED,
}

# Request-level (global) errors: the envelope's `error.type`, or a failed workflow's reason.
REQUEST_ERRORS: Mapping[str, str] = {
    "linkedinAccountSignedOut": AUTH_EXPIRED,
    "linkedApiTokenRequired": AUTH_EXPIRED,
    "invalidLinkedApiToken": AUTH_EXPIRED,
    "identificationTokenRequired": AUTH_EXPIRED,
    "invalidIdentificationToken": AUTH_EXPIRED,
    "accountApiTokenRequired": AUTH_EXPIRED,
    "invalidAccountApiToken": AUTH_EXPIRED,
    "subscriptionRequired": AUTH_EXPIRED,
    "plusPlanRequired": AUTH_EXPIRED,
    "noAvailableSeats": AUTH_EXPIRED,
    "noActiveSeats": AUTH_EXPIRED,
    "accountNotFound": AUTH_EXPIRED,
    "tooManyRequests": STATUS_429,
    "dailyConnectionAttemptsExceeded": LIMIT_REACHED,
    "invalidRequestPayload": INVALID_INPUT,
    "invalidRequestBody": INVALID_INPUT,
    "invalidWorkflow": INVALID_INPUT,
    "invalidActionParams": INVALID_INPUT,
    "languageNotSupported": INVALID_INPUT,
    "accountIdRequired": INVALID_INPUT,
    "sessionNotFound": INVALID_INPUT,
    "conversationsNotSynced": INVALID_INPUT,
    "workflowNotFound": INVALID_INPUT,
    "workflowTimeout": TIMEOUT,
    "workflowCancelled": INVALID_INPUT,
    "httpError": SERVER_ERROR,
    "unknownError": SERVER_ERROR,
}


def action_error(error: Mapping[str, Any] | None) -> ProviderError:
    """A failed action of a completion as a ProviderError with a canonical label."""
    error = error or {}
    kind = str(error.get("type") or "unknownError")
    return ProviderError(
        label=ACTION_ERRORS.get(kind) or REQUEST_ERRORS.get(kind, INVALID_INPUT),
        message=str(error.get("message") or kind),
        params={"type": kind},
    )


def request_error(
    kind: str, message: str = "", status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    """A request-level error type (or a failed workflow's reason) as a ProviderError."""
    label = REQUEST_ERRORS.get(kind) or ACTION_ERRORS.get(kind)
    if label is None:
        label = status_label(status) if status and status >= 400 else SERVER_ERROR
    return ProviderError(
        label=label,
        message=message or kind,
        status=status,
        params={"type": kind},
        retry_after=retry_after,
    )


def status_label(status: int) -> str:
    """The label of an HTTP error status that carries no LinkedAPI error type."""
    if status == 429:
        return STATUS_429
    if status == 504:  # a gateway gave up waiting: the call may or may not have happened
        return TIMEOUT
    if status >= 500:
        return SERVER_ERROR
    if status in (401, 403):
        return AUTH_EXPIRED
    return INVALID_INPUT


def unwrap(response: httpx.Response, call: str = "linkedapi") -> Any:
    """The ``result`` of a current-API envelope, or raise its error as a ProviderError.

    Account-API bodies (``{status, ...}``) are returned whole when the HTTP status is 2xx. An
    unreadable 2xx body is a TIMEOUT (:func:`engine.providers.http.json_answer`), an empty one
    too (the request was taken: its outcome is unknown)."""
    if response.is_success:
        body = json_answer(response, call, "linkedapi")
    else:
        body = json_or_none(response)
    retry = parse_retry_after(response.headers.get("retry-after"))
    if isinstance(body, dict) and "success" in body:
        if body.get("success") is True and response.is_success:
            return body.get("result")
        err = body["error"] if isinstance(body.get("error"), dict) else {}
        _raise(
            request_error(
                str(err.get("type") or "httpError"),
                str(err.get("message") or ""),
                response.status_code,
                retry,
            )
        )
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and not response.is_success:
        err = body["error"]
        kind = str(err.get("type") or err.get("errorType") or "httpError")
        _raise(request_error(kind, str(err.get("message") or ""), response.status_code, retry))
    if not response.is_success:
        _raise(
            ProviderError(
                label=status_label(response.status_code),
                message=f"HTTP {response.status_code}",
                status=response.status_code,
                retry_after=retry,
            )
        )
    if body is None:
        _raise(ProviderError(TIMEOUT, f"{call}: empty answer from linkedapi",
                             response.status_code))
    return body


def _raise(exc: ProviderError) -> NoReturn:
    raise exc


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """One LinkedAPI request: its unwrapped result, or a ProviderError (never an httpx one).

    A transport failure after the request may have left is a TIMEOUT (the call may have
    happened); one before it left (cannot connect) is a SERVER_ERROR."""
    try:
        response = await client.request(method, path, json=json, headers=dict(headers or {}))
    except httpx.TimeoutException as exc:
        raise ProviderError(TIMEOUT, f"{method} {path}: no answer in time") from exc
    except httpx.ConnectError as exc:
        raise not_sent(f"{method} {path}", exc) from exc
    except httpx.TransportError as exc:  # the request may have been received
        raise ProviderError(TIMEOUT, f"{method} {path}: {type(exc).__name__}") from exc
    return unwrap(response, f"{method} {path}")
