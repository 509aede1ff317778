"""What a Sequence's steps say: actions the provider can run, templates that compile, lead
variables the leads CSV has, and texts within the provider's maximum lengths.

Template variables missing from the leads CSV header are errors, except when *every* use of the
variable is filtered through ``| default(...)``: that renders fine, so it is a warning (it is
still likely a misspelt column). Length checks measure the fixed text: template expressions
removed, the shortest spintax alternative kept. That is a lower bound, so a report is never a
false alarm.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path

from engine.manifest import templates
from engine.manifest.explain import did_you_mean
from engine.manifest.leads import sniff_delimiter
from engine.manifest.lint.common import Report, unsupported
from engine.manifest.yamlio import child_path
from engine.model import ActionStep, BranchStep, Sequence, Step
from engine.providers.base import ProviderSpec
from engine.vocab import CANONICAL_ACTIONS

# Lead attributes every lead has whatever the CSV holds (the loader derives the names).
BUILTIN_LEAD_FIELDS: frozenset[str] = frozenset(
    {"linkedin_profile_url", "full_name", "first_name", "last_name", "company_name", "timezone"}
)

_JINJA_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_INNER_BRACES = re.compile(r"\{([^{}]*)\}")


def read_csv_header(path: Path) -> list[str]:
    """The column names of a leads CSV, reading only its first line. Raises OSError/ValueError."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
    if not first.strip():
        raise ValueError("it is empty (no header line)")
    row = next(csv.reader([first], delimiter=sniff_delimiter(first)))
    return [c.strip() for c in row]


def _fixed_length(text: str) -> int:
    """Length of ``text`` without template expressions, with the shortest spintax alternative."""
    out = _JINJA_BLOCK.sub("", text)
    for _ in range(50):  # nesting depth bound; spintax rarely nests beyond 2
        new = _INNER_BRACES.sub(lambda m: min(m.group(1).split("|"), key=len), out)
        if new == out:
            break
        out = new
    return len(out)


def _template_lead_uses(text: str, name: str) -> tuple[int, int]:
    """(all uses, uses filtered through default) of ``lead.<name>`` in ``text``."""
    esc = re.escape(name)
    use = rf"lead(?:\.{esc}\b|\[\s*['\"]{esc}['\"]\s*\])"
    total = len(re.findall(use, text))
    guarded = len(re.findall(use + r"\s*\|\s*(?:default|d)\b", text))
    return total, guarded


def _step_texts(step: Step) -> Iterator[tuple[str, str, str]]:
    """(path, key, template text) of each templated ``with`` field of an action step."""
    if isinstance(step, ActionStep):
        for key, value in step.with_.items():
            if isinstance(value, str):
                yield child_path(child_path(step.path, "with"), key), key, value
        for i, variant in enumerate(step.variants):
            base = child_path(child_path(step.path, "variants"), i)
            for key, value in variant.with_.items():
                if isinstance(value, str):
                    yield child_path(base, key), key, value


def check_steps_content(seq: Sequence, spec: ProviderSpec | None, report: Report) -> None:
    """Actions, branch conditions and templated texts of every step (``spec``: the provider's,
    None when it is unknown)."""
    columns = _leads_columns(seq, report)
    for step in seq.steps:
        if isinstance(step, ActionStep):
            _check_action(step, spec, report)
        elif isinstance(step, BranchStep):
            _check_conditions(step, columns, seq, report)
        for path, key, text in _step_texts(step):
            for message in templates.check(text):
                report(path, f"in step {step.id!r}: {message}")
            if columns is not None:
                _check_variables(step.id, path, text, columns, seq, report)
            if spec is None or not isinstance(step, ActionStep):
                continue
            bound = text_limit(step.action, key, spec)
            if bound is not None:
                _check_length(step.id, path, bound[0], text, bound[1], spec, report)


def text_limit(action: str, key: str, spec: ProviderSpec) -> tuple[str, int] | None:
    """What the ``with.<key>`` text of ``action`` is called and the most characters ``spec``'s
    provider accepts in it; None when it has no maximum."""
    if action == "connect" and key == "note":
        return "connection note", spec.max_note
    if action in ("send_message", "send_inmail") and key in ("text", "message"):
        return "message", spec.max_message
    return None


def _check_conditions(
    step: BranchStep, columns: frozenset[str] | None, seq: Sequence, report: Report
) -> None:
    """Branch conditions: syntax errors are errors; a missing column is a warning (the
    condition is then always false, by engine.manifest.templates.evaluate's contract)."""
    for i, case in enumerate(step.cases):
        path = child_path(child_path(child_path(step.path, "branch"), i), "if")
        messages = templates.check_expression(case.condition)
        names = templates.expression_variables(case.condition)
        for message in messages:
            report(path, f"in step {step.id!r}: {message}")
        if columns is None or messages:
            continue
        csv_name = Path(seq.leads.csv).name if seq.leads.csv else "the leads CSV"
        for name in sorted({n.removeprefix("lead.") for n in names} - columns):
            report(
                path,
                f"in step {step.id!r}: lead.{name} is not a column of {csv_name}; the condition "
                f"is always false{did_you_mean(name, columns)}",
                "warning",
            )


def _check_action(step: ActionStep, spec: ProviderSpec | None, report: Report) -> None:
    path = child_path(step.path, "action")
    if step.action not in CANONICAL_ACTIONS:
        report(
            path,
            f"unknown action {step.action!r} in step {step.id!r}"
            f"{did_you_mean(step.action, CANONICAL_ACTIONS)}",
        )
        return
    if spec is not None and step.action not in spec.capabilities:
        report(path, f"in step {step.id!r}: {unsupported(step.action, spec)}")


def _check_length(
    step_id: str,
    path: str,
    what: str,
    text: str,
    limit: int,
    spec: ProviderSpec,
    report: Report,
) -> None:
    length = _fixed_length(text)
    if length > limit:
        report(
            path,
            f"in step {step_id!r}: {what} is {length} characters (template variables not counted), "
            f"over the {limit} that {spec.name} accepts",
        )


def _leads_columns(seq: Sequence, report: Report) -> frozenset[str] | None:
    csv_path = seq.leads.csv
    if csv_path is None:
        return None
    path = Path(csv_path)
    where = "$.spec.leads.csv"
    if not path.is_file():
        shown = os.path.relpath(path, Path(seq.source.file).absolute().parent)
        report(where, f"leads file {shown!r} does not exist")
        return None
    try:
        header = read_csv_header(path)
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        report(where, f"cannot read leads file {path.name!r}: {exc}")
        return None
    if "linkedin_profile_url" not in header:
        report(
            where,
            f"leads file {path.name!r} has no linkedin_profile_url column"
            f"{did_you_mean('linkedin_profile_url', header)} (columns may be separated by a "
            "comma, a semicolon, a tab or a pipe)",
        )
    return frozenset(header) | BUILTIN_LEAD_FIELDS


def _check_variables(
    step_id: str,
    path: str,
    text: str,
    columns: frozenset[str],
    seq: Sequence,
    report: Report,
) -> None:
    names = {v.removeprefix("lead.") for v in templates.variables(text)}
    csv_name = Path(seq.leads.csv).name if seq.leads.csv else "the leads CSV"
    for name in sorted(names - columns):
        total, guarded = _template_lead_uses(text, name)
        hint = did_you_mean(name, columns)
        if total and guarded == total:
            report(
                path,
                f"in step {step_id!r}: lead.{name} is not a column of {csv_name}; "
                f"it always renders its default{hint}",
                "warning",
            )
        else:
            report(path, f"in step {step_id!r}: lead.{name} is not a column of {csv_name}{hint}")
