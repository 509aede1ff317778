"""Scenario files (schemas/scenario.json), `seqrun sandbox serve`, and the sandbox over loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

from engine.cli import main
from engine.clock import RealClock, VirtualClock
from engine.errors import ManifestError
from engine.sandbox import Sandbox
from engine.sandbox.scenario import load_scenario, scenario_schema, world_from_scenario
from engine.sandbox.server import make_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sandbox" / "example-world.yaml"


def test_schema_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(scenario_schema())


def test_example_world_builds() -> None:
    world = world_from_scenario(EXAMPLE, VirtualClock())
    assert world.seed == 42
    assert world.identity("ident-bob").kind == "sales_navigator"
    assert world.identity("sbx-idt-acct-alice").uid == "acct-alice"
    assert len(world.profiles) == 204
    assert world.relationship("ident-alice",
                              "https://www.linkedin.com/in/already-connected-lead") == "connected"
    assert world.config.faults.rate_429 == 0.01


def test_scenario_sets_limits_faults_and_csv(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text("linkedin_profile_url,full_name\n"
                                        "https://www.linkedin.com/in/zed,Zed Zulu\n")
    (tmp_path / "w.yaml").write_text(
        "seed: 3\nstart: 2026-02-02T10:00:00Z\n"
        "identities: [{uid: a, auth_expire_at: '2026-02-02T11:00:00Z', limits: {visit: 2},\n"
        "              weekly_limits: {connect: 90}}]\n"
        "profiles: {csv: leads.csv}\nlimits: {classic: {connect: 5}}\n"
        "behaviour: {accept_delay_hours: [1, 2]}\n")
    sb = Sandbox.open(None, scenario=tmp_path / "w.yaml")
    w = sb.world
    assert w.now.isoformat() == "2026-02-02T10:00:00+00:00"
    assert w.limit_for("a", "visit") == 2 and w.limit_for("a", "connect") == 5
    assert w.limit_for("a", "message") == 50
    assert w.identity("a").weekly_limits == {"connect": 90}
    assert w.config.accept_delay_hours == (1.0, 2.0)
    assert w.profiles["https://www.linkedin.com/in/zed"].full_name == "Zed Zulu"
    assert isinstance(w.clock, VirtualClock)
    w.clock.advance(7200)
    assert not w.auth_ok("a")


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("seed: x\n", "$.seed", "expected an integer, got a string ('x')"),
        ("behaviour: {reply_probability: 2}\n", "$.behaviour.reply_probability",
         "above the maximum"),
        ("faults: {rate_42: 0.1}\n", "$.faults.rate_42", "did you mean 'rate_429'?"),
        ("profiles: {items: [{url: 'https://example.com/x'}]}\n", "$.profiles.items[0].url",
         "does not match"),
        ("identities: [{name: x}]\n", "$.identities[0]", "missing required key 'uid'"),
        ("limits: {classic: {dance: 3}}\n", "$.limits.classic.dance", "is not allowed"),
        ("identities: [{uid: a, weekly_limits: {connect: -1}}]\n",
         "$.identities[0].weekly_limits.connect", "below the minimum"),
    ],
)
def test_invalid_scenarios(tmp_path: Path, text: str, path: str, fragment: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_scenario(f)
    (problem,) = info.value.problems
    assert problem.path == path and fragment in problem.message, problem


def test_scenario_errors_point_at_the_offending_key(tmp_path: Path) -> None:
    f = tmp_path / "world.yaml"
    f.write_text(
        "seed: 7\n"
        "behaviour:\n"
        "  accept_probability: 0.5\n"
        "  reply_probability: 3\n"
        "faults:\n"
        "  rate_42: 0.1\n"
    )
    with pytest.raises(ManifestError) as info:
        load_scenario(f)
    assert [str(p) for p in info.value.problems] == [
        f"{f}:4:3: $.behaviour.reply_probability: 3 is above the maximum of 1",
        f"{f}:6:3: $.faults.rate_42: unknown key 'rate_42' (did you mean 'rate_429'?)",
    ]


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("seed: 1\nprofiles: {count: [1\n", "3:1",
         "YAML syntax error: did not find expected ',' or ']'"),
        ("seed: 1\nseed: 2\n", "2:1", "duplicate key 'seed' (first defined on line 1)"),
    ],
)
def test_invalid_yaml_is_positioned_not_dumped(
    tmp_path: Path, text: str, where: str, fragment: str
) -> None:
    f = tmp_path / "world.yaml"
    f.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_scenario(f)
    (problem,) = info.value.problems
    assert str(problem).startswith(f"{f}:{where}: $")
    assert fragment in problem.message
    assert "problem_mark" not in str(problem) and "in \"<unicode string>\"" not in str(problem)


def test_empty_scenario_is_the_default_world(tmp_path: Path) -> None:
    f = tmp_path / "world.yaml"
    f.write_text("# nothing yet\n")
    assert load_scenario(f) == {}


def test_serve_refuses_an_invalid_scenario(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("seed: [1]\n")
    assert main(["sandbox", "serve", "--port", "0", "--scenario", str(f)]) == 1
    assert "$.seed" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_loopback_server(tmp_path: Path) -> None:
    sandbox = Sandbox.open(tmp_path, clock=RealClock(), profiles=3)
    port = _free_port()
    server = make_server(sandbox, "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as c:
            r = c.post("/v1/actions/linkedin-me/run/live", headers={"X-API-Key": "sbx-edges-key"},
                       json={"input": {}, "identity_ids": ["ident-alice"]})
            assert r.status_code == 200 and r.json()["linkedin_profile_id"]
            r = c.get("/linkedin/relationship/someone",
                      headers={"Authorization": "Bearer sbx-connectsafely-key"})
            assert r.json()["success"] is True
            assert c.get("/_sandbox/clock").json()["virtual"] is False
            assert c.get("/health").json() == {"status": "ok"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
    saved = json.loads((tmp_path / "sandbox.json").read_text())
    assert saved["clock"] is None  # a real clock is not persisted
