"""The control API (``/_sandbox``: faults, webhooks, the clock, ground truth) is for loopback
clients only, or for whoever holds SEQRUN_SANDBOX_TOKEN; a served sandbox bound beyond
loopback refuses to start without that token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.errors import ConfigError
from engine.sandbox import Sandbox
from engine.sandbox.guard import TOKEN_ENV, is_loopback
from engine.sandbox.server import serve_forever
from tests.conftest import invoke

TOKEN = "sbx-control-token-for-tests"
FAULTS = {"rate_429": 0.5}


def _client(box: Sandbox, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(box.app, client=(host, 40000)),
                             base_url="http://sandbox")


async def test_without_a_token_only_loopback_clients_reach_the_control_api() -> None:
    box = Sandbox.open(None, profiles=0)
    async with _client(box, "203.0.113.9") as remote:
        assert (await remote.get("/_sandbox/world")).status_code == 403
        assert (await remote.post("/_sandbox/faults", json=FAULTS)).status_code == 403
        assert (await remote.post("/_sandbox/integration-webhooks",
                                  json={"url": "http://evil.example/hook"})).status_code == 403
        # the provider APIs keep their own credentials
        r = await remote.post("/v1/actions/linkedin-me/run/live", headers=box.headers("edges"),
                              json={"input": {}, "identity_ids": ["ident-alice"]})
        assert r.status_code == 200
    assert box.world.config.faults.rate_429 == 0
    for host in ("127.0.0.1", "::1"):
        async with _client(box, host) as local:
            assert (await local.get("/_sandbox/world")).status_code == 200


@pytest.mark.parametrize("host", ["203.0.113.9", "127.0.0.1"])
async def test_with_a_token_every_control_request_carries_it(host: str) -> None:
    box = Sandbox.open(None, profiles=0, control_token=TOKEN)
    async with _client(box, host) as c:
        assert (await c.post("/_sandbox/faults", json=FAULTS)).status_code == 401
        wrong = await c.post("/_sandbox/faults", json=FAULTS,
                             headers={"X-Sandbox-Token": TOKEN + "x"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text
        assert box.world.config.faults.rate_429 == 0
        ok = await c.post("/_sandbox/faults", json=FAULTS, headers={"X-Sandbox-Token": TOKEN})
        assert ok.status_code == 200
        bearer = await c.get("/_sandbox/faults", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
    assert box.world.config.faults.rate_429 == 0.5


def test_serving_beyond_loopback_needs_the_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=TOKEN_ENV):
        serve_forever("0.0.0.0", 0, state_dir=tmp_path)
    assert not (tmp_path / "sandbox.db").exists()  # refused before anything was opened


def test_the_cli_names_the_variable_without_a_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    code, _, err = invoke(capsys, "sandbox", "serve", "--host", "0.0.0.0", "--port", "0")
    assert code != 0 and TOKEN_ENV in err and "Traceback" not in err


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com", None]))
