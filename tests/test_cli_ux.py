"""A growth team's first day (issue 17): what `seqrun status`, `why`, `leads list`, `pause`
and the lists print for a person, the same data in `-o json`, and the rough edges a new user
hits (status --sandbox, a read-only command that created `.seqrun/`, shell completion).

One 30-day demo campaign on the sandbox's virtual clock is run once for the module; the
tests read it (those that write work on a copy)."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.cli import render
from engine.store import Store
from engine.views.status import status as status_view
from tests.conftest import ROOT, invoke

DEMO = ("demo-campaign.yaml", "demo-leads.csv")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state dir after the README's main job (120 leads, 30 simulated days)."""
    work = tmp_path_factory.mktemp("demo")
    for name in DEMO:
        shutil.copy(ROOT / "sequences" / name, work / name)
    state = str(work / ".seqrun")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SEQRUN_DATABASE_URL", raising=False)
        mp.setattr("sys.stdin", io.StringIO(""))
        from engine.cli import main

        assert main(["apply", str(work / DEMO[0]), "--sandbox", "--virtual-clock",
                     "--auto-approve", "--state-dir", state, "-o", "json"]) == 0
        assert main(["run", "--sandbox", "--virtual-clock", "--until", "+30d", "--state-dir",
                     state, "-o", "json"]) == 0
        yield Path(state)


@pytest.fixture
def state(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo's state dir, for the tests that write (pause, an identity error)."""
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    copy = tmp_path / ".seqrun"
    shutil.copytree(demo, copy)
    return copy


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = invoke(capsys, *argv, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def terminal() -> tuple[Console, io.StringIO]:
    """A console that is a terminal (rich tables), wide enough for one table row a line."""
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=200, color_system=None), buf


# ---- status: the funnel a growth person reads -------------------------------------------------


def test_status_has_rates_per_step_and_identity(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "status", "demo-campaign", "--state-dir", str(demo))
    (seq,) = data["sequences"]
    conv = seq["conversion"]
    assert conv["enrolled"] == seq["total"] == 120
    assert 0 < conv["accepted"] <= conv["invited"] <= 120
    assert conv["acceptance_rate"] == round(conv["accepted"] / conv["invited"], 3)
    replied = next(f["count"] for f in seq["funnel"] if f["state"] == "replied")
    assert conv["replied"] == replied and conv["reply_rate"] == round(replied / 120, 3)
    per = conv["by_identity"]
    assert set(per) == {"ident-alice", "ident-bob"}
    for key in ("enrolled", "invited", "accepted", "replied"):
        assert sum(r[key] for r in per.values()) == conv[key]
    reached = {r["state"]: r["leads"] for r in conv["reached"]}
    assert reached["visit"] == 120 and reached["connect"] <= reached["visit"]

    code, out, _ = invoke(capsys, "status", "--state-dir", str(demo))
    assert code == 0
    assert "acceptance" in out and f"{conv['acceptance_rate'] * 100:.0f}%" in out
    assert "reply rate" in out


def test_status_breaks_removed_down_by_reason(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`removed 42` was 40 invitations withdrawn after the acceptance wait timed out and 2
    inaccessible profiles: the reasons say which, and add up to the terminal's count."""
    (seq,) = run_json(capsys, "status", "--state-dir", str(demo))["sequences"]
    counts = {f["state"]: f["count"] for f in seq["funnel"]}
    reasons = seq["conversion"]["terminal_reasons"]
    by_terminal: Counter[str] = Counter()
    for r in reasons:
        by_terminal[r["terminal"]] += r["count"]
    assert {t: n for t, n in by_terminal.items()} == {t: n for t, n in counts.items()
                                                      if n and t in by_terminal}
    removed = {(r["from"], r["trigger"]): r for r in reasons if r["terminal"] == "removed"}
    withdrawn = removed[("withdraw", "ok")]
    assert withdrawn["via"] == {"from": "accepted", "trigger": "timeout"}
    assert withdrawn["text"] == "invitation withdrawn at withdraw, after accepted timed out"
    assert ("visit", "PROFILE_NOT_ACCESSIBLE") in removed
    _, out, _ = invoke(capsys, "status", "--state-dir", str(demo))
    assert "after accepted timed out" in out and "profile not accessible at visit" in out


def test_limits_say_which_day_and_clock_they_count(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After 30 simulated days every action is older than the last 24 h: the table names its
    window and clock, and says so instead of a bare 0/20."""
    data = run_json(capsys, "status", "--virtual-clock", "--state-dir", str(demo))
    assert data["clock"] == "virtual" and data["at"].startswith("2026-02-04")
    assert data["limits_window"]["from"].startswith("2026-02-03")
    _, out, _ = invoke(capsys, "status", "--virtual-clock", "--state-dir", str(demo))
    assert ("from 2026-02-03 08:00 UTC to 2026-02-04 08:00 UTC (the sandbox's virtual clock)"
            in out)
    assert "No action in these 24 h: the latest was at 2026-01-" in out
    _, out, _ = invoke(capsys, "status", "--state-dir", str(demo))  # the real clock
    assert "(the real clock)" in out and "add --virtual-clock" in out


def test_a_paused_sequence_shows_paused_on_a_terminal_and_piped(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rich read the title's " [paused]" as markup and dropped it."""
    code, out, _ = invoke(capsys, "pause", "demo-campaign", "--state-dir", str(state))
    assert code == 0 and "row(s) changed" not in out
    assert out.strip() == ("Paused sequence demo-campaign: its leads stay where they are "
                           "(seqrun resume demo-campaign to go on).")
    code, out, _ = invoke(capsys, "status", "--state-dir", str(state))
    assert "[paused: seqrun resume demo-campaign]" in out
    store = Store.open(None, state)
    try:
        report = status_view(store, now=datetime.now(UTC))
    finally:
        store.close()
    console, buf = terminal()
    render.render_status(report, console)
    assert "[paused: seqrun resume demo-campaign]" in buf.getvalue()
    assert "┃" in buf.getvalue()  # a rich table on a terminal


def test_a_long_identity_error_stays_on_one_line(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "INVALID_INPUT: " + "the provider does not know this identity; " * 8
    store = Store.open(None, state)
    try:
        store.set_identity_status("ident-bob", "paused", reason)
        report = status_view(store, now=datetime.now(UTC))
    finally:
        store.close()
    console, buf = terminal()
    render.render_status(report, console)
    (line,) = [x for x in buf.getvalue().splitlines() if "ident-bob" in x and "paused" in x]
    assert "…" in line and reason.strip() not in line
    data = run_json(capsys, "status", "--state-dir", str(state))
    assert {i["id"]: i["reason"] for i in data["identities"]}["ident-bob"] == reason


def test_no_jargon_in_apply_and_pause_output(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in DEMO:
        shutil.copy(ROOT / "sequences" / name, cli_dir / name)
    code, out, err = invoke(capsys, "apply", DEMO[0], "--sandbox", "--virtual-clock",
                            "--auto-approve")
    assert code == 0, err
    assert "kill_switch" not in out and "=False" not in out
    assert "Run: tick at 2026-01-05T08:00:00+00:00: 120 due" in out
    code, out, _ = invoke(capsys, "pause", "--identity", "ident-bob")
    assert out.strip() == ("Paused identity ident-bob: 60 lead(s) held "
                           "(seqrun resume --identity ident-bob to go on).")
    code, out, _ = invoke(capsys, "pause", "--all")
    assert "kill switch on" in out and "row(s)" not in out


# ---- why: the route and the text sent ---------------------------------------------------------


def _a_lead_that_replied(demo: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    rows = run_json(capsys, "leads", "list", "--state", "replied", "--state-dir", str(demo))
    for row in rows:
        why = run_json(capsys, "why", row["profile_url"], "--state-dir", str(demo))
        if any(h["kind"] == "send_message" for h in why["history"]):
            return {"row": row, "why": why}
    raise AssertionError("no lead replied after a message")


def test_why_shows_the_route_and_the_text_sent(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = _a_lead_that_replied(demo, capsys)
    url, why = found["row"]["profile_url"], found["why"]
    (enrollment,) = why["enrollments"]
    route = [(hop["state"], hop["trigger"]) for hop in enrollment["route"]]
    assert route[0] == ("visit", "enrolled") and route[-1] == ("replied", "reply")
    sent = [h["detail"]["response"]["sent"] for h in why["history"]
            if h["source"] == "action" and h["kind"] in ("connect", "send_message")]
    first = why["lead"]["first_name"]
    assert sent[0]["note"].startswith(f"Hi {first}, I follow what ")
    assert sent[1]["text"].startswith(f"Thanks for connecting, {first}!")
    code, out, _ = invoke(capsys, "why", url, "--state-dir", str(demo))
    assert code == 0
    assert out.splitlines()[0] == f"{url} ({why['lead']['full_name']}, " \
        f"{why['lead']['company_name']})"
    assert "route: visit -ok-> connect -ok-> accepted" in out and "-reply-> replied" in out
    assert f"note: Hi {first}, I follow what" in out
    assert f"text: Thanks for connecting, {first}!" in out


# ---- leads list ----------------------------------------------------------------------------


def test_leads_list_by_state_and_sequence(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (seq,) = run_json(capsys, "status", "--state-dir", str(demo))["sequences"]
    counts = {f["state"]: f["count"] for f in seq["funnel"]}
    every = run_json(capsys, "leads", "list", "--state-dir", str(demo))
    assert len(every) == 120 and Counter(r["state"] for r in every) == +Counter(counts)
    removed = run_json(capsys, "leads", "list", "--sequence", "demo-campaign", "--state",
                       "removed", "--state", "replied", "--state-dir", str(demo))
    assert len(removed) == counts["removed"] + counts["replied"]
    assert {r["state"] for r in removed} == {"removed", "replied"}
    assert all(r["profile_url"].startswith("https://www.linkedin.com/in/") and r["name"]
               for r in removed)
    code, out, _ = invoke(capsys, "leads", "list", "--state", "replied", "--state-dir",
                          str(demo))
    lines = out.splitlines()
    assert lines[0] == f"{counts['replied']} lead(s)" and lines[1].split()[:2] == [
        "PROFILE", "URL"]
    assert len(lines) == 2 + counts["replied"]
    code, _, err = invoke(capsys, "leads", "list", "--sequence", "nope", "--state-dir",
                          str(demo))
    assert code == 1 and "no applied sequence named 'nope'" in err
    code, _, err = invoke(capsys, "leads", "list", "--state", "replyed", "--state-dir",
                          str(demo))
    assert code == 2 and "--state 'replyed': no such step or terminal in any applied " \
        "sequence (did you mean 'replied'?)" in err


# ---- consistency ----------------------------------------------------------------------------


def test_status_takes_sandbox_like_the_write_commands(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(capsys, "status", "--sandbox", "--state-dir", str(demo))
    assert code == 0, err
    assert "demo-campaign" in out


@pytest.mark.parametrize(
    "argv",
    [["status"], ["status", "-o", "json"], ["status", "--virtual-clock"], ["dnc", "list"],
     ["leads", "list"], ["why", "https://www.linkedin.com/in/ada"]],
)
def test_read_only_commands_create_no_state_dir(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = invoke(capsys, *argv)
    assert not (cli_dir / ".seqrun").exists()
    if argv[0] == "why":
        assert code == 1 and "nothing applied yet in .seqrun" in err
    else:
        assert code == 0, err
    if argv == ["status"]:
        assert out.strip() == "No sequences, workflows or schedules applied yet."


def test_lists_are_rich_tables_on_a_terminal_and_plain_columns_piped() -> None:
    rows = [("https://www.linkedin.com/in/ada", "asked us to stop")]
    console, buf = terminal()
    render.print_table(console, ("PROFILE URL", "REASON"), rows, title="do-not-contact list")
    assert "┃ PROFILE URL" in buf.getvalue() and "│ https://www.linkedin.com/in/ada" in (
        buf.getvalue())
    piped = io.StringIO()
    render.print_table(Console(file=piped), ("PROFILE URL", "REASON"), rows, title="dnc")
    assert piped.getvalue().splitlines() == [
        "dnc", "PROFILE URL                       REASON",
        "https://www.linkedin.com/in/ada   asked us to stop"]


def test_dnc_list_and_workflow_status_go_through_the_table(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dnc list` and the workflow list were hand-aligned text: on a terminal they are rich
    tables like the funnel."""
    assert invoke(capsys, "dnc", "add", "https://www.linkedin.com/in/ada", "--reason",
                  "asked us to stop")[0] == 0
    console, buf = terminal()
    monkeypatch.setattr(render, "console", lambda **_: console)
    assert invoke(capsys, "dnc", "list")[0] == 0
    assert "┃ PROFILE URL" in buf.getvalue() and "asked us to stop" in buf.getvalue()
    from engine.views.status import WorkflowStatus

    render.render_workflow_status(
        [WorkflowStatus("wf", "linkedapi", "completed", "wf-1", "2026-01-05T08:00:00", None, 3,
                        3)], console)
    assert "┃ WORKFLOW" in buf.getvalue() and "│ wf " in buf.getvalue()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(capsys: pytest.CaptureFixture[str], shell: str) -> None:
    code, out, _ = invoke(capsys, "completion", shell)
    assert code == 0 and "_SEQRUN_COMPLETE" in out and f"{shell}_complete" in out


def test_completion_answers_through_the_entry_point(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_SEQRUN_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "seqrun lea")
    monkeypatch.setenv("COMP_CWORD", "1")
    with pytest.raises(SystemExit) as done:
        invoke(capsys, "lea")
    assert done.value.code == 0
    assert "plain,leads" in capsys.readouterr().out


def test_why_puts_a_call_without_key_before_the_move_it_caused() -> None:
    """An ALREADY_CONNECTED answer routed without the call's key was listed after the next
    step's call (by time alone, at the same second)."""
    from engine.views.why import WhyEntry, _interleave

    at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    moved = WhyEntry(at, "event", "s", "r", "transition", "connect", "intro", "ALREADY_CONNECTED")
    left = WhyEntry(at, "event", "s", "r", "transition", "intro", "breather", "ok",
                    detail={"key": "1:intro:0"})
    calls = {
        "1:intro:0": WhyEntry(at, "action", "s", "r", "send_message", "intro", None, "attempt 0",
                              "done", "ok"),
        "1:connect:0": WhyEntry(at, "action", "s", "r", "connect", "connect", None, "attempt 0",
                                "failed", "ALREADY_CONNECTED"),
    }
    order = [(e.kind, e.from_state) for e in _interleave([moved, left], calls)]
    assert order == [("connect", "connect"), ("transition", "connect"),
                     ("send_message", "intro"), ("transition", "intro")]


def test_status_shows_a_rollout_until_migrated(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new revision without `migrate` leaves the leads in flight on the old one: status
    says so; with `migrate` (sequences/migrate-demo-v2.yaml.next) they move and it does not."""
    for name in ("migrate-demo.yaml", "migrate-demo-v2.yaml.next", "leads.csv"):
        shutil.copy(ROOT / "sequences" / name, cli_dir / name)
    v2 = (cli_dir / "migrate-demo-v2.yaml.next").read_text(encoding="utf-8")
    without = "\n".join(line for line in v2.splitlines()
                        if not line.startswith(("  migrate:", "    accepted: wait-accept")))
    (cli_dir / "v2-without-migrate.yaml").write_text(without + "\n", encoding="utf-8")
    sandbox = ("--sandbox", "--virtual-clock")
    assert invoke(capsys, "apply", "migrate-demo.yaml", *sandbox, "--auto-approve")[0] == 0
    assert invoke(capsys, "run", *sandbox, "--until", "+1d")[0] == 0
    (seq,) = run_json(capsys, "status")["sequences"]
    old, waiting = seq["revision"], seq["total"]
    assert not seq["rollout"]
    assert invoke(capsys, "apply", "v2-without-migrate.yaml", *sandbox, "--auto-approve",
                  "--no-run")[0] == 0
    (seq,) = run_json(capsys, "status")["sequences"]
    assert seq["rollout"] and seq["in_flight_revisions"] == {old: waiting}
    _, out, _ = invoke(capsys, "status")
    assert f"[rollout: leads in flight {waiting} on {old}]" in out
    assert invoke(capsys, "apply", "migrate-demo-v2.yaml.next", *sandbox, "--auto-approve",
                  "--no-run")[0] == 0
    (seq,) = run_json(capsys, "status")["sequences"]
    assert not seq["rollout"] and seq["in_flight_revisions"] == {seq["revision"]: waiting}
