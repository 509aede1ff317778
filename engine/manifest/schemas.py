"""Manifest schemas: the JSON Schemas (draft 2020-12) of the manifest kinds, Sequence,
Workflow, Schedule and Policy, that the loader validates every document against.

"Schema" means three things in seqrun; this module is the first:

* manifest schemas (here): ``schemas/{sequence,workflow,schedule,policy}.json``;
* the store's tables (SQL), :mod:`engine.store.tables` and its migrations;
* the sandbox scenario schema, ``schemas/scenario.json``, read by :mod:`engine.sandbox.scenario`
  (it sits in the same folder, found through :func:`schema_dir`, but is not a manifest kind).

The files live in ``schemas/`` at the repository root and ship inside the wheel as
``engine/schemas/`` (pyproject force-include). Editors use them through
``# yaml-language-server: $schema=...``; ``seqrun schema [KIND]`` prints them.

>>> schema_for("Sequence")["$id"]
'https://seqrun.dev/schemas/v1/sequence.json'
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from engine.errors import UsageError

# The manifest kinds, one schema file each.
KINDS: tuple[str, ...] = ("Sequence", "Workflow", "Schedule", "SequenceTest", "Policy")


def schema_dir() -> Path:
    """The folder of the JSON Schema files (the manifest kinds' and the sandbox scenario's): the
    installed ``engine/schemas/``, or the repository's ``schemas/`` in a source checkout."""
    engine_dir = Path(__file__).resolve().parent.parent
    for candidate in (engine_dir / "schemas", engine_dir.parent / "schemas"):
        if (candidate / "sequence.json").is_file():
            return candidate
    raise FileNotFoundError("seqrun's JSON schemas are missing from this installation")


def _canonical_kind(kind: str) -> str:
    for known in KINDS:
        if known.lower() == kind.lower():
            return known
    raise UsageError(f"unknown kind {kind!r} (expected one of: {', '.join(KINDS)})")


def schema_text(kind: str) -> str:
    """The manifest schema file of ``kind`` (``Sequence``, ``Workflow``, ``Schedule``,
    ``Policy``; any case), as text."""
    name = _canonical_kind(kind).lower()
    return (schema_dir() / f"{name}.json").read_text(encoding="utf-8")


@cache
def _schema(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(kind))
    return data


def schema_for(kind: str) -> dict[str, Any]:
    """The parsed manifest schema of ``kind`` (a fresh copy: callers may not mutate the
    cache)."""
    data: dict[str, Any] = json.loads(json.dumps(_schema(_canonical_kind(kind))))
    return data


@cache
def validator_for(kind: str) -> Draft202012Validator:
    """A ready validator of the manifest schema of ``kind`` (cached; validators are
    stateless)."""
    return Draft202012Validator(_schema(_canonical_kind(kind)))


@cache
def _verdict_validator(kind: str) -> jsonschema_rs.Validator:
    # Formats are annotations for the manifest kinds, as in :func:`validator_for`.
    return jsonschema_rs.Draft202012Validator(_schema(kind), validate_formats=False)


def conforms(kind: str, data: Any) -> bool:
    """Whether ``data`` is valid against the manifest schema of ``kind``: the quick verdict
    every document gets before :func:`validator_for` explains what is wrong (jsonschema-rs
    compiles the schema to native code, ~150x the speed of walking it in Python: at 1,000
    manifests the walk was three quarters of ``seqrun validate``).

    False is never final: the caller asks :func:`validator_for` for the errors, and that
    walk decides. The two only disagree that way: ECMA regexes (``$`` before a trailing
    newline) are stricter than Python's, and a value the native validator cannot read (no
    JSON type) is False here.
    """
    try:
        return _verdict_validator(_canonical_kind(kind)).is_valid(data)
    except (ValueError, TypeError):
        return False


def max_steps(kind: str) -> int | None:
    """The schema's limit on the number of steps of a ``kind`` (None: no steps, no limit)."""
    spec = _schema(_canonical_kind(kind))["$defs"].get("spec", {})
    steps = spec.get("properties", {}).get("steps", {})
    limit = steps.get("maxItems")
    return limit if isinstance(limit, int) else None
