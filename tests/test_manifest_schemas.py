"""JSON Schemas: valid against the metaschema, enums match the registries, shipped in the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.errors import UsageError
from engine.manifest.schemas import KINDS, schema_dir, schema_for, schema_text, validator_for
from engine.providers import REGISTRY
from engine.vocab import CANONICAL_ACTIONS, DAYS, ERROR_LABELS, TERMINALS, WAIT_EVENTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_against_its_metaschema(kind: str) -> None:
    schema = schema_for(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{kind.lower()}.json")
    assert schema["properties"]["kind"] == {"const": kind}


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_every_object_schema_closes_its_properties(kind: str) -> None:
    # Typos must be caught: an object schema listing properties never allows others.
    for sub in _objects(schema_for(kind)):
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, sub


def test_provider_enums_equal_the_registry() -> None:
    sequence = schema_for("Sequence")["$defs"]
    workflow = schema_for("Workflow")["$defs"]
    schedule = schema_for("Schedule")["$defs"]
    assert set(sequence["spec"]["properties"]["provider"]["enum"]) == set(REGISTRY)
    assert set(workflow["spec"]["properties"]["provider"]["enum"]) == set(REGISTRY)
    assert set(schedule["spec"]["properties"]["provider"]["enum"]) <= set(REGISTRY)


def test_action_and_step_enums_equal_the_model() -> None:
    defs = schema_for("Sequence")["$defs"]
    step = defs["step"]["properties"]
    assert step["action"]["enum"] == list(CANONICAL_ACTIONS)
    assert step["wait_for"]["enum"] == list(WAIT_EVENTS)
    assert step["end"]["enum"] == list(TERMINALS)
    assert defs["window"]["properties"]["days"]["items"]["enum"] == list(DAYS)
    assert set(defs["routing"]["properties"]) == {"reply", *ERROR_LABELS}
    with_rules = {
        rule["if"]["properties"]["action"]["const"]
        for rule in defs["step"]["allOf"]
        if "action" in rule["if"].get("properties", {})
    }
    assert with_rules == set(CANONICAL_ACTIONS)
    node_action = schema_for("Workflow")["$defs"]["node"]["properties"]["action"]
    assert node_action["anyOf"][0]["enum"] == list(CANONICAL_ACTIONS)


def test_schema_text_is_the_file_and_kind_is_case_insensitive() -> None:
    assert json.loads(schema_text("sequence")) == schema_for("Sequence")
    assert schema_text("Schedule") == (schema_dir() / "schedule.json").read_text()
    with pytest.raises(UsageError):
        schema_text("Campaign")


def test_validator_accepts_a_minimal_sequence_and_rejects_a_typo() -> None:
    doc: dict[str, Any] = {
        "apiVersion": "seqrun/v1",
        "kind": "Sequence",
        "metadata": {"name": "tiny"},
        "spec": {
            "provider": "edges",
            "identities": ["a"],
            "steps": [{"id": "v", "action": "follow"}],
        },
    }
    assert list(validator_for("Sequence").iter_errors(doc)) == []
    doc["spec"]["stpes"] = []
    assert [e.validator for e in validator_for("Sequence").iter_errors(doc)] == [
        "additionalProperties"
    ]


def test_wheel_ships_the_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("seqrun-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in KINDS:
        member = f"engine/schemas/{kind.lower()}.json"
        assert member in names
        shipped = json.loads(zipfile.ZipFile(wheel).read(member))
        assert shipped == schema_for(kind)
