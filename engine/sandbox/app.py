"""The sandbox's Starlette app: ``/v1`` (Edges), ``/linkedapi`` (LinkedAPI), ``/linkedin``
(ConnectSafely) and ``/_sandbox`` (inspection), all over one :class:`World`.

Example::

    app = build_app(World(VirtualClock(), seed=1))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sandbox/v1")
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from engine.sandbox import inspect as inspect_api
from engine.sandbox.common import JSON
from engine.sandbox.connectsafely import ConnectSafelyAPI
from engine.sandbox.edges.api import EdgesAPI
from engine.sandbox.world import World

log = logging.getLogger(__name__)


def _linkedapi_routes(world: World, callback_client: httpx.AsyncClient | None,
                      ) -> list[BaseRoute] | None:
    """The LinkedAPI routes from ``engine.sandbox.linkedapi.api.routes(world)``, if written."""
    try:
        module = importlib.import_module("engine.sandbox.linkedapi.api")
    except ImportError:
        log.debug("engine.sandbox.linkedapi.api not available; /linkedapi not mounted")
        return None
    factory = getattr(module, "routes", None)
    if factory is None:
        return None
    kwargs: dict[str, Any] = {}
    if "callback_client" in inspect.signature(factory).parameters:
        kwargs["callback_client"] = callback_client
    result: list[BaseRoute] = factory(world, **kwargs)
    return result


async def _health(request: Request) -> Response:
    return JSON({"status": "ok"})


def build_app(world: World, *, callback_client: httpx.AsyncClient | None = None) -> Starlette:
    """The sandbox app. ``callback_client`` POSTs Edges run callbacks (and is handed to the
    LinkedAPI routes for webhooks); without it callbacks are queued for ``/_sandbox/callbacks``.
    ``app.state.world`` and ``app.state.edges`` give tests the objects behind it."""
    edges = EdgesAPI(world, callback_client=callback_client)
    connectsafely = ConnectSafelyAPI(world)
    routes: list[BaseRoute] = [
        Mount("/v1", routes=edges.routes()),
        Mount("/linkedin", routes=connectsafely.routes()),
        Mount("/_sandbox", routes=inspect_api.routes(world, edges)),
        Route("/health", _health, methods=["GET"]),
    ]
    linkedapi = _linkedapi_routes(world, callback_client)
    if linkedapi is not None:
        routes.append(Mount("/linkedapi", routes=linkedapi))
    app = Starlette(routes=routes)
    app.state.world = world
    app.state.edges = edges
    app.state.connectsafely = connectsafely
    app.state.linkedapi_mounted = linkedapi is not None
    return app
