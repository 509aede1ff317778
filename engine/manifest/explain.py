"""Errors users can follow: the one did-you-mean and the explanation of JSON Schema errors.

Both the loader (schema errors, unknown kinds) and lint (unknown steps, labels, providers,
timezones) phrase their hints through :func:`did_you_mean`, so a close name is suggested the
same way everywhere. :func:`explain_schema_error` turns one ``jsonschema`` error of any YAML
document (a manifest, a sandbox scenario) into positioned, readable problems, as
``seqrun validate`` reports them.

>>> did_you_mean("mesage", ["message", "connect"])
" (did you mean 'message'?)"
>>> closest("sequence", ["Sequence", "Workflow"], ignore_case=True)
'Sequence'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from engine.errors import Problem
from engine.manifest.yamlio import Document, child_path, json_path
from engine.model import SourceMap

__all__ = ["closest", "did_you_mean", "explain_schema_error"]


def closest(word: str, candidates: Iterable[str], *, ignore_case: bool = False) -> str | None:
    """The candidate closest to a misspelt ``word``, if one is close enough.

    With ``ignore_case`` a candidate equal to ``word`` but for case wins outright (schema
    keys and kinds: ``sequence`` means ``Sequence``); lint's names compare as written.
    """
    options = list(candidates)
    if ignore_case:
        lowered = {c.lower(): c for c in options}
        if word.lower() in lowered:
            return lowered[word.lower()]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, candidates: Iterable[str], *, ignore_case: bool = False) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    close = closest(word, candidates, ignore_case=ignore_case)
    return f" (did you mean {close!r}?)" if close else ""


# ---- schema errors -> problems ----------------------------------------------------------------

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


def _step_context(doc: Document, parts: Sequence[str | int]) -> str:
    if len(parts) >= 3 and parts[0] == "spec" and parts[1] == "steps" and isinstance(parts[2], int):
        spec = doc.data.get("spec")
        steps = spec.get("steps") if isinstance(spec, dict) else None
        if isinstance(steps, list) and parts[2] < len(steps):
            step = steps[parts[2]]
            if isinstance(step, dict) and isinstance(step.get("id"), str):
                return f"in step {step['id']!r}: "
    return ""


def _hint(word: Any, allowed: Sequence[Any], *, listing: bool = True) -> str:
    names = [a for a in allowed if isinstance(a, str)]
    hint = did_you_mean(word, names, ignore_case=True) if isinstance(word, str) else ""
    if hint:
        return hint
    if listing and names:
        return f" (expected one of: {', '.join(names)})"
    return ""


@dataclass(frozen=True)
class _Failure:
    """One jsonschema error with what each explanation reads from it."""

    error: ValidationError
    parts: list[str | int]
    path: str
    schema: dict[str, Any]
    where: str  # "in step 'x': " or ""
    source: SourceMap

    @classmethod
    def of(cls, error: ValidationError, doc: Document) -> _Failure:
        parts: list[str | int] = list(error.absolute_path)
        schema = error.schema if isinstance(error.schema, dict) else {}
        where = _step_context(doc, parts)
        return cls(error, parts, json_path(parts), schema, where, doc.source)

    @property
    def instance(self) -> Any:
        return self.error.instance

    @property
    def value(self) -> Any:
        return self.error.validator_value

    def at(self, path: str, message: str) -> list[Problem]:
        return [self.source.problem(path, self.where + message)]


# Each explanation returns None when the error is not of the shape it reads (the error's own
# message is then reported).
_Explanation = Callable[[_Failure], list[Problem] | None]


def _additional_properties(f: _Failure) -> list[Problem] | None:
    if not isinstance(f.instance, dict):
        return None
    allowed = list(f.schema.get("properties", {}))
    patterns = list(f.schema.get("patternProperties", {}))
    extras = [
        k for k in f.instance if k not in allowed and not any(re.search(p, k) for p in patterns)
    ]
    unknown: list[Problem] = []
    for k in extras:
        tail = _hint(k, allowed) if allowed or patterns else " (nothing is allowed here)"
        unknown += f.at(child_path(f.path, k), f"unknown key {k!r}{tail}")
    return unknown


def _required(f: _Failure) -> list[Problem] | None:
    if not isinstance(f.instance, dict):
        return None
    missing = [k for k in f.value if k not in f.instance]
    return [p for k in missing for p in f.at(f.path, f"missing required key {k!r}")]


def _one_of(f: _Failure, doc: Document) -> list[Problem]:
    custom = f.schema.get("errorMessage")
    if custom and isinstance(f.instance, dict):
        found = [
            k
            for sub in f.value
            if isinstance(sub, dict)
            for k in sub.get("required", [])
            if k in f.instance
        ]
        extra = f" (found: {', '.join(found)})" if len(found) > 1 else ""
        return f.at(f.path, f"{custom}{extra}")
    if custom:
        hint = ""
        for sub in f.value:
            if isinstance(sub, dict) and "enum" in sub:
                hint = _hint(f.instance, sub["enum"], listing=False)
        return f.at(f.path, f"{f.instance!r} {custom}{hint}")
    best = best_match(f.error.context or [])
    if best is not None:
        return explain_schema_error(best, doc)
    return f.at(f.path, f.error.message)


def _not(f: _Failure) -> list[Problem]:
    key = f.parts[-1] if f.parts else "$"
    return f.at(f.path, f"{key!r} {f.schema.get('errorMessage', 'is not allowed here')}")


def _enum(f: _Failure) -> list[Problem]:
    instance, value, parts = f.instance, f.value, f.parts
    if "propertyNames" in f.error.relative_schema_path and isinstance(instance, str):
        title = f.schema.get("title", "this mapping")
        permitted = ", ".join(str(v) for v in value)
        message = f"{instance!r} is not allowed in {title} (allowed: {permitted})"
        return f.at(child_path(f.path, instance), message)
    what = f.schema.get("title") or (parts[-1] if parts and isinstance(parts[-1], str) else "")
    options = ", ".join(str(v) for v in value)
    if isinstance(instance, str):
        hint = _hint(instance, value, listing=False)
        if hint:
            return f.at(f.path, f"unknown {what} {instance!r}{hint}")
        return f.at(f.path, f"{what} {instance!r} is not one of: {options}")
    return f.at(f.path, f"expected one of: {options}; got {_json_type(instance)}")


def _type(f: _Failure) -> list[Problem]:
    number = f.instance
    if (f.schema.get("title") == "duration" and isinstance(number, int | float)
            and not isinstance(number, bool)):  # `timeout: 10`: which unit was meant?
        n = int(number) if float(number).is_integer() else number
        return f.at(f.path, f'a duration needs a unit: write "{n}m" (minutes), "{n}h" '
                            f'(hours) or "{n}d" (days); got the number {n}')
    wanted = f.value if isinstance(f.value, list) else [f.value]
    names = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in wanted)
    return f.at(f.path, f"expected {names}, got {_json_type(f.instance)}")


def _pattern(f: _Failure) -> list[Problem]:
    custom = f.schema.get("errorMessage")
    if custom:
        return f.at(f.path, f"{f.instance!r} {custom}")
    return f.at(f.path, f"{f.instance!r} does not match {f.value}")


def _unique_items(f: _Failure) -> list[Problem] | None:
    if not isinstance(f.instance, list):
        return None
    items = f.instance
    dupes = sorted({repr(x) for i, x in enumerate(items) if x in items[:i]})
    return f.at(f.path, f"duplicate item(s): {', '.join(dupes)}")


def _min_length(f: _Failure) -> list[Problem]:
    message = "must not be empty" if f.value == 1 else f"shorter than {f.value} characters"
    return f.at(f.path, message)


_EXPLANATIONS: dict[str, _Explanation] = {
    "additionalProperties": _additional_properties,
    "required": _required,
    "not": _not,
    "enum": _enum,
    "const": lambda f: f.at(f.path, f"expected {f.value!r}, got {f.instance!r}"),
    "type": _type,
    "pattern": _pattern,
    "minItems": lambda f: f.at(f.path, f"expected at least {f.value} item(s)"),
    "uniqueItems": _unique_items,
    "minLength": _min_length,
    "minimum": lambda f: f.at(f.path, f"{f.instance} is below the minimum of {f.value}"),
    "maximum": lambda f: f.at(f.path, f"{f.instance} is above the maximum of {f.value}"),
}


def explain_schema_error(error: ValidationError, doc: Document) -> list[Problem]:
    """One jsonschema error of any YAML document (a manifest, a sandbox scenario) as
    positioned, readable problems, as ``seqrun validate`` reports them."""
    failure = _Failure.of(error, doc)
    if error.validator in ("oneOf", "anyOf"):
        return _one_of(failure, doc)
    explanation = _EXPLANATIONS.get(str(error.validator))
    found = explanation(failure) if explanation is not None else None
    return found if found is not None else failure.at(failure.path, error.message)
