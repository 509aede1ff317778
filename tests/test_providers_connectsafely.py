from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from engine.errors import ConfigError, ProviderError
from engine.providers import REGISTRY
from engine.providers.base import Lead
from engine.providers.connectsafely import ConnectSafelyProvider

LEAD = Lead("https://www.linkedin.com/in/ana")


def provider(handler: Any) -> ConnectSafelyProvider:
    client = httpx.AsyncClient(base_url="https://cs.test/linkedin/",
                               headers={"Authorization": "Bearer k"},
                               transport=httpx.MockTransport(handler))
    factory = REGISTRY["connectsafely"].factory
    assert factory is not None
    p = factory(client)
    assert isinstance(p, ConnectSafelyProvider)
    return p


async def test_bodies() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content or b"null")))
        return httpx.Response(200, json={"success": True})

    p = provider(handler)
    await p.perform("acc_1", "connect", LEAD, {"note": "Hi"})
    await p.perform("acc_1", "send_message", LEAD, {"text": "Yo"})
    await p.perform("acc_1", "send_inmail", LEAD, {"text": "Yo", "subject": "S"})
    await p.perform("acc_1", "follow", LEAD, {})
    assert seen == [
        ("/linkedin/connect", {"accountId": "acc_1", "profileId": "ana", "customMessage": "Hi"}),
        ("/linkedin/message", {"accountId": "acc_1", "recipientProfileId": "ana",
                               "message": "Yo"}),
        ("/linkedin/message", {"accountId": "acc_1", "recipientProfileId": "ana",
                               "message": "Yo", "messageType": "inmail", "subject": "S"}),
        ("/linkedin/follow", {"accountId": "acc_1", "profileId": "ana"}),
    ]


@pytest.mark.parametrize(
    ("status", "body", "headers", "label"),
    [
        (400, {"error": "Already connected", "code": "already_connected"}, {},
         "ALREADY_CONNECTED"),
        (400, {"error": "Already connected to this profile"}, {}, "ALREADY_CONNECTED"),
        (400, {"error": "bad", "code": "validation_error"}, {}, "INVALID_INPUT"),
        (404, {"error": "Profile not found"}, {}, "PROFILE_NOT_ACCESSIBLE"),
        (429, {"error": "Weekly limit reached", "code": "limit_reached",
               "retryAt": "2026-01-06T00:00:00Z"}, {"Retry-After": "3600"}, "LIMIT_REACHED"),
        (429, {"error": "Too many requests", "code": "rate_limited"}, {"Retry-After": "30"},
         "STATUS_429"),
        (403, {"error": "expired", "code": "account_session_expired"}, {}, "AUTH_EXPIRED"),
        (500, {"error": "boom"}, {}, "SERVER_ERROR"),
        (504, {"error": "Gateway timeout", "code": "timeout"}, {}, "TIMEOUT"),
    ],
)
async def test_error_mapping(
    status: int, body: dict[str, Any], headers: dict[str, str], label: str
) -> None:
    p = provider(lambda r: httpx.Response(status, json=body, headers=headers))
    with pytest.raises(ProviderError) as info:
        await p.perform("acc_1", "connect", LEAD, {})
    assert info.value.label == label and info.value.status == status
    if label == "LIMIT_REACHED":
        assert info.value.params["postponed_until"] == "2026-01-06T00:00:00Z"
        assert info.value.retry_after == 3600.0


async def test_401_and_timeout() -> None:
    with pytest.raises(ConfigError, match="CONNECTSAFELY_API_KEY"):
        await provider(lambda r: httpx.Response(401, json={"error": "no"})).perform(
            "a", "connect", LEAD, {})

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    with pytest.raises(ProviderError) as info:
        await provider(slow).perform("a", "connect", LEAD, {})
    assert info.value.label == "TIMEOUT"


async def test_conversations_paged() -> None:
    def conv(handle: str, from_me: bool) -> dict[str, Any]:
        return {"participantProfileId": handle, "lastActivityAt": "2026-01-05T10:00:00Z",
                "firstMessageFromMe": True, "lastMessage": {"fromMe": from_me, "text": "t"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/sync"):
            return httpx.Response(200, json={"success": True, "conversationsProcessed": 2})
        if request.url.path.endswith("/sync/status"):
            return httpx.Response(404, json={"error": "Not found"})
        offset = int(request.url.params["offset"])
        if offset == 0:
            return httpx.Response(200, json={"conversations": [conv("ana", True)],
                                             "hasMore": True})
        return httpx.Response(200, json={"conversations": [conv("bob", False)],
                                         "hasMore": False})

    p = provider(handler)
    out = await p.sync_conversations("acc_1")
    assert [(c.profile_url, c.last_sender_is_us) for c in out] == [
        ("https://www.linkedin.com/in/ana", True), ("https://www.linkedin.com/in/bob", False)]
    # the sync status could not be read: the sync still counts, its time and status unknown
    assert p.sync_report("acc_1") == {
        "force": True, "conversations_processed": 2, "messages_processed": None,
        "duration_ms": None, "last_sync_at": None, "sync_status": None}


async def test_expired_sync_is_auth_expired() -> None:
    p = provider(lambda r: httpx.Response(200, json={"success": False, "error": "expired"}))
    with pytest.raises(ProviderError) as info:
        await p.sync_conversations("acc_1")
    assert info.value.label == "AUTH_EXPIRED"
    assert not await p.identity_healthy("acc_1")
