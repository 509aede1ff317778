"""ConnectSafely adapter over ``/linkedin`` (Bearer auth set by the client factory).

=====================  =====================================================================
canonical action       ConnectSafely call
=====================  =====================================================================
connect                ``POST /connect {accountId, profileId, customMessage}``
send_message           ``POST /message {accountId, recipientProfileId, message}``
send_inmail            ``POST /message {..., messageType: "inmail", subject}``
follow                 ``POST /follow {accountId, profileId}``
check_connection       ``GET /relationship/{accountId}/{profileId}`` (no outreach)
=====================  =====================================================================

The identity is the ConnectSafely ``accountId``; the profile id is the lead's public handle
(or Sales Navigator id). Replies: ``POST /conversations/sync`` then ``GET /conversations``
(paged with ``limit``/``offset``/``hasMore``), whose ``lastMessage.fromMe`` says who wrote
last. Errors: ``{success: false, error, code}`` (or just ``{error}``) become canonical labels
by ``code``, then by HTTP status; 401 -> ConfigError naming ``CONNECTSAFELY_API_KEY``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from engine import vocab
from engine.clock import Clock
from engine.errors import ConfigError, ProviderError
from engine.model import PeopleSearch
from engine.providers.base import (
    ActionResult,
    ConversationSummary,
    IdentityInfo,
    Lead,
    ProviderSpec,
    Relationship,
    SentMessage,
    register,
)
from engine.providers.convsync import ConversationSync
from engine.providers.http import json_answer, json_or_none, not_sent, parse_retry_after
from engine.urls import normalize_profile_url, profile_handle

log = logging.getLogger(__name__)

CODES: dict[str, str] = {
    "already_connected": vocab.ALREADY_CONNECTED,
    "invitation_pending": vocab.INVITATION_PENDING,
    "not_connected": vocab.NOT_CONNECTED,
    "not_pending": vocab.NOT_PENDING,
    "validation_error": vocab.INVALID_INPUT,
    "note_too_long": vocab.NOTE_TOO_LONG,
    "inmail_not_allowed": vocab.MESSAGING_NOT_ALLOWED,
    "messaging_not_allowed": vocab.MESSAGING_NOT_ALLOWED,
    "profile_not_found": vocab.PROFILE_NOT_ACCESSIBLE,
    "limit_reached": vocab.LIMIT_REACHED,
    "account_session_expired": vocab.AUTH_EXPIRED,
    "account_not_found": vocab.AUTH_EXPIRED,  # the identity is unusable: pause, do not fail leads
    "rate_limited": vocab.STATUS_429,
    "server_error": vocab.SERVER_ERROR,
    "timeout": vocab.TIMEOUT,
}
_PAGE = 100
_MAX_PAGES = 500


def map_error(response: httpx.Response, now: datetime | None = None) -> ProviderError | ConfigError:
    """The exception for a non-2xx ConnectSafely response."""
    status = response.status_code
    body = json_or_none(response)
    body = body if isinstance(body, dict) else {}
    message = str(body.get("error") or body.get("message") or response.reason_phrase or "")
    code = str(body.get("code") or "")
    if status == 401:
        return ConfigError(
            "connectsafely: the API key was refused (HTTP 401); check CONNECTSAFELY_API_KEY"
        )
    label = CODES.get(code)
    lowered = message.lower()
    if label is None:
        if status == 504:
            label = vocab.TIMEOUT
        elif status >= 500:
            label = vocab.SERVER_ERROR
        elif status == 429:
            action = response.headers.get("X-RateLimit-Action", "")
            label = vocab.LIMIT_REACHED if action or "limit" in lowered else vocab.STATUS_429
        elif status == 403:
            label = vocab.AUTH_EXPIRED
        elif status == 404:
            label = vocab.PROFILE_NOT_ACCESSIBLE
        elif "already connected" in lowered:
            label = vocab.ALREADY_CONNECTED
        elif "pending" in lowered:
            label = vocab.INVITATION_PENDING
        else:
            label = vocab.INVALID_INPUT
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    params: dict[str, Any] = {}
    if code:
        params["provider_code"] = code
    if label == vocab.LIMIT_REACHED:
        until = body.get("retryAt") or body.get("postponed_until")
        if not until and retry_after is not None:
            until = ((now or datetime.now(UTC)) + timedelta(seconds=retry_after)).isoformat()
        if until:
            params["postponed_until"] = str(until)
    return ProviderError(label, message[:500], status=status, params=params,
                         retry_after=retry_after)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ConnectSafelyProvider:
    """The ConnectSafely API, bound to one ``httpx.AsyncClient`` (base URL ends in /linkedin)."""

    spec: ProviderSpec

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._conv_sync = ConversationSync()
        self._sync_reports: dict[str, dict[str, Any]] = {}

    async def _call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            response = await self.client.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise ProviderError(vocab.TIMEOUT, f"{path}: no answer in time") from exc
        except httpx.ConnectError as exc:
            raise not_sent(path, exc) from exc
        except httpx.TransportError as exc:
            raise ProviderError(vocab.SERVER_ERROR, f"{path}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise map_error(response)
        return json_answer(response, path, "connectsafely")

    @staticmethod
    def _profile_id(lead: Lead) -> str:
        return profile_handle(lead.profile_url)

    async def me(self, identity: str) -> str:
        # ConnectSafely marks our own messages (`fromMe`); the account id is our identity.
        return identity

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        pid = self._profile_id(lead)
        if action == "connect":
            body: dict[str, Any] = {"accountId": identity, "profileId": pid}
            note = params.get("note") or params.get("message")
            if note:
                body["customMessage"] = str(note)
            data = await self._call("POST", "connect", json=body)
        elif action in ("send_message", "send_inmail"):
            text = params.get("text") or params.get("message")
            if not text:
                raise ProviderError(vocab.INVALID_INPUT, f"{action} needs a text")
            body = {"accountId": identity, "recipientProfileId": pid, "message": str(text)}
            if action == "send_inmail":
                body["messageType"] = "inmail"
                if params.get("subject"):
                    body["subject"] = str(params["subject"])
            data = await self._call("POST", "message", json=body)
        elif action == "follow":
            data = await self._call("POST", "follow",
                                    json={"accountId": identity, "profileId": pid})
        elif action == "check_connection":
            rel = await self.relationship(identity, lead)
            status = {"connected": "connected", "pending": "pending"}.get(rel.status)
            return ActionResult({"relationship": rel.status}, status=status or "not_connected")
        else:
            raise ProviderError(vocab.INVALID_INPUT, f"connectsafely cannot perform {action!r}")
        return ActionResult(data if isinstance(data, dict) else {"result": data})

    async def _sync(self, identity: str, force: bool) -> dict[str, Any]:
        data = await self._call("POST", "conversations/sync",
                                json={"accountId": identity, "force": force})
        return data if isinstance(data, dict) else {}

    async def sync_conversations(
        self, identity: str, *, full: bool = False, force: bool | None = None
    ) -> list[ConversationSummary]:
        """Every conversation of the account. ``GET /conversations`` lists the newest activity
        first, so after the first sweep paging stops at conversations no newer than the
        previous sync's high-water mark (see :mod:`engine.providers.convsync`).

        ``force`` goes to ``POST /conversations/sync`` (seed 002: "force sync even if recently
        synced"); None keeps the runner's default, a forced sync, so each tick reads the
        replies of the last minute (a sequence's ``spec.sync.force: false`` lets the
        provider skip a sync it made recently)."""
        forced = True if force is None else force
        synced = await self._sync(identity, force=forced)
        if synced.get("success") is False:
            raise ProviderError(vocab.AUTH_EXPIRED, str(synced.get("error") or "sync failed"))
        self._sync_reports[identity] = await self._report(identity, synced, forced)
        sweep = self._conv_sync.begin(identity, full=full)
        offset = 0
        for _ in range(_MAX_PAGES):
            data = await self._call(
                "GET", "conversations",
                params={"accountId": identity, "limit": _PAGE, "offset": offset},
            )
            data = data if isinstance(data, dict) else {}
            page = data.get("conversations") or []
            for conv in page:
                raw = conv.get("lastActivityAt") if isinstance(conv, dict) else None
                sweep.add(self._summary(conv), _parse_time(raw))
            if not data.get("hasMore") or not page or sweep.done:
                break
            offset += len(page)
        return sweep.finish()

    async def _report(self, identity: str, synced: Mapping[str, Any],
                      forced: bool) -> dict[str, Any]:
        """The account's last sync as the sync status reports it (time, status and counts,
        which describe the last sync that ran: a recent one unforced is skipped), else the
        counts of the sync's own answer. The status's path is not in the docs (not read), so
        an error reading it leaves time and status out instead of failing the sync."""
        report: dict[str, Any] = {
            "force": forced,
            "conversations_processed": _count(synced.get("conversationsProcessed")),
            "messages_processed": _count(synced.get("messagesProcessed")),
            "duration_ms": _count(synced.get("durationMs")),
            "last_sync_at": None,
            "sync_status": None,
        }
        try:
            data = await self._call("GET", "conversations/sync/status",
                                    params={"accountId": identity})
        except ProviderError as exc:
            log.info("connectsafely: sync status of %s not read: %s", identity, exc.label)
            return report
        if isinstance(data, dict):
            at = _parse_time(data.get("lastSyncAt"))
            report["last_sync_at"] = at.isoformat() if at else None
            report["sync_status"] = str(data["status"]) if data.get("status") else None
            for key, name in (("conversations_processed", "conversationsProcessed"),
                              ("messages_processed", "messagesProcessed"),
                              ("duration_ms", "durationMs")):
                if _count(data.get(name)) is not None:
                    report[key] = data[name]
        return report

    def sync_report(self, identity: str) -> dict[str, Any] | None:
        """What the last :meth:`sync_conversations` of ``identity`` reported (JSON-ready), for
        ``seqrun status``; None before any."""
        return self._sync_reports.get(identity)

    @staticmethod
    def _summary(conv: Any) -> ConversationSummary | None:
        if not isinstance(conv, dict):
            return None
        url = conv.get("participantProfileUrl")
        if not url and conv.get("participantProfileId"):
            url = f"https://www.linkedin.com/in/{conv['participantProfileId']}"
        try:
            profile_url = normalize_profile_url(str(url or ""))
        except ValueError:
            return None
        raw_last = conv.get("lastMessage")
        last: dict[str, Any] = raw_last if isinstance(raw_last, dict) else {}
        from_me = bool(last.get("fromMe"))
        when = (_parse_time(conv.get("lastActivityAt")) or _parse_time(last.get("sentAt"))
                or datetime.fromtimestamp(0, UTC))
        first = conv.get("firstMessageFromMe")
        text = last.get("text")
        return ConversationSummary(
            profile_url=profile_url,
            last_sender_is_us=from_me,
            last_activity_at=when,
            first_sender_is_us=None if first is None else bool(first),
            our_texts=(str(text),) if from_me and text else (),
            thread=str(conv.get("conversationId") or "") or None,
        )

    async def our_messages(
        self, identity: str, conversation: ConversationSummary, since: datetime
    ) -> list[SentMessage]:
        """``GET /conversations/{id}/messages``: the thread, as of the account's last sync."""
        if not conversation.thread:
            return []
        cid = quote(conversation.thread, safe="")
        data = await self._call(
            "GET", f"conversations/{cid}/messages", params={"accountId": identity}
        )
        messages = data.get("messages") if isinstance(data, dict) else None
        found: list[SentMessage] = []
        for m in messages if isinstance(messages, list) else []:
            at = _parse_time(m.get("sentAt")) if isinstance(m, dict) else None
            if at is not None and at >= since and m.get("fromMe"):
                found.append(SentMessage(str(m.get("text") or ""), at))
        return found

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        pid = quote(self._profile_id(lead), safe="")
        data = await self._call("GET", f"relationship/{quote(identity, safe='')}/{pid}")
        data = data if isinstance(data, dict) else {}
        if data.get("connected") or data.get("connectionDegree") in ("1st", 1, "1"):
            return Relationship("connected")
        if data.get("invitationPending") or data.get("pending"):
            return Relationship("pending")
        return Relationship("none")

    async def identity_healthy(self, identity: str) -> bool:
        return await self.identity_status(identity) == "active"

    async def identity_status(self, identity: str) -> str:
        try:
            synced = await self._sync(identity, force=False)
        except ProviderError as exc:
            if exc.params.get("provider_code") == "account_not_found":
                return "unknown"
            if exc.label == vocab.AUTH_EXPIRED:
                return "auth_expired"
            raise
        return "active" if synced.get("success") is not False else "auth_expired"

    async def search_people(self, identity: str, search: PeopleSearch) -> list[dict[str, str]]:
        """No people search in this API (``search_filters`` is empty: lint stops it first)."""
        raise ProviderError(vocab.INVALID_INPUT, "connectsafely has no people search")

    async def identities(self) -> list[IdentityInfo]:
        """The accounts of ``GET /conversations/sync/status``; health by a sync that is not
        forced (what :meth:`identity_healthy` does). ConnectSafely reports no limits here."""
        data = await self._call("GET", "conversations/sync/status")
        accounts = data.get("accounts") if isinstance(data, dict) else None
        out = []
        for account in accounts or []:
            uid = account.get("accountId") if isinstance(account, dict) else None
            if not uid:
                continue
            healthy = await self.identity_healthy(str(uid))
            out.append(IdentityInfo(id=str(uid), provider="connectsafely",
                                    health="active" if healthy else "auth_expired"))
        return out


def make_provider(
    client: httpx.AsyncClient, *, clock: Clock | None = None
) -> ConnectSafelyProvider:
    """The registry's factory (ConnectSafely answers each call at once: no clock to wait on)."""
    return ConnectSafelyProvider(client)


SPEC = register(
    ProviderSpec(
        name="connectsafely",
        capabilities=frozenset({"connect", "send_message", "send_inmail", "check_connection",
                                "follow"}),
        # 100 messages a day; 90 connection requests a calendar week: 12 in any 24 h keeps
        # every week under it (7 x 12 = 84), where 13 could reach 91 and a 24 h hold
        smart_limits={"connect": 12, "send_message": 100},
        max_note=300,
        max_message=8000,
        credentials=("CONNECTSAFELY_API_KEY",),
        default_base_url="https://api.connectsafely.ai/linkedin",
        factory=make_provider,
    )
)
ConnectSafelyProvider.spec = SPEC
