"""LinkedAPI adapter, both API generations. Owner: LinkedAPI work (issue 6).

* ``api="current"`` (default, what the official SDK speaks): ``POST /workflows`` ->
  ``{success, result: {workflowId, workflowStatus}}``, poll ``GET /workflows/{id}``,
  ``DELETE /workflows/{id}``, ``POST /conversations/poll``, ``GET /account``; every body is the
  ``{success, result | error: {type, message}}`` envelope.
* ``api="account"`` (seed 003): ``POST /account/workflow`` with the ``result-handling`` header
  (``long | reslink | hook``, plus ``webhook``), answers
  ``{status, completion | progress | error}``; a ``reslink`` result is polled at
  ``GET /account/results/{hash}``.

Canonical actions become one-node workflows; LinkedAPI's action and request error types become
canonical labels (:data:`ACTION_ERRORS`, :data:`REQUEST_ERRORS`) raised as ProviderError.

Credentials: the adapter is handed an ``httpx.AsyncClient`` that already carries the base URL
and the ``linked-api-token`` / ``identification-token`` headers (see :func:`headers_from_env`).
An identity with its own LinkedIn account gets its identification token from
``LINKEDAPI_IDENTIFICATION_TOKEN__<IDENTITY>``; the token value is never logged or raised.

Example::

    client = httpx.AsyncClient(base_url="https://api.linkedapi.io", headers=headers_from_env())
    provider = LinkedApiProvider(client)
    result = await provider.perform("acct-alice", "check_connection", Lead(url), {})
    result.status  # "connected" | "pending" | "not_connected"
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.clock import Clock, RealClock
from engine.errors import ConfigError, ProviderError
from engine.providers.base import (
    ActionResult,
    ConversationSummary,
    Lead,
    Provider,
    ProviderSpec,
    Relationship,
    register,
)
from engine.vocab import (
    ALREADY_CONNECTED,
    AUTH_EXPIRED,
    INVALID_INPUT,
    INVITATION_PENDING,
    LIMIT_REACHED,
    LINKEDAPI_ACTIONS,
    NOT_CONNECTED,
    NOT_PENDING,
    NOTE_TOO_LONG,
    PROFILE_NOT_ACCESSIBLE,
    SERVER_ERROR,
    STATUS_429,
    TIMEOUT,
    TRANSIENT_LABELS,
)

log = logging.getLogger(__name__)

TOKEN_ENV = "LINKEDAPI_TOKEN"
IDENTIFICATION_ENV = "LINKEDAPI_IDENTIFICATION_TOKEN"
TOKEN_HEADER = "linked-api-token"
IDENTIFICATION_HEADER = "identification-token"
APIS: tuple[str, ...] = ("current", "account")
RESULT_HANDLINGS: tuple[str, ...] = ("long", "reslink", "hook")
UNFINISHED_CAP = 10  # documented: max 10 uncompleted workflows per LinkedIn account


# Errors of one action inside a completion (`{success: false, error: {type, message}}`).
ACTION_ERRORS: Mapping[str, str] = {
    "alreadyConnected": ALREADY_CONNECTED,
    "alreadyPending": INVITATION_PENDING,
    "personNotFound": PROFILE_NOT_ACCESSIBLE,
    "messagingNotAllowed": NOT_CONNECTED,
    "noteTooLong": NOTE_TOO_LONG,
    "noteLimitExceeded": LIMIT_REACHED,  # free accounts: monthly quota of notes used up
    "requestNotAllowed": LIMIT_REACHED,  # LinkedIn refuses more invitations for now
    "notPending": NOT_PENDING,
    "connectionNotFound": NOT_CONNECTED,
    "selfProfileNotAllowed": INVALID_INPUT,
    "emailRequired": INVALID_INPUT,
    "retrievingNotAllowed": INVALID_INPUT,
    "searchingNotAllowed": INVALID_INPUT,
    "noSalesNavigator": INVALID_INPUT,
    "limitExceeded": LIMIT_REACHED,  # the sandbox's name for an account action limit
    "dailyConnectionAttemptsExceeded": LIMIT_REACHED,
}

# Request-level (global) errors: the envelope's `error.type`, or a failed workflow's reason.
REQUEST_ERRORS: Mapping[str, str] = {
    "linkedinAccountSignedOut": AUTH_EXPIRED,
    "linkedApiTokenRequired": AUTH_EXPIRED,
    "invalidLinkedApiToken": AUTH_EXPIRED,
    "identificationTokenRequired": AUTH_EXPIRED,
    "invalidIdentificationToken": AUTH_EXPIRED,
    "accountApiTokenRequired": AUTH_EXPIRED,
    "invalidAccountApiToken": AUTH_EXPIRED,
    "subscriptionRequired": AUTH_EXPIRED,
    "plusPlanRequired": AUTH_EXPIRED,
    "noAvailableSeats": AUTH_EXPIRED,
    "noActiveSeats": AUTH_EXPIRED,
    "accountNotFound": AUTH_EXPIRED,
    "tooManyRequests": STATUS_429,
    "dailyConnectionAttemptsExceeded": LIMIT_REACHED,
    "invalidRequestPayload": INVALID_INPUT,
    "invalidRequestBody": INVALID_INPUT,
    "invalidWorkflow": INVALID_INPUT,
    "invalidActionParams": INVALID_INPUT,
    "languageNotSupported": INVALID_INPUT,
    "accountIdRequired": INVALID_INPUT,
    "sessionNotFound": INVALID_INPUT,
    "conversationsNotSynced": INVALID_INPUT,
    "workflowNotFound": INVALID_INPUT,
    "workflowTimeout": TIMEOUT,
    "workflowCancelled": INVALID_INPUT,
    "httpError": SERVER_ERROR,
    "unknownError": SERVER_ERROR,
}

_CONNECTION_STATUS: Mapping[str, str] = {
    "connected": "connected",
    "pending": "pending",
    "notConnected": "not_connected",
}
_TERMINAL = frozenset({"completed", "failed"})
_UNSYNCABLE = frozenset({"personNotFound", "selfProfileNotAllowed"})
# The oldest docs spell the account API's statuses differently.
_STATUS_ALIASES: Mapping[str, str] = {
    "complete": "completed",
    "processing": "running",
    "error": "failed",
}


def identity_env_var(identity: str) -> str:
    """``LINKEDAPI_IDENTIFICATION_TOKEN__<IDENTITY>``: upper-cased, non-alphanumerics -> ``_``."""
    return f"{IDENTIFICATION_ENV}__{re.sub(r'[^A-Z0-9]', '_', identity.upper())}"


def identification_token(identity: str | None, env: Mapping[str, str]) -> str | None:
    """The identity's own identification token, else the plain one, else None."""
    if identity:
        own = env.get(identity_env_var(identity))
        if own:
            return own
    return env.get(IDENTIFICATION_ENV) or None


def headers_from_env(
    env: Mapping[str, str] | None = None, identity: str | None = None
) -> dict[str, str]:
    """The auth headers for LinkedAPI from environment variables.

    Raises ConfigError naming the missing variable (never a value)."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV)
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set (the LinkedAPI main token)")
    ident = identification_token(identity, env)
    if not ident:
        wanted = (
            f"{identity_env_var(identity)} or {IDENTIFICATION_ENV}"
            if identity
            else IDENTIFICATION_ENV
        )
        raise ConfigError(f"{wanted} is not set (the LinkedIn account's identification token)")
    return {TOKEN_HEADER: token, IDENTIFICATION_HEADER: ident}


# ---- error translation -------------------------------------------------------------------------


def action_error(error: Mapping[str, Any] | None) -> ProviderError:
    """A failed action of a completion as a ProviderError with a canonical label."""
    error = error or {}
    kind = str(error.get("type") or "unknownError")
    return ProviderError(
        label=ACTION_ERRORS.get(kind) or REQUEST_ERRORS.get(kind, INVALID_INPUT),
        message=str(error.get("message") or kind),
        params={"type": kind},
    )


def request_error(
    kind: str, message: str = "", status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    """A request-level error type (or a failed workflow's reason) as a ProviderError."""
    label = REQUEST_ERRORS.get(kind) or ACTION_ERRORS.get(kind)
    if label is None:
        label = _status_label(status) if status and status >= 400 else SERVER_ERROR
    return ProviderError(
        label=label,
        message=message or kind,
        status=status,
        params={"type": kind},
        retry_after=retry_after,
    )


def _status_label(status: int) -> str:
    if status == 429:
        return STATUS_429
    if status == 504:  # a gateway gave up waiting: the call may or may not have happened
        return TIMEOUT
    if status >= 500:
        return SERVER_ERROR
    if status in (401, 403):
        return AUTH_EXPIRED
    return INVALID_INPUT


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def unwrap(response: httpx.Response) -> Any:
    """The ``result`` of a current-API envelope, or raise its error as a ProviderError.

    Account-API bodies (``{status, ...}``) are returned whole when the HTTP status is 2xx."""
    body = _json(response)
    retry = _retry_after(response)
    if isinstance(body, dict) and "success" in body:
        if body.get("success") is True and response.is_success:
            return body.get("result")
        err = body["error"] if isinstance(body.get("error"), dict) else {}
        return _raise(
            request_error(
                str(err.get("type") or "httpError"),
                str(err.get("message") or ""),
                response.status_code,
                retry,
            )
        )
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and not response.is_success:
        err = body["error"]
        kind = str(err.get("type") or err.get("errorType") or "httpError")
        return _raise(
            request_error(kind, str(err.get("message") or ""), response.status_code, retry)
        )
    if not response.is_success:
        return _raise(
            ProviderError(
                label=_status_label(response.status_code),
                message=f"HTTP {response.status_code}",
                status=response.status_code,
                retry_after=retry,
            )
        )
    if body is None:
        return _raise(ProviderError(SERVER_ERROR, "unparsable response", response.status_code))
    return body


def _raise(exc: ProviderError) -> Any:
    raise exc


# ---- workflow state ----------------------------------------------------------------------------


@dataclass
class WorkflowState:
    """Where one submitted workflow stands.

    ``workflow_id`` is the current API's workflowId, or the account API's result hash
    (None for ``long``/``hook`` on the account API, which give no handle)."""

    status: str  # pending | running | completed | failed
    workflow_id: str | None = None
    completion: Any = None
    error: ProviderError | None = None
    webhook: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in _TERMINAL


def _result_hash(link: str) -> str:
    """The hash of a resultLink. Only the hash is kept: we never send our tokens to a host
    taken from a response body, we ask our own base URL for ``/account/results/{hash}``."""
    path = urlsplit(link).path.rstrip("/")
    return path.rsplit("/", 1)[-1]


def _state_from_current(result: Any) -> WorkflowState:
    if not isinstance(result, Mapping):
        raise ProviderError(SERVER_ERROR, "workflow answer is not an object")
    status = str(result.get("workflowStatus") or "pending")
    state = WorkflowState(
        status=status, workflow_id=_opt_str(result.get("workflowId")), raw=dict(result)
    )
    if status == "completed" or "completion" in result:
        state.status = "completed"
        state.completion = result.get("completion")
    if status == "failed" or (status not in ("pending", "running") and "completion" not in result):
        failure = result.get("failure") or result.get("error") or {}
        kind = str(failure.get("reason") or failure.get("type") or "unknownError")
        state.status = "failed"
        state.error = request_error(kind, str(failure.get("message") or ""))
    return state


def _state_from_account(body: Any) -> WorkflowState:
    if not isinstance(body, Mapping):
        raise ProviderError(SERVER_ERROR, "workflow answer is not an object")
    status = str(body.get("status") or "")
    status = _STATUS_ALIASES.get(status, status)
    state = WorkflowState(status=status or "failed", raw=dict(body))
    if status == "completed":
        state.completion = body.get("completion")
    elif status == "running":
        progress = body.get("progress") or {}
        if progress.get("resultLink"):
            state.workflow_id = _result_hash(str(progress["resultLink"]))
        state.webhook = _opt_str(progress.get("webhook"))
    else:
        err = body.get("error") or {}
        kind = str(err.get("type") or err.get("errorType") or "unknownError")
        state.status = "failed"
        state.error = request_error(kind, str(err.get("message") or ""))
    return state


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


# ---- the adapter -------------------------------------------------------------------------------


class LinkedApiProvider:
    """The LinkedAPI adapter (see the module docstring)."""

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
        if api not in APIS:
            raise ConfigError(f"linkedapi api must be one of {', '.join(APIS)}, not {api!r}")
        if result_handling not in RESULT_HANDLINGS:
            raise ConfigError(f"result_handling must be one of {', '.join(RESULT_HANDLINGS)}")
        self.spec: ProviderSpec = SPEC
        self.client = client
        self.api = api
        self.result_handling = result_handling
        self.clock: Clock = clock or RealClock()
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.poll_timeout = poll_timeout
        self.max_poll_errors = max_poll_errors
        self._persons: dict[str, set[str]] = {}  # identity -> persons we acted on
        self._synced: dict[str, set[str]] = {}  # identity -> conversations known synced
        self._unpollable: dict[str, set[str]] = {}  # identity -> persons that cannot sync
        self.connections_ttl = connections_ttl
        self._connections_cache: dict[str, tuple[datetime, set[str]]] = {}

    # -- HTTP -----------------------------------------------------------------------------------

    def _headers(self, identity: str | None) -> dict[str, str]:
        if identity:
            own = self.env.get(identity_env_var(identity))
            if own:
                return {IDENTIFICATION_HEADER: own}
        return {}

    async def _request(
        self,
        method: str,
        path: str,
        identity: str | None,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        all_headers = self._headers(identity)
        all_headers.update(headers or {})
        try:
            response = await self.client.request(method, path, json=json, headers=all_headers)
        except httpx.TimeoutException as exc:
            raise ProviderError(TIMEOUT, f"{method} {path}: no answer in time") from exc
        except httpx.ConnectError as exc:
            raise ProviderError(SERVER_ERROR, f"{method} {path}: cannot connect") from exc
        except httpx.TransportError as exc:  # the request may have been received
            raise ProviderError(TIMEOUT, f"{method} {path}: {type(exc).__name__}") from exc
        return unwrap(response)

    # -- workflows ------------------------------------------------------------------------------

    async def submit(
        self,
        body: Any,
        identity: str | None = None,
        *,
        result_handling: str | None = None,
        webhook: str | None = None,
    ) -> WorkflowState:
        """Submit one workflow body; one POST, never retried here (a retry may duplicate)."""
        if self.api == "current":
            return _state_from_current(
                await self._request("POST", "/workflows", identity, json=body)
            )
        handling = result_handling or self.result_handling
        headers = {"result-handling": handling}
        if handling == "hook":
            if not webhook:
                raise ConfigError("result_handling hook needs a webhook URL")
            headers["webhook"] = webhook
        answer = await self._request(
            "POST", "/account/workflow", identity, json=body, headers=headers
        )
        return _state_from_account(answer)

    async def fetch(self, workflow_id: str, identity: str | None = None) -> WorkflowState:
        """The current state of a submitted workflow (by workflowId or result hash)."""
        if self.api == "current":
            state = _state_from_current(
                await self._request("GET", f"/workflows/{workflow_id}", identity)
            )
        else:
            state = _state_from_account(
                await self._request("GET", f"/account/results/{workflow_id}", identity)
            )
        state.workflow_id = state.workflow_id or workflow_id
        return state

    async def cancel(self, workflow_id: str, identity: str | None = None) -> bool:
        """Cancel a workflow (current API only); True when LinkedAPI says it was cancelled."""
        if self.api != "current":
            raise ProviderError(INVALID_INPUT, "the account API cannot cancel a workflow")
        result = await self._request("DELETE", f"/workflows/{workflow_id}", identity)
        return bool(isinstance(result, Mapping) and result.get("cancelled"))

    async def wait(
        self, workflow_id: str, identity: str | None = None, *, deadline: float | None = None
    ) -> WorkflowState:
        """Poll until the workflow is completed or failed, with backoff.

        Tolerates up to ``max_poll_errors`` consecutive transient errors (as the SDK does);
        raises ProviderError(TIMEOUT) after ``deadline`` (default ``poll_timeout``) seconds."""
        limit = self.poll_timeout if deadline is None else deadline
        started = self.clock.now()
        interval = self.poll_interval
        errors = 0
        while True:
            try:
                state = await self.fetch(workflow_id, identity)
                errors = 0
                if state.finished:
                    return state
            except ProviderError as exc:
                if exc.label not in TRANSIENT_LABELS:
                    raise
                errors += 1
                if errors > self.max_poll_errors:
                    raise
                if exc.retry_after:
                    interval = max(interval, exc.retry_after)
            if (self.clock.now() - started) >= timedelta(seconds=limit):
                raise ProviderError(
                    TIMEOUT,
                    f"workflow {workflow_id} still running after {limit:.0f}s",
                    params={"workflowId": workflow_id},
                )
            await self.clock.sleep(interval)
            interval = min(self.max_poll_interval, interval * 1.5)

    async def execute(self, body: Any, identity: str | None = None) -> Any:
        """Submit ``body`` and follow it to completion; the completion, or ProviderError."""
        state = await self.submit(body, identity)
        if not state.finished:
            if state.workflow_id is None:
                raise ProviderError(
                    INVALID_INPUT, "no workflow handle to follow (result handling hook?)"
                )
            state = await self.wait(state.workflow_id, identity)
        if state.status == "failed":
            raise state.error or ProviderError(SERVER_ERROR, "workflow failed")
        return state.completion

    # -- conversations --------------------------------------------------------------------------

    async def poll_conversations(
        self, identity: str | None, person_urls: Sequence[str], since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """``POST /conversations/poll`` for these persons. When LinkedAPI answers
        ``conversationsNotSynced`` the unsynced ones are synced (one array workflow of
        ``st.syncConversation``) and the poll is retried; persons that cannot be synced (not
        found) are left out from then on."""
        skip = self._unpollable.setdefault(identity or "", set())
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
        return await self._request("POST", "/conversations/poll", identity, json=body)

    async def _sync(self, identity: str | None, person_urls: Sequence[str]) -> None:
        synced = self._synced.setdefault(identity or "", set())
        skip = self._unpollable.setdefault(identity or "", set())
        todo = [url for url in person_urls if url not in synced] or list(person_urls)
        body = [{"actionType": "st.syncConversation", "personUrl": url} for url in todo]
        completion = await self.execute(body, identity)
        for url, item in zip(todo, completion or [], strict=False):
            if not isinstance(item, Mapping):
                continue
            if item.get("success"):
                synced.add(url)
            elif (item.get("error") or {}).get("type") in _UNSYNCABLE:
                skip.add(url)

    def watch(self, identity: str, person_urls: Sequence[str]) -> None:
        """Add persons whose conversations :meth:`sync_conversations` should poll."""
        self._persons.setdefault(identity, set()).update(person_urls)

    # -- the Provider protocol ------------------------------------------------------------------

    async def me(self, identity: str) -> str:
        result = await self._request("GET", "/account", identity)
        if not isinstance(result, Mapping) or not result.get("url"):
            raise ProviderError(SERVER_ERROR, "GET /account gave no url")
        return str(result["url"])

    async def identity_healthy(self, identity: str) -> bool:
        try:
            await self._request("GET", "/account", identity)
        except ProviderError as exc:
            if exc.label == AUTH_EXPIRED:
                return False
            raise
        return True

    async def perform(
        self, identity: str, action: str, lead: Lead, params: Mapping[str, Any]
    ) -> ActionResult:
        body = self.action_body(action, lead.profile_url, params)
        completion = await self.execute(body, identity)
        item = completion[0] if isinstance(completion, list) and completion else completion
        if not isinstance(item, Mapping):
            raise ProviderError(SERVER_ERROR, "workflow completed without a result")
        if not item.get("success"):
            raise action_error(item.get("error"))
        if action in ("connect", "send_message"):
            self.watch(identity, [lead.profile_url])
        data = item.get("data")
        data = dict(data) if isinstance(data, Mapping) else ({"items": data} if data else {})
        status = None
        if action == "check_connection":
            status = _CONNECTION_STATUS.get(str(data.get("connectionStatus")), "not_connected")
        if action == "send_message":
            self._synced.setdefault(identity, set()).add(lead.profile_url)
        return ActionResult(data=data, status=status)

    @staticmethod
    def action_body(action: str, person_url: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The one-node workflow for a canonical action."""
        if action not in LINKEDAPI_ACTIONS:
            raise ProviderError(INVALID_INPUT, f"linkedapi cannot {action}")
        body: dict[str, Any] = {"actionType": LINKEDAPI_ACTIONS[action], "personUrl": person_url}
        if action == "visit_profile":
            body["basicInfo"] = bool(params.get("basicInfo", True))
        elif action == "connect":
            note = params.get("note", params.get("message"))
            if note:
                body["note"] = str(note)
            if params.get("email"):
                body["email"] = str(params["email"])
        elif action == "send_message":
            text = params.get("text", params.get("message"))
            if not text:
                raise ProviderError(INVALID_INPUT, "send_message needs a text")
            body["text"] = str(text)
        elif action == "withdraw_invitation" and params.get("unfollow") is not None:
            body["unfollow"] = bool(params["unfollow"])
        return body

    async def relationship(self, identity: str, lead: Lead) -> Relationship:
        result = await self.perform(identity, "check_connection", lead, {})
        return Relationship(
            status={"not_connected": "none"}.get(result.status or "", result.status or "none")
        )

    async def _connections(self, identity: str) -> set[str]:
        """The identity's connections (public URLs), retrieved at most once per
        ``connections_ttl`` seconds: retrieving them is a whole workflow."""
        now = self.clock.now()
        cached = self._connections_cache.get(identity)
        if cached is not None and (now - cached[0]).total_seconds() < self.connections_ttl:
            return cached[1]
        completion = await self.execute({"actionType": "st.retrieveConnections"}, identity)
        item = completion[0] if isinstance(completion, list) and completion else completion
        urls: set[str] = set()
        if isinstance(item, Mapping) and item.get("success") and isinstance(item.get("data"), list):
            urls = {str(p["publicUrl"]) for p in item["data"] if p.get("publicUrl")}
        self._connections_cache[identity] = (now, urls)
        return urls

    async def sync_conversations(self, identity: str) -> list[ConversationSummary]:
        """Poll the conversations of every person we acted on or are connected with."""
        persons = set(self._persons.get(identity, set()))
        persons.update(await self._connections(identity))
        conversations = await self.poll_conversations(identity, sorted(persons))
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
        max_note=300,
        max_message=1900,
        credentials=("LINKEDAPI_TOKEN", "LINKEDAPI_IDENTIFICATION_TOKEN"),
        default_base_url="https://api.linkedapi.io",
        factory=make_provider,
    )
)
