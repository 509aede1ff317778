from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from engine.errors import ConfigError, ProviderError
from engine.providers import REGISTRY
from engine.providers.base import Lead
from engine.providers.edges.actions import EdgesProvider
from engine.providers.edges.runs import get_run
from engine.providers.edges.schedules import create_schedule, get_schedule, list_active_schedules

ME = "1001"
LEAD = Lead("https://www.linkedin.com/in/ana", {"enrollment_id": 7})
SECRET = "sk-edges-very-secret"


def provider(handler: Callable[[httpx.Request], httpx.Response]) -> EdgesProvider:
    client = httpx.AsyncClient(
        base_url="https://edges.test/v1/",
        headers={"X-API-Key": SECRET},
        transport=httpx.MockTransport(handler),
    )
    factory = REGISTRY["edges"].factory
    assert factory is not None
    p = factory(client)
    assert isinstance(p, EdgesProvider)
    return p


def error(status: int, label: str, **extra: Any) -> httpx.Response:
    body = {"error_label": label, "error_scope": "input", "error_ref": "ERR-1",
            "message": f"{label} happened", "status_code": status, **extra}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("action", "params", "slug", "parameters"),
    [
        ("visit_profile", {}, "linkedin-visit-profile", None),
        ("connect", {"note": "Hi Ana"}, "linkedin-connect-profile", {"message": "Hi Ana"}),
        ("send_message", {"text": "Hello"}, "linkedin-message-profile", {"message": "Hello"}),
        ("send_inmail", {"text": "Hey", "subject": "S"}, "linkedin-inmail-profile",
         {"message": "Hey", "subject": "S"}),
        ("withdraw_invitation", {}, "linkedin-withdraw-invitation", None),
    ],
)
async def test_actions_map_to_live_runs(
    action: str, params: dict[str, str], slug: str, parameters: dict[str, str] | None
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"linkedin_profile_id": 5})

    result = await provider(handler).perform("id-1", action, LEAD, params)
    assert result.data == {"linkedin_profile_id": 5}
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == f"/v1/actions/{slug}/run/live"
    assert request.headers["X-API-Key"] == SECRET
    body = json.loads(request.content)
    expected: dict[str, Any] = {
        "input": {"linkedin_profile_url": LEAD.profile_url, "custom_data": {"enrollment_id": 7}},
        "identity_ids": ["id-1"],
    }
    if parameters:
        expected["parameters"] = parameters
    assert body == expected


@pytest.mark.parametrize(
    ("response", "label"),
    [
        (error(429, "LIMIT_REACHED", params={"postponed_until": "2026-01-06T08:00:00Z"}),
         "LIMIT_REACHED"),
        (error(424, "NOT_CONNECTED"), "NOT_CONNECTED"),
        (error(424, "ALREADY_CONNECTED"), "ALREADY_CONNECTED"),
        (error(424, "INVITATION_PENDING"), "INVITATION_PENDING"),
        (error(424, "PROFILE_NOT_ACCESSIBLE"), "PROFILE_NOT_ACCESSIBLE"),
        (error(424, "STATUS_404"), "PROFILE_NOT_ACCESSIBLE"),
        (error(424, "AUTH_EXPIRED"), "AUTH_EXPIRED"),
        (error(401, "AUTH_EXPIRED"), "AUTH_EXPIRED"),
        (error(400, "INVALID_INPUT"), "INVALID_INPUT"),
        (error(400, "BAD_INPUT"), "INVALID_INPUT"),
        (error(429, "STATUS_429"), "STATUS_429"),
        (error(424, "LK_ERROR"), "SERVER_ERROR"),
        (httpx.Response(502, text="bad gateway"), "SERVER_ERROR"),
        (error(503, "SOMETHING_NEW"), "SERVER_ERROR"),
        (httpx.Response(429, text="slow down"), "STATUS_429"),
        (error(424, "WHO_KNOWS"), "INVALID_INPUT"),
    ],
)
async def test_error_labels(response: httpx.Response, label: str) -> None:
    with pytest.raises(ProviderError) as info:
        await provider(lambda r: response).perform("id-1", "send_message", LEAD, {"text": "x"})
    assert info.value.label == label
    assert info.value.status == response.status_code


async def test_limit_reached_carries_postponed_until_and_retry_after() -> None:
    resp = error(429, "LIMIT_REACHED", params={"postponed_until": "2026-01-06T08:00:00Z"})
    resp.headers["Retry-After"] = "120"
    with pytest.raises(ProviderError) as info:
        await provider(lambda r: resp).perform("id-1", "connect", LEAD, {})
    assert info.value.params["postponed_until"] == "2026-01-06T08:00:00Z"
    assert info.value.retry_after == 120.0


async def test_unknown_label_is_kept_in_params() -> None:
    with pytest.raises(ProviderError) as info:
        await provider(lambda r: error(424, "LK_MISSING_DATA")).perform("i", "visit_profile",
                                                                        LEAD, {})
    assert info.value.params["provider_label"] == "LK_MISSING_DATA"


async def test_timeout_and_transport_errors() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderError) as info:
        await provider(timeout).perform("i", "visit_profile", LEAD, {})
    assert info.value.label == "TIMEOUT"
    with pytest.raises(ProviderError) as info:
        await provider(refused).perform("i", "visit_profile", LEAD, {})
    assert info.value.label == "SERVER_ERROR"


async def test_401_is_a_config_error_without_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        await provider(lambda r: httpx.Response(401, json={"message": f"bad key {SECRET}"})
                       ).perform("i", "visit_profile", LEAD, {})
    assert "EDGES_API_KEY" in str(info.value)
    assert SECRET not in str(info.value)


async def test_me_is_cached() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"linkedin_profile_id": 1001, "first_name": "Me"})

    p = provider(handler)
    assert await p.me("id-1") == "1001"
    assert await p.me("id-1") == "1001"
    assert calls == ["/v1/actions/linkedin-me/run/live"]


def conv(handle: str, pid: int, last_from: int, at: str) -> dict[str, Any]:
    return {
        "linkedin_thread_id": f"t-{handle}",
        "participants": [
            {"linkedin_profile_id": int(ME), "linkedin_profile_url": "https://www.linkedin.com/in/me"},
            {"linkedin_profile_id": pid,
             "linkedin_profile_url": f"https://www.linkedin.com/in/{handle}/"},
        ],
        "last_message": {"linkedin_profile_id": last_from, "content": "hello"},
        "last_activity_at": at,
    }


async def test_sync_conversations_follows_pagination() -> None:
    pages = {
        None: ([conv("ana", 1, 1, "2026-01-05T09:00:00Z")],
               "https://edges.test/v1/actions/linkedin-extract-conversations/run/live?cursor=p2"),
        "p2": ([conv("bob", 2, int(ME), "2026-01-04T09:00:00+00:00")], None),
    }
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("linkedin-me/run/live"):
            return httpx.Response(200, json={"linkedin_profile_id": int(ME)})
        cursor = request.url.params.get("cursor")
        seen.append(cursor)
        assert json.loads(request.content)["identity_ids"] == ["id-1"]
        items, nxt = pages[cursor]
        headers = {"X-Pagination-Next": nxt} if nxt else {}
        return httpx.Response(200, json=items, headers=headers)

    summaries = await provider(handler).sync_conversations("id-1")
    assert seen == [None, "p2"]
    assert [(s.profile_url, s.last_sender_is_us) for s in summaries] == [
        ("https://www.linkedin.com/in/ana", False),
        ("https://www.linkedin.com/in/bob", True),
    ]
    assert summaries[0].last_activity_at.isoformat() == "2026-01-05T09:00:00+00:00"
    assert summaries[1].our_texts == ("hello",)


async def test_relationship_and_check_connection() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "extract-connections" in path:
            if request.url.params.get("cursor") == "2":
                return httpx.Response(200, json=[{"linkedin_profile_url":
                                                  "https://www.linkedin.com/in/Ana"}])
            return httpx.Response(200, json=[{"linkedin_profile_handle": "zed"}],
                                  headers={"X-Pagination-Next": "?cursor=2"})
        if "extract-sent-invitations" in path:
            return httpx.Response(200, json=[{"linkedin_profile_url":
                                              "https://www.linkedin.com/in/bob"}])
        raise AssertionError(path)

    p = provider(handler)
    assert (await p.relationship("i", LEAD)).status == "connected"
    assert (await p.relationship("i", Lead("https://www.linkedin.com/in/zed"))).status == (
        "connected")
    assert (await p.relationship("i", Lead("https://www.linkedin.com/in/bob"))).status == "pending"
    result = await p.perform("i", "check_connection", Lead("https://www.linkedin.com/in/cy"), {})
    assert result.status == "not_connected"


async def test_relationship_without_sent_invitations_endpoint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "extract-connections" in request.url.path:
            return httpx.Response(200, json=[])
        return httpx.Response(404, json={"error_label": "BAD_INPUT", "message": "no such action"})

    assert (await provider(handler).relationship("i", LEAD)).status == "none"


@pytest.mark.parametrize(
    ("accounts", "healthy"),
    [
        ([{"type": "linkedin", "status": "CONNECTED"}], True),
        ([{"type": "linkedin", "status": "AUTH_EXPIRED"}], False),
        ([], True),
    ],
)
async def test_identity_healthy(accounts: list[dict[str, str]], healthy: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/identities"
        return httpx.Response(200, json=[{"uid": "other", "accounts": []},
                                         {"uid": "id-1", "accounts": accounts}])

    assert await provider(handler).identity_healthy("id-1") is healthy


async def test_unknown_identity_is_not_healthy() -> None:
    assert not await provider(lambda r: httpx.Response(200, json=[])).identity_healthy("x")


async def test_connections_refresh_reads_only_the_newest_pages() -> None:
    conns = [
        {"linkedin_profile_url": f"https://www.linkedin.com/in/p{i}",
         "connected_at": f"2026-01-{20 - i:02d}T00:00:00Z"}
        for i in range(6)
    ]  # newest first
    calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        calls.append(cursor)
        start = int(cursor or 0)
        page = conns[start : start + 3]
        nxt = {"X-Pagination-Next": f"?cursor={start + 3}"} if start + 3 < len(conns) else {}
        return httpx.Response(200, json=page, headers=nxt)

    p = provider(handler)
    assert len(await p.connections("i")) == 6 and calls == [None, "3"]
    calls.clear()
    assert len(await p.connections("i")) == 6 and calls == [None]  # nothing new: one call
    conns.insert(0, {"linkedin_profile_url": "https://www.linkedin.com/in/new",
                     "connected_at": "2026-01-21T00:00:00Z"})
    calls.clear()
    found = await p.connections("i")
    assert "https://www.linkedin.com/in/new" in found and calls == [None]
    assert (await p.relationship("i", Lead("https://www.linkedin.com/in/new"))).status == (
        "connected")


async def test_connect_answered_connected_is_already_connected() -> None:
    p = provider(lambda r: httpx.Response(200, json={"connected": True, "pending": False}))
    with pytest.raises(ProviderError) as info:
        await p.perform("i", "connect", LEAD, {"note": "Hi"})
    assert info.value.label == "ALREADY_CONNECTED"
    ok = provider(lambda r: httpx.Response(200, json={"connected": False, "pending": True}))
    assert (await ok.perform("i", "connect", LEAD, {})).data["pending"] is True


SCHEDULE_CONFIG = {"action": "linkedin-extract-messages", "identity_ids": ["id-1"],
                   "cron": "0 9 * * *", "timezone": "UTC"}


async def test_a_401_is_the_same_config_error_from_an_action_and_a_schedule_call() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": f"bad key {SECRET}"})

    with pytest.raises(ConfigError) as from_action:
        await provider(refused).perform("id-1", "visit_profile", LEAD, {})
    client = provider(refused).client
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: get_schedule(client, "sch-1"),
        lambda: list_active_schedules(client, "linkedin-extract-messages"),
        lambda: create_schedule(client, SCHEDULE_CONFIG),
        lambda: get_run(client, "run-1"),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as from_schedules:
            await call()
        assert str(from_schedules.value) == str(from_action.value)
        assert SECRET not in str(from_schedules.value)


async def test_schedule_calls_map_labels_and_an_http_date_retry_after() -> None:
    resp = error(429, "STATUS_429")
    resp.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past: retry now
    with pytest.raises(ProviderError) as info:
        await create_schedule(provider(lambda r: resp).client, SCHEDULE_CONFIG)
    assert info.value.label == "STATUS_429" and info.value.status == 429
    assert info.value.retry_after == 0.0
    assert str(info.value.message).startswith(
        "POST /actions/linkedin-extract-messages/run/schedule: ")
