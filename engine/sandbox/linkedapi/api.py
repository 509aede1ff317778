"""The sandbox LinkedAPI, both generations, over the simulated World (mounted at ``/linkedapi``).

* current API (what the official SDK speaks): ``POST /workflows``, ``GET``/``DELETE
  /workflows/{id}``, ``POST /conversations/poll``, ``GET /account``; every answer is the
  ``{success, result | error: {type, message}}`` envelope.
* account API (seed 003): ``POST /account/workflow`` with ``result-handling: long | reslink |
  hook`` (+ ``webhook``) answering ``{status, completion | progress | error}``, and
  ``GET /account/results/{hash}``.

Auth: ``linked-api-token`` must be the sandbox's (``engine.sandbox.common.CREDENTIALS``);
``identification-token`` is a world identity's uid, alias or ``sbx-idt-<uid>``.

Workflows take simulated time: one is ``running`` until the world clock passes its finish time
(``base_seconds + seconds_per_action * actions``), then it is executed over the world the next
time anyone talks to this API (``long`` result handling executes at once). At most
:data:`UNFINISHED_CAP` unfinished workflows per account; the next one gets ``tooManyRequests``.

The workflow table is live on the world object and written through, as JSON, to
``world.api_state["linkedapi"]`` after every change, so it is saved and restored with the world.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.sandbox.linkedapi.account import AccountApi
from engine.sandbox.linkedapi.admin import AdminApi
from engine.sandbox.linkedapi.current import CurrentApi
from engine.sandbox.linkedapi.execute import run_due
from engine.sandbox.linkedapi.state import (
    LinkedApiState,
    WorkflowRecord,
    dump_state,
    load_state,
    sandbox_credentials,
    save,
    state,
)
from engine.sandbox.linkedapi.validate import InvalidWorkflow, validate
from engine.sandbox.linkedapi.wire import IDENT_PREFIX, KEEP_FINISHED, SANDBOX_TOKEN, UNFINISHED_CAP
from engine.sandbox.world import World

__all__ = [
    "IDENT_PREFIX",
    "KEEP_FINISHED",
    "SANDBOX_TOKEN",
    "UNFINISHED_CAP",
    "InvalidWorkflow",
    "LinkedApiState",
    "WorkflowRecord",
    "deliver_hooks",
    "dump_state",
    "load_state",
    "routes",
    "run_due",
    "sandbox_credentials",
    "save",
    "state",
    "validate",
]


log = logging.getLogger(__name__)


class _Api(CurrentApi, AccountApi, AdminApi):
    """Both generations of the API over one world."""


Handler = Callable[[Request], Awaitable[Response]]


def _saving(world: World, handler: Handler, callback_client: httpx.AsyncClient | None) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        finally:
            if callback_client is not None:
                await deliver_hooks(world, callback_client)
            save(world)

    return endpoint


async def deliver_hooks(world: World, client: httpx.AsyncClient) -> int:
    """POST finished ``hook`` workflows to their webhook; failed deliveries stay queued."""
    st = state(world)
    delivered = 0
    for item in list(st.outbox):
        try:
            response = await client.post(str(item["url"]), json=item["payload"])
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("linkedapi webhook delivery failed: %s", type(exc).__name__)
            continue
        st.outbox.remove(item)
        st.dirty = True
        delivered += 1
    return delivered


def routes(world: World, callback_client: httpx.AsyncClient | None = None) -> list[BaseRoute]:
    """The LinkedAPI routes over ``world``, relative to their mount point (``/linkedapi``).

    With ``callback_client`` the results of ``hook`` workflows are POSTed to their webhook;
    without it they wait in ``state(world).outbox``."""
    api = _Api(world)
    state(world)
    table: list[tuple[str, Handler, str]] = [
        ("/workflows", api.post_workflows, "POST"),
        ("/workflows/{workflow_id}", api.get_workflow, "GET"),
        ("/workflows/{workflow_id}", api.delete_workflow, "DELETE"),
        ("/conversations/poll", api.poll_conversations, "POST"),
        ("/account", api.get_account, "GET"),
        ("/stats/actions", api.stats_actions, "GET"),
        ("/admin/{method}", api.admin, "POST"),
        ("/connect/{session_id}", api.connect_session, "POST"),
        ("/account/workflow", api.post_account_workflow, "POST"),
        ("/account/results/{result_hash}", api.get_account_result, "GET"),
    ]
    return [
        Route(path, _saving(world, fn, callback_client), methods=[method])
        for path, fn, method in table
    ]
