"""The quick schema verdict (jsonschema-rs) never passes a document the explaining validator
(jsonschema) would refuse: every document the loader reads gets the first, and only the
documents it refuses get the second, so a disagreement the other way would let an invalid
manifest through unexplained."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.manifest.loader import load
from engine.manifest.schemas import conforms, validator_for
from engine.manifest.yamlio import read_documents

ROOT = Path(__file__).resolve().parent.parent
# One shipped manifest of each kind.
SHIPPED = (
    "sequences/founders-outreach-full.yaml",
    "sequences/linkedapi-workflow.yaml",
    "sequences/edges-incremental-schedule.yaml",
    "sequences/guardrails-policy.yaml",
    "sequences/tests/founders-outreach.test.yaml",
)
REPLACEMENTS: tuple[Any, ...] = (7, 1.5, "x", None, [], {}, True, "", "a\n", -1, {"zz": 1})


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _mutants(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``data`` with each node in turn removed, replaced by a value of another type, or (a
    mapping) given an unknown key."""
    for path in _paths(data):
        for replacement in ("DELETE", *REPLACEMENTS):
            mutant = copy.deepcopy(data)
            parent = mutant
            for key in path[:-1]:
                parent = parent[key]
            if replacement == "DELETE":
                del parent[path[-1]]
            else:
                parent[path[-1]] = replacement
            yield mutant
        mutant = copy.deepcopy(data)
        node = mutant
        for key in path:
            node = node[key]
        if isinstance(node, dict):
            node["unknown_key"] = 1
            yield mutant


@pytest.mark.parametrize("relative", SHIPPED)
def test_quick_verdict_never_passes_what_jsonschema_refuses(relative: str) -> None:
    docs, problems = read_documents(ROOT / relative)
    assert docs and not problems
    data = docs[0].data
    kind = data["kind"]
    assert conforms(kind, data)
    verdicts = [(conforms(kind, m), validator_for(kind).is_valid(m)) for m in _mutants(data)]
    assert len(verdicts) > 200
    assert not [v for v in verdicts if v == (True, False)]
    # both refuse most mutants; they differ only where ECMA regexes are stricter ("a\n")
    assert sum(quick == full for quick, full in verdicts) / len(verdicts) > 0.97


def test_a_value_with_no_json_type_is_left_to_jsonschema() -> None:
    assert conforms("Sequence", {"apiVersion": {1, 2}}) is False


def test_a_refused_quick_verdict_jsonschema_accepts_still_loads(tmp_path: Path) -> None:
    # `$` matches before a final newline in Python's regexes, not in ECMA's: jsonschema-rs
    # refuses the name, jsonschema does not, and the loader keeps today's (jsonschema's) verdict.
    text = (ROOT / "sequences/guardrails-policy.yaml").read_text(encoding="utf-8")
    docs, _ = read_documents(ROOT / "sequences/guardrails-policy.yaml")
    name = docs[0].data["metadata"]["name"]
    quoted = text.replace(f"name: {name}", f'name: "{name}\\n"', 1)
    (tmp_path / "policy.yaml").write_text(quoted, encoding="utf-8")
    (tmp_path / "do-not-contact.txt").write_text("", encoding="utf-8")
    data = read_documents(tmp_path / "policy.yaml")[0][0].data
    assert data["metadata"]["name"] == f"{name}\n"
    assert not conforms("Policy", data) and validator_for("Policy").is_valid(data)
    assert [m.name for m in load([str(tmp_path / "policy.yaml")])] == [f"{name}\n"]
