"""An unreachable provider (issue 18): `apply` and `run --once` exited 0 with every lead
postponed and not a word. Now each names the provider and its host (never the URL or a
key) on stderr, and a command that could do nothing exits 3 (ProviderUnreachable)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from engine.cli.render_run import warn_unreachable
from engine.errors import ProviderUnreachable
from tests.conftest import ROOT, invoke

EXAMPLES = ROOT / "sequences"

KEY = "sk-live-unreachable-0123456789"
SEQUENCE = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: outage
spec:
  provider: {provider}
  identities: [{identity}]
  leads:
    csv: leads.csv
  steps:
    - id: invite
      action: connect
      next: completed
"""
PROVIDERS = {  # provider -> (an identity, its credential variables)
    "edges": ("ident-alice", ("EDGES_API_KEY",)),
    "linkedapi": ("acct-alice", ("LINKEDAPI_TOKEN", "LINKEDAPI_IDENTIFICATION_TOKEN")),
    "connectsafely": ("acc_12345", ("CONNECTSAFELY_API_KEY",)),
}


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_campaign(cli_dir: Path, provider: str, monkeypatch: pytest.MonkeyPatch,
                   base_url: str) -> str:
    identity, variables = PROVIDERS[provider]
    (cli_dir / "leads.csv").write_text(
        "linkedin_profile_url,full_name,first_name\n"
        "https://www.linkedin.com/in/ana-outage,Ana Lee,Ana\n"
        "https://www.linkedin.com/in/bo-outage,Bo Chen,Bo\n")
    path = cli_dir / "outage.yaml"
    path.write_text(SEQUENCE.format(provider=provider, identity=identity))
    for var in variables:
        monkeypatch.setenv(var, KEY)
    monkeypatch.setenv(f"SEQRUN_{provider.upper()}_BASE_URL", base_url)
    return str(path)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_apply_with_a_refused_connection_warns_and_exits_3(
    cli_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    provider: str,
) -> None:
    # a user:password in the URL is a secret too: only the host may be shown
    url = f"http://user:{KEY}@127.0.0.1:{closed_port()}/api"
    manifest = write_campaign(cli_dir, provider, monkeypatch, url)
    code, out, err = invoke(capsys, "apply", manifest, "--auto-approve")
    assert code == 3, err
    assert f"warning: provider {provider} unreachable at 127.0.0.1" in err
    assert f"SEQRUN_{provider.upper()}_BASE_URL" in err
    assert "nothing could be done" in err and "Traceback" not in err
    assert KEY not in out + err
    # applied all the same: the leads are enrolled and wait for the provider
    code, out, _ = invoke(capsys, "status", "-o", "json")
    assert code == 0
    (seq,) = json.loads(out)["sequences"]
    assert {f["state"]: f["count"] for f in seq["funnel"]}["invite"] == 2


def test_run_once_with_a_refused_connection_exits_3(
    cli_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_campaign(cli_dir, "edges", monkeypatch,
                              f"http://127.0.0.1:{closed_port()}/v1")
    assert invoke(capsys, "apply", manifest, "--auto-approve", "--no-run")[0] == 0
    code, out, err = invoke(capsys, "run", "--once", "-o", "json")
    assert code == 3, err
    assert "warning: provider edges unreachable at 127.0.0.1" in err
    run = json.loads(out)["run"]
    assert run["actions"] == 0 and run["postponed"] == 2
    assert run["unreachable"]["edges"]["host"] == "127.0.0.1"


def test_run_once_when_the_host_does_not_resolve_exits_3(
    cli_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "edges.example.invalid":  # the resolver's answer for a name that is not
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    manifest = write_campaign(cli_dir, "edges", monkeypatch, "https://edges.example.invalid/v1")
    assert invoke(capsys, "apply", manifest, "--auto-approve", "--no-run")[0] == 0
    code, _, err = invoke(capsys, "run", "--once")
    assert code == 3, err
    assert "warning: provider edges unreachable at edges.example.invalid" in err
    assert "Name or service not known" in err and KEY not in err


def test_a_provider_unreachable_while_others_worked_is_a_warning_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = {"linkedapi": {"host": "api.linkedapi.io", "error": "ConnectError: refused"}}
    warn_unreachable(seen, done=True)  # something was done: no failure
    assert "warning: provider linkedapi unreachable at api.linkedapi.io" in capsys.readouterr().err
    with pytest.raises(ProviderUnreachable) as caught:
        warn_unreachable(seen, done=False, postponed=2)
    assert caught.value.exit_code == 3


def test_a_workflow_apply_with_linkedapi_unreachable_fails_at_once(
    cli_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The submission never left: nothing to reconcile. It waited `reconcile_after` (1 h of
    real time) before each of 5 submissions; here that wait is 0 and one submission is made."""
    for var in PROVIDERS["linkedapi"][1]:
        monkeypatch.setenv(var, KEY)
    monkeypatch.setenv("SEQRUN_LINKEDAPI_BASE_URL", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("SEQRUN_LINKEDAPI_RECONCILE_AFTER", "0")
    code, out, err = invoke(capsys, "apply", str(EXAMPLES / "linkedapi-workflow.yaml"),
                            "--auto-approve", "-o", "json")
    assert code == 3, err
    assert "warning: provider linkedapi unreachable at 127.0.0.1" in err and KEY not in out + err
    (workflow,) = json.loads(out)["workflows"].values()
    assert workflow["state"] == "failed" and workflow["submissions"] == 1


def test_a_schedule_plan_with_edges_unreachable_names_the_host_and_exits_3(
    cli_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGES_API_KEY", KEY)
    monkeypatch.setenv("SEQRUN_EDGES_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    code, out, err = invoke(capsys, "plan", str(EXAMPLES / "edges-incremental-schedule.yaml"))
    assert code == 3, err
    assert "provider edges unreachable at 127.0.0.1" in err and "Traceback" not in err
    assert KEY not in out + err
