"""Edges adapter (live mode): canonical actions to ``POST /actions/{slug}/run/live``.

The client (see :func:`engine.providers.clients.make_client`) carries the base URL (ending in
``/v1``) and the ``X-API-Key`` header; this module never sees the key.

Mapping:

=====================  ===============================  =========================
canonical action       Edges action                     ``parameters``
=====================  ===============================  =========================
visit_profile          linkedin-visit-profile           -
connect                linkedin-connect-profile         ``message`` (the note)
send_message           linkedin-message-profile         ``message``
send_inmail            linkedin-inmail-profile          ``message``, ``subject``
withdraw_invitation    linkedin-withdraw-invitation     -
check_connection       (no Edges action: see below)     -
=====================  ===============================  =========================

``check_connection`` is answered without any outreach call: the identity's connections
(``linkedin-extract-connections``, paginated, read until the lead is found) say
``connected``; otherwise the sent invitations (``linkedin-extract-sent-invitations``, when
the API offers it) say ``pending``; otherwise ``not_connected``. It never sends an
invitation, so it is safe to repeat (reconciliation relies on that).

Errors are mapped by :mod:`engine.providers.edges.http`, the one Edges request function
(shared with the schedule and run endpoints).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from engine import vocab
from engine.clock import Clock
from engine.errors import ProviderError
from engine.model import PeopleSearch
from engine.providers.base import (
    ActionResult,
    AsyncRun,
    ConversationSummary,
    IdentityInfo,
    Lead,
    ProviderSpec,
    Relationship,
    SentMessage,
    register,
)
from engine.providers.convsync import ConversationSync
from engine.providers.edges import identities as edges_identities
from engine.providers.edges import search as edges_search
from engine.providers.edges.http import error_from_body, list_items, request
from engine.providers.edges.runs import (
    RUN_FINISHED,
    get_run,
    run_outputs,
    run_uid,
    start_async_run,
)
from engine.providers.http import json_answer
from engine.urls import normalize_profile_url

log = logging.getLogger(__name__)

ACTION_SLUGS: dict[str, str] = {
    "visit_profile": "linkedin-visit-profile",
    "connect": "linkedin-connect-profile",
    "send_message": "linkedin-message-profile",
    "send_inmail": "linkedin-inmail-profile",
    "withdraw_invitation": "linkedin-withdraw-invitation",
}

_MAX_PAGES = 500  # a runaway cursor must not loop forever
_FULL_EVERY = 100  # incremental connection refreshes between two full sweeps


def _next_cursor(response: httpx.Response, body: Any) -> str | None:
    nxt = response.headers.get("X-Pagination-Next")
    if nxt:
        query = parse_qs(urlsplit(nxt).query)
        if query.get("cursor"):
            return str(query["cursor"][0])
        return str(nxt)  # a bare cursor
    if isinstance(body, dict):
        for key in ("next_cursor", "cursor"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return None



def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class EdgesProvider:
    """The Edges API in live mode, bound to one ``httpx.AsyncClient``.

    >>> # provider = EdgesProvider(make_client("edges"))
    >>> # await provider.perform("id-uuid", "connect", Lead(url), {"note": "Hi"})
    """

    spec: ProviderSpec

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._me: dict[str, str] = {}
        self._no_sent_invitations = False
        self._connections: dict[str, set[str]] = {}  # identity -> known connections
        self._since: dict[str, dict[str, datetime]] = {}  # identity -> url -> connected_at
        self._refreshes: dict[str, int] = {}  # incremental refreshes since the last sweep
        self._conv_sync = ConversationSync()

    # ---- transport ----------------------------------------------------------------------

    async def _post(
        self, slug: str, body: Mapping[str, Any], cursor: str | None = None
    ) -> httpx.Response:
        return await request(
            self.client,
            "POST",
            f"actions/{slug}/run/live",
            json=dict(body),
            params={"cursor": cursor} if cursor else None,
            call=slug,
        )

    async def run_live(
        self,
        slug: str,
        identity: str | None,
        input: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        """One live run; returns the decoded result JSON."""
        response = await self._post(slug, self._body(identity, input, parameters))
        return json_answer(response, slug, "edges")

    async def pages(
        self,
        slug: str,
        identity: str,
        parameters: Mapping[str, Any] | None = None,
        input: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[list[Any], None]:
        """The pages of a list action, following ``X-Pagination-Next`` / ``cursor``."""
        body = self._body(identity, input, parameters)
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            response = await self._post(slug, body, cursor)
            payload = json_answer(response, slug, "edges")
            yield list_items(payload)
            cursor = _next_cursor(response, payload)
            if not cursor:
                return
        log.warning("%s: stopped after %d pages", slug, _MAX_PAGES)

    @staticmethod
    def _body(
        identity: str | None,
        input: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"input": dict(input or {})}
        if parameters:
            body["parameters"] = dict(parameters)
        if identity is not None:
            body["identity_ids"] = [identity]
        return body

    # ---- Provider protocol ----------------------------------------------------------------

    async def me(self, identity: str) -> str:
        if identity not in self._me:
            result = await self.run_live("linkedin-me", identity, {})
            item = result[0] if isinstance(result, list) and result else result
            pid = item.get("linkedin_profile_id") if isinstance(item, dict) else None
            if pid is None:
                raise ProviderError(vocab.SERVER_ERROR, "linkedin-me: no linkedin_profile_id")
            self._me[identity] = str(pid)
        return self._me[identity]

    def prime_me(self, identity: str, profile_id: str) -> None:
        """Take the identity's profile id from an earlier :meth:`me` (the runner keeps it in
        its store), so that the first sync of a process does not ask again."""
        self._me.setdefault(identity, str(profile_id))

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        if action == "check_connection":
            rel = await self.relationship(identity, lead)
            status = {"connected": "connected", "pending": "pending"}.get(rel.status)
            return ActionResult({"relationship": rel.status}, status=status or "not_connected")
        slug, input, parameters = self._action_call(action, lead, params)
        result = await self.run_live(slug, identity, input, parameters)
        return self.action_result(action, result)

    @staticmethod
    def _action_call(
        action: str, lead: Lead, params: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(slug, input, parameters) of an outreach action, live or async alike."""
        slug = ACTION_SLUGS.get(action)
        if slug is None:
            raise ProviderError(vocab.INVALID_INPUT, f"edges cannot perform {action!r}")
        input = {"linkedin_profile_url": lead.profile_url, "custom_data": dict(lead.custom_data)}
        parameters: dict[str, Any] = {}
        text = params.get("note") if action == "connect" else params.get("text")
        text = text if text is not None else params.get("message")
        if text:
            parameters["message"] = str(text)
        if action == "send_inmail" and params.get("subject"):
            parameters["subject"] = str(params["subject"])
        return slug, input, parameters

    @staticmethod
    def action_result(action: str, result: Any) -> ActionResult:
        """What an action's answer (a live body, or an async run's output data) says."""
        data = result if isinstance(result, dict) else {"result": result}
        if action == "connect" and data.get("connected") is True and not data.get("pending"):
            # a 200 saying "connected": no invitation was sent, route like the error label
            raise ProviderError(vocab.ALREADY_CONNECTED, "already connected", status=200,
                                params={"result": data})
        return ActionResult(data)

    # ---- async mode (`execution: async`) ---------------------------------------------------

    async def submit_async(
        self,
        identity: str,
        action: str,
        lead: Lead,
        params: Mapping[str, Any],
        callback: Mapping[str, Any] | None,
    ) -> str:
        """``POST /actions/{slug}/run/async`` of one action; the run's uid. The lead's
        ``custom_data`` (the intent's idempotency key) comes back in the callback."""
        slug, input, parameters = self._action_call(action, lead, params)
        body: dict[str, Any] = {"inputs": [input], "identity_ids": [identity]}
        if parameters:
            body["parameters"] = parameters
        if callback is not None:
            body["callback"] = dict(callback)
        run = await start_async_run(self.client, slug, body)
        uid = run_uid(run) if isinstance(run, dict) else None
        if uid is None:
            raise ProviderError(vocab.TIMEOUT, f"{slug}: run/async answered no run uid")
        return uid

    async def async_run(self, uid: str) -> AsyncRun:
        """Where the run ``uid`` is (``GET /runs/{uid}``), with its output once finished
        (``GET /runs/{uid}/outputs``)."""
        run = await get_run(self.client, uid)
        run = run if isinstance(run, dict) else {}
        status = str(run.get("status") or "").upper()
        if status == "BLOCKED":
            return AsyncRun("blocked", _parse_time(run.get("postponed_until")))
        if status not in RUN_FINISHED:
            return AsyncRun("running")
        outputs = await run_outputs(self.client, uid)
        output = outputs[-1] if isinstance(outputs, list) and outputs else None
        if not isinstance(output, dict):
            error = run.get("last_error") if isinstance(run.get("last_error"), dict) else None
            output = {"status": status, "data": None, "error": error}
        return AsyncRun("finished", output=output)

    def output_result(self, action: str, output: Mapping[str, Any]) -> ActionResult:
        """An async run's output (a callback's or ``/outputs``'): the action's result, or the
        ProviderError its ``error`` maps to (the same mapping as a live answer's)."""
        error = output.get("error")
        if isinstance(error, dict) and error:
            status = error.get("status_code")
            raise error_from_body(error, status if isinstance(status, int) else 424)
        if str(output.get("status") or "SUCCEEDED").upper() not in ("SUCCEEDED", "COMPLETED"):
            raise ProviderError(vocab.SERVER_ERROR, f"async run {output.get('status')}")
        return self.action_result(action, output.get("data"))

    async def find_async_run(
        self, identity: str, action: str, key: str, since: datetime
    ) -> str | None:
        """The uid of the async run submitted for the intent ``key`` (its ``custom_data``),
        or None: ``GET /runs`` of the action's async runs, newest first, down to ``since``
        (a submission whose answer was lost)."""
        slug = ACTION_SLUGS.get(action)
        if slug is None:
            return None
        offset = 0
        for _ in range(_MAX_PAGES):
            response = await request(
                self.client, "GET", "runs",
                params={"action_name": slug, "execution_mode": "ASYNC", "limit": 100,
                        "offset": offset},
            )
            runs = list_items(json_answer(response, "GET /runs", "edges"))
            for run in runs:
                if not isinstance(run, dict):
                    continue
                created = _parse_time(run.get("created_at"))
                if created is not None and created < since - timedelta(minutes=1):
                    return None
                if identity in (run.get("identity_ids") or []) and any(
                    isinstance(i, dict) and isinstance(i.get("custom_data"), dict)
                    and i["custom_data"].get("idempotency_key") == key
                    for i in run.get("inputs") or []
                ):
                    return run_uid(run)
            if len(runs) < 100 or not response.headers.get("X-Pagination-Next"):
                return None
            offset += 100
        return None

    async def sync_conversations(
        self, identity: str, *, full: bool = False, force: bool | None = None
    ) -> list[ConversationSummary]:
        """Every conversation of the identity. The list is newest first, so after the first
        sweep only its top is read: paging stops at conversations no newer than the previous
        sync's high-water mark (see :mod:`engine.providers.convsync`; a full sweep every
        ``FULL_EVERY`` syncs or with ``full=True``)."""
        me = await self.me(identity)
        sweep = self._conv_sync.begin(identity, full=full)
        async with aclosing(self.pages("linkedin-extract-conversations", identity)) as pages:
            async for page in pages:
                for conv in page:
                    raw = conv.get("last_activity_at") if isinstance(conv, dict) else None
                    when = _parse_time(raw)
                    sweep.add(self._summary(conv, me), when)
                if sweep.done:
                    break
        return sweep.finish()

    @staticmethod
    def _summary(conv: Any, me: str) -> ConversationSummary | None:
        if not isinstance(conv, dict):
            return None
        others = [
            p
            for p in conv.get("participants") or []
            if isinstance(p, dict) and str(p.get("linkedin_profile_id")) != me
        ]
        url = next((p.get("linkedin_profile_url") for p in others if p.get("linkedin_profile_url")),
                   None)
        if not url:
            return None
        try:
            profile_url = normalize_profile_url(str(url))
        except ValueError:
            return None
        raw_last = conv.get("last_message")
        last: dict[str, Any] = raw_last if isinstance(raw_last, dict) else {}
        last_is_us = str(last.get("linkedin_profile_id")) == me
        when = (
            _parse_time(conv.get("last_activity_at"))
            or _parse_time(last.get("delivered_at"))
            or _parse_time(last.get("created_at"))
            or datetime.fromtimestamp(0, UTC)
        )
        first = conv.get("first_message")
        first_is_us: bool | None = None
        if isinstance(first, dict) and first.get("linkedin_profile_id") is not None:
            first_is_us = str(first.get("linkedin_profile_id")) == me
        content = last.get("content") or last.get("message") or last.get("text")
        return ConversationSummary(
            profile_url=profile_url,
            last_sender_is_us=last_is_us,
            last_activity_at=when,
            first_sender_is_us=first_is_us,
            our_texts=(str(content),) if last_is_us and content else (),
            thread=str(conv.get("linkedin_thread_url") or conv.get("linkedin_thread_id") or "")
            or None,
        )

    async def our_messages(
        self, identity: str, conversation: ConversationSummary, since: datetime
    ) -> list[SentMessage]:
        """``linkedin-extract-messages`` of the thread, newest first: read until a message
        older than ``since``."""
        if not conversation.thread:
            return []
        me = await self.me(identity)
        found: list[SentMessage] = []
        thread = {"linkedin_thread_url": conversation.thread}
        messages = self.pages("linkedin-extract-messages", identity, input=thread)
        async with aclosing(messages) as pages:
            async for page in pages:
                for m in page:
                    if not isinstance(m, dict):
                        continue
                    at = _parse_time(m.get("created_at")) or _parse_time(m.get("delivered_at"))
                    if at is None:
                        continue
                    if at < since:
                        return found
                    if str(m.get("linkedin_profile_id")) == me:
                        found.append(SentMessage(str(m.get("content") or ""), at))
        return found

    async def connections(self, identity: str, *, full: bool = False) -> set[str]:
        """Every connection of the identity, as normalized profile URLs.

        The first call (and every ``_FULL_EVERY``-th, or ``full=True``) sweeps all pages; the
        others read the newest pages only (extract-connections lists the newest first) and stop
        at the first page that reaches connections already known, so a tick usually costs one
        call instead of one per 40 connections.
        """
        known = self._connections.get(identity)
        calls = self._refreshes.get(identity, 0)
        if known is None or full or calls >= _FULL_EVERY:
            found: set[str] = set()
            async for page in self.pages("linkedin-extract-connections", identity):
                found.update(self._note_since(identity, page))
            self._connections[identity] = found
            self._refreshes[identity] = 0
            return set(found)
        self._refreshes[identity] = calls + 1
        async with aclosing(self.pages("linkedin-extract-connections", identity)) as pages:
            async for page in pages:
                urls = self._note_since(identity, page)
                fresh = urls - known
                known |= urls
                if not fresh or (len(fresh) < len(urls) and _newest_first(page)):
                    break
        return set(known)

    def _note_since(self, identity: str, page: list[Any]) -> set[str]:
        """The page's connections; their connected_at kept for :meth:`relationship`."""
        since = self._since.setdefault(identity, {})
        found: set[str] = set()
        for item in page:
            urls = _urls([item])  # each URL normalized once
            found |= urls
            when = _parse_time(item.get("connected_at")) if isinstance(item, dict) else None
            if when is not None:
                since.update(dict.fromkeys(urls, when))
        return found

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        target = normalize_profile_url(lead.profile_url)
        if target in await self.connections(identity):
            return Relationship("connected", since=self._since.get(identity, {}).get(target))
        if await self._invitation_pending(identity, target):
            return Relationship("pending")
        # without extract-sent-invitations a pending invitation would read as "none" too
        return Relationship("none", verified=not self._no_sent_invitations)

    async def _invitation_pending(self, identity: str, target: str) -> bool:
        if self._no_sent_invitations:
            return False
        try:
            async for page in self.pages("linkedin-extract-sent-invitations", identity):
                if target in _urls(page):
                    return True
        except ProviderError as exc:
            if exc.status in (400, 404, 405, 501) and exc.label == vocab.INVALID_INPUT:
                self._no_sent_invitations = True  # this API does not offer it
                return False
            raise
        return False

    async def identity_healthy(self, identity: str) -> bool:
        return await self.identity_status(identity) == "active"

    async def identity_status(self, identity: str) -> str:
        async for ident in edges_identities.raw_identities(self.client):
            if identity in (ident.get("uid"), ident.get("id")):
                return "active" if edges_identities.identity_ok(ident) else "auth_expired"
        return "unknown"

    async def identities(self) -> list[IdentityInfo]:
        return await edges_identities.identity_infos(self.client)

    async def search_people(self, identity: str, search: PeopleSearch) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        pages = self.pages("linkedin-search-people", identity,
                           parameters={"max_results": search.max},
                           input={"linkedin_people_search_url": edges_search.search_url(search)})
        async with aclosing(pages) as found:
            async for page in found:
                rows += [r for r in (edges_search.lead_row(i) for i in page if isinstance(i, dict))
                         if r is not None]
                if len(rows) >= search.max:
                    break
        return rows[: search.max]


def _newest_first(page: list[Any]) -> bool:
    """True when the page's ``connected_at`` values are present and never increase."""
    times = [_parse_time(i.get("connected_at")) for i in page if isinstance(i, dict)]
    present = [t for t in times if t is not None]
    if not present or len(present) != len(times):
        return False
    return all(a >= b for a, b in pairwise(present))


def _urls(page: list[Any]) -> set[str]:
    found: set[str] = set()
    for item in page:
        if not isinstance(item, dict):
            continue
        url = item.get("linkedin_profile_url")
        if not url and item.get("linkedin_profile_handle"):
            url = f"https://www.linkedin.com/in/{item['linkedin_profile_handle']}"
        if url:
            try:
                found.add(normalize_profile_url(str(url)))
            except ValueError:
                continue
    return found


def make_provider(client: httpx.AsyncClient, *, clock: Clock | None = None) -> EdgesProvider:
    """The registry's factory (Edges answers each call at once: no clock to wait on)."""
    return EdgesProvider(client)


SPEC = register(
    ProviderSpec(
        name="edges",
        capabilities=frozenset(
            {"visit_profile", "connect", "send_message", "send_inmail", "withdraw_invitation",
             "check_connection"}
        ),
        smart_limits={"visit_profile": 80, "connect": 25, "send_message": 50},
        # Edges' documented Smart Limits with Sales Navigator (its limits page); Recruiter
        # is not documented apart: it gets the Sales Navigator figures
        tier_limits={
            "sales_navigator": {"visit_profile": 500, "connect": 30, "send_message": 250},
            "recruiter": {"visit_profile": 500, "connect": 30, "send_message": 250},
        },
        max_note=300,
        max_message=8000,
        credentials=("EDGES_API_KEY",),
        search_filters=edges_search.FILTERS,
        default_base_url="https://api.edges.run/v1",
        factory=make_provider,
    )
)
EdgesProvider.spec = SPEC
