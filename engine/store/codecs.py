"""How values become column text and back: JSON documents, bounded copies of provider
answers, and the times of the SQLite fast path (naive UTC text, SQLAlchemy's own format)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson

# orjson: the runner writes three small JSON documents a step (intent, outcome, event), and
# the standard encoder's Python-level setup costs more than the encoding. Times keep their
# str() form (what the standard encoder's default=str wrote), keys may be non-strings.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

RESPONSE_MAX = 8192  # characters of a provider answer the action log keeps as it came


def dump_json(value: Any) -> str:
    """The text of a JSON column (the store's and the planner's bulk writes alike)."""
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    except TypeError:  # what orjson refuses (an integer beyond 64 bits...): the stdlib's text
        return json.dumps(value, separators=(",", ":"), default=str)


def data_json(data: Any) -> str | None:
    """An event's data as a bulk insert stores it: ``None``, its JSON text already (a writer
    of many rows sharing their data encodes it once), or a value to encode."""
    return data if data is None or isinstance(data, str) else dump_json(data)


def load_json(text: str | None) -> Any:
    """The value of a JSON column (None for NULL)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN/Infinity, which the stdlib writes and orjson refuses
        return json.loads(text)


def response_json(value: Any) -> str | None:
    """The action log's text of a provider answer: as it came when it is small (nearly
    always), else a bounded copy of it."""
    if value is None:
        return None
    text = dump_json(value)
    if len(text) <= RESPONSE_MAX:
        return text
    if isinstance(value, Mapping):
        return dump_json(bounded(value))
    return dump_json(text[:RESPONSE_MAX])  # a long list or text: its JSON, cut


def bounded(data: Mapping[str, Any]) -> dict[str, Any]:
    """A bounded, JSON-safe copy of a mapping: 20 keys, scalars kept, strings and anything
    else cut to 500 characters."""
    out: dict[str, Any] = {}
    for k, v in islice(data.items(), 20):
        if isinstance(v, str):
            out[str(k)] = v[:500]
        elif v is None or isinstance(v, int | float | bool):
            out[str(k)] = v
        else:
            out[str(k)] = str(v)[:500]
    return out


def utcnow() -> datetime:
    return datetime.now(UTC)


_DB_MINUTES: dict[tuple[int, int, int, int, int], str] = {}
_DB_TIMES: dict[datetime, str] = {}
_PY_TIMES: dict[str, datetime] = {}


def db_time(value: datetime | None) -> str | None:
    """A time as the SQLite fast path stores it: naive UTC text, exactly the format of
    SQLAlchemy's SQLite DATETIME (``YYYY-MM-DD HH:MM:SS.ffffff``) so both paths compare."""
    if value is None:
        return None
    hit = _DB_TIMES.get(value)  # a tick writes the same few instants many times
    if hit is not None:
        return hit
    if value.tzinfo is UTC:  # the clocks' own times: the fields are UTC already
        minute = (value.year, value.month, value.day, value.hour, value.minute)
        prefix = _DB_MINUTES.get(minute)
        if prefix is None:
            if len(_DB_MINUTES) >= 4096:
                _DB_MINUTES.clear()
            prefix = _DB_MINUTES[minute] = "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:".format(*minute)
        text = f"{prefix}{value.second:02d}.{value.microsecond:06d}"
    elif value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use aware UTC")
    else:
        text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if len(_DB_TIMES) >= 4096:
        _DB_TIMES.clear()
    _DB_TIMES[value] = text  # equal instants (whatever their zone) store the same text
    return text


def py_time(value: str | None) -> datetime | None:
    """The aware UTC time of a text :func:`db_time` wrote (or one with its own offset)."""
    if value is None:
        return None
    hit = _PY_TIMES.get(value)
    if hit is None:
        if len(_PY_TIMES) >= 4096:
            _PY_TIMES.clear()
        try:  # the zone in the text: 5x cheaper than parsing, then replace(tzinfo=UTC)
            hit = datetime.fromisoformat(f"{value}+00:00")
        except ValueError:  # a text with its own offset
            hit = datetime.fromisoformat(value).astimezone(UTC)
        _PY_TIMES[value] = hit
    return hit
