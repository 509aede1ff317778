"""JSON-shaped YAML, decided once. The only module that imports ``yaml``.

Documents are composed into a node tree by a safe loader and converted by our own walker,
so every JSON path (``$.spec.steps[2].with.note``) keeps its 1-based line and column.
The scalar rules are YAML 1.2's core schema: only ``true``/``false`` are booleans
(``on``, ``yes``, ``off`` stay strings, and ``on:`` is a key in our manifests), timestamps
stay strings, ``1:30`` is not a base-60 number. Refused: duplicate keys, non-string keys,
merge keys and unknown tags, more than :data:`MAX_ALIASES` aliases or :data:`MAX_ALIAS_NODES`
nodes reached through them (a "billion laughs" file fails in milliseconds), files over
:data:`MAX_BYTES`, non-UTF-8 text and empty documents.

>>> docs = load_documents("sequences/founders-outreach.yaml")  # doctest: +SKIP
>>> docs[0].source.locate("$.spec.steps[1].with.note")  # doctest: +SKIP
(35, 9)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.cyaml import CParser  # type: ignore[attr-defined]
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from engine.errors import ManifestError, Problem, one_line
from engine.model import SourceMap

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 64  # alias references per file
MAX_ALIAS_NODES = 10_000  # nodes reached through aliases, per document
MAX_DEPTH = 64

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Document:
    """One YAML document: its JSON-shaped data and where each JSON path sits in the file.

    ``source.positions`` holds the position of each key (for mapping entries) or item (for
    list entries); ``values`` holds the position of each value.
    """

    data: Any
    source: SourceMap
    index: int = 0  # 0-based position of the document in its file
    values: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def child_path(base: str, key: str | int) -> str:
    """The JSON path of ``key`` under ``base``: ``$.spec``, ``$.steps[2]``, ``$.labels['a.b']``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{base}.{key}"
    # A path is one line of a report: a newline in a key must not start another one.
    quoted = one_line(key.replace("\\", "\\\\").replace("'", "\\'"))
    return f"{base}['{quoted}']"


def json_path(parts: Sequence[str | int]) -> str:
    """``["spec", "steps", 2]`` -> ``$.spec.steps[2]``."""
    path = "$"
    for part in parts:
        path = child_path(path, part)
    return path


class _TooManyAliases(Exception):
    def __init__(self, node_mark: Any) -> None:
        self.mark = node_mark


class _TooDeep(_TooManyAliases):
    pass


class _Loader(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
    """libyaml's parser (several times faster than PyYAML's pure-Python scanner on a large
    manifest) under PyYAML's composer, so the alias budget and the depth limit apply while
    composing; scalars are resolved by YAML 1.2 core rules."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (filled below, our own copy)

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)  # type: ignore[no-untyped-call]
        SafeConstructor.__init__(self)  # type: ignore[no-untyped-call]
        Resolver.__init__(self)  # type: ignore[no-untyped-call]
        self.alias_count = 0
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                raise _TooManyAliases(self.peek_event().start_mark)  # type: ignore[union-attr]
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[union-attr]
            return Composer.compose_node(self, parent, index)  # type: ignore[no-untyped-call]
        finally:
            self.depth -= 1


_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver(_MERGE, re.compile(r"^<<$"), ["<"])


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Converter:
    """Walks one composed document into plain data, recording positions and problems."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self.positions: dict[str, tuple[int, int]] = {}
        self.values: dict[str, tuple[int, int]] = {}
        self.alias_nodes = 0
        self.seen: set[int] = set()
        self.too_big = False

    def error(self, node: Node, path: str, message: str) -> None:
        line, col = _mark(node)
        self.problems.append(Problem(self.file, line, col, path, message))

    def convert(self, node: Node, path: str, depth: int = 0, aliased: bool = False) -> Any:
        # A node met twice is shared through an alias: everything under it is expansion.
        aliased = aliased or id(node) in self.seen
        self.seen.add(id(node))
        if aliased:
            self.alias_nodes += 1
            if self.alias_nodes > MAX_ALIAS_NODES:
                if not self.too_big:
                    self.too_big = True
                    self.error(node, path, f"aliases expand to more than {MAX_ALIAS_NODES} nodes")
                return None
        if depth > MAX_DEPTH:
            self.error(node, path, f"nesting deeper than {MAX_DEPTH} levels")
            return None
        self.values.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self.error(node, path, f"unsupported tag {node.tag!r}")
            items = []
            for i, child in enumerate(node.value):
                sub = child_path(path, i)
                self.positions.setdefault(sub, _mark(child))
                items.append(self.convert(child, sub, depth + 1, aliased))
                if self.too_big:
                    break
            return items
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth, aliased)
        self.error(node, path, "unsupported YAML node")  # pragma: no cover
        return None

    def mapping(self, node: MappingNode, path: str, depth: int, aliased: bool) -> dict[str, Any]:
        if node.tag != _MAP:
            self.error(node, path, f"unsupported tag {node.tag!r}")
        out: dict[str, Any] = {}
        first: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.error(key_node, path, "merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, path, "a key must be a string, not a list or mapping")
                continue
            if key_node.tag != _STR:
                self.error(key_node, path, f"key {key_node.value!r} is not a string (quote it)")
                continue
            key = str(key_node.value)
            sub = child_path(path, key)
            if key in first:
                line, _ = first[key]
                self.error(key_node, sub, f"duplicate key {key!r} (first defined on line {line})")
                continue
            first[key] = _mark(key_node)
            self.positions.setdefault(sub, _mark(key_node))
            out[key] = self.convert(value_node, sub, depth + 1, aliased)
            if self.too_big:
                break
        return out

    def scalar(self, node: ScalarNode, path: str) -> Any:
        value: str = node.value
        tag = node.tag
        if tag in (_STR, "!"):
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value.lower() == "true"
        if tag == _INT:
            try:
                if value.startswith(("0x", "0o")):
                    return int(value, 0)
                return int(value, 10)
            except ValueError:
                self.error(node, path, f"not an integer: {value!r}")
                return None
        if tag == _FLOAT:
            try:
                return float(value)
            except ValueError:
                self.error(node, path, f"not a number: {value!r}")
                return None
        self.error(node, path, f"unsupported tag {tag!r}")
        return None


def parse_text(text: str, file: str) -> list[Document]:
    """Parse YAML text into documents, raising :class:`ManifestError` with every problem."""
    documents, problems = scan_text(text, file)
    if problems:
        raise ManifestError(problems)
    return documents


def scan_text(text: str, file: str) -> tuple[list[Document], list[Problem]]:
    """The clean documents of ``text`` and the problems of the others (never raises).

    A document with a problem (a duplicate key...) is left out, the following ones are still
    read, so one mistake does not hide the rest of the file; a syntax error ends the file.
    """
    problems: list[Problem] = []
    documents: list[Document] = []
    unprintable = _NON_PRINTABLE.search(text)  # libyaml would only stop there, unlocated
    if unprintable is not None:
        return [], [_unprintable(text, unprintable.start(), file)]
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                break
            index += 1
            if isinstance(node, ScalarNode) and node.tag == _NULL:
                line, col = _mark(node)
                problems.append(Problem(file, line, col, "$", "empty document"))
                continue
            before = len(problems)
            converter = _Converter(file, problems)
            data = converter.convert(node, "$")
            if len(problems) > before:
                continue
            converter.positions["$"] = _mark(node)
            positions = SourceMap(file, dict(converter.positions))
            documents.append(Document(data, positions, index - 1, dict(converter.values)))
        if index == 0 and not problems:
            problems.append(Problem(file, 1, 1, "$", "empty document"))
    except _TooManyAliases as exc:
        message = (
            f"nesting deeper than {MAX_DEPTH} levels"
            if isinstance(exc, _TooDeep)
            else f"more than {MAX_ALIASES} YAML aliases: refusing to expand"
        )
        problems.append(Problem(file, exc.mark.line + 1, exc.mark.column + 1, "$", message))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            what = "a tab character: YAML is indented with spaces, never tabs"
        problems.append(Problem(file, line, col, "$", f"YAML syntax error: {what}"))
    except yaml.YAMLError as exc:  # reader errors (control characters) carry no mark
        problems.append(Problem(file, 1, 1, "$", f"YAML error: {exc}"))
    except RecursionError:
        problems.append(Problem(file, 1, 1, "$", "YAML nesting too deep"))
    finally:
        loader.dispose()
    return documents, problems


_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE


def _unprintable(text: str, index: int, file: str) -> Problem:
    """A control character (NUL, ESC, DEL...) at its line and column (lines end at ``\n``)."""
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return Problem(
        file, line, col, "$", f"character U+{ord(text[index]):04X} is not allowed in YAML"
    )


def decode(raw: bytes, file: str) -> str:
    """UTF-8 (an optional BOM is dropped) or a positioned :class:`ManifestError`."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise ManifestError(
            [Problem(file, line, col, "$", f"file is not valid UTF-8 (byte 0x{bad})")]
        ) from None


def load_documents(path: str | Path) -> list[Document]:
    """Read one YAML file into its documents; raise :class:`ManifestError` on any problem."""
    documents, problems = read_documents(path)
    if problems:
        raise ManifestError(problems)
    return documents


def read_documents(path: str | Path) -> tuple[list[Document], list[Problem]]:
    """Like :func:`load_documents` but returns the clean documents and the problems."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return [], [Problem(file, 1, 1, "$", f"cannot read file: {exc.strerror}")]
    if len(raw) > MAX_BYTES:
        return [], [Problem(file, 1, 1, "$", f"file is larger than {MAX_BYTES // 1024} KiB")]
    try:
        text = decode(raw, file)
    except ManifestError as exc:
        return [], list(exc.problems)
    return scan_text(text, file)
