"""Every example users copy validates: ours in sequences/ and the shared ones, unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.manifest.yamlio import load_documents

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(__file__).resolve().parents[2] / "shared" / "examples"
OURS = sorted(p for p in (ROOT / "sequences").iterdir() if p.suffix in (".yaml", ".yml"))
THEIRS = sorted(SHARED.glob("*.yaml")) if SHARED.is_dir() else []


@pytest.mark.parametrize("path", OURS, ids=lambda p: p.name)
def test_sequence_examples_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--strict", str(path)]) == 0
    assert capsys.readouterr().out == "ok: 1 manifest(s)\n"


@pytest.mark.parametrize("path", THEIRS, ids=lambda p: p.name)
def test_shared_examples_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--strict", str(path)]) == 0
    assert capsys.readouterr().out == "ok: 1 manifest(s)\n"


def _sequences(paths: list[Path]) -> list[Path]:
    return [p for p in paths if "kind: Sequence" in p.read_text(encoding="utf-8")]


SEQUENCES = _sequences(OURS + THEIRS)


@pytest.mark.parametrize("path", SEQUENCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sequence_examples_run_a_month_without_a_failed_lead(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example sequence, played for 30 simulated days over the sandbox, enrolls its
    leads and fails none of them (a missing route or a bad template would)."""
    import json

    assert main(["simulate", str(path), "--until", "+30d", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (seq,) = out["status"]["sequences"]
    counts = {f["state"]: f["count"] for f in seq["funnel"]}
    assert seq["total"] > 0 and counts["failed"] == 0, counts


def test_both_folders_validate_together(capsys: pytest.CaptureFixture[str]) -> None:
    if not SHARED.is_dir():
        pytest.skip("shared examples are not present")
    assert main(["validate", str(ROOT / "sequences"), str(SHARED)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_copied_examples_are_unchanged() -> None:
    if not SHARED.is_dir():
        pytest.skip("shared examples are not present")
    for name in [p.name for p in THEIRS] + ["leads.csv"]:
        # the one change: `"on":` quoted, so YAML 1.1 tools (PyYAML) do not read it as true
        ours = (ROOT / "sequences" / name).read_text(encoding="utf-8").replace('"on":', "on:")
        assert ours == (SHARED / name).read_text(encoding="utf-8"), name


def test_required_examples_are_present() -> None:
    kinds: dict[str, list[str]] = {}
    for path in OURS:
        doc = load_documents(path)[0].data
        provider = doc["spec"].get("provider")  # a Policy has none
        kinds.setdefault(doc["kind"], []).append(provider)
    assert {"edges", "linkedapi", "connectsafely"} <= set(kinds["Sequence"])
    assert "linkedapi" in kinds["Workflow"]
    assert "edges" in kinds["Schedule"]
    assert "Policy" in kinds


def test_pre_commit_hook_is_declared() -> None:
    hooks = {h["id"]: h for h in load_documents(ROOT / ".pre-commit-hooks.yaml")[0].data}
    hook = hooks["seqrun-validate"]
    assert hook["entry"] == "seqrun validate --only-seqrun" and hook["language"] == "python"
    assert hook["files"] == r"\.(ya?ml)$"
    tests = hooks["seqrun-test"]  # the shipped SequenceTests, on a manifest or CSV change
    assert tests["entry"] == "seqrun test" and tests["args"] == ["sequences/"]
    assert tests["pass_filenames"] is False
