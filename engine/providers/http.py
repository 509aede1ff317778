"""What every adapter reads off a provider's HTTP answer: its JSON (or None) and how long
its Retry-After asks to wait. The clients themselves are built by
:mod:`engine.providers.clients`."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


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


def json_or_none(response: httpx.Response) -> Any:
    """The JSON body, or None when there is none or it does not parse."""
    try:
        return response.json()
    except ValueError:
        return None
