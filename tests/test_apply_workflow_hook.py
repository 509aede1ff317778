"""`result_handling: hook`: no receiver exists yet, so apply, status and validate say so."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from engine.cli import main

HOOK_WORKFLOW = """\
apiVersion: seqrun/v1
kind: Workflow
metadata:
  name: hooked
spec:
  provider: linkedapi
  api: account
  result_handling: hook
  webhook: https://hooks.example.com/seqrun/linkedapi
  steps:
    action: st.checkConnectionStatus
    with:
      personUrl: https://www.linkedin.com/in/ada-lovelace-0001
"""


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    path = tmp_path / "hooked.yaml"
    path.write_text(HOOK_WORKFLOW, encoding="utf-8")
    return path


def test_apply_says_the_result_arrives_at_the_webhook_and_status_shows_running(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["apply", str(manifest), "--sandbox", "--virtual-clock", "--auto-approve"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Workflow hooked: running" in out
    assert "the result will arrive at the webhook" in out
    assert "stays `running` in `seqrun status`" in out
    assert main(["status", "-o", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (wf,) = [w for w in status["workflows"] if w["name"] == "hooked"]
    assert wf["state"] == "running"


def test_validate_warns_that_hook_needs_a_receiver(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(manifest)]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "hooked.yaml:8:3: $.spec.result_handling: warning: " in text
    assert (
        "result_handling: hook needs a receiver for the webhook; seqrun status shows it "
        "running until then" in text
    )
    assert main(["validate", "--strict", str(manifest)]) == 1
