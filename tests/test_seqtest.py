"""`seqrun test`: SequenceTest manifests run on a scripted embedded sandbox."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.clock import VirtualClock
from engine.manifest.loader import load
from engine.model import Sequence, SequenceTest
from engine.sandbox.scenario import world_from_scenario
from engine.sandbox.world import WorldError
from tests.conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ROOT / "sequences"
DEMO = SEQUENCES / "demo-campaign.yaml"

WRONG = f"""\
apiVersion: seqrun/v1
kind: SequenceTest
metadata:
  name: demo-wrong
spec:
  sequence: {DEMO}
  cases:
    - name: never accepts
      lead: {{first_name: Alan, company_name: Bletchley}}
      expect:
        path: [visit, connect, accepted, intro]
        terminal: completed
"""


def test_the_shipped_suite_covers_every_example_sequence_and_passes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifests = load([SEQUENCES])
    tested = {m.sequence.resolve() for m in manifests if isinstance(m, SequenceTest)}
    examples = {Path(m.source.file).resolve() for m in manifests if isinstance(m, Sequence)}
    assert examples and examples <= tested
    code, out, _ = invoke(capsys, "test", str(SEQUENCES), "-o", "json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["failed"] == 0
    assert report["passed"] == len(report["cases"]) >= 2 * len(examples)
    terminals = {c["terminal"] for c in report["cases"]}
    assert {"completed", "replied", "removed", "failed"} <= terminals


def test_a_wrong_expectation_fails_with_the_path_diff_and_valid_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "wrong.yaml"
    manifest.write_text(WRONG, encoding="utf-8")
    junit = tmp_path / "junit.xml"
    code, out, _ = invoke(capsys, "test", str(manifest), "--junit", str(junit))
    assert code == 1
    assert "FAIL demo-wrong > never accepts" in out and f"{manifest}:8" in out
    assert "-intro" in out and "+withdraw" in out  # expected vs actual, as a diff
    assert "expected terminal 'completed', got 'removed'" in out
    assert "0 passed, 1 failed" in out
    root = ET.parse(junit).getroot()  # well-formed XML, or this raises
    assert root.tag == "testsuites" and root.get("tests") == "1" and root.get("failures") == "1"
    (suite,) = root.findall("testsuite")
    (case,) = suite.findall("testcase")
    assert suite.get("name") == "demo-wrong" and case.get("name") == "never accepts"
    failure = case.find("failure")
    assert failure is not None and "+withdraw" in (failure.text or "")


def test_json_reports_the_path_terminal_and_texts_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "wrong.yaml"
    manifest.write_text(WRONG, encoding="utf-8")
    code, out, _ = invoke(capsys, "test", str(manifest), "-o", "json")
    (case,) = json.loads(out)["cases"]
    assert code == 1 and not case["passed"]
    assert case["path"] == ["visit", "connect", "accepted", "withdraw"]
    assert case["terminal"] == "removed"
    (sent,) = case["sent"]
    assert sent["step"] == "connect"
    assert sent["text"] == "Hi Alan, I follow what Bletchley is building and would like to connect."
    assert {f["check"] for f in case["failures"]} == {"path", "terminal"}


def test_a_wrong_text_fails_the_sent_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "text.yaml"
    manifest.write_text(WRONG.replace(
        "        path: [visit, connect, accepted, intro]\n        terminal: completed\n",
        "        sent: [{step: connect, contains: 'Hi Grace'}]\n"), encoding="utf-8")
    code, out, _ = invoke(capsys, "test", str(manifest))
    assert code == 1 and "sent: other notes or messages were sent" in out
    assert "+connect: Hi Alan" in out


def test_validate_checks_test_manifests_and_the_steps_they_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(WRONG.replace("[visit, connect, accepted, intro]",
                                      "[visit, conect]"), encoding="utf-8")
    code, _, err = invoke(capsys, "validate", str(manifest))
    assert code == 1
    assert f"{manifest}:11:" in err and "demo-campaign has no step 'conect'" in err
    assert "did you mean 'connect'?" in err
    missing = tmp_path / "missing.yaml"
    missing.write_text(WRONG.replace(str(DEMO), "nowhere.yaml"), encoding="utf-8")
    code, _, err = invoke(capsys, "validate", str(missing))
    assert code == 1 and "$.spec.sequence: no Sequence manifest at 'nowhere.yaml'" in err
    code, _, _ = invoke(capsys, "validate", str(SEQUENCES))
    assert code == 0


def test_the_schema_is_shipped_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "schema", "SequenceTest")
    assert code == 0 and json.loads(out)["title"] == "seqrun SequenceTest"


def test_paths_without_a_test_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "test", str(DEMO))
    assert code == 2 and "no SequenceTest manifest" in err


def test_a_scripted_error_fails_the_next_calls_of_its_op_only() -> None:
    world = world_from_scenario({
        "profiles": {"items": [{"url": "https://www.linkedin.com/in/ada"}]},
        "faults": {"scripted": {"connect": ["PROFILE_NOT_ACCESSIBLE"]}},
    }, VirtualClock())
    world.visit("ident-alice", "https://www.linkedin.com/in/ada")  # visits are not scripted
    with pytest.raises(WorldError) as failed:
        world.connect("ident-alice", "https://www.linkedin.com/in/ada")
    assert failed.value.label == "PROFILE_NOT_ACCESSIBLE"
    world.connect("ident-alice", "https://www.linkedin.com/in/ada")  # consumed: it goes
    assert [d.kind for d in world.delivered] == ["visit", "invite"]


def test_every_lead_of_a_counted_case_must_meet_the_expectations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "count.yaml"
    manifest.write_text(WRONG.replace("    - name: never accepts\n",
                                      "    - name: never accepts\n      count: 3\n"),
                        encoding="utf-8")
    code, out, _ = invoke(capsys, "test", str(manifest), "-o", "json")
    (case,) = json.loads(out)["cases"]
    assert code == 1 and case["terminal"] == "removed"
    messages = [f["message"] for f in case["failures"]]
    assert "3 of 3 leads, the first https://www.linkedin.com/in/seqrun-test-never-accepts: " \
           "expected terminal 'completed', got 'removed'" in messages
