"""The bounded Jinja sandbox message templates render in (see :mod:`engine.manifest.templates`).

A template is untrusted input. Jinja's sandbox keeps it from Python's internals but not from
building a gigabyte string (``'x' * 10**9``, ``'x'|center(10**9)``, doubling ``~``) or looping
for ever. :class:`SandboxedTemplates` adds: no globals; no constant folding while compiling, so
checking a template never evaluates it; every value, operator result, filter and call result
at most :data:`MAX_OUTPUT` characters, refused before it is built when the growth can be known
(``*``, ``**``, ``%``, ``replace``, ``join``, widths); at most :data:`MAX_STEPS` loop iterations
and calls per rendering, counted by the :class:`Budget` a rendering puts in its context under
:data:`BUDGET`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import Undefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OUTPUT = 10_000  # characters of a rendered text, and of any value a template builds
MAX_STEPS = 100_000  # loop iterations, filter and function calls per rendering
_MAX_INT_BITS = 4 * MAX_OUTPUT
# Names a template cannot write (not identifiers): the budget, the hardening filters.
BUDGET = "seqrun budget"
_ITERATE = "seqrun iterate"
_CONCAT = "seqrun concat"


class Budget:
    """Loop iterations and calls left to one rendering."""

    def __init__(self) -> None:
        self.left = MAX_STEPS

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise SecurityError(f"more than {MAX_STEPS} loop iterations or calls")


def _spend(context: Context) -> Budget | None:
    budget = context.get(BUDGET)
    if isinstance(budget, Budget):
        budget.spend()
        return budget
    return None


def _weight(value: Any, limit: int = MAX_OUTPUT) -> int:
    """About ``len(str(value))``, counted only until it passes ``limit`` (never builds it)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, list | tuple | set | frozenset | dict):
        total = 2 + len(value)
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            if total > limit:
                break
            total += 2 + _weight(item, limit - total)
        return total
    return 0


def too_big(what: str = "a value") -> SecurityError:
    return SecurityError(f"{what} longer than {MAX_OUTPUT} characters")


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _MAX_INT_BITS:
            raise SecurityError(f"a number of more than {_MAX_INT_BITS} bits")
    elif _weight(value) > MAX_OUTPUT:
        raise too_big()
    return value


def _check_size(size: int) -> None:
    if size > MAX_OUTPUT:
        raise too_big()


def _ints(values: Iterable[Any]) -> list[int]:
    return [abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)]


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}:]*:((?:[^{}]|\{[^{}]*\})*)\}")


def _check_format(fmt: Any, args: Iterable[Any]) -> None:
    """Refuse a %- or {}-format whose widths and precisions add up past the bound."""
    if not isinstance(fmt, str):
        return
    total, dynamic = 0, False
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            dynamic = dynamic or group == "*"
            total += int(group) if group and group.isdigit() else 0
    for match in _BRACE_SPEC.finditer(fmt):
        dynamic = dynamic or "{" in match.group(1)
        total += sum(int(n) for n in re.findall(r"\d+", match.group(1)))
    if dynamic:
        total += sum(_ints(args))
    _check_size(total)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**`` and ``%`` whose result would pass the bound, before computing it."""
    left_int = isinstance(left, int) and not isinstance(left, bool)
    right_int = isinstance(right, int) and not isinstance(right, bool)
    if operator == "*":
        if left_int and right_int:
            if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
                raise SecurityError(f"a number of more than {_MAX_INT_BITS} bits")
        elif left_int or right_int:
            count, other = (left, right) if left_int else (right, left)
            _check_size(_weight(other) * max(count, 0))
    elif operator == "**" and left_int and right_int and right > 0 and abs(left) > 1:
        if right * left.bit_length() > _MAX_INT_BITS:
            raise SecurityError(f"a number of more than {_MAX_INT_BITS} bits")
    elif operator == "%" and isinstance(left, str):
        args = right.values() if isinstance(right, dict) else right
        _check_format(left, args if isinstance(args, tuple | list) else [args])


def _check_growth(name: str, value: Any, args: tuple[Any, ...], *, method: bool) -> None:
    """Refuse a string operation whose result would pass the bound, before computing it.

    ``method`` tells ``sep.join(items)`` from the filter ``items|join(sep)``.
    """
    if name in ("center", "ljust", "rjust", "zfill", "batch", "slice"):
        _check_size(max(_ints(args), default=0))
    elif name == "replace" and len(args) >= 2 and isinstance(value, str):
        old, new = str(args[0]), str(args[1])
        hits = value.count(old) if old else len(value) + 1
        _check_size(len(value) + hits * len(new))
    elif name == "join":
        first = args[0] if args else ""
        sep, items = (value, first) if method else (first, value)
        if isinstance(items, list | tuple | str):
            _check_size(_weight(items) + len(items) * _weight(sep))
    elif name == "indent" and isinstance(value, str):
        width = args[0] if args else 4
        width = width if isinstance(width, int) else _weight(width)
        _check_size(len(value) + (value.count("\n") + 1) * width)
    elif name == "expandtabs" and isinstance(value, str):
        size = args[0] if args and isinstance(args[0], int) else 8
        _check_size(len(value) + value.count("\t") * size)
    elif name == "format" and not method:
        _check_format(value, args)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run on the render's budget, its growth checked before and its result after.

    Taking the context also keeps Jinja from running the filter on constants while compiling.
    """
    passes = getattr(getattr(func, "jinja_pass_arg", None), "name", None)

    @pass_context
    def bounded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(context)
        _check_growth(name, value, (*args, *kwargs.values()), method=False)
        if passes == "context":
            result = func(context, value, *args, **kwargs)
        elif passes == "eval_context":
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif passes == "environment":
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        return _bounded(result)

    return bounded


def _budgeted(budget: Budget | None, iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        if budget is not None:
            budget.spend()
        yield item


@pass_context
def _iterate(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    return _budgeted(context.get(BUDGET), iterable)


@pass_context
def _concat(context: Context, items: list[Any]) -> str:
    _spend(context)
    _check_size(sum(_weight(item) for item in items))
    return "".join(map(str, items))


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    # Taking the context also keeps Jinja from folding `{{ }}` constants while compiling.
    return _bounded(value)


class _Harden(NodeTransformer):
    """Every loop spends the budget; every ``~`` is checked before it joins."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _ITERATE, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, _CONCAT, [], [], None, None, lineno=node.lineno)


class _CodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Harden().visit(node)
        node.set_environment(self.environment)
        super().visit_Template(node, frame)


class SandboxedTemplates(ImmutableSandboxedEnvironment):
    """Jinja's sandbox with no globals, no constant folding, and bounded values and work."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, undefined: type[Undefined]) -> None:
        super().__init__(
            undefined=undefined,
            autoescape=False,
            keep_trailing_newline=True,
            optimized=False,
            finalize=_finalize,
        )
        self.globals.clear()
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_ITERATE] = _iterate
        self.filters[_CONCAT] = _concat

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _bounded(super().call_binop(context, operator, left, right))

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget = _spend(__context)
        receiver = getattr(__obj, "__self__", None)
        if isinstance(receiver, str | bytes):
            _check_growth(__obj.__name__, receiver, (*args, *kwargs.values()), method=True)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_budgeted(budget, args[0]), *args[1:])
        return _bounded(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, (*args, *kwargs.values()))
            return wrapped(*args, **kwargs)

        return checked
