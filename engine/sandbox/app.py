"""The sandbox's Starlette app: ``/v1`` (Edges), ``/linkedapi`` (LinkedAPI), ``/linkedin``
(ConnectSafely) and ``/_sandbox`` (inspection), all over one :class:`World`.

Example::

    app = build_app(World(VirtualClock(), seed=1))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sandbox/v1")
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from engine.sandbox import inspect as inspect_api
from engine.sandbox.common import JSON
from engine.sandbox.connectsafely import ConnectSafelyAPI
from engine.sandbox.edges.api import EdgesAPI
from engine.sandbox.guard import BodyGuard, ControlGuard
from engine.sandbox.linkedapi.api import routes as linkedapi_routes
from engine.sandbox.world import World


async def _health(request: Request) -> Response:
    return JSON({"status": "ok"})


def build_app(world: World, *, callback_client: httpx.AsyncClient | None = None,
              control_token: str | None = None) -> Starlette:
    """The sandbox app. ``callback_client`` POSTs Edges run callbacks (and is handed to the
    LinkedAPI routes for webhooks); without it callbacks are queued for ``/_sandbox/callbacks``.
    ``app.state.world`` and ``app.state.edges`` give tests the objects behind it.
    ``control_token``: the token ``/_sandbox`` requires (None: loopback clients only)."""
    edges = EdgesAPI(world, callback_client=callback_client)
    connectsafely = ConnectSafelyAPI(world)
    routes: list[BaseRoute] = [
        Mount("/v1", routes=edges.routes()),
        Mount("/linkedin", routes=connectsafely.routes()),
        Mount("/_sandbox", routes=inspect_api.routes(world, edges)),
        Route("/health", _health, methods=["GET"]),
        Mount("/linkedapi", routes=linkedapi_routes(world, callback_client=callback_client)),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(ControlGuard, token=control_token), Middleware(BodyGuard)])
    app.state.world = world
    app.state.edges = edges
    app.state.connectsafely = connectsafely
    app.state.linkedapi_mounted = True
    return app
