"""LinkedAPI workflows over HTTP: submit one, fetch its state, wait for it, cancel it.

* ``api="current"`` (default, what the official SDK speaks): ``POST /workflows`` ->
  ``{success, result: {workflowId, workflowStatus}}``, poll ``GET /workflows/{id}``,
  ``DELETE /workflows/{id}``; every body is the ``{success, result | error}`` envelope.
* ``api="account"`` (seed 003): ``POST /account/workflow`` with the ``result-handling`` header
  (``long | reslink | hook``, plus ``webhook``), answers
  ``{status, completion | progress | error}``; a ``reslink`` result is polled at
  ``GET /account/results/{hash}``.

Every request goes through :func:`engine.providers.linkedapi.errors.call`, the adapter's one
error mapping.

Example::

    workflows = WorkflowClient(client, clock=clock)
    state = await workflows.submit({"actionType": "st.openPersonPage", "personUrl": url})
    state = await workflows.wait(state.workflow_id)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.clock import Clock, RealClock
from engine.errors import ConfigError, ProviderError
from engine.providers.linkedapi.credentials import identity_headers
from engine.providers.linkedapi.errors import call, request_error
from engine.vocab import INVALID_INPUT, SERVER_ERROR, TIMEOUT, TRANSIENT_LABELS

APIS: tuple[str, ...] = ("current", "account")
RESULT_HANDLINGS: tuple[str, ...] = ("long", "reslink", "hook")
UNFINISHED_CAP = 10  # documented: max 10 uncompleted workflows per LinkedIn account

_TERMINAL = frozenset({"completed", "failed"})
# The oldest docs spell the account API's statuses differently.
_STATUS_ALIASES: Mapping[str, str] = {
    "complete": "completed",
    "processing": "running",
    "error": "failed",
}


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


def state_from_current(result: Any) -> WorkflowState:
    """A current-API ``{workflowId, workflowStatus, completion | failure}`` as a state."""
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


def state_from_account(body: Any) -> WorkflowState:
    """An account-API ``{status, completion | progress | error}`` as a state."""
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


class WorkflowClient:
    """Submitting and following LinkedAPI workflows for one API generation."""

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
    ) -> None:
        if api not in APIS:
            raise ConfigError(f"linkedapi api must be one of {', '.join(APIS)}, not {api!r}")
        if result_handling not in RESULT_HANDLINGS:
            raise ConfigError(f"result_handling must be one of {', '.join(RESULT_HANDLINGS)}")
        self.client = client
        self.api = api
        self.result_handling = result_handling
        self.clock: Clock = clock or RealClock()
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.poll_timeout = poll_timeout
        self.max_poll_errors = max_poll_errors

    async def request(
        self,
        method: str,
        path: str,
        identity: str | None,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One call as ``identity`` (its own identification token when it has one)."""
        all_headers = identity_headers(identity, self.env)
        all_headers.update(headers or {})
        return await call(self.client, method, path, json=json, headers=all_headers)

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
            return state_from_current(await self.request("POST", "/workflows", identity, json=body))
        handling = result_handling or self.result_handling
        headers = {"result-handling": handling}
        if handling == "hook":
            if not webhook:
                raise ConfigError("result_handling hook needs a webhook URL")
            headers["webhook"] = webhook
        answer = await self.request(
            "POST", "/account/workflow", identity, json=body, headers=headers
        )
        return state_from_account(answer)

    async def fetch(self, workflow_id: str, identity: str | None = None) -> WorkflowState:
        """The current state of a submitted workflow (by workflowId or result hash)."""
        if self.api == "current":
            state = state_from_current(
                await self.request("GET", f"/workflows/{workflow_id}", identity)
            )
        else:
            state = state_from_account(
                await self.request("GET", f"/account/results/{workflow_id}", identity)
            )
        state.workflow_id = state.workflow_id or workflow_id
        return state

    async def cancel(self, workflow_id: str, identity: str | None = None) -> bool:
        """Cancel a workflow (current API only); True when LinkedAPI says it was cancelled."""
        if self.api != "current":
            raise ProviderError(INVALID_INPUT, "the account API cannot cancel a workflow")
        result = await self.request("DELETE", f"/workflows/{workflow_id}", identity)
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
