"""A small in-test Provider over the sandbox World (no HTTP), for runner tests.

It translates WorldError labels to canonical labels and draws the World's injected faults
(429 / 5xx / timeout before or after the action), like the sandbox API layer does.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from engine import vocab
from engine.errors import ProviderError
from engine.providers.base import (
    ActionResult,
    ConversationSummary,
    Lead,
    ProviderSpec,
    Relationship,
    SentMessage,
)
from engine.sandbox.world import World, WorldError

SPEC = ProviderSpec(
    name="edges",
    capabilities=frozenset(
        {"visit_profile", "connect", "send_message", "withdraw_invitation", "check_connection"}
    ),
    smart_limits={"visit_profile": 80, "connect": 25, "send_message": 50},
)
LABELS = {
    "NO_VALID_ACCOUNT_CONFIGURED": vocab.AUTH_EXPIRED,
    "SN_ACCOUNT_UPGRADE": vocab.INVALID_INPUT,
}


class Kill(BaseException):
    """Simulates the process dying (not an Exception: nothing may swallow it)."""


class WorldProvider:
    spec = SPEC

    def __init__(self, world: World, *, faults: bool = True) -> None:
        self.world = world
        self.faults = faults
        self.calls: Counter[str] = Counter()

    def _fault(self, op: str, act: Callable[[], Any] | None = None) -> None:
        if not self.faults:
            return
        plan = self.world.fault_plan("edges", op)
        if plan is None:
            return
        if plan.kind == "429":
            raise ProviderError(
                vocab.STATUS_429,
                "rate limited",
                status=429,
                retry_after=self.world.config.faults.retry_after_s,
            )
        if plan.kind == "5xx":
            raise ProviderError(vocab.SERVER_ERROR, "bad gateway", status=502)
        if plan.after and act is not None:
            with contextlib.suppress(WorldError):
                act()
        raise ProviderError(vocab.TIMEOUT, "no answer in time")

    def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        self.calls[op] += 1
        self._fault(op, fn)
        try:
            return fn()
        except WorldError as exc:
            raise ProviderError(
                LABELS.get(exc.label, exc.label), exc.message, params=exc.params
            ) from exc

    async def me(self, identity: str) -> str:
        return str(self._call("me", lambda: self.world.me(identity).profile_id))

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        w, url = self.world, lead.profile_url
        if action == "visit_profile":
            self._call(action, lambda: w.visit(identity, url))
        elif action == "connect":
            self._call(action, lambda: w.connect(identity, url, params.get("note")))
        elif action == "send_message":
            thread = self._call(action, lambda: w.message(identity, url, str(params["text"])))
            return ActionResult({"thread_id": thread.thread_id})
        elif action == "withdraw_invitation":
            self._call(action, lambda: w.withdraw(identity, url))
        elif action == "check_connection":
            rel = self._call(action, lambda: w.relationship(identity, url))
            status = {"connected": "connected", "pending": "pending"}.get(rel, "not_connected")
            return ActionResult({}, status=status)
        else:
            raise ProviderError(vocab.INVALID_INPUT, f"unsupported {action}")
        return ActionResult({})

    async def sync_conversations(self, identity: str) -> list[ConversationSummary]:
        threads = self._call("sync", lambda: self.world.conversations(identity))
        return [
            ConversationSummary(
                profile_url=t.profile_url,
                last_sender_is_us=t.last_message.from_us,
                last_activity_at=t.last_activity_at,
                first_sender_is_us=t.first_sender_is_us,
                our_texts=tuple(m.text for m in t.messages if m.from_us),
            )
            for t in threads
        ]

    async def connections(self, identity: str) -> set[str]:
        found = self._call("connections", lambda: self.world.connections(identity))
        return {p.url for p, _ in found}

    async def our_messages(
        self, identity: str, conversation: ConversationSummary, since: datetime
    ) -> list[SentMessage]:
        threads = self._call("sync", lambda: self.world.conversations(identity))
        return [
            SentMessage(m.text, m.created_at)
            for t in threads
            if t.profile_url == conversation.profile_url
            for m in t.messages
            if m.from_us and m.created_at >= since
        ]

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        url = lead.profile_url
        rel = self._call("relationship", lambda: self.world.relationship(identity, url))
        return Relationship(rel)

    async def identity_healthy(self, identity: str) -> bool:
        self.calls["healthy"] += 1
        return self.world.auth_ok(identity)

    async def identity_status(self, identity: str) -> str:
        if self.world.find_identity(identity) is None:
            return "unknown"
        return "active" if self.world.auth_ok(identity) else "auth_expired"


class KillAfter:
    """Wraps a provider and raises :class:`Kill` on the n-th call (of ``method`` only, when
    given), before or after it."""

    def __init__(
        self, inner: WorldProvider, n: int, *, after: bool, method: str | None = None
    ) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.n = n
        self.after = after
        self.method = method
        self.count = 0

    async def _wrap(self, coro_fn: Callable[[], Any], method: str = "") -> Any:
        if self.method is not None and method != self.method:
            return await coro_fn()
        self.count += 1
        if self.count == self.n and not self.after:
            raise Kill(f"killed before call {self.n}")
        value = await coro_fn()
        if self.count == self.n:
            raise Kill(f"killed after call {self.n}")
        return value

    async def me(self, identity: str) -> str:
        return await self._wrap(lambda: self.inner.me(identity))  # type: ignore[no-any-return]

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        return await self._wrap(  # type: ignore[no-any-return]
            lambda: self.inner.perform(identity, action, lead, params), "perform"
        )

    async def sync_conversations(self, identity: str) -> list[ConversationSummary]:
        return await self._wrap(lambda: self.inner.sync_conversations(identity))  # type: ignore[no-any-return]

    async def connections(self, identity: str) -> set[str]:
        return await self._wrap(lambda: self.inner.connections(identity))  # type: ignore[no-any-return]

    async def our_messages(
        self, identity: str, conversation: ConversationSummary, since: datetime
    ) -> list[SentMessage]:
        return await self._wrap(  # type: ignore[no-any-return]
            lambda: self.inner.our_messages(identity, conversation, since)
        )

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        return await self._wrap(lambda: self.inner.relationship(identity, lead))  # type: ignore[no-any-return]

    async def identity_healthy(self, identity: str) -> bool:
        return await self._wrap(lambda: self.inner.identity_healthy(identity))  # type: ignore[no-any-return]

    async def identity_status(self, identity: str) -> str:
        return await self._wrap(lambda: self.inner.identity_status(identity))  # type: ignore[no-any-return]
