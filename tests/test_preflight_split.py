"""Preflight of a text split into outputs of one column each (engine.apply.preflight._Split,
templates.pieces): the same verdict and message as rendering the whole text, row by row, for
texts and rows drawn at random (missing, empty and long values, spintax, a length bound)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.apply.preflight import _split, _Text
from engine.manifest import templates

COLUMNS = ("first_name", "company_name", "title")
_output = st.builds(
    lambda col, subscript, filters: "{{ " + (f"lead[{col!r}]" if subscript else f"lead.{col}")
    + "".join(filters) + " }}",
    st.sampled_from(COLUMNS), st.booleans(),
    st.lists(st.sampled_from(["| default('there')", "|d('x')", "| upper", "| title",
                              "| trim", "| default('a long default value ' )"]), max_size=2),
)
_literal = st.sampled_from(["Hi ", ", ", " at ", "!", "\n", "{Hi|Hello} ", "{a|{b|c}} ",
                            "x" * 120])
_texts = st.lists(st.one_of(_output, _literal), min_size=1, max_size=6).map("".join)
_values = st.one_of(st.none(), st.just(""), st.text(max_size=8),
                    st.text(alphabet="ab ", min_size=100, max_size=200))
_rows = st.fixed_dictionaries({}, optional={c: _values for c in COLUMNS})


def _checkers(text: str, bound: int | None) -> tuple[_Text, _Text]:
    variants = templates.spintax_variants(text)
    columns = tuple(sorted(set().union(*(templates.lead_columns(v) or () for v in variants))))
    limit = None if bound is None else ("a note", bound)
    whole = _Text("s", "note", variants, columns, limit, "edges")
    split = _Text("s", "note", variants, columns, limit, "edges", split=_split(variants))
    return whole, split


@settings(max_examples=300, deadline=None)
@given(_texts, st.one_of(st.none(), st.integers(0, 400)), st.lists(_rows, max_size=8))
def test_a_split_text_fails_exactly_where_its_whole_rendering_does(
    text: str, bound: int | None, rows: list[dict[str, Any]]
) -> None:
    whole, split = _checkers(text, bound)
    assert split.split is not None  # every text drawn here is one that splits
    for row in rows:
        context = {k: v for k, v in row.items() if v is not None}
        assert split.failure(context) == whole.failure(context)


def test_what_splits_and_what_is_rendered_whole() -> None:
    parts = templates.pieces("Hi {{ lead.first_name | default('there') }}, at "
                             "{{ lead['company_name'] }}.")
    assert parts is not None
    assert [p if isinstance(p, str) else p[0] for p in parts] == [
        "Hi ", "first_name", ", at ", "company_name", "."]
    for text in ("{% if lead.a %}x{% endif %}", "{{ lead.a ~ lead.b }}",
                 "{{ lead.a | default(lead.b) }}", "{{ lead }}", "{{ lead.a | join(',') }}",
                 "{% for x in lead.a %}{{ x }}{% endfor %}", "{{ 'x' * 3 }}", "{{ lead.a"):
        assert templates.pieces(text) is None, text
