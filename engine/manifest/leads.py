"""Lead files: CSV import (profile URLs normalized by :mod:`engine.urls`).

A bad row is reported (``file:line``) and skipped; a file that cannot be read at all raises
:class:`engine.errors.LeadsError` so that nothing is half-written. Only ``\n`` (or ``\r\n``)
ends a row, so line numbers are an editor's and Unicode line breaks stay inside their cell.

"""

from __future__ import annotations

import csv
import gc
from array import array
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from operator import itemgetter
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
    people: bool = False  # rows a search found (no file to open): a problem names the person

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


@contextmanager
def bulk_collection() -> Iterator[None]:
    """Around the loop over a big leads file's chunks: the cyclic garbage collector paused.
    The chunks' allocations set off collections that scan every object alive, the modules'
    and SQLAlchemy's ~80,000 included (~0.13 s each on the shared box): a sixth of an
    import's CPU, a quarter of a plan's. The loop makes no reference cycles (a collection
    after 20,000 rows and after 100,000 finds the same ~1,100 objects, the start-up's), so
    pausing it keeps no memory; the collector runs again once the loop ends."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
        lines = chain.from_iterable(_decoded_batches(fh, str(p)))
        yield from parse_lead_chunks(lines, str(p), size)


#: bytes of a file read (and decoded) at a time: whole lines, so the CSV reader takes them
#: through C-level iterators (a Python generator a line cost a tenth of an import)
READ_BYTES = 1 << 16


def _decoded_batches(fh: BinaryIO, filename: str) -> Iterator[list[str]]:
    """The lines of a UTF-8 file (a leading BOM dropped) in batches, cut after each ``\n``
    only: a binary file's lines end there, and ``\n`` is never inside a multi-byte UTF-8
    character."""
    offset = 0
    try:
        while batch := fh.readlines(READ_BYTES):
            try:
                lines = list(map(bytes.decode, batch))
            except UnicodeDecodeError:
                raise _not_utf8(batch, offset, filename) from None
            if offset == 0:
                lines[0] = lines[0].removeprefix("\ufeff")
            offset += sum(map(len, batch))
            yield lines
    except OSError as exc:
        raise LeadsError(f"{filename}: cannot read leads file: {exc.strerror or exc}") from exc


def _not_utf8(batch: list[bytes], offset: int, filename: str) -> LeadsError:
    """The error naming the file offset of the first byte of ``batch`` that is not UTF-8."""
    for raw in batch:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            offset += exc.start
            break
        offset += len(raw)
    return LeadsError(f"{filename}: leads file is not UTF-8 (byte {offset})")


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
    dropped. ``start``: rows already taken (a CSV): one found again is a duplicate, refused
    here; they are not repeated, so each import names its own rows' source."""
    result = LeadImport(source, people=True)
    seen: dict[str, First] = {} if start is None else {
        r[URL_COLUMN]: f"{start.path}:{n}" for r, n in zip(start.rows, start.lines, strict=True)}
    for rank, raw in enumerate(rows, 1):
        row = {c: str(v).strip() for c, v in raw.items() if c and str(v).strip()}
        _take(result, row, source, rank, seen)
    return result


def _take(result: LeadImport, row: dict[str, str], source: str, line: int,
          seen: dict[str, First], mark: _Firsts | None = None) -> bool:
    """``row`` into ``result``: taken (URL normalized), or refused at ``source:line``;
    whether taken. ``mark``: what ``seen`` keeps of a taken row instead of its line (which
    ``mark`` then records)."""
    problem = _check_row(row, source, line, seen)
    if problem is not None:
        result.refused.append(problem)
        return False
    url = row[URL_COLUMN]
    if mark is None:
        seen[url] = line
    else:
        seen[url] = mark
        mark.add(url, line)
    result.rows.append(row)
    result.lines.append(line)
    return True


class _Firsts:
    """The lines of the rows of one chunk of a file, for the duplicates found later: a
    reference and 4 bytes a row, where a line kept as an int object a row (in the URLs seen)
    cost 32 bytes, a tenth of a million-row plan's memory."""

    __slots__ = ("lines", "urls")

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.lines = array("I")

    def add(self, url: str, line: int) -> None:
        self.urls.append(url)
        self.lines.append(line)

    def line(self, url: str) -> int:
        return self.lines[self.urls.index(url)]


#: what the URLs seen keep of a row taken: its line, "file:line" of another source, or the
#: chunk of a file that knows its line
First = int | str | _Firsts


def split_lines(text: str) -> list[str]:
    """``text`` cut after each ``\n`` only (``str.splitlines`` also cuts at U+2028, form
    feeds, a lone CR...), ends kept."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


class _End:
    """Put after the lines fed to the CSV reader: notes whether the reader asked for a line
    past the end of the file (``chain`` asks for this iterable's iterator only then)."""

    reached = False

    def __iter__(self) -> Iterator[str]:
        self.reached = True
        return iter(())


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
    end = _End()
    reader = csv.reader(chain(() if first is None else (first,), rest, end),
                        delimiter=sniff_delimiter(first or ""))
    try:
        header = next(reader)
    except StopIteration:
        raise LeadsError(f"{filename}: empty leads file (a header row is required)") from None
    except csv.Error as exc:
        raise LeadsError(f"{filename}:1: unreadable CSV header: {_csv_error(exc)}") from exc
    _check_quotes(end, header, reader.line_num, filename)
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
    chunks = _Chunks(filename, columns, size, reader.line_num)
    while True:
        try:
            for record in reader:  # the common path: C-level iteration, no try a row
                if end.reached:
                    _check_quotes(end, record, reader.line_num, filename)
                if chunks.add(record, reader.line_num):
                    yield chunks.take()
        except csv.Error as exc:
            chunks.unreadable(f"unreadable CSV row: {_csv_error(exc)}", reader.line_num)
            continue
        break
    yield chunks.result


_VALUE = itemgetter(1)  # a (column, cell) pair's cell: kept when not empty


class _Chunks:
    """The records of a leads file as they are read: each one taken or refused at its first
    line, in chunks of ``size`` taken rows."""

    def __init__(self, filename: str, columns: list[str], size: int, line_num: int) -> None:
        self.filename, self.columns, self.size = filename, columns, size
        self.width = len(columns)
        self.named = all(columns)
        self.result = LeadImport(filename)
        self.seen: dict[str, First] = {}
        self.firsts = _Firsts()
        self.last_end = line_num  # the reader's line number at the end of the last record

    def add(self, record: list[str], line_num: int) -> bool:
        """Take or refuse ``record`` (ending at line ``line_num``); True when the chunk is
        full (:meth:`take` it). A million rows a file: no generator or dict comprehension
        a row, C-level iterators instead."""
        line, self.last_end = self.last_end + 1, line_num
        if len(record) > self.width:
            if any(cell.strip() for cell in record):
                self.result.refused.append(Problem(
                    self.filename, line, 1, "$", f"{len(record)} fields, header has {self.width}"
                ))
            return False
        cells = zip(self.columns, map(str.strip, record), strict=False)
        # the cells with a value (of a named column: a header's blank name keeps none)
        row = dict(filter(_VALUE, cells)) if self.named else {c: v for c, v in cells if c and v}
        if not row and not any(cell.strip() for cell in record):
            return False  # a blank line
        _take(self.result, row, self.filename, line, self.seen, self.firsts)
        return len(self.result.rows) >= self.size

    def take(self) -> LeadImport:
        """The chunk read so far; the next one starts empty."""
        full, self.result = self.result, LeadImport(self.filename)
        self.firsts = _Firsts()
        return full

    def unreadable(self, message: str, line_num: int) -> None:
        self.result.refused.append(Problem(self.filename, self.last_end + 1, 1, "$", message))
        self.last_end = line_num


def _check_row(
    row: dict[str, str], filename: str, line: int, seen: Mapping[str, First]
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
        first = seen[url]  # a line of this file, or "file:line" of another source
        if isinstance(first, _Firsts):
            first = first.line(url)
        where = f"line {first}" if isinstance(first, int) else first
        return Problem(filename, line, 1, URL_COLUMN, f"duplicate of {where} ({url})",
                       "warning")
    tz = row.get("timezone")
    if tz and not known_timezone(tz):
        return Problem(filename, line, 1, "timezone", f"unknown IANA timezone {tz!r}")
    row[URL_COLUMN] = url
    return None


@lru_cache(maxsize=1024)  # a file names the same few zones on every row
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


def _check_quotes(end: _End, record: list[str], line_num: int, filename: str) -> None:
    """Refuse a record that still had a quoted cell open at the end of the file.

    Python's csv reader accepts that and returns the rest of the file as one cell, its last;
    only then does it ask for a line past the end of the file within a record. The quote
    opened on the last line less the line ends in that cell.
    """
    if end.reached:
        cell = record[-1] if record else ""
        at = line_num - cell.count("\n") + cell.endswith("\n")
        raise LeadsError(
            f"{filename}:{at}: unclosed quote: the rest of the file (from line {at}) "
            "would be read as one cell"
        )
