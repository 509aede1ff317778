from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest

from engine.errors import ConfigError, ProviderError
from engine.providers.base import Lead
from engine.providers.clients import make_client
from engine.providers.edges.actions import EdgesProvider
from engine.providers.http import parse_retry_after

SECRET = "sk-live-0123456789abcdef"


def test_base_url_and_header_from_env() -> None:
    client = make_client(
        "edges", env={"EDGES_API_KEY": SECRET, "SEQRUN_EDGES_BASE_URL": "http://127.0.0.1:9/v1"}
    )
    assert str(client.base_url) == "http://127.0.0.1:9/v1/"
    assert client.headers["X-API-Key"] == SECRET


def test_spec_default_base_url_and_bearer() -> None:
    client = make_client("connectsafely", env={"CONNECTSAFELY_API_KEY": SECRET})
    assert str(client.base_url) == "https://api.connectsafely.ai/linkedin/"
    assert client.headers["Authorization"] == f"Bearer {SECRET}"


def test_missing_credential_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EDGES_API_KEY"):
        make_client("edges", env={})


def test_unknown_provider() -> None:
    with pytest.raises(ConfigError, match="unknown provider"):
        make_client("nope", env={})


def test_sandbox_mode_uses_the_sandbox_client() -> None:
    sentinel = httpx.AsyncClient(base_url="http://sandbox/v1")

    class FakeSandbox:
        def client(self, provider: str) -> httpx.AsyncClient:
            assert provider == "edges"
            return sentinel

    assert make_client("edges", sandbox=FakeSandbox(), env={}) is sentinel


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), (None, None), ("junk", None),
                                                ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    ("1.5", 1.5),
    ("-3", 0.0),
    ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),  # HTTP-date form
    ("Wed, 21 Oct 2015 07:30:00 +0000", 120.0),
])
def test_parse_retry_after_delta_seconds_and_http_date(value: str, seconds: float) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == seconds


async def test_secret_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echoed = {"error_label": "BAD_INPUT", "message": "bad"}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == SECRET
        if "visit" in request.url.path:
            return httpx.Response(401, json={"message": f"invalid key {SECRET}"})
        return httpx.Response(400, json=echoed)

    client = make_client(
        "edges", env={"EDGES_API_KEY": SECRET}, transport=httpx.MockTransport(handler)
    )
    adapter = EdgesProvider(client)

    messages: list[str] = []
    with pytest.raises(ConfigError) as cfg:
        await adapter.perform("i", "visit_profile", Lead("https://www.linkedin.com/in/a"), {})
    messages.append(str(cfg.value))
    with pytest.raises(ProviderError) as perr:
        await adapter.perform("i", "connect", Lead("https://www.linkedin.com/in/a"), {})
    messages.append(str(perr.value))
    messages.append(repr(perr.value))
    with pytest.raises(ConfigError) as missing:
        make_client("edges", env={"OTHER": SECRET})
    messages.append(str(missing.value))
    messages.extend(r.getMessage() for r in caplog.records)
    assert messages
    assert all(SECRET not in m for m in messages)
