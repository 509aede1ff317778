"""engine.manifest.yamlio: JSON-shaped YAML with positions, and everything it refuses."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ManifestError, Problem
from engine.manifest.yamlio import (
    MAX_BYTES,
    child_path,
    json_path,
    load_documents,
    parse_text,
    scan_text,
)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_text(text, "f.yaml")
    return [str(p) for p in info.value.problems]


def test_positions_of_keys_and_values_are_one_based() -> None:
    text = "spec:\n  steps:\n    - id: a\n    - id: b\n      with:\n        note: hi\n"
    (doc,) = parse_text(text, "f.yaml")
    assert doc.source.positions["$"] == (1, 1)
    assert doc.source.positions["$.spec"] == (1, 1)
    assert doc.source.positions["$.spec.steps[1]"] == (4, 7)
    assert doc.source.positions["$.spec.steps[1].with.note"] == (6, 9)
    assert doc.values["$.spec.steps[1].with.note"] == (6, 15)
    assert doc.source.locate("$.spec.steps[1].with.missing") == (5, 7)
    assert doc.source.problem("$.spec.steps[1].id", "x").line == 4


def test_on_yes_no_and_dates_stay_strings() -> None:
    text = "on:\n  reply: yes\nb: no\nc: off\nd: 2024-01-01\ne: 10:30\nf: true\ng: ~\nh: 0x10\n"
    (doc,) = parse_text(text, "f.yaml")
    assert doc.data == {
        "on": {"reply": "yes"},
        "b": "no",
        "c": "off",
        "d": "2024-01-01",
        "e": "10:30",
        "f": True,
        "g": None,
        "h": 16,
    }


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    assert problems_of("a: 1\nb: 2\na: 3\n") == [
        "f.yaml:3:1: $.a: duplicate key 'a' (first defined on line 1)"
    ]


def test_non_string_keys_are_refused() -> None:
    assert problems_of("spec:\n  1: x\n") == [
        "f.yaml:2:3: $.spec: key '1' is not a string (quote it)"
    ]
    assert problems_of("? [a]\n: b\n") == [
        "f.yaml:1:3: $: a key must be a string, not a list or mapping"
    ]


def test_billion_laughs_fails_fast_with_bounded_memory() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(9):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    tracemalloc.start()
    problems = problems_of("\n".join(lines) + "\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # refused before expanding (1e9 nodes would need GBs)
    assert "refusing to expand" in problems[0]


def test_alias_expansion_is_bounded_even_under_the_alias_budget() -> None:
    # 6 aliases per level stays under the alias count but would expand to 10 million nodes.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol"]']
    for i in range(9):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 6) + "]")
    tracemalloc.start()
    problems = problems_of("\n".join(lines) + "\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # the 10-million-node expansion never happens
    assert "aliases expand to more than" in problems[0]


def test_a_few_aliases_are_fine() -> None:
    (doc,) = parse_text("x: &w {a: 1}\ny: *w\n", "f.yaml")
    assert doc.data == {"x": {"a": 1}, "y": {"a": 1}}


def test_non_utf8_is_refused_with_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nb: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ManifestError) as info:
        load_documents(path)
    assert str(info.value.problems[0]) == f"{path}:2:7: $: file is not valid UTF-8 (byte 0xe9)"


def test_empty_documents_are_refused() -> None:
    assert problems_of("") == ["f.yaml:1:1: $: empty document"]
    assert problems_of("# only a comment\n") == ["f.yaml:1:1: $: empty document"]
    assert problems_of("a: 1\n---\n") == ["f.yaml:3:1: $: empty document"]


def test_multi_document_files() -> None:
    docs = parse_text("a: 1\n---\nb: 2\n", "f.yaml")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}]
    assert docs[1].index == 1
    assert docs[1].source.positions["$.b"] == (3, 1)


def test_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(ManifestError) as info:
        load_documents(path)
    assert "larger than 1024 KiB" in str(info.value)


def test_syntax_errors_and_unsafe_tags_are_positioned() -> None:
    assert problems_of("a: [1, 2\n")[0].startswith("f.yaml:2:1: $: YAML syntax error:")
    assert problems_of("a: !!python/object:os.system x\n") == [
        "f.yaml:1:4: $.a: unsupported tag 'tag:yaml.org,2002:python/object:os.system'"
    ]
    assert problems_of("<<: {a: 1}\n") == ["f.yaml:1:1: $: merge keys (<<) are not supported"]


def test_deep_nesting_fails_fast() -> None:
    # libyaml's own limit on flow nesting (1,000) stops it, located, before we compose
    assert problems_of("[" * 1_000_000) == [
        "f.yaml:1:1001: $: YAML syntax error: exceeded maximum nesting depth"
    ]
    deep_block = "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 100))
    assert problems_of(deep_block) == ["f.yaml:64:127: $: nesting deeper than 64 levels"]


def test_json_paths() -> None:
    assert json_path(["spec", "steps", 2, "with", "note"]) == "$.spec.steps[2].with.note"
    assert child_path("$.labels", "app.kubernetes.io/name") == "$.labels['app.kubernetes.io/name']"


def test_a_bad_document_does_not_hide_the_next_ones() -> None:
    documents, problems = scan_text("a: 1\na: 2\n---\nb: 3\n---\n", "f.yaml")
    assert [d.data for d in documents] == [{"b": 3}]
    assert documents[0].index == 1
    assert [str(p) for p in problems] == [
        "f.yaml:2:1: $.a: duplicate key 'a' (first defined on line 1)",
        "f.yaml:6:1: $: empty document",
    ]


def _json(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=20,
    )


# JSON escapes astral characters as surrogate pairs, which YAML does not combine: BMP only.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"], max_codepoint=0xFFFF), max_size=12)
# Raw (unescaped) text must be YAML-printable: no control characters or line separators.
PRINTABLE = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(ANY_TEXT, _json(ANY_TEXT), min_size=1, max_size=4))
def test_json_text_reads_back_as_the_same_data(data: dict[str, object]) -> None:
    # JSON is YAML 1.2: our JSON-shaped reading of a JSON text must give json.loads' answer.
    text = json.dumps(data)
    (doc,) = parse_text(text, "f.json")
    assert doc.data == json.loads(text)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(PRINTABLE, _json(PRINTABLE), min_size=1, max_size=4))
def test_unescaped_json_text_reads_back_as_the_same_data(data: dict[str, object]) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2)
    (doc,) = parse_text(text, "f.json")
    assert doc.data == json.loads(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b\x00c\n", "f.yaml:1:5: $: character U+0000 is not allowed in YAML"),
        ("a: 1\nb: x\x01\n", "f.yaml:2:5: $: character U+0001 is not allowed in YAML"),
        ("a: 1\n\nb: \x1b[31mred\n", "f.yaml:3:4: $: character U+001B is not allowed in YAML"),
        ("\x7f: 1\n", "f.yaml:1:1: $: character U+007F is not allowed in YAML"),
        ("a: '\ufffe'\n", "f.yaml:1:5: $: character U+FFFE is not allowed in YAML"),
    ],
)
def test_control_characters_are_located(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]
    documents, problems = scan_text(text, "f.yaml")
    assert documents == [] and [str(p) for p in problems] == [expected]


def test_control_characters_in_a_file_are_located(tmp_path: Path) -> None:
    path = tmp_path / "ctl.yaml"
    path.write_bytes(b"a: 1\nb: \x00\n")
    with pytest.raises(ManifestError) as info:
        load_documents(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:2:4: $: character U+0000 is not allowed in YAML"
    ]


def test_a_key_with_a_newline_cannot_forge_a_problem_line() -> None:
    key = "x\\nf.yaml:9:9: $: forged"
    problems = problems_of(f'"{key}": 1\n"{key}": 2\n')
    assert problems == [
        "f.yaml:2:1: $['x\\nf.yaml:9:9: $: forged']: duplicate key 'x\\nf.yaml:9:9: $: forged'"
        " (first defined on line 1)"
    ]
    assert child_path("$", "a\u2028b\rc\x1bd") == "$['a\\u2028b\\rc\\x1bd']"
    assert child_path("$", "back\\slash n") == "$['back\\\\slash n']"


def test_a_problem_is_always_one_line() -> None:
    problem = Problem("f.yaml", 1, 2, "$['a\nb']", "value 'x\r\ny' and\u2028more")
    assert str(problem) == "f.yaml:1:2: $['a\\nb']: value 'x\\r\\ny' and\\u2028more"
