"""`seqrun run` end to end: apply then run in separate commands over the embedded sandbox."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import ConfigError
from engine.run.state import settle_after
from engine.vocab import TERMINALS

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


def test_simulate_plays_a_campaign_in_a_throwaway_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["simulate", str(EXAMPLE), "--until", "+30d", "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["apply"]["sequences"][0]["enrolled"] > 0 and out["run"]["actions"] > 0
    (seq,) = out["status"]["sequences"]
    live = [f for f in seq["funnel"] if f["state"] not in TERMINALS and f["count"]]
    assert seq["total"] > 0 and live == []
    assert out["state_dir"] is None and list(tmp_path.iterdir()) == []  # no .seqrun made


def test_simulate_keeps_its_state_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "sim"
    rc = main(["simulate", str(EXAMPLE), "--until", "+10d", "--keep", str(kept), "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["state_dir"] == str(kept)
    rc = main(["status", "--state-dir", str(kept), "--virtual-clock", "-o", "json"])
    status = json.loads(capsys.readouterr().out)
    assert rc == 0 and status["sequences"] == out["status"]["sequences"]
    # a directory that holds something already is refused, and left as it is
    before = sorted(p.name for p in kept.iterdir())
    rc = main(["simulate", str(EXAMPLE), "--keep", str(kept)])
    err = capsys.readouterr().err
    assert rc == 2 and "--keep" in err and "not empty" in err
    assert sorted(p.name for p in kept.iterdir()) == before
    rc = main(["simulate", str(EXAMPLE), "--until", "tomorrow", "--keep", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert rc == 2 and "--until 'tomorrow'" in captured.err and captured.out == ""
    assert not (tmp_path / "b").exists()


def test_simulate_plays_on_a_scenario_or_a_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def funnel(*extra: str) -> dict[str, int]:
        assert main(["simulate", str(EXAMPLE), "--until", "+30d", "-o", "json", *extra]) == 0
        (seq,) = json.loads(capsys.readouterr().out)["status"]["sequences"]
        return {f["state"]: f["count"] for f in seq["funnel"] if f["count"]}

    assert funnel("--seed", "3") == funnel("--seed", "3")  # a seed replays the same world
    # a scenario whose only profile never accepts: every lead is withdrawn, none completes
    (tmp_path / "w.yaml").write_text(
        "seed: 1\nidentities: [{uid: ident-alice, provider: edges}, "
        "{uid: ident-bob, provider: edges}]\n"
        "behaviour: {accept_probability: 0, reply_probability: 0, "
        "already_connected_fraction: 0, writes_first_fraction: 0, inaccessible_fraction: 0}\n")
    assert set(funnel("--scenario", str(tmp_path / "w.yaml"))) == {"removed"}
    # a bad scenario is refused with its position, before anything runs
    (tmp_path / "bad.yaml").write_text("seed: x\n")
    assert main(["simulate", str(EXAMPLE), "--scenario", str(tmp_path / "bad.yaml")]) == 1
    assert "bad.yaml:1:1: $.seed: expected an integer" in capsys.readouterr().err


def test_settle_after_comes_from_the_environment_and_refuses_nonsense() -> None:
    assert settle_after({}).total_seconds() == 300
    assert settle_after({"SEQRUN_SETTLE_AFTER": "5"}).total_seconds() == 5
    for bad in ("soon", "-1", "1e9"):
        with pytest.raises(ConfigError, match="SEQRUN_SETTLE_AFTER"):
            settle_after({"SEQRUN_SETTLE_AFTER": bad})


def test_simulate_never_writes_into_the_users_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users.db"
    monkeypatch.setenv("SEQRUN_DATABASE_URL", f"sqlite:///{users}")
    monkeypatch.chdir(tmp_path)
    rc = main(["simulate", str(EXAMPLE), "--until", "+3d", "-o", "json"])
    assert rc == 0, capsys.readouterr().err
    assert not users.exists()  # the simulation's store was its own throwaway SQLite
    assert os.environ["SEQRUN_DATABASE_URL"] == f"sqlite:///{users}"  # and the setting is back
