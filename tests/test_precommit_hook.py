"""The pre-commit hook (.pre-commit-hooks.yaml) validates seqrun manifests only: a repository's
other YAML passes untouched, a broken manifest still fails it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from engine.cli import main
from engine.manifest.yamlio import load_documents

ROOT = Path(__file__).resolve().parent.parent
CI = """\
name: ci
on: [push]
jobs:
  test: {runs-on: ubuntu-latest, steps: [{run: pytest}]}
"""
K8S = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n"
BROKEN = """\
apiVersion: seqrun/v1
kind: Sequence
metadata: {name: bad}
spec:
  provider: edgs
  identities: [a]
  steps: [{id: v, action: visit_profile}]
"""


def run_hook(files: list[str]) -> int:
    """What pre-commit runs: the hook's entry with the staged files its `files:` matches."""
    hooks = {h["id"]: h for h in load_documents(ROOT / ".pre-commit-hooks.yaml")[0].data}
    hook = hooks["seqrun-validate"]
    staged = [f for f in files if re.search(hook["files"], f)]
    return main([*shlex.split(hook["entry"])[1:], *staged])


def test_other_yaml_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci.yml").write_text(CI)
    (tmp_path / "deploy.yaml").write_text(K8S)
    assert main(["validate", "ci.yml"]) == 1  # without the hook's flag it is refused
    capsys.readouterr()
    manifest = str(ROOT / "sequences" / "check-then-message.yaml")
    assert run_hook(["ci.yml", "deploy.yaml", "README.md", manifest]) == 0
    assert capsys.readouterr().out == "ok: 1 manifest(s)\n"


def test_a_broken_manifest_still_fails_the_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci.yml").write_text(CI)
    (tmp_path / "bad.yaml").write_text(BROKEN)
    (tmp_path / "both.yaml").write_text(K8S + "---\n" + BROKEN.replace("bad", "bad2"))
    assert run_hook(["ci.yml", "bad.yaml", "both.yaml"]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:5:3: $.spec.provider: unknown provider 'edgs'" in err
    assert "both.yaml:10:3: $.spec.provider: unknown provider 'edgs'" in err
    assert "ci.yml" not in err and "Deployment" not in err
