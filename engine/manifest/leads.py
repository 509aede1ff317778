"""Lead files: CSV import (profile URLs normalized by :mod:`engine.urls`).

A bad row is reported (``file:line``) and skipped; a file that cannot be read at all raises
:class:`engine.errors.LeadsError` so that nothing is half-written.

"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import LeadsError, Problem
from engine.urls import normalize_profile_url

URL_COLUMN = "linkedin_profile_url"


@dataclass(frozen=True)
class LeadImport:
    """The outcome of reading one leads file: rows taken (URL normalized) and rows refused."""

    path: str
    rows: list[dict[str, str]] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)

    @property
    def taken(self) -> int:
        return len(self.rows)

    @property
    def refused_count(self) -> int:
        return len(self.refused)


def read_leads(path: str | Path) -> LeadImport:
    """Read a leads CSV (UTF-8, header row, ``linkedin_profile_url`` column required).

    Each row comes back as a dict of its columns with ``linkedin_profile_url`` normalized and
    empty values dropped; a bad row (missing or malformed URL, unknown IANA timezone,
    duplicate after normalization) lands in ``refused`` as a ``Problem`` at its ``file:line``.
    Raises ``LeadsError`` for an unreadable, non-UTF-8 or headerless file.
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise LeadsError(f"{p}: cannot read leads file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise LeadsError(f"{p}: leads file is not UTF-8 (byte {exc.start})") from exc
    return parse_leads(text.splitlines(keepends=True), str(p))


def parse_leads(lines: Iterable[str], filename: str) -> LeadImport:
    """:func:`read_leads` over already-decoded lines (``filename`` is used in problems)."""
    reader = csv.reader(iter(lines))
    try:
        header = next(reader)
    except StopIteration:
        raise LeadsError(f"{filename}: empty leads file (a header row is required)") from None
    except csv.Error as exc:
        raise LeadsError(f"{filename}:1: unreadable CSV header: {exc}") from exc
    columns = [c.strip() for c in header]
    if URL_COLUMN not in columns:
        raise LeadsError(
            f"{filename}:1: no '{URL_COLUMN}' column in the header (found: "
            f"{', '.join(c for c in columns if c) or 'nothing'})"
        )
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise LeadsError(f"{filename}:1: duplicate column(s) in header: {', '.join(dupes)}")
    result = LeadImport(filename)
    seen: dict[str, int] = {}
    last_end = reader.line_num
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = last_end + 1
            result.refused.append(Problem(filename, line, 1, "$", f"unreadable CSV row: {exc}"))
            last_end = reader.line_num
            continue
        line, last_end = last_end + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(columns):
            result.refused.append(
                Problem(filename, line, 1, "$", f"{len(record)} fields, header has {len(columns)}")
            )
            continue
        row = {c: v.strip() for c, v in zip(columns, record, strict=False) if c and v.strip()}
        problem = _check_row(row, filename, line, seen)
        if problem is not None:
            result.refused.append(problem)
            continue
        seen[row[URL_COLUMN]] = line
        result.rows.append(row)
    return result


def _check_row(
    row: dict[str, str], filename: str, line: int, seen: Mapping[str, int]
) -> Problem | None:
    raw = row.get(URL_COLUMN)
    if not raw:
        return Problem(filename, line, 1, URL_COLUMN, f"missing {URL_COLUMN}")
    try:
        url = normalize_profile_url(raw)
    except ValueError as exc:
        return Problem(filename, line, 1, URL_COLUMN, str(exc))
    if url in seen:
        return Problem(filename, line, 1, URL_COLUMN, f"duplicate of line {seen[url]} ({url})")
    tz = row.get("timezone")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            return Problem(filename, line, 1, "timezone", f"unknown IANA timezone {tz!r}")
    row[URL_COLUMN] = url
    return None
