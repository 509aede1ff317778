"""engine.manifest.templates: sandboxed Jinja2, lead variables, deterministic spintax."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.manifest.templates import (
    TemplateRenderError,
    check,
    check_expression,
    evaluate,
    expand_spintax,
    expression_variables,
    render,
    variables,
)


def test_variables_are_the_lead_attributes_used() -> None:
    text = (
        "Hi {{ lead.first_name | default('there') }} at {{ lead['company_name'] }}"
        "{% if lead.title %}, {{ lead.title | upper }}{% endif %} {{ other.x }}"
    )
    assert variables(text) == {"first_name", "company_name", "title"}
    assert variables("no template here") == set()
    assert variables("{% if %}") == set()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi {{ lead.first_name }}, {Quick|Short} note", []),
        ("{{ lead.__class__ }}", ["line 1: access to '__class__' is not allowed"]),
        ("{{ lead['__init__'] }}", ["line 1: access to '__init__' is not allowed"]),
        (
            "{{ first_name }}",
            ["unknown variable 'first_name' (templates see `lead`, e.g. lead.first_name)"],
        ),
        ("{Hi|Hello", ["spintax: '{' at line 1, column 1 is never closed"]),
        ("Hi}\nthere", ["spintax: '}' at line 1, column 3 has no opening '{'"]),
        ("{a|{b|c}", ["spintax: '{' at line 1, column 1 is never closed"]),
        ("{% for x in lead.tags %}{{ x }}{% endfor %} {A|B}", []),
        ("{# a comment { #} ok", []),
    ],
)
def test_check(text: str, expected: list[str]) -> None:
    assert check(text) == expected


def test_check_reports_syntax_errors_with_line() -> None:
    (error,) = check("line one\n{% if lead.x %}unclosed")
    assert error.startswith("template syntax error on line 2:")


def test_render_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    text = "{Hi|Hello|Hey} {{ lead.first_name }}, {quick|short} {note|{message|word}}"
    lead = {"first_name": "Ada"}
    first = render(text, lead, seed_key="enrollment-1")
    assert first == render(text, lead, seed_key="enrollment-1")
    outputs = {render(text, lead, seed_key=f"enrollment-{i}") for i in range(60)}
    assert len(outputs) > 6
    for out in outputs:
        greeting, rest = out.split(" ", 1)
        assert greeting in {"Hi", "Hello", "Hey"}
        assert rest.startswith("Ada, ")
        assert out.rsplit(" ", 1)[1] in {"note", "message", "word"}


def test_nested_spintax_reaches_every_variant() -> None:
    seen = {expand_spintax("{a|{b|c}}", str(i)) for i in range(100)}
    assert seen == {"a", "b", "c"}


def test_lead_values_are_never_spintax() -> None:
    assert render("Hi {{ lead.company_name }}", {"company_name": "{Acme|Evil}"}, "k") == (
        "Hi {Acme|Evil}"
    )


def test_empty_cells_count_as_missing() -> None:
    text = "Thanks, {{ lead.first_name | default('there') }}!"
    assert render(text, {"first_name": ""}, "k") == "Thanks, there!"
    with pytest.raises(TemplateRenderError, match="first_name"):
        render("Hi {{ lead.first_name }}", {"first_name": None}, "k")


def test_sandbox_blocks_dunder_access_at_render() -> None:
    with pytest.raises(TemplateRenderError, match="unsafe"):
        render("{{ lead.__class__.__mro__ }}", {"x": 1}, "k")


def test_unbalanced_spintax_fails_render() -> None:
    with pytest.raises(TemplateRenderError, match="never closed"):
        render("{a|b", {}, "k")


def test_branch_expressions() -> None:
    assert check_expression("lead.company_name and lead.size|int > 10") == []
    assert check_expression("lead.(") != []
    assert check_expression("company == 'x'") == [
        "unknown variable 'company' (expressions see `lead`)"
    ]
    assert expression_variables("lead.size|int > 10 or lead['title']") == {"size", "title"}
    assert evaluate("lead.size|int > 10", {"size": "42"}) is True
    assert evaluate("lead.missing", {"size": "42"}) is False


def test_docstring_examples_hold() -> None:
    import doctest

    import engine.manifest.schemas
    import engine.manifest.templates

    for module in (engine.manifest.templates, engine.manifest.schemas):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


# ---- hostile templates -------------------------------------------------------------------------

LONG = "x" * 5_000


@pytest.mark.parametrize(
    "name", ["cycler", "joiner", "namespace", "lipsum", "range", "dict", "self"]
)
def test_only_lead_is_visible(name: str) -> None:
    assert check("{{ " + name + " }}") == [
        f"unknown variable {name!r} (templates see `lead`, e.g. lead.{name})"
    ]
    with pytest.raises(TemplateRenderError):
        render("{{ " + name + "() }}", {}, "k")
    with pytest.raises(TemplateRenderError):
        render("{{ " + name + " }}", {}, "k")


def test_rendered_output_is_bounded() -> None:
    assert render("{{ lead.s }}", {"s": LONG}, "k") == LONG
    with pytest.raises(TemplateRenderError, match="longer than 10000 characters"):
        render("{{ lead.s }}{{ lead.s }}{{ lead.s }}", {"s": LONG}, "k")
    with pytest.raises(TemplateRenderError, match="longer than 10000 characters"):
        render("{% for c in lead.s %}{{ c }}{{ c }}{{ c }}{% endfor %}", {"s": LONG}, "k")


AMPLIFIERS = [
    "{{ lipsum(n=10**6) }}",
    "{{ 'x' * 10**9 }}",
    "{{ 'x' ~ 'y' * 10**8 }}",
    "{{ ['x'] * 10**9 }}",
    "{{ lead.s * 10**6 }}",
    "{{ 2 ** (10**9) }}",
    "{{ (10**9) ** (10**9) }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'|indent(10**9, true) }}",
    "{{ '%*s' % (10**9, 'x') }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%999999999s'|format('x') }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ lead.s|replace('x', lead.s) }}",
    "{{ lead.s.replace('x', lead.s) }}",
    "{{ lead.s.join(lead.s) }}",
    "{{ lead.s|join(lead.s) }}",
    "{% set a = lead.s %}" + "{% set a = a ~ a %}" * 40 + "{{ a|length }}",
    "{% set a = lead.s %}" + "{% set a = a + a %}" * 40 + "{{ a|length }}",
    "{% set a = lead.s %}" + "{% set a %}{{ a }}{{ a }}{% endset %}" * 40 + "{{ a|length }}",
    "{% set n = 2 ** 1000 %}" + "{% set n = n * n %}" * 40 + "{{ n > 0 }}",
    "{% macro m(x) %}{{ x }}{{ x }}{% endmacro %}{{ " + "m(" * 40 + "lead.s" + ")" * 40
    + "|length }}",
    "{% for a in lead.s %}{% for b in lead.s %}{% for c in lead.s %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% macro m() %}{{ m() }}{{ m() }}{% endmacro %}{{ m() }}",
    "{% for c in lead.s recursive %}{{ loop(lead.s) }}{% endfor %}",
    "{{ 1/0 }}",
    "{% include 'x' %}",
    "{{ (2.0 ** 10000) }}",
]


@pytest.mark.parametrize("text", AMPLIFIERS)
def test_amplifiers_fail_fast_within_bounded_memory(text: str) -> None:
    tracemalloc.start()
    try:
        problems = check(text)
        with pytest.raises(TemplateRenderError):
            render(text, {"s": LONG}, "k")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(problems, list)
    assert peak < 64 * 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 'x'|center(1000000000) }}",
        "{% if ('x'|center(1000000000)) %}{% endif %}",
        "{% set a = 'x'|center(1000000000) %}",
        "{% autoescape ('x'|center(1000000000)) %}{% endautoescape %}",
        "{{ 'x' ~ 'y' * 10**8 }}",
    ],
)
def test_validate_never_evaluates_user_expressions(text: str) -> None:
    tracemalloc.start()
    try:
        check(text)
        variables(text)
        check_expression(text.removeprefix("{{").removesuffix("}}"))
        expression_variables(text.removeprefix("{{").removesuffix("}}"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "{{ " + "(" * 100 + "1" + ")" * 100 + " }}",
        "{{ " + "[" * 300 + "]" * 300 + " }}",
        "{% if lead.x %}" * 400 + "{% endif %}" * 400,
        "{{ 1" + "0" * 5_000 + " }}",
    ],
)
def test_deep_or_huge_syntax_is_a_template_error(text: str) -> None:
    (problem,) = check(text)
    assert problem.startswith("template syntax error")
    assert variables(text) == set()
    with pytest.raises(TemplateRenderError):
        render(text, {"x": "1"}, "k")
    expression = text.removeprefix("{{").removesuffix("}}")
    assert check_expression(expression) != []
    with pytest.raises(TemplateRenderError):
        evaluate(expression, {"x": "1"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{% include 'x' %}", "line 1: {% include %} is not allowed"),
        ("{% extends 'x' %}", "line 1: {% extends %} is not allowed"),
        ("{% import 'x' as y %}", "line 1: {% import %} is not allowed"),
        ("{% from 'x' import y %}", "line 1: {% import %} is not allowed"),
        ("{% autoescape true %}x{% endautoescape %}", "line 1: {% autoescape %} is not allowed"),
    ],
)
def test_statements_reaching_outside_the_template_are_refused(text: str, expected: str) -> None:
    assert expected in check(text)
    with pytest.raises(TemplateRenderError):
        render(text, {}, "k")


def test_branch_conditions_are_bounded_too() -> None:
    assert evaluate("lead.s|length > 3 and lead.s ~ 'y'", {"s": LONG}) is True
    for expression in [
        "'x' * 10**9", "lead.s * 10**6", "range(3)", "1/0", "(2 ** (10**9)) > 1", "self",
    ]:
        with pytest.raises(TemplateRenderError):
            evaluate(expression, {"s": LONG})


_ATOMS = st.sampled_from(
    ["'x'", "lead.s", "10**9", "1000000000", "2", "[1]", "(1, 2)", "lead.missing", "-1"]
)
_OPS = st.sampled_from(["*", "**", "~", "+", "%", "//", "-"])
_FILTERS = st.sampled_from(
    ["center", "indent", "replace('x', lead.s)", "join(lead.s)", "list", "format(lead.s)",
     "batch(10**9)", "slice(10**9)", "wordwrap(10**9)", "truncate(10**9)", "string"]
)


def _expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        _ATOMS,
        lambda inner: st.one_of(
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, _OPS, inner),
            st.builds(lambda a, f: f"({a}|{f})", inner, _FILTERS),
            st.builds(lambda a, n: f"({a}).center({n})", inner, _ATOMS),
        ),
        max_leaves=6,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions())
def test_any_mix_of_amplifiers_renders_within_the_bound_or_fails(expression: str) -> None:
    text = "{{ " + expression + " }}"
    tracemalloc.start()
    try:
        assert isinstance(check(text), list)
        try:
            out = render(text, {"s": LONG}, "k")
        except TemplateRenderError:
            pass
        else:
            assert len(out) <= 10_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024
