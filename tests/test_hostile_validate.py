"""`seqrun validate` on hostile manifests: one located line per problem, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main

FORGING = """\
apiVersion: seqrun/v1
kind: Sequence
metadata: {name: bad}
spec:
  provider: edges
  identities: [a]
  steps:
    - id: v
      action: visit_profile
      "x\\nbad.yaml:97:1: $: forged": 1
"""


def _validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> tuple[int, list[str]]:
    (tmp_path / "bad.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    code = main(["validate", "bad.yaml"])
    return code, capsys.readouterr().err.splitlines()


def test_a_key_with_a_newline_cannot_forge_a_located_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _validate(tmp_path, monkeypatch, capsys, FORGING.encode())
    assert code == 1
    assert lines == [
        "bad.yaml:10:7: $.spec.steps[0]['x\\nbad.yaml:97:1: $: forged']: in step 'v': unknown"
        " key 'x\\nbad.yaml:97:1: $: forged' (expected one of: id, action, with, variants,"
        " experiment, on, next, wait, wait_for, timeout, on_timeout, branch, else, end,"
        " execution)",
        "1 error(s)",
    ]


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\x9b"])
def test_control_characters_are_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    char: str,
) -> None:
    content = FORGING.replace("visit_profile", f"visit{char}profile", 1).encode()
    code, lines = _validate(tmp_path, monkeypatch, capsys, content)
    assert code == 1
    assert lines == [
        f"bad.yaml:9:20: $: character U+{ord(char):04X} is not allowed in YAML",
        "1 error(s)",
    ]


@pytest.mark.parametrize("zone", ["Europe", "America", "x" * 300])
def test_a_schedule_timezone_that_names_a_directory_is_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    zone: str,
) -> None:
    manifest = (
        "apiVersion: seqrun/v1\nkind: Schedule\nmetadata: {name: s}\nspec:\n"
        "  provider: edges\n  action: linkedin-extract-conversations\n"
        f"  identities: [ident-alice]\n  cron: '0 9 * * *'\n  timezone: {zone}\n"
    )
    code, lines = _validate(tmp_path, monkeypatch, capsys, manifest.encode())
    assert code == 1
    assert any(line.startswith("bad.yaml:9:3: $.spec.timezone: unknown IANA timezone")
               for line in lines), lines


def _long_sequence(steps: int) -> str:
    head = (
        "apiVersion: seqrun/v1\nkind: Sequence\nmetadata: {name: long}\nspec:\n"
        "  provider: edges\n  identities: [a]\n  steps:\n"
    )
    body = "".join(f"    - id: w{i}\n      wait: 1d\n" for i in range(steps - 1))
    return head + body + "    - id: last\n      end: completed\n"


def test_a_sequence_over_the_step_limit_is_refused_before_the_schema_walks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10,000 steps cost 10 s of CPU in validate (schema + template checks of each step)
    code, lines = _validate(tmp_path, monkeypatch, capsys, _long_sequence(10_000).encode())
    assert code == 1
    assert lines == [
        "bad.yaml:7:3: $.spec.steps: 10000 steps: a Sequence holds at most 500 (split the "
        "campaign into several sequences)",
        "1 error(s)",
    ]


def test_a_sequence_at_the_step_limit_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _validate(tmp_path, monkeypatch, capsys, _long_sequence(500).encode())
    assert code == 0, lines
