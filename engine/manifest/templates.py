"""Message templates: sandboxed Jinja2 with undefined variables as errors, plus spintax.

Templates see one variable, ``lead`` (its CSV columns: ``lead.first_name``...): Jinja's globals
(``range``, ``lipsum``, ``self``...) are gone. Spintax ``{Hi|Hello}`` (nested allowed:
``{Hi|{Hey|Hello}}``) picks one variant per lead, deterministically from a seed key, so
re-rendering for the same lead gives the same text. Jinja's own ``{{ }}``, ``{% %}`` and
``{# #}`` are never read as spintax.

A template is untrusted input (a pull request to a manifest): checking it never evaluates it,
and rendering it is bounded (:mod:`engine.manifest.template_sandbox`): no value or output
longer than ``MAX_OUTPUT`` characters, at most ``MAX_STEPS`` loop iterations and calls, and
any failure is a :class:`TemplateRenderError`, never another exception.

>>> render("{Hi|Hello} {{ lead.first_name }}", {"first_name": "Ada"}, seed_key="lead-1")
'Hello Ada'
>>> sorted(variables("{{ lead.first_name | default('there') }} at {{ lead['company_name'] }}"))
['company_name', 'first_name']
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    nodes,
)
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.meta import find_undeclared_variables

from engine.errors import SeqrunError
from engine.manifest.template_sandbox import (
    BUDGET,
    MAX_OUTPUT,
    Budget,
    SandboxedTemplates,
    too_big,
)

CONTEXT_NAMES = frozenset({"lead"})
_REFUSED_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% import %}",
    nodes.ScopedEvalContextModifier: "{% autoescape %}",
    nodes.EvalContextModifier: "{% autoescape %}",
}


class TemplateRenderError(SeqrunError):
    """A template that cannot be rendered for a lead (undefined variable, sandbox violation)."""


@cache
def environment() -> SandboxedTemplates:
    """The one sandboxed environment for messages (undefined variables raise)."""
    return SandboxedTemplates(StrictUndefined)


@cache
def _conditions() -> SandboxedTemplates:
    # Lenient: `lead.x` of a lead without x is falsy in a branch condition.
    return SandboxedTemplates(Undefined)


# ---- spintax ----------------------------------------------------------------------------------

_JINJA_OPEN = {"{{": "}}", "{%": "%}", "{#": "#}"}


@dataclass
class _Group:
    options: list[list[str | _Group]]
    source: str  # the group's text, part of its seed


@dataclass(frozen=True)
class _Unbalanced(Exception):
    message: str


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {col}"


def _parse_spintax(text: str) -> list[str | _Group]:
    """Split ``text`` into literal chunks (Jinja kept intact) and spintax groups."""
    root: list[str | _Group] = []
    # Each open group: (its start index, its options so far); `current` is where text goes.
    stack: list[tuple[int, list[list[str | _Group]]]] = []
    current = root
    i = 0
    buf: list[str] = []

    def flush() -> None:
        if buf:
            current.append("".join(buf))
            buf.clear()

    while i < len(text):
        two = text[i : i + 2]
        if two in _JINJA_OPEN:
            end = text.find(_JINJA_OPEN[two], i + 2)
            stop = len(text) if end < 0 else end + 2
            buf.append(text[i:stop])
            i = stop
            continue
        char = text[i]
        if char == "{":
            flush()
            stack.append((i, [[]]))
            current = stack[-1][1][-1]
        elif char == "|" and stack:
            flush()
            stack[-1][1].append([])
            current = stack[-1][1][-1]
        elif char == "}":
            if not stack:
                raise _Unbalanced(f"spintax: '}}' at {_position(text, i)} has no opening '{{'")
            flush()
            start, options = stack.pop()
            parent = stack[-1][1][-1] if stack else root
            parent.append(_Group(options, text[start : i + 1]))
            current = parent
        else:
            buf.append(char)
        i += 1
    if stack:
        raise _Unbalanced(f"spintax: '{{' at {_position(text, stack[-1][0])} is never closed")
    flush()
    return root


def _expand(parts: list[str | _Group], seed: str) -> str:
    out: list[str] = []
    for n, part in enumerate(parts):
        if isinstance(part, str):
            out.append(part)
            continue
        key = f"{seed}\x00{n}\x00{part.source}"
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        choice = int.from_bytes(digest[:8], "big") % len(part.options)
        out.append(_expand(part.options[choice], key))
    return "".join(out)


@lru_cache(maxsize=256)
def _spintax(text: str) -> list[str | _Group] | str:
    """The parsed groups of ``text`` (once per text; never mutated), or why it cannot be."""
    try:
        return _parse_spintax(text)
    except _Unbalanced as exc:
        return exc.message


def _variants(parts: list[str | _Group], limit: int) -> list[str]:
    """Every text ``parts`` can expand to, up to ``limit`` of them (duplicates dropped)."""
    out = [""]
    for part in parts:
        if isinstance(part, str):
            out = [o + part for o in out]
            continue
        options = list(dict.fromkeys(v for opt in part.options for v in _variants(opt, limit)))
        out = list(dict.fromkeys(o + v for o in out for v in options))[:limit]
    return out


def _widest(parts: list[str | _Group]) -> str:
    """The expansion taking, in every group, the option whose fixed text is longest."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(max((_widest(o) for o in part.options), key=len))
    return "".join(out)


def _nth(parts: list[str | _Group], n: int) -> str:
    """The expansion taking option ``n`` (or the last) of every group."""
    return "".join(
        part if isinstance(part, str) else _nth(part.options[min(n, len(part.options) - 1)], n)
        for part in parts
    )


def _most_options(parts: list[str | _Group]) -> int:
    groups = [p for p in parts if isinstance(p, _Group)]
    return max((max(len(g.options), *(_most_options(o) for o in g.options)) for g in groups),
               default=1)


@lru_cache(maxsize=1024)
def spintax_variants(text: str, limit: int = 64) -> tuple[str, ...]:
    """The texts ``text``'s spintax can expand to, whatever the seed: all of them when there
    are at most ``limit``; else the first ``limit``, those taking option n of every group
    (every option appears once) and the one taking the longest option of every group (the
    longest text is still checked).
    Raises :class:`TemplateRenderError` on unbalanced braces."""
    if "{" not in text:
        return (text,)
    parts = _spintax(text)
    if isinstance(parts, str):
        raise TemplateRenderError(parts)
    found = _variants(parts, limit + 1)
    if len(found) <= limit:
        return tuple(found)
    nth = [_nth(parts, n) for n in range(_most_options(parts))]
    return tuple(dict.fromkeys([*found[:limit], *nth, _widest(parts)]))


def expand_spintax(text: str, seed_key: str) -> str:
    """Pick one variant of every ``{a|b}`` group, the same for the same ``seed_key``."""
    if "{" not in text:
        return text
    parts = _spintax(text)
    if isinstance(parts, str):
        raise TemplateRenderError(parts)
    return _expand(parts, seed_key)


# ---- Jinja ------------------------------------------------------------------------------------


def _parse(text: str) -> nodes.Template:
    """The syntax tree of ``text``; every failure is a ``TemplateSyntaxError``."""
    try:
        return environment().parse(text)
    except RecursionError:
        raise TemplateSyntaxError("nested too deeply", 1) from None
    except ValueError as exc:  # a number literal of thousands of digits
        raise TemplateSyntaxError(str(exc), 1) from None


def _undeclared(tree: nodes.Template) -> set[str]:
    """The names a template reads from its context (``self`` included: Jinja declares it)."""
    try:
        names = set(find_undeclared_variables(tree))
    except RecursionError:
        raise TemplateSyntaxError("nested too deeply", 1) from None
    return names | ({"self"} if _uses_self(tree) else set())


def _uses_self(tree: nodes.Template) -> bool:
    return any(n.name == "self" and n.ctx == "load" for n in tree.find_all(nodes.Name))


def _lead_attributes(tree: nodes.Node) -> set[str]:
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and _is_lead(node.node):
            found.add(node.attr)
        elif isinstance(node, nodes.Getitem) and _is_lead(node.node):
            key = _const_str(node.arg)
            if key is not None:
                found.add(key)
    return found


def _is_lead(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "lead"


def _const_str(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return None


def _unsafe(tree: nodes.Node) -> list[str]:
    errors: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        name: str | None = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            name = _const_str(node.arg)
        elif isinstance(node, nodes.Name):
            name = node.name
        if name is not None and "__" in name:
            errors.append(f"line {node.lineno}: access to {name!r} is not allowed")
    return errors + _refused_statements(tree)


def _refused_statements(tree: nodes.Node) -> list[str]:
    return [
        f"line {statement.lineno}: {_REFUSED_STATEMENTS[type(statement)]} is not allowed"
        for statement in tree.find_all(tuple(_REFUSED_STATEMENTS))
    ]


@lru_cache(maxsize=1024)
def lead_columns(text: str) -> frozenset[str] | None:
    """The ``lead`` columns a template's output depends on, or None when it reads ``lead``
    in another way than ``lead.name`` / ``lead['name']`` (``lead.get(x)``, ``lead[x]``, the
    whole ``lead``): then all of it. Raises ``TemplateSyntaxError`` when it does not parse."""
    tree = _parse(text)
    keyed: set[int] = set()
    columns: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        if not _is_lead(node.node):
            continue
        name = node.attr if isinstance(node, nodes.Getattr) else _const_str(node.arg)
        if name is None:
            return None
        keyed.add(id(node.node))
        columns.add(name)
    called = any(
        isinstance(call.node, nodes.Getattr) and _is_lead(call.node.node)
        for call in tree.find_all(nodes.Call)
    )
    loose = any(_is_lead(n) and id(n) not in keyed for n in tree.find_all(nodes.Name))
    return None if called or loose else frozenset(columns)


def variables(text: str) -> set[str]:
    """The ``lead.<column>`` names a template uses (empty when it does not parse)."""
    return set(_analysis(text)[1])


def check(text: str) -> list[str]:
    """Every problem of a template: syntax, ``__`` access, unknown names, unbalanced spintax.

    Nothing of the template is evaluated.
    """
    return list(_analysis(text)[0])


@lru_cache(maxsize=4096)
def _analysis(text: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """A template's problems and the ``lead`` columns it reads, parsed once per text (a
    manifest repeats its texts; lint asks both questions of each)."""
    errors: list[str] = []
    attributes: frozenset[str] = frozenset()
    try:
        tree = _parse(text)
        attributes = frozenset(_lead_attributes(tree))
        unsafe = _unsafe(tree)
        unknown = sorted(_undeclared(tree) - CONTEXT_NAMES)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        errors.append(f"template syntax error{f' on line {line}' if line else ''}: {exc}")
    else:
        errors.extend(unsafe)
        errors.extend(
            f"unknown variable {name!r} (templates see `lead`, e.g. lead.{name})"
            for name in unknown
        )
    try:
        _parse_spintax(text)
    except _Unbalanced as exc:
        errors.append(exc.message)
    return tuple(errors), attributes


def _context(lead: Mapping[str, Any]) -> dict[str, Any]:
    # An empty CSV cell is a missing value: `default('there')` applies, a bare use fails.
    return {
        "lead": {k: v for k, v in lead.items() if v is not None and v != ""},
        BUDGET: Budget(),
    }


@lru_cache(maxsize=2048)
def _compiled(text: str) -> Template:
    # Compiling costs milliseconds and a sequence renders the same few texts for every lead.
    tree = _parse(text)
    # `__` access is refused by the sandbox itself while rendering.
    refused = _refused_statements(tree) + ["unknown variable 'self'"] * _uses_self(tree)
    if refused:
        raise SecurityError(refused[0])
    return environment().from_string(tree)


def render(text: str, lead: Mapping[str, Any], seed_key: str) -> str:
    """Render ``text`` for ``lead``; raise :class:`TemplateRenderError` when it cannot.

    Spintax is expanded on the template before Jinja runs, so braces inside lead values
    are never taken for spintax. The text is at most :data:`MAX_OUTPUT` characters.
    """
    return render_variant(expand_spintax(text, seed_key), lead)


def render_variant(chosen: str, lead: Mapping[str, Any]) -> str:
    """Render one spintax variant (:func:`spintax_variants`) of a template for ``lead``
    (what :func:`render` does after picking the variant)."""
    return _generate(lambda: _compiled(chosen), lead)


def render_piece(piece: Template, lead: Mapping[str, Any]) -> str:
    """Render one output of a template split by :func:`pieces`, as :func:`render_variant`
    renders a whole one."""
    return _generate(lambda: piece, lead)


def _generate(template: Callable[[], Template], lead: Mapping[str, Any]) -> str:
    try:
        out: list[str] = []
        size = 0
        for chunk in template().generate(_context(lead)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise too_big("output")
            out.append(chunk)
    except RecursionError:
        raise TemplateRenderError("template error: nested or recursing too deeply") from None
    except Exception as exc:  # any failure of an untrusted template is the template's
        raise TemplateRenderError(f"template error: {exc}") from None
    return "".join(out)


#: filters an output split off by :func:`pieces` may apply: each a function of its one value
#: and constant arguments (one call of the budget, no loop)
PIECE_FILTERS = frozenset({"default", "d", "upper", "lower", "title", "capitalize", "trim"})
#: an output split off: the lead column it reads, and the output alone as a template
Piece = tuple[str, Template]


@lru_cache(maxsize=2048)
def pieces(variant: str) -> tuple[str | Piece, ...] | None:
    """``variant`` as its literal texts and its outputs, in order, when it is only that and
    each output reads one lead column (``lead.x`` or ``lead['x']``) through
    :data:`PIECE_FILTERS` with constant arguments; None for any other template (a
    statement, a condition, ``~``, two columns in one output...). Its rendering is then the
    literal texts and each output rendered alone (:func:`render_piece`), joined: each depends
    on its one column only, spends one call of the budget a filter (so fewer than
    ``MAX_STEPS`` in all for any template of sane length) and is bounded the same way; only
    the whole's ``MAX_OUTPUT`` is the caller's to add up. Preflight renders each output once
    per distinct value of its column instead of the text once per distinct row."""
    try:
        tree = _parse(variant)
    except TemplateSyntaxError:
        return None
    out: list[str | Piece] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData):
                out.append(node.data)
                continue
            column = _piece_column(node)
            if column is None:
                return None
            alone = nodes.Template([nodes.Output([node], lineno=node.lineno)], lineno=1)
            try:
                out.append((column, environment().from_string(alone)))
            except TemplateError:
                return None
    return tuple(out)


def _piece_column(node: nodes.Node) -> str | None:
    """The column an output of :func:`pieces` reads, or None when it is not one."""
    while isinstance(node, nodes.Filter):
        if (node.node is None or node.name not in PIECE_FILTERS or node.dyn_args is not None
                or node.dyn_kwargs is not None
                or not all(isinstance(a, nodes.Const) for a in node.args)
                or not all(isinstance(k.value, nodes.Const) for k in node.kwargs)):
            return None
        node = node.node
    if isinstance(node, nodes.Getattr) and _is_lead(node.node) and node.ctx == "load":
        return node.attr
    if isinstance(node, nodes.Getitem) and _is_lead(node.node) and node.ctx == "load":
        return _const_str(node.arg)
    return None


# ---- branch conditions -----------------------------------------------------------------------


def check_expression(expression: str) -> list[str]:
    """Problems of a branch condition (a Jinja expression over ``lead``); never evaluates it."""
    try:
        tree = _parse("{{ (" + expression + ") }}")
        errors = _unsafe(tree)
        unknown = sorted(_undeclared(tree) - CONTEXT_NAMES)
    except TemplateError as exc:
        return [f"expression syntax error: {exc}"]
    errors.extend(f"unknown variable {name!r} (expressions see `lead`)" for name in unknown)
    return errors


def expression_variables(expression: str) -> set[str]:
    """The ``lead.<column>`` names a branch condition uses."""
    return variables("{{ (" + expression + ") }}")


@lru_cache(maxsize=256)
def _compiled_expression(expression: str) -> TemplateExpression:
    if "self" in expression and _uses_self(_parse("{{ (" + expression + ") }}")):
        raise SecurityError("unknown variable 'self'")
    return _conditions().compile_expression(expression)


def evaluate(expression: str, lead: Mapping[str, Any]) -> bool:
    """Truth of a branch condition for ``lead``; a missing column is false, not an error."""
    try:
        return bool(_compiled_expression(expression)(**_context(lead)))
    except RecursionError:
        raise TemplateRenderError("expression error: nested too deeply") from None
    except Exception as exc:  # any failure of an untrusted expression is the expression's
        raise TemplateRenderError(f"expression error: {exc}") from None
