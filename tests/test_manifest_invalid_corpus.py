"""The negative corpus: every file in tests/invalid/ fails validation with the error it names.

Each file's first line is ``# expect: <the exact error line as printed>``, with the file
given by its basename (validation runs from inside tests/invalid/ on relative paths).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main

INVALID = Path(__file__).resolve().parent / "invalid"
CASES = sorted(p for p in INVALID.iterdir() if p.suffix in (".yaml", ".yml"))
PREFIX = b"# expect: "


def expected_line(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0]
    assert first.startswith(PREFIX), f"{path.name}: first line must be '# expect: <error line>'"
    return first[len(PREFIX) :].decode("utf-8").rstrip("\r")


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_invalid_manifest_fails_with_its_expected_line(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = expected_line(path)
    assert expected.startswith(f"{path.name}:"), "the expected line starts with the basename"
    monkeypatch.chdir(INVALID)
    assert main(["validate", path.name]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert expected in lines, "\n".join(lines)
    assert "Traceback" not in captured.err
    assert captured.out == ""
