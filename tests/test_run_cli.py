"""`seqrun run` end to end: apply then run in separate commands over the embedded sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.model import TERMINALS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sequences" / "founders-outreach.yaml"


def test_apply_then_run_a_campaign_to_its_end_on_the_virtual_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / ".seqrun")
    rc = main(
        [
            "apply",
            "--sandbox",
            "--virtual-clock",
            "--auto-approve",
            "--no-run",
            str(EXAMPLE),
            "--state-dir",
            state,
            "-o",
            "json",
        ]
    )
    assert rc == 0
    capsys.readouterr()
    rc = main(
        [
            "run",
            "--sandbox",
            "--virtual-clock",
            "--until",
            "+30d",
            "--state-dir",
            state,
            "-o",
            "json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run"]["ticks"] > 1 and out["run"]["actions"] > 0
    (seq,) = out["status"]["sequences"]
    live = [f for f in seq["funnel"] if f["state"] not in TERMINALS and f["count"]]
    assert seq["total"] > 0 and live == []
    # the clock was saved with the sandbox: a second run starts where the first stopped
    rc = main(["run", "--sandbox", "--virtual-clock", "--once", "--state-dir", state, "-o", "json"])
    again = json.loads(capsys.readouterr().out)
    assert rc == 0 and again["run"]["at"] == out["run"]["ended_at"]


def test_virtual_clock_needs_until(tmp_path: Path) -> None:
    assert main(["run", "--sandbox", "--virtual-clock", "--state-dir", str(tmp_path)]) == 2


def test_bad_until_is_a_usage_error(tmp_path: Path) -> None:
    rc = main(
        ["run", "--sandbox", "--virtual-clock", "--until", "soon", "--state-dir", str(tmp_path)]
    )
    assert rc == 2
