"""docs/manifests.md is the user's guide to the language: every YAML block in it is a whole
manifest that validates (warnings included), the annotated Sequence is the file it says it
is, and every path it names exists in a clone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from engine.manifest.loader import load
from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "manifests.md"
TEXT = GUIDE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"(?:<!-- (\S+) -->\n)?```yaml\n(.*?)```", TEXT, flags=re.S)


def test_the_guide_has_a_block_for_every_kind() -> None:
    kinds = {m for _, body in BLOCKS for m in re.findall(r"^kind: (\w+)$", body, flags=re.M)}
    assert kinds == {"Sequence", "Workflow", "Schedule", "Policy"} and len(BLOCKS) >= 10


@pytest.mark.parametrize(("source", "body"), BLOCKS,
                         ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_yaml_block_validates(tmp_path: Path, source: str, body: str) -> None:
    for data in [*(ROOT / "sequences").glob("*.csv"), *(ROOT / "sequences").glob("*.txt")]:
        shutil.copy(data, tmp_path / data.name)  # leads files, do-not-contact files
    path = tmp_path / "snippet.yaml"
    path.write_text(body, encoding="utf-8")
    manifests = load([path], strict=True)  # ManifestError (the problems) when not
    assert len(manifests) == 1
    if source:  # the block is that file, word for word
        assert (ROOT / source).read_text(encoding="utf-8") == body


def test_every_path_the_guide_names_exists() -> None:
    paths = set(re.findall(r"(?<![\w./])((?:sequences|schemas|docs|sandbox)/[\w./-]*\w)", TEXT))
    assert "sequences/guide-annotated.yaml" in paths
    assert [p for p in sorted(paths) if not (ROOT / p).exists()] == []


def test_the_guide_quotes_on() -> None:
    assert not re.search(r"^\s*on:", TEXT, flags=re.M)
