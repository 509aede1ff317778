"""Hostile inputs, fuzzed: whatever a user or a pull request feeds the CSV reader, the
templates or the YAML reader, the answer is data or our located error, never a traceback."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import LeadsError, ManifestError
from engine.manifest.leads import parse_leads, read_leads, split_lines
from engine.manifest.templates import (
    TemplateRenderError,
    check,
    check_expression,
    evaluate,
    render,
    variables,
)
from engine.manifest.yamlio import load_documents, parse_text

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Characters that break naive readers: quotes, separators, every kind of line break, controls.
NASTY = [",", '"', "'", "\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c",
         "\x1c", "\x00", "\x1b", "\x7f", "\ufeff", "\ufffe", " ", "\t", "{", "}", "%", "#"]


def _mixed(pieces: list[str], max_size: int = 40) -> st.SearchStrategy[str]:
    """Text made of the given pieces and arbitrary characters."""
    chunk = st.sampled_from(pieces) | st.text(max_size=4)
    return st.lists(chunk, max_size=max_size).map("".join)


# ---- CSV ---------------------------------------------------------------------------------------

HEADER = "linkedin_profile_url,first_name,timezone\n"
CSV_PIECES = [*NASTY, "linkedin.com/in/", "https://www.linkedin.com/in/a", "%2e%2e", "..",
              "Europe", "Europe/Paris", "../x", "x" * 300, "UTC", "/in/"]


def _check_import(result_rows: list[dict[str, str]], refused: list[object]) -> None:
    for row in result_rows:
        assert row["linkedin_profile_url"].startswith("https://www.linkedin.com/")
    for problem in refused:
        assert "\n" not in str(problem)


@FUZZ
@given(_mixed(CSV_PIECES))
def test_any_csv_text_is_rows_or_a_leads_error(body: str) -> None:
    for text in (HEADER + body, body):
        try:
            result = parse_leads(split_lines(text), "f.csv")
        except LeadsError as exc:
            assert str(exc).startswith("f.csv")
        else:
            _check_import(result.rows, list(result.refused))
            assert all(p.line <= text.count("\n") + 1 for p in result.refused)


@FUZZ
@given(st.binary(max_size=200))
def test_any_csv_bytes_are_rows_or_a_leads_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leads.csv"
        path.write_bytes(HEADER.encode() + raw)
        try:
            result = read_leads(path)
        except LeadsError:
            return
        _check_import(result.rows, list(result.refused))


# ---- templates ---------------------------------------------------------------------------------

TEMPLATE_PIECES = [*NASTY, "{{", "}}", "{%", "%}", "{#", "#}", "lead", "lead.first_name", ".",
                   "|", "(", ")", "[", "]", "*", "**", "~", "+", "10**9", "9", "'x'", "for ",
                   " in ", "endfor", "if ", "endif", "set ", "=", "macro ", "endmacro", "loop",
                   "self", "range", "lipsum", "center", "join", "replace", "format", "__class__",
                   "recursive", "include", "{a|b}", "'%*s'"]
LEAD = {"first_name": "Ada", "company_name": "x" * 500, "timezone": "Europe/Paris"}


@FUZZ
@given(_mixed(TEMPLATE_PIECES, max_size=30))
def test_any_template_renders_within_the_bound_or_fails_cleanly(text: str) -> None:
    problems = check(text)
    assert all(isinstance(p, str) for p in problems)
    assert isinstance(variables(text), set)
    try:
        out = render(text, LEAD, "seed")
    except TemplateRenderError:
        return
    assert len(out) <= 10_000


@FUZZ
@given(_mixed(TEMPLATE_PIECES, max_size=15))
def test_any_condition_evaluates_or_fails_cleanly(expression: str) -> None:
    assert isinstance(check_expression(expression), list)
    with contextlib.suppress(TemplateRenderError):
        assert evaluate(expression, LEAD) in (True, False)


# ---- YAML --------------------------------------------------------------------------------------

YAML_PIECES = [*NASTY, ":", ": ", "- ", "[", "]", "{", "}", "&a ", "*a", "!!python/object ",
               "<<: ", "---\n", "...\n", "? ", "|\n", ">\n", "  ", "on", "yes", "'", '"\\x"']


@FUZZ
@given(st.binary(max_size=200))
def test_any_yaml_bytes_are_documents_or_a_manifest_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_bytes(raw)
        try:
            load_documents(path)
        except ManifestError as exc:
            assert exc.problems and all("\n" not in str(p) for p in exc.problems)


@FUZZ
@given(_mixed(YAML_PIECES))
def test_any_yaml_text_is_documents_or_a_manifest_error(text: str) -> None:
    try:
        parse_text(text, "m.yaml")
    except ManifestError as exc:
        assert exc.problems and all(str(p).startswith("m.yaml:") for p in exc.problems)
        assert all("\n" not in str(p) for p in exc.problems)
