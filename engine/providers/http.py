"""What every adapter reads off a provider's HTTP answer: its JSON and how long its
Retry-After asks to wait. The clients themselves are built by :mod:`engine.providers.clients`.

A provider's body is read in one place (:func:`read_json`): a body that is not JSON, or nests
deeper than :data:`MAX_DEPTH` (100,000 ``[`` made ``json`` raise RecursionError), is
unreadable. An answer (2xx) that is unreadable is a ``TIMEOUT``-labelled ProviderError
(:func:`json_answer`): the call may have happened, so the runner reconciles before anything is
sent again; an error body that is unreadable is ignored (:func:`json_or_none`) and the error is
mapped on its HTTP status."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from engine import vocab
from engine.errors import ProviderError

#: No provider's answer nests deeper than a few levels; anything deeper is broken or hostile.
MAX_DEPTH = 64


class UnreadableBody(ValueError):
    """A body that is not JSON or nests deeper than :data:`MAX_DEPTH`."""


#: ``ProviderError.params`` key set when the request never left (connection refused, no
#: such host): nothing happened at the provider, so there is nothing to reconcile
NOT_SENT = "not_sent"


def not_sent(call: str, exc: httpx.ConnectError) -> ProviderError:
    """A request that could not be sent (connection refused, no such host) as a
    SERVER_ERROR marked :data:`NOT_SENT`: retried like an outage, never reconciled."""
    return ProviderError(vocab.SERVER_ERROR, f"{call}: cannot connect ({exc})"[:300],
                         params={NOT_SENT: True})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def read_json(response: httpx.Response) -> Any:
    """The decoded JSON body, None when the body is empty; UnreadableBody otherwise."""
    raw = response.content
    if not raw.strip():
        return None
    try:
        value = response.json()
    except RecursionError:
        raise UnreadableBody(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UnreadableBody(f"not JSON ({type(exc).__name__})") from None
    # Each level takes one bracket: a body with few of them cannot be deep (the common case
    # costs two byte counts, not a walk).
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise UnreadableBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def json_answer(response: httpx.Response, call: str, provider: str) -> Any:
    """The JSON of a provider's answer (None when empty). An unreadable body is a ProviderError
    labelled TIMEOUT: the request was received and may have been acted on, so the outcome is
    unknown (never resent blind)."""
    try:
        return read_json(response)
    except UnreadableBody as exc:
        raise ProviderError(
            vocab.TIMEOUT,
            f"{call}: unreadable answer from {provider}: {exc}",
            status=response.status_code,
            params={"unreadable": str(exc)},
        ) from None


def json_or_none(response: httpx.Response) -> Any:
    """The JSON of an error body, or None when there is none or it is unreadable (the error is
    then mapped on its HTTP status)."""
    try:
        return read_json(response)
    except UnreadableBody:
        return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False
