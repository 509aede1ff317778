"""The one way seqrun talks HTTP to Edges: every Edges call (the adapter's live actions, the
schedule and run endpoints) goes through :func:`request`, so an Edges error means the same
thing wherever it happens.

Errors: the Edges body ``{error_label, status_code, params{postponed_until}}`` becomes
``ProviderError(label, message, status, params, retry_after)`` with a canonical label;
5xx -> SERVER_ERROR, a timeout -> TIMEOUT, 401 -> ConfigError (the key is never quoted).

    >>> # response = await request(client, "GET", "/schedules/sch-1", allow=(404,))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from engine import vocab
from engine.errors import ConfigError, ProviderError
from engine.providers.http import json_or_none, not_sent, parse_retry_after

# Edges error labels -> canonical labels (engine.vocab). Unknown labels fall back on the
# HTTP status (5xx -> SERVER_ERROR, 429 -> STATUS_429, else INVALID_INPUT).
LABELS: dict[str, str] = {
    "LIMIT_REACHED": vocab.LIMIT_REACHED,
    "STATUS_429": vocab.STATUS_429,
    "NOT_CONNECTED": vocab.NOT_CONNECTED,
    "ALREADY_CONNECTED": vocab.ALREADY_CONNECTED,
    "INVITATION_PENDING": vocab.INVITATION_PENDING,
    "NOT_PENDING": vocab.NOT_PENDING,
    "INVITATION_NOT_FOUND": vocab.NOT_PENDING,
    "PROFILE_NOT_ACCESSIBLE": vocab.PROFILE_NOT_ACCESSIBLE,
    "STATUS_404": vocab.PROFILE_NOT_ACCESSIBLE,
    "STATUS_403": vocab.PROFILE_NOT_ACCESSIBLE,
    "AUTH_EXPIRED": vocab.AUTH_EXPIRED,
    "NO_VALID_ACCOUNT_CONFIGURED": vocab.AUTH_EXPIRED,
    "INTEGRATION_ERROR": vocab.AUTH_EXPIRED,
    "INVALID_INPUT": vocab.INVALID_INPUT,
    "BAD_INPUT": vocab.INVALID_INPUT,
    "BAD_PARAMETERS": vocab.INVALID_INPUT,
    "MISSING_PARAMETER": vocab.INVALID_INPUT,
    "LK_INMAIL_CANNOT_RESEND": vocab.MESSAGING_NOT_ALLOWED,
    "LK_INMAIL_NOT_ENOUGH_CREDIT": vocab.MESSAGING_NOT_ALLOWED,
    "SN_OUT_OF_NETWORK": vocab.MESSAGING_NOT_ALLOWED,
    "MESSAGING_NOT_ALLOWED": vocab.MESSAGING_NOT_ALLOWED,
    "NOTE_TOO_LONG": vocab.NOTE_TOO_LONG,
    "LK_ERROR": vocab.SERVER_ERROR,
    "LK_524": vocab.SERVER_ERROR,
    "GENERIC_ERROR": vocab.SERVER_ERROR,
    "NO_DATA_LOADED": vocab.SERVER_ERROR,
    "PROXY_ERROR": vocab.SERVER_ERROR,
    "SERVER_ERROR": vocab.SERVER_ERROR,
    "TIMEOUT": vocab.TIMEOUT,
}


def list_items(body: Any) -> list[Any]:
    """The list in an Edges answer: the body itself, or the first list under one of the keys
    its endpoints use (``data``, ``results``, ``items``, ``outputs``, ``schedules``,
    ``identities``); [] when there is none."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("data", "results", "items", "outputs", "schedules", "identities"):
            value = body.get(key)
            if isinstance(value, list):
                return value
    return []


def map_error(
    response: httpx.Response, provider: str = "edges", context: str | None = None
) -> ProviderError | ConfigError:
    """The exception for a non-2xx Edges response; ``context`` (e.g. ``"GET /schedules"``)
    prefixes the message when given."""
    body = json_or_none(response)
    body = body if isinstance(body, dict) else {}
    status = response.status_code
    if status == 401 and LABELS.get(str(body.get("error_label") or body.get("label") or "")) \
            != vocab.AUTH_EXPIRED:
        var = "EDGES_API_KEY" if provider == "edges" else f"{provider.upper()}_API_KEY"
        return ConfigError(f"{provider}: the API key was refused (HTTP 401); check {var}")
    return error_from_body(
        body,
        status,
        reason=response.reason_phrase or "",
        context=context,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def error_from_body(
    body: Mapping[str, Any],
    status: int,
    *,
    reason: str = "",
    context: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """An Edges error body (``{error_label, message, params}``) as a ProviderError: the one
    mapping for an HTTP answer and for the ``error`` of an async run's output."""
    raw_label = str(body.get("error_label") or body.get("label") or "")
    raw_params = body.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    message = str(body.get("message") or body.get("error") or reason or "")
    label = LABELS.get(raw_label)
    if label is None:
        if status >= 500:
            label = vocab.SERVER_ERROR
        elif status == 429:
            label = vocab.STATUS_429
        else:
            label = vocab.INVALID_INPUT
    merged: dict[str, Any] = dict(params)
    if raw_label and raw_label != label:
        merged.setdefault("provider_label", raw_label)
    if "postponed_until" in body and "postponed_until" not in merged:
        merged["postponed_until"] = body["postponed_until"]
    if context:
        message = f"{context}: {message}" if message else context
    return ProviderError(label, message[:500], status=status, params=merged,
                         retry_after=retry_after)


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    allow: tuple[int, ...] = (),
    call: str | None = None,
) -> httpx.Response:
    """Send one Edges request; a non-2xx answer (except the ``allow`` statuses, returned as
    they are) raises through :func:`map_error`, a transport failure raises ProviderError.

    ``call`` names the call in messages (the adapter passes the action slug and keeps the
    provider's message bare); without it, messages start with ``"METHOD url"``.
    """
    name = call or f"{method} {url}"
    try:
        response = await client.request(method, url, params=params, json=json)
    except httpx.TimeoutException as exc:
        raise ProviderError(vocab.TIMEOUT, f"{name}: no answer in time") from exc
    except httpx.ConnectError as exc:
        raise not_sent(name, exc) from exc
    except httpx.TransportError as exc:
        raise ProviderError(vocab.SERVER_ERROR, f"{name}: {type(exc).__name__}") from exc
    if response.status_code >= 400 and response.status_code not in allow:
        raise map_error(response, context=None if call else name)
    return response
