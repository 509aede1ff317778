"""Time arithmetic and the one ISO-8601 text form of the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

#: the rolling window of LinkedIn's smart limits
DAY = timedelta(hours=24)


def week_start(at: datetime) -> datetime:
    """Monday 00:00 UTC of the calendar week of ``at`` (when weekly caps reset)."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def month_start(at: datetime) -> datetime:
    """The 1st 00:00 UTC of the calendar month of ``at`` (when monthly limits reset)."""
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(at: datetime) -> datetime:
    """The 1st 00:00 UTC of the month after ``at``'s."""
    start = month_start(at)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(
        month=start.month + 1)


@lru_cache(maxsize=65536)
def iso(dt: datetime) -> str:
    """``2026-01-05T08:00:00Z``."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Read :func:`iso` (and any ISO-8601 text; a naive one is taken as UTC)."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
