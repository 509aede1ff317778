"""The LinkedAPI adapter (the Provider protocol), both API generations.

Canonical actions become one-node workflows (:func:`~engine.providers.linkedapi.workflows.
action_body`) submitted and followed by the :class:`~engine.providers.linkedapi.client.
WorkflowClient`; conversations are polled by the
:class:`~engine.providers.linkedapi.conversations.ConversationPoller`. LinkedAPI's action and
request error types become canonical labels in :mod:`engine.providers.linkedapi.errors`,
raised as ProviderError; credentials are read as :mod:`engine.providers.linkedapi.credentials`
says.

Example::

    client = httpx.AsyncClient(base_url="https://api.linkedapi.io", headers=headers_from_env())
    provider = LinkedApiProvider(client)
    result = await provider.perform("acct-alice", "check_connection", Lead(url), {})
    result.status  # "connected" | "pending" | "not_connected"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from engine.clock import Clock
from engine.errors import ProviderError
from engine.model import PeopleSearch
from engine.providers.base import (
    ActionResult,
    ConversationSummary,
    IdentityInfo,
    Lead,
    Provider,
    ProviderSpec,
    Relationship,
    SentMessage,
    register,
)
from engine.providers.convsync import OVERLAP
from engine.providers.linkedapi import identities as linkedapi_identities
from engine.providers.linkedapi import search as linkedapi_search
from engine.providers.linkedapi.client import WorkflowClient, WorkflowState
from engine.providers.linkedapi.conversations import ConversationPoller
from engine.providers.linkedapi.credentials import headers_from_env, identity_env_var
from engine.providers.linkedapi.errors import action_error, request_error
from engine.providers.linkedapi.workflows import action_body
from engine.vocab import AUTH_EXPIRED, SERVER_ERROR

# Names other modules import from here, defined in the modules of this package.
__all__ = [
    "SPEC",
    "LinkedApiProvider",
    "WorkflowState",
    "action_error",
    "headers_from_env",
    "identity_env_var",
    "make_provider",
    "request_error",
]

_CONNECTION_STATUS: Mapping[str, str] = {
    "connected": "connected",
    "pending": "pending",
    "notConnected": "not_connected",
}


class LinkedApiProvider:
    """The LinkedAPI adapter: a workflow client and a conversation poller behind the
    Provider protocol (see the module docstring)."""

    action_body = staticmethod(action_body)

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api: str = "current",
        result_handling: str = "reslink",
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
        poll_interval: float = 2.0,
        max_poll_interval: float = 60.0,
        poll_timeout: float = 24 * 3600.0,
        max_poll_errors: int = 15,
        connections_ttl: float = 3600.0,
    ) -> None:
        self.spec: ProviderSpec = SPEC
        self.workflows = WorkflowClient(
            client,
            api=api,
            result_handling=result_handling,
            clock=clock,
            env=env,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            poll_timeout=poll_timeout,
            max_poll_errors=max_poll_errors,
        )
        self.conversations = ConversationPoller(self.workflows)
        self.connections_ttl = connections_ttl
        self._connections_cache: dict[str, tuple[datetime, set[str]]] = {}

    # -- workflows and conversations, as the workflow client and the poller do them --------

    async def submit(
        self,
        body: Any,
        identity: str | None = None,
        *,
        result_handling: str | None = None,
        webhook: str | None = None,
    ) -> WorkflowState:
        """Submit one workflow body; one POST, never retried here (a retry may duplicate)."""
        return await self.workflows.submit(
            body, identity, result_handling=result_handling, webhook=webhook
        )

    async def fetch(self, workflow_id: str, identity: str | None = None) -> WorkflowState:
        """The current state of a submitted workflow (by workflowId or result hash)."""
        return await self.workflows.fetch(workflow_id, identity)

    async def cancel(self, workflow_id: str, identity: str | None = None) -> bool:
        """Cancel a workflow (current API only); True when LinkedAPI says it was cancelled."""
        return await self.workflows.cancel(workflow_id, identity)

    async def wait(
        self, workflow_id: str, identity: str | None = None, *, deadline: float | None = None
    ) -> WorkflowState:
        """Poll until the workflow is completed or failed (see WorkflowClient.wait)."""
        return await self.workflows.wait(workflow_id, identity, deadline=deadline)

    async def execute(self, body: Any, identity: str | None = None) -> Any:
        """Submit ``body`` and follow it to completion; the completion, or ProviderError."""
        return await self.workflows.execute(body, identity)

    async def poll_conversations(
        self, identity: str | None, person_urls: Sequence[str], since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """``POST /conversations/poll`` for these persons (see ConversationPoller.poll)."""
        return await self.conversations.poll(identity, person_urls, since)

    def watch(self, identity: str, person_urls: Sequence[str]) -> None:
        """Add persons whose conversations :meth:`sync_conversations` should poll."""
        self.conversations.watch(identity, person_urls)

    # -- the Provider protocol ------------------------------------------------------------------

    async def me(self, identity: str) -> str:
        result = await self.workflows.request("GET", "/account", identity)
        if not isinstance(result, Mapping) or not result.get("url"):
            raise ProviderError(SERVER_ERROR, "GET /account gave no url")
        return str(result["url"])

    async def identity_healthy(self, identity: str) -> bool:
        return await self.identity_status(identity) == "active"

    async def identity_status(self, identity: str) -> str:
        # the identity is a local name for an identification token: LinkedAPI knows the
        # token's account only, so a refused token is all it can say ("auth_expired")
        try:
            await self.workflows.request("GET", "/account", identity)
        except ProviderError as exc:
            if exc.label == AUTH_EXPIRED:
                return "auth_expired"
            raise
        return "active"

    async def identities(self) -> list[IdentityInfo]:
        return await linkedapi_identities.identity_infos(self.workflows)

    async def search_people(self, identity: str, search: PeopleSearch) -> list[dict[str, str]]:
        completion = await self.workflows.execute(linkedapi_search.search_body(search), identity)
        item = completion[0] if isinstance(completion, list) and completion else completion
        if not isinstance(item, Mapping):
            raise ProviderError(SERVER_ERROR, "st.searchPeople completed without a result")
        if not item.get("success"):
            raise action_error(item.get("error"))
        data = item.get("data")
        people = data if isinstance(data, list) else []
        rows = [linkedapi_search.lead_row(p) for p in people if isinstance(p, Mapping)]
        return [r for r in rows if r is not None][: search.max]

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        body = action_body(action, lead.profile_url, params)
        completion = await self.workflows.execute(body, identity)
        item = completion[0] if isinstance(completion, list) and completion else completion
        if not isinstance(item, Mapping):
            raise ProviderError(SERVER_ERROR, "workflow completed without a result")
        if not item.get("success"):
            raise action_error(item.get("error"))
        if action in ("connect", "send_message"):
            self.conversations.watch(identity, [lead.profile_url])
        data = item.get("data")
        data = dict(data) if isinstance(data, Mapping) else ({"items": data} if data else {})
        status = None
        if action == "check_connection":
            status = _CONNECTION_STATUS.get(str(data.get("connectionStatus")), "not_connected")
        if action == "send_message":
            self.conversations.mark_synced(identity, lead.profile_url)
        return ActionResult(data=data, status=status)

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        result = await self.perform(identity, "check_connection", lead, {})
        return Relationship(
            status={"not_connected": "none"}.get(result.status or "", result.status or "none")
        )

    async def _connections(self, identity: str) -> set[str]:
        """The identity's connections (public URLs), retrieved at most once per
        ``connections_ttl`` seconds: retrieving them is a whole workflow."""
        now = self.workflows.clock.now()
        cached = self._connections_cache.get(identity)
        if cached is not None and (now - cached[0]).total_seconds() < self.connections_ttl:
            return cached[1]
        completion = await self.workflows.execute(
            {"actionType": "st.retrieveConnections"}, identity
        )
        item = completion[0] if isinstance(completion, list) and completion else completion
        urls: set[str] = set()
        if isinstance(item, Mapping) and item.get("success") and isinstance(item.get("data"), list):
            urls = {str(p["publicUrl"]) for p in item["data"] if p.get("publicUrl")}
        self._connections_cache[identity] = (now, urls)
        return urls

    async def sync_conversations(
        self, identity: str, *, force: bool | None = None
    ) -> list[ConversationSummary]:
        """Poll the conversations of every person we acted on or are connected with."""
        persons = set(self.conversations.persons.get(identity, set()))
        persons.update(await self._connections(identity))
        conversations = await self.conversations.poll(identity, sorted(persons))
        out: list[ConversationSummary] = []
        for conv in conversations:
            messages = [m for m in conv.get("messages") or [] if isinstance(m, Mapping)]
            if not messages:
                continue
            messages.sort(key=lambda m: str(m.get("time", "")))
            out.append(
                ConversationSummary(
                    profile_url=str(conv.get("personUrl")),
                    last_sender_is_us=messages[-1].get("sender") == "us",
                    last_activity_at=_parse_time(messages[-1].get("time")),
                    first_sender_is_us=messages[0].get("sender") == "us",
                    our_texts=tuple(
                        str(m.get("text", "")) for m in messages if m.get("sender") == "us"
                    ),
                )
            )
        return out

    async def our_messages(
        self, identity: str, conversation: ConversationSummary, since: datetime
    ) -> list[SentMessage]:
        """The person's conversation polled again (a poll answers whole threads). The poll
        asks from ``OVERLAP`` before ``since`` and the messages are kept from ``since`` here:
        the docs do not say whether ``since`` includes its own instant, and a message sent in
        the very instant of its intent (the virtual clock stands still) must be found."""
        polled = await self.conversations.poll(
            identity, [conversation.profile_url], since - OVERLAP)
        return [
            SentMessage(str(m.get("text", "")), at)
            for conv in polled
            for m in conv.get("messages") or []
            if isinstance(m, Mapping) and m.get("sender") == "us"
            and (at := _parse_time(m.get("time"))) >= since
        ]


def _parse_time(value: Any) -> datetime:
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def make_provider(
    client: httpx.AsyncClient,
    *,
    clock: Clock | None = None,
    api: str = "current",
    env: Mapping[str, str] | None = None,
) -> Provider:
    """The registry's factory: credentials already on the client. Pass the runtime's
    ``clock``: the adapter sleeps on it while polling, so under a virtual clock (sandbox,
    simulate) the sandbox's workflows finish; with the default real clock they would not."""
    return LinkedApiProvider(client, clock=clock, api=api, env=env)


SPEC = register(
    ProviderSpec(
        name="linkedapi",
        capabilities=frozenset(
            {"visit_profile", "connect", "send_message", "withdraw_invitation", "check_connection"}
        ),
        smart_limits={"visit_profile": 80, "connect": 10, "send_message": 50},
        search_filters=linkedapi_search.FILTERS,
        max_note=300,
        max_message=1900,
        credentials=("LINKEDAPI_TOKEN", "LINKEDAPI_IDENTIFICATION_TOKEN"),
        default_base_url="https://api.linkedapi.io",
        factory=make_provider,
    )
)
