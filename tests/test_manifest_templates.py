"""engine.manifest.templates: sandboxed Jinja2, lead variables, deterministic spintax."""

from __future__ import annotations

import pytest

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
