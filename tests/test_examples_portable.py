"""Every shipped manifest reads the same in every tool of a user's chain: plain PyYAML
(`yaml.safe_load`, YAML 1.1, where an unquoted `on:` key is the boolean true) and Python
`jsonschema` against the published schemas agree with seqrun. seqrun itself still reads an
unquoted `on:` (it reads YAML JSON-shaped)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from engine.compile.machine import compile_sequence
from engine.manifest.loader import load
from engine.model import Sequence
from tests.conftest import ROOT

SCHEMAS = {p.stem: json.loads(p.read_text(encoding="utf-8"))
           for p in (ROOT / "schemas").glob("*.json")}
SHIPPED = sorted((ROOT / "sequences").glob("*.yaml"))
NEXT_REVISIONS = sorted((ROOT / "sequences").glob("*.yaml.next"))  # applied after their file
UNQUOTED_ON = re.compile(r"^\s*on:", re.M)


def schema_for(doc: Any) -> dict[str, Any]:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return SCHEMAS[str(kind).lower()] if kind else SCHEMAS["scenario"]


@pytest.mark.parametrize("path", [*SHIPPED, *NEXT_REVISIONS,
                                  ROOT / "sandbox" / "example-world.yaml",
                                  ROOT / "sandbox" / "ab-test-world.yaml"],
                         ids=lambda p: p.name)
def test_shipped_manifest_validates_with_plain_pyyaml_and_jsonschema(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not UNQUOTED_ON.search(text), 'write "on": (YAML 1.1 reads on: as true)'
    docs = list(yaml.safe_load_all(text))
    assert docs
    for doc in docs:
        schema = schema_for(doc)
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
        assert errors == []


def test_every_shipped_manifest_loads_in_seqrun() -> None:
    assert len(load(SHIPPED, strict=True)) == len(SHIPPED)
    assert NEXT_REVISIONS
    for path in NEXT_REVISIONS:  # alone: it shares its sequence's name with the first file
        assert len(load([path], strict=True)) == 1


def test_seqrun_reads_on_quoted_or_not_the_same(tmp_path: Path) -> None:
    text = (ROOT / "sequences" / "founders-outreach.yaml").read_text(encoding="utf-8")
    assert '"on":' in text
    (tmp_path / "leads.csv").write_bytes((ROOT / "sequences" / "leads.csv").read_bytes())
    quoted, bare = tmp_path / "quoted.yaml", tmp_path / "bare" / "bare.yaml"
    bare.parent.mkdir()
    (bare.parent / "leads.csv").write_bytes((ROOT / "sequences" / "leads.csv").read_bytes())
    quoted.write_text(text, encoding="utf-8")
    bare.write_text(text.replace('"on":', "on:"), encoding="utf-8")
    (a,), (b,) = load([quoted]), load([bare])
    assert isinstance(a, Sequence) and isinstance(b, Sequence)
    assert a.on == b.on and a.on
    assert compile_sequence(a).revision == compile_sequence(b).revision
