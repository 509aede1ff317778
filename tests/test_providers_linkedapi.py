"""LinkedAPI adapter over httpx.MockTransport: every seed 003 shape and the current envelope."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.errors import ConfigError, ProviderError
from engine.providers import REGISTRY
from engine.providers.base import ConversationSummary, Lead
from engine.providers.linkedapi.actions import LinkedApiProvider
from engine.providers.linkedapi.credentials import headers_from_env, identity_env_var

URL = "https://www.linkedin.com/in/person1"
BASE = "https://api.linkedapi.io"
Handler = Callable[[httpx.Request], httpx.Response]


def make(handler: Handler, **kw: Any) -> tuple[LinkedApiProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(
        base_url=BASE,
        transport=httpx.MockTransport(record),
        headers={"linked-api-token": "main", "identification-token": "ident"},
    )
    kw.setdefault("clock", VirtualClock())
    return LinkedApiProvider(client, **kw), seen


def ok(result: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"success": True, "result": result})


def err(kind: str, status: int = 400, message: str = "nope") -> httpx.Response:
    return httpx.Response(
        status, json={"success": False, "error": {"type": kind, "message": message}}
    )


# ---- credentials -----------------------------------------------------------------------------


def test_headers_from_env_and_per_identity_token() -> None:
    env = {
        "LINKEDAPI_TOKEN": "t",
        "LINKEDAPI_IDENTIFICATION_TOKEN": "plain",
        "LINKEDAPI_IDENTIFICATION_TOKEN__ACCT_ALICE": "alice",
    }
    assert identity_env_var("acct-alice") == "LINKEDAPI_IDENTIFICATION_TOKEN__ACCT_ALICE"
    assert headers_from_env(env) == {"linked-api-token": "t", "identification-token": "plain"}
    assert headers_from_env(env, "acct-alice")["identification-token"] == "alice"
    assert headers_from_env(env, "bob")["identification-token"] == "plain"


def test_missing_credentials_name_the_variable_never_a_value() -> None:
    with pytest.raises(ConfigError, match="LINKEDAPI_TOKEN"):
        headers_from_env({"LINKEDAPI_IDENTIFICATION_TOKEN": "secret-ident"})
    with pytest.raises(ConfigError, match="LINKEDAPI_IDENTIFICATION_TOKEN") as info:
        headers_from_env({"LINKEDAPI_TOKEN": "secret-main"})
    assert "secret" not in str(info.value)


def test_registry_factory_builds_the_adapter() -> None:
    spec = REGISTRY["linkedapi"]
    assert spec.factory is not None
    provider = spec.factory(httpx.AsyncClient(base_url=BASE))
    assert provider.spec is spec


async def test_per_identity_token_is_sent_for_that_identity() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return ok({"name": "Alice", "url": "https://www.linkedin.com/in/alice"})

    env = {"LINKEDAPI_IDENTIFICATION_TOKEN__ACCT_ALICE": "alice-token"}
    provider, seen = make(handler, env=env)
    assert await provider.me("acct-alice") == "https://www.linkedin.com/in/alice"
    await provider.me("bob")
    assert seen[0].headers["identification-token"] == "alice-token"
    assert seen[1].headers["identification-token"] == "ident"
    assert seen[0].headers["linked-api-token"] == "main"


# ---- current API -----------------------------------------------------------------------------


async def test_current_api_submit_then_poll_until_completed() -> None:
    polls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/workflows":
            assert json.loads(request.content) == {
                "actionType": "st.checkConnectionStatus",
                "personUrl": URL,
            }
            return ok({"workflowId": "wf-1", "workflowStatus": "running"})
        assert request.url.path == "/workflows/wf-1"
        polls["n"] += 1
        if polls["n"] < 3:
            return ok({"workflowId": "wf-1", "workflowStatus": "running"})
        return ok(
            {
                "workflowId": "wf-1",
                "workflowStatus": "completed",
                "completion": {
                    "actionType": "st.checkConnectionStatus",
                    "success": True,
                    "data": {"connectionStatus": "pending"},
                },
            }
        )

    clock = VirtualClock()
    start = clock.now()
    provider, _ = make(handler, clock=clock)
    result = await provider.perform("a", "check_connection", Lead(URL), {})
    assert result.status == "pending"
    assert polls["n"] == 3
    # backoff: 2 s then 3 s
    assert (clock.now() - start).total_seconds() == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("alreadyConnected", "ALREADY_CONNECTED"),
        ("alreadyPending", "INVITATION_PENDING"),
        ("personNotFound", "PROFILE_NOT_ACCESSIBLE"),
        ("noteTooLong", "NOTE_TOO_LONG"),
        ("noteLimitExceeded", "LIMIT_REACHED"),
        ("messagingNotAllowed", "NOT_CONNECTED"),
        ("notPending", "NOT_PENDING"),
    ],
)
async def test_action_errors_map_to_canonical_labels(kind: str, label: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return ok({"workflowId": "wf-2", "workflowStatus": "pending"})
        return ok(
            {
                "workflowId": "wf-2",
                "workflowStatus": "completed",
                "completion": {
                    "actionType": "st.sendConnectionRequest",
                    "success": False,
                    "error": {"type": kind, "message": "x"},
                },
            }
        )

    provider, _ = make(handler)
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "connect", Lead(URL), {"note": "hi"})
    assert info.value.label == label
    assert info.value.params["type"] == kind


@pytest.mark.parametrize(
    ("response", "label"),
    [
        (err("linkedinAccountSignedOut", 403), "AUTH_EXPIRED"),
        (err("invalidLinkedApiToken", 401), "AUTH_EXPIRED"),
        (err("tooManyRequests", 429), "STATUS_429"),
        (err("invalidWorkflow", 400), "INVALID_INPUT"),
        (httpx.Response(503, text="upstream down"), "SERVER_ERROR"),
        (httpx.Response(500, json={"success": False, "error": {"type": "weird"}}), "SERVER_ERROR"),
        (httpx.Response(429, headers={"Retry-After": "7"}, text=""), "STATUS_429"),
    ],
)
async def test_request_errors_map_to_canonical_labels(response: httpx.Response, label: str) -> None:
    provider, _ = make(lambda request: response)
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "visit_profile", Lead(URL), {})
    assert info.value.label == label


async def test_retry_after_is_carried() -> None:
    provider, _ = make(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    with pytest.raises(ProviderError) as info:
        await provider.submit({"actionType": "st.openPersonPage", "personUrl": URL})
    assert info.value.retry_after == 7.0


async def test_timeout_is_translated_and_never_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.ReadTimeout("slow", request=request)

    provider, _ = make(handler)
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "connect", Lead(URL), {})
    assert info.value.label == "TIMEOUT"
    assert calls["n"] == 1


async def test_failed_workflow_reason_is_mapped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return ok({"workflowId": "wf-3", "workflowStatus": "running"})
        return ok(
            {
                "workflowId": "wf-3",
                "workflowStatus": "failed",
                "failure": {"reason": "linkedinAccountSignedOut", "message": "signed out"},
            }
        )

    provider, _ = make(handler)
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "send_message", Lead(URL), {"text": "hi"})
    assert info.value.label == "AUTH_EXPIRED"


async def test_transient_poll_errors_are_tolerated() -> None:
    n = {"get": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return ok({"workflowId": "wf-4", "workflowStatus": "running"})
        n["get"] += 1
        if n["get"] <= 2:
            return httpx.Response(502)
        return ok(
            {
                "workflowStatus": "completed",
                "completion": {
                    "actionType": "st.openPersonPage",
                    "success": True,
                    "data": {"name": "P"},
                },
            }
        )

    provider, _ = make(handler)
    result = await provider.perform("a", "visit_profile", Lead(URL), {})
    assert result.data["name"] == "P"


async def test_poll_gives_up_after_the_deadline() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return ok({"workflowId": "wf-5", "workflowStatus": "running"})

    provider, _ = make(handler, poll_timeout=60)
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "visit_profile", Lead(URL), {})
    assert info.value.label == "TIMEOUT"
    assert info.value.params["workflowId"] == "wf-5"


async def test_cancel_and_account() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            assert request.url.path == "/workflows/wf-9"
            return ok({"cancelled": True})
        return ok({"name": "Alice", "url": "https://www.linkedin.com/in/alice"})

    provider, _ = make(handler)
    assert await provider.cancel("wf-9") is True
    assert await provider.identity_healthy("a") is True


async def test_signed_out_account_is_unhealthy() -> None:
    provider, _ = make(lambda r: err("linkedinAccountSignedOut", 403))
    assert await provider.identity_healthy("a") is False


async def test_conversation_poll_syncs_once_and_detects_replies() -> None:
    state = {"synced": False}
    other = "https://www.linkedin.com/in/other"

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/conversations/poll":
            if not state["synced"]:
                return err("conversationsNotSynced", 400)
            assert [item["personUrl"] for item in json.loads(request.content)] == [other, URL]
            return ok(
                [
                    {
                        "personUrl": URL,
                        "type": "st",
                        "messages": [
                            {
                                "id": "1",
                                "sender": "us",
                                "text": "hello",
                                "time": "2026-01-05T09:00:00Z",
                            },
                            {
                                "id": "2",
                                "sender": "them",
                                "text": "hi!",
                                "time": "2026-01-05T10:00:00Z",
                            },
                        ],
                    },
                    {"personUrl": other, "type": "st", "messages": []},
                ]
            )
        if request.method == "POST" and path == "/workflows":
            body = json.loads(request.content)
            if isinstance(body, list):
                state["synced"] = True
                assert {b["actionType"] for b in body} == {"st.syncConversation"}
                return ok({"workflowId": "sync", "workflowStatus": "running"})
            return ok({"workflowId": "conns", "workflowStatus": "running"})
        if path == "/workflows/sync":
            return ok(
                {
                    "workflowStatus": "completed",
                    "completion": [
                        {"actionType": "st.syncConversation", "success": True},
                        {"actionType": "st.syncConversation", "success": True},
                    ],
                }
            )
        assert path == "/workflows/conns"
        return ok(
            {
                "workflowStatus": "completed",
                "completion": {
                    "actionType": "st.retrieveConnections",
                    "success": True,
                    "data": [{"name": "O", "publicUrl": other}],
                },
            }
        )

    provider, _ = make(handler)
    provider.watch("a", [URL])
    (conv,) = await provider.sync_conversations("a")
    assert conv.profile_url == URL
    assert conv.last_sender_is_us is False
    assert conv.first_sender_is_us is True
    assert conv.our_texts == ("hello",)


# ---- account API (seed 003) -------------------------------------------------------------------


async def test_account_long_completed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/account/workflow"
        assert request.headers["result-handling"] == "long"
        return httpx.Response(
            200,
            json={
                "status": "completed",
                "completion": {
                    "actionType": "st.checkConnectionStatus",
                    "success": True,
                    "data": {"connectionStatus": "connected"},
                },
            },
        )

    provider, seen = make(handler, api="account", result_handling="long")
    result = await provider.perform("a", "check_connection", Lead(URL), {})
    assert result.status == "connected"
    assert len(seen) == 1


async def test_account_reslink_running_then_polled() -> None:
    n = {"get": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.headers["result-handling"] == "reslink"
            return httpx.Response(
                200,
                json={
                    "status": "running",
                    "progress": {
                        "message": "Your workflow is running. Please check the resultLink periodically.",  # noqa: E501
                        "resultLink": "https://elsewhere.example/account/results/abc123",
                    },
                },
            )
        # the hash is asked of OUR base URL, never of the host in the body
        assert request.url.host == "api.linkedapi.io"
        assert request.url.path == "/account/results/abc123"
        n["get"] += 1
        if n["get"] == 1:
            return httpx.Response(200, json={"status": "running", "progress": {"message": "..."}})
        return httpx.Response(
            200,
            json={
                "status": "completed",
                "completion": {"actionType": "st.sendConnectionRequest", "success": True},
            },
        )

    provider, _ = make(handler, api="account")
    await provider.perform("a", "connect", Lead(URL), {"note": "hi"})
    assert n["get"] == 2


async def test_account_hook_running_with_webhook() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["result-handling"] == "hook"
        assert request.headers["webhook"] == "https://hooks.example/x"
        return httpx.Response(
            200,
            json={
                "status": "running",
                "progress": {
                    "message": "Your workflow is running. The result will be sent to the webhook.",
                    "webhook": "https://hooks.example/x",
                },
            },
        )

    provider, _ = make(handler, api="account")
    state = await provider.submit(
        {"actionType": "st.checkConnectionStatus", "personUrl": URL},
        result_handling="hook",
        webhook="https://hooks.example/x",
    )
    assert state.status == "running"
    assert state.webhook == "https://hooks.example/x"
    assert state.workflow_id is None


async def test_account_failed_invalid_workflow() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "status": "failed",
                "error": {
                    "type": "invalidWorkflow",
                    "message": "Workflow configuration doesn't meet the constraints of one or more actions.",  # noqa: E501
                },
            },
        )

    provider, _ = make(handler, api="account")
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "visit_profile", Lead(URL), {})
    assert info.value.label == "INVALID_INPUT"
    assert info.value.params["type"] == "invalidWorkflow"


async def test_account_oldest_spelling() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "status": "error",
                "error": {"errorType": "linkedinAccountSignedOut", "message": "x"},
            },
        )

    provider, _ = make(handler, api="account", result_handling="long")
    with pytest.raises(ProviderError) as info:
        await provider.perform("a", "visit_profile", Lead(URL), {})
    assert info.value.label == "AUTH_EXPIRED"


async def test_our_messages_finds_one_sent_in_the_instant_asked_from() -> None:
    """The docs do not say whether the poll's ``since`` includes its own instant: against a
    provider that excludes it, our message sent in the very instant of its intent is still
    found (the adapter asks from a little earlier and keeps the messages from ``since``)."""
    sent = datetime(2026, 1, 5, 9, tzinfo=UTC)
    messages = [
        {"id": "0", "sender": "us", "text": "earlier", "time": "2026-01-05T08:00:00Z"},
        {"id": "1", "sender": "us", "text": "hello", "time": "2026-01-05T09:00:00Z"},
        {"id": "2", "sender": "them", "text": "hi!", "time": "2026-01-05T09:00:00Z"},
    ]

    def exclusive(request: httpx.Request) -> httpx.Response:
        (item,) = json.loads(request.content)
        since = datetime.fromisoformat(item["since"])
        kept = [m for m in messages
                if datetime.fromisoformat(m["time"].replace("Z", "+00:00")) > since]
        return ok([{"personUrl": URL, "type": "st", "messages": kept}])

    provider, _ = make(exclusive)
    summary = ConversationSummary(URL, False, sent)
    found = await provider.our_messages("a", summary, sent)
    assert [m.text for m in found] == ["hello"]


def test_unknown_api_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        LinkedApiProvider(httpx.AsyncClient(), api="v3")


async def test_our_messages_reads_the_whole_polled_thread() -> None:
    """Our message before the lead's reply, read back from the thread (reconciliation)."""
    messages = [
        {"id": "1", "sender": "us", "text": "hello", "time": "2026-01-05T09:00:00Z"},
        {"id": "2", "sender": "them", "text": "hi!", "time": "2026-01-05T10:00:00Z"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/conversations/poll"
        assert [item["personUrl"] for item in json.loads(request.content)] == [URL]
        return ok([{"personUrl": URL, "type": "st", "messages": messages}])

    provider, _ = make(handler)
    summary = ConversationSummary(URL, False, datetime(2026, 1, 5, 10, tzinfo=UTC))
    found = await provider.our_messages("a", summary, datetime(2026, 1, 5, 8, tzinfo=UTC))
    assert [m.text for m in found] == ["hello"]
    later = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert await provider.our_messages("a", summary, later) == []
