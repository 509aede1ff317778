"""Lead files: CSV import (profile URLs normalized by :mod:`engine.urls`).

A bad row is reported (``file:line``) and skipped; a file that cannot be read at all raises
:class:`engine.errors.LeadsError` so that nothing is half-written. Only ``\n`` (or ``\r\n``)
ends a row, so line numbers are an editor's and Unicode line breaks stay inside their cell.

"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import LeadsError, Problem, one_line
from engine.urls import normalize_profile_url

URL_COLUMN = "linkedin_profile_url"


@dataclass(frozen=True)
class LeadImport:
    """The outcome of reading one leads file: rows taken (URL normalized) and rows refused."""

    path: str
    rows: list[dict[str, str]] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # each row's file line (or search rank)

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
    return _merged(read_lead_chunks(path), str(path))


#: rows per chunk of a streamed leads file: big enough for bulk statements, small enough that
#: a million-row file never sits in memory
CHUNK_ROWS = 5000


def read_lead_chunks(path: str | Path, size: int | None = None) -> Iterator[LeadImport]:
    """:func:`read_leads` as a stream of chunks of at most ``size`` rows (refused rows go with
    the chunk they were met in); the file is read line by line. A file that cannot be read
    raises ``LeadsError`` when the chunk that meets it is asked for (a caller writing the
    chunks in one transaction then writes nothing)."""
    p = Path(path)
    size = size or CHUNK_ROWS
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise LeadsError(f"{p}: cannot read leads file: {exc.strerror or exc}") from exc
    with fh:
        yield from parse_lead_chunks(_decoded_lines(fh, str(p)), str(p), size)


def _decoded_lines(fh: BinaryIO, filename: str) -> Iterator[str]:
    """The lines of a UTF-8 file (a leading BOM dropped), cut after each ``\n`` only: a binary
    file's lines end there, and ``\n`` is never inside a multi-byte UTF-8 character."""
    offset = 0
    try:
        for raw in fh:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise LeadsError(
                    f"{filename}: leads file is not UTF-8 (byte {offset + exc.start})"
                ) from exc
            yield line.removeprefix("\ufeff") if offset == 0 else line
            offset += len(raw)
    except OSError as exc:
        raise LeadsError(f"{filename}: cannot read leads file: {exc.strerror or exc}") from exc


def _merged(chunks: Iterable[LeadImport], filename: str) -> LeadImport:
    result = LeadImport(filename)
    for chunk in chunks:
        result.rows.extend(chunk.rows)
        result.refused.extend(chunk.refused)
        result.lines.extend(chunk.lines)
    return result


def leads_from_rows(rows: Iterable[Mapping[str, str]], source: str,
                    *, start: LeadImport | None = None) -> LeadImport:
    """Rows found elsewhere (a provider's people search) read by the CSV's rules: URL
    normalized, bad URL or duplicate refused as ``source:N`` (N: the row's rank), empty values
    dropped. ``start``: rows already taken (a CSV) that these add to (its duplicates are
    refused, as within a file)."""
    result = LeadImport(start.path if start else source, list(start.rows) if start else [],
                        list(start.refused) if start else [], list(start.lines) if start else [])
    seen = {row[URL_COLUMN]: i for i, row in enumerate(result.rows, 1)}
    for rank, raw in enumerate(rows, 1):
        row = {c: str(v).strip() for c, v in raw.items() if c and str(v).strip()}
        _take(result, row, source, rank, seen)
    return result


def _take(result: LeadImport, row: dict[str, str], source: str, line: int,
          seen: dict[str, int]) -> None:
    """``row`` into ``result``: taken (URL normalized), or refused at ``source:line``."""
    problem = _check_row(row, source, line, seen)
    if problem is not None:
        result.refused.append(problem)
        return
    seen[row[URL_COLUMN]] = line
    result.rows.append(row)
    result.lines.append(line)


def split_lines(text: str) -> list[str]:
    """``text`` cut after each ``\n`` only (``str.splitlines`` also cuts at U+2028, form
    feeds, a lone CR...), ends kept."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


class _Lines:
    """The lines fed to the CSV reader: those of the record being read, and whether the reader
    asked for a line past the end of the file while reading it."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.record: list[str] = []
        self.ended = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            self.ended = True
            raise
        self.record.append(line)
        return line


#: what spreadsheets export "CSV" with: a comma, Excel's semicolon (in locales where the comma
#: is the decimal mark), a tab, a pipe
DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(header: str) -> str:
    """The delimiter of a leads CSV, read from its header line: the first of
    :data:`DELIMITERS` that makes a ``linkedin_profile_url`` column, else the comma."""
    for delimiter in DELIMITERS:
        try:
            columns = next(csv.reader([header], delimiter=delimiter), [])
        except csv.Error:
            continue
        if URL_COLUMN in (c.strip() for c in columns):
            return delimiter
    return ","


def parse_leads(lines: Iterable[str], filename: str) -> LeadImport:
    """:func:`read_leads` over already-decoded lines (``filename`` is used in problems).
    The delimiter is sniffed from the header (:func:`sniff_delimiter`)."""
    return _merged(parse_lead_chunks(lines, filename, CHUNK_ROWS), filename)


def parse_lead_chunks(
    lines: Iterable[str], filename: str, size: int
) -> Iterator[LeadImport]:
    """:func:`parse_leads` in chunks of at most ``size`` rows (the last one possibly empty)."""
    rest = iter(lines)
    first = next(rest, None)
    feed = _Lines(rest if first is None else chain([first], rest))
    reader = csv.reader(feed, delimiter=sniff_delimiter(first or ""))
    try:
        header = next(reader)
    except StopIteration:
        raise LeadsError(f"{filename}: empty leads file (a header row is required)") from None
    except csv.Error as exc:
        raise LeadsError(f"{filename}:1: unreadable CSV header: {_csv_error(exc)}") from exc
    _check_quotes(feed, filename, 1)
    columns = [c.strip() for c in header]
    if URL_COLUMN not in columns:
        raise LeadsError(
            f"{filename}:1: no '{URL_COLUMN}' column in the header (found: "
            f"{one_line(', '.join(c for c in columns if c)) or 'nothing'}; columns may be "
            "separated by a comma, a semicolon, a tab or a pipe)"
        )
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise LeadsError(
            f"{filename}:1: duplicate column(s) in header: {one_line(', '.join(dupes))}"
        )
    result = LeadImport(filename)
    seen: dict[str, int] = {}
    last_end = reader.line_num
    while True:
        if len(result.rows) >= size:
            yield result
            result = LeadImport(filename)
        feed.record = []
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = last_end + 1
            message = f"unreadable CSV row: {_csv_error(exc)}"
            result.refused.append(Problem(filename, line, 1, "$", message))
            last_end = reader.line_num
            continue
        line, last_end = last_end + 1, reader.line_num
        _check_quotes(feed, filename, line)
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(columns):
            result.refused.append(
                Problem(filename, line, 1, "$", f"{len(record)} fields, header has {len(columns)}")
            )
            continue
        row = {c: v for c, v in zip(columns, map(str.strip, record), strict=False) if c and v}
        _take(result, row, filename, line, seen)
    yield result


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
        # not a failure: the first row of the lead is taken (preflight does not count it)
        return Problem(filename, line, 1, URL_COLUMN, f"duplicate of line {seen[url]} ({url})",
                       "warning")
    tz = row.get("timezone")
    if tz and not known_timezone(tz):
        return Problem(filename, line, 1, "timezone", f"unknown IANA timezone {tz!r}")
    row[URL_COLUMN] = url
    return None


def known_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA timezone key. Never raises: ``Europe`` (a directory of the
    database), ``../x`` or a 300-character name are simply unknown."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _csv_error(exc: csv.Error) -> str:
    if "new-line character" in str(exc):
        # Only \n ends a row: a lone \r is allowed inside quotes only.
        return "a carriage return inside an unquoted cell (quote the cell)"
    return str(exc)


def _check_quotes(feed: _Lines, filename: str, line: int) -> None:
    """Refuse a record that still had a quoted cell open at the end of the file.

    Python's csv reader accepts that and returns the rest of the file as one cell. Only then
    does it ask for a line past the end of the file within a record.
    """
    if feed.ended and feed.record:
        at = line + (_unclosed_quote("".join(feed.record)) or 0)
        raise LeadsError(
            f"{filename}:{at}: unclosed quote: the rest of the file (from line {at}) "
            "would be read as one cell"
        )


def _unclosed_quote(text: str) -> int | None:
    """The line offset (0-based) of the opening quote of an unclosed quoted cell in ``text``
    (one CSV record, default dialect), or ``None``."""
    quoted, at_start, opened = False, True, 0
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"':
                if text.startswith('"', i + 1):
                    i += 1  # an escaped quote
                else:
                    quoted = False
        elif char == '"' and at_start:
            quoted, opened = True, i
        at_start = not quoted and char in ",\r\n"
        i += 1
    return text.count("\n", 0, opened) if quoted else None
