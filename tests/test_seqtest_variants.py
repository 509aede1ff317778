"""`seqrun test` and A/B variants: a case expects the variant a lead got at a step and can
force one (a `variant:<step>` lead column, honoured by the runner's own assignment)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.manifest.loader import load
from engine.model import ActionStep, Sequence
from engine.variants import assign, chosen
from tests.conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
AB = ROOT / "sequences" / "ab-test.yaml"
URL = "https://www.linkedin.com/in/seqrun-variant-lead"


def _intro() -> ActionStep:
    (seq,) = [m for m in load([AB]) if isinstance(m, Sequence)]
    step = seq.step("intro")
    assert isinstance(step, ActionStep)
    return step


def _hashed() -> str:
    """The intro variant the lead at URL gets by its hash."""
    return assign(_intro(), "ab-test", URL).name


def _other() -> str:
    return next(v.name for v in _intro().variants if v.name != _hashed())


def _manifest(tmp_path: Path, case_extra: str, sent: str) -> Path:
    path = tmp_path / "ab.test.yaml"
    path.write_text(f"""\
apiVersion: seqrun/v1
kind: SequenceTest
metadata:
  name: ab-variants
spec:
  sequence: {AB}
  cases:
    - name: accepts
      lead: {{first_name: Ada, company_name: Engines, linkedin_profile_url: "{URL}"}}
      world: {{accepts_after: 1d}}
{case_extra}      expect:
        terminal: completed
        sent:
          - {{step: connect}}
          - {sent}
""", encoding="utf-8")
    return path


def test_the_variant_a_lead_got_is_expected_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, "", f"{{step: intro, variant: {_hashed()}}}")
    code, out, _ = invoke(capsys, "test", str(manifest), "-o", "json")
    (case,) = json.loads(out)["cases"]
    assert code == 0 and case["passed"]
    assert [s.get("variant") for s in case["sent"]][1] == _hashed()


def test_a_wrong_variant_fails_with_the_variant_in_the_diff_and_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, "", f"{{step: intro, variant: {_other()}}}")
    junit = tmp_path / "junit.xml"
    code, out, _ = invoke(capsys, "test", str(manifest), "--junit", str(junit))
    assert code == 1 and "sent: other notes or messages were sent" in out
    assert f"-intro [variant {_other()}]: ……" in out
    assert f"+intro [variant {_hashed()}]: Thanks for connecting, Ada!" in out
    assert "+connect: Hi Ada" in out  # no variant expected at connect: none shown
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and f"+intro [variant {_hashed()}]" in (failure.text or "")


def test_a_forced_variant_is_sent_and_recorded_whatever_the_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forced = _other()
    manifest = _manifest(tmp_path, f"      variant: {{intro: {forced}}}\n",
                         f"{{step: intro, variant: {forced}}}")
    code, out, _ = invoke(capsys, "test", str(manifest), "-o", "json")
    (case,) = json.loads(out)["cases"]
    assert code == 0 and case["passed"]
    intro = case["sent"][1]
    assert intro["variant"] == forced  # read back from action_log.variant
    variant = _intro().variant(forced)
    assert variant is not None
    text = variant.with_["text"]
    words = "Worth a 15-minute call" if forced == "short-call" else "how Engines handles"
    assert words in text and words in intro["text"]


def test_validate_names_an_unknown_variant_of_a_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, "      variant: {intro: shortcall}\n",
                         "{step: connect, variant: fancy}")
    code, _, err = invoke(capsys, "validate", str(manifest))
    assert code == 1
    assert ("$.spec.cases[0].variant.intro: step 'intro' of ab-test has no variant "
            "'shortcall' (its variants are question, short-call)") in err
    assert "$.spec.cases[0].expect.sent[1].variant: step 'connect' of ab-test has no " \
           "variant 'fancy'" in err


def test_the_lead_column_yields_to_a_promoted_winner_and_is_ignored_when_unknown() -> None:
    def pick(promoted: str | None, column: str) -> str | None:
        variant = chosen(_intro(), "ab-test", URL, promoted, {"variant:intro": column})
        return None if variant is None else variant.name

    assert pick(None, _other()) == _other()
    assert pick(_hashed(), _other()) == _hashed()  # a losing variant is never sent again
    assert pick(None, "nope") == _hashed()
