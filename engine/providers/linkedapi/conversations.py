"""LinkedAPI conversations: ``POST /conversations/poll``, syncing the ones LinkedAPI has not
synced yet, and remembering the persons whose conversations can never be synced.

Example::

    poller = ConversationPoller(WorkflowClient(client))
    conversations = await poller.poll("acct-alice", ["https://www.linkedin.com/in/x"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.errors import ProviderError
from engine.providers.linkedapi.client import WorkflowClient

_UNSYNCABLE = frozenset({"personNotFound", "selfProfileNotAllowed"})


class ConversationPoller:
    """Polls conversations per identity; keeps, per identity, the persons acted on, the
    conversations known synced and the persons that cannot be synced."""

    def __init__(self, workflows: WorkflowClient) -> None:
        self.workflows = workflows
        self.persons: dict[str, set[str]] = {}  # identity -> persons we acted on
        self.synced: dict[str, set[str]] = {}  # identity -> conversations known synced
        self.unpollable: dict[str, set[str]] = {}  # identity -> persons that cannot sync

    def watch(self, identity: str, person_urls: Sequence[str]) -> None:
        """Add persons whose conversations the identity's sync should poll."""
        self.persons.setdefault(identity, set()).update(person_urls)

    def mark_synced(self, identity: str, person_url: str) -> None:
        """A conversation LinkedAPI now has (we just sent a message in it)."""
        self.synced.setdefault(identity, set()).add(person_url)

    async def poll(
        self, identity: str | None, person_urls: Sequence[str], since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """``POST /conversations/poll`` for these persons. When LinkedAPI answers
        ``conversationsNotSynced`` the unsynced ones are synced (one array workflow of
        ``st.syncConversation``) and the poll is retried; persons that cannot be synced (not
        found) are left out from then on."""
        skip = self.unpollable.setdefault(identity or "", set())
        urls = [url for url in person_urls if url not in skip]
        if not urls:
            return []
        try:
            result = await self._poll(identity, urls, since)
        except ProviderError as exc:
            if exc.params.get("type") != "conversationsNotSynced":
                raise
            await self._sync(identity, urls)
            urls = [url for url in urls if url not in skip]
            if not urls:
                return []
            result = await self._poll(identity, urls, since)
        if isinstance(result, Mapping):  # tolerate {conversations: [...]}
            result = result.get("conversations", [])
        return [dict(item) for item in result or [] if isinstance(item, Mapping)]

    async def _poll(self, identity: str | None, urls: Sequence[str], since: datetime | None) -> Any:
        body = [
            {"personUrl": url, "type": "st", **({"since": since.isoformat()} if since else {})}
            for url in urls
        ]
        # /conversations/poll is the only documented poll, for both API generations
        return await self.workflows.request("POST", "/conversations/poll", identity, json=body)

    async def _sync(self, identity: str | None, person_urls: Sequence[str]) -> None:
        synced = self.synced.setdefault(identity or "", set())
        skip = self.unpollable.setdefault(identity or "", set())
        todo = [url for url in person_urls if url not in synced] or list(person_urls)
        body = [{"actionType": "st.syncConversation", "personUrl": url} for url in todo]
        completion = await self.workflows.execute(body, identity)
        for url, item in zip(todo, completion or [], strict=False):
            if not isinstance(item, Mapping):
                continue
            if item.get("success"):
                synced.add(url)
            elif (item.get("error") or {}).get("type") in _UNSYNCABLE:
                skip.add(url)
