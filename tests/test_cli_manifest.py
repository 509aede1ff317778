"""`seqrun validate` and `seqrun schema`: exit codes, text and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = """\
apiVersion: seqrun/v1
kind: Sequence
metadata: {name: bad}
spec:
  provider: edgs
  identities: [a]
  steps:
    - id: v
      action: visit_profile
"""


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "sequences")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and out.endswith(" manifest(s)\n")


def test_validate_errors_go_to_stderr_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "bad.yaml"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "bad.yaml:5:3: $.spec.provider: unknown provider 'edgs' (did you mean 'edges'?)",
        "1 error(s)",
    ]


def test_validate_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "-o", "json", "bad.yaml"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["problems"] == [
        {
            "file": "bad.yaml",
            "line": 5,
            "col": 3,
            "path": "$.spec.provider",
            "message": "unknown provider 'edgs' (did you mean 'edges'?)",
            "severity": "error",
        }
    ]
    good = ROOT / "sequences" / "inbox-sync.yaml"
    assert main(["validate", "--output", "json", str(good)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["manifests"] == [{"kind": "Schedule", "name": "inbox-sync", "file": str(good)}]


def test_validate_missing_path_is_reported_by_the_loader(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "no/such/dir"]) == 1
    assert "no/such/dir:1:1: $: no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "nofile.yaml"],
        ["graph", "nofile.yaml"],
        ["sandbox", "serve", "--scenario", "nofile.yaml"],
        ["plan", "nofile.yaml"],
    ],
)
def test_a_missing_file_is_the_same_error_everywhere(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "nofile.yaml:1:1: $: no such file or directory" in err
    assert "Usage:" not in err


def test_schema_prints_one_kind_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "sequence"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["title"] == "seqrun Sequence"
    assert main(["schema"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert list(every) == ["Sequence", "Workflow", "Schedule", "SequenceTest", "Policy"]
    assert every["Sequence"] == one
    assert main(["schema", "Campaign"]) == 2
    assert "unknown kind 'Campaign'" in capsys.readouterr().err
