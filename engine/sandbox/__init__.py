"""The sandbox: a simulated LinkedIn behind the Edges, LinkedAPI and ConnectSafely APIs.

Embedded (no port) through an in-process httpx transport, or served by ``seqrun sandbox
serve``. The embedded sandbox keeps its world and its virtual clock in the state directory,
so a later process sees the same simulated LinkedIn.

Example::

    sandbox = Sandbox.open(Path(".seqrun"))
    async with sandbox.client("edges") as client:
        r = await client.post("actions/linkedin-me/run/live",
                              json={"input": {}, "identity_ids": ["ident-alice"]})
    sandbox.save()
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from engine.clock import Clock, VirtualClock
from engine.sandbox.app import build_app
from engine.sandbox.common import (
    CREDENTIALS,
    FAULT_HEADER,
    add_default_identities,
    identification_env_var,
    iso,
    parse_iso,
)
from engine.sandbox.scenario import scenario_start, world_from_scenario
from engine.sandbox.world import World, WorldConfig

__all__ = ["BASE_URLS", "Sandbox", "SandboxTransport", "default_world"]

STATE_FILE = "sandbox.json"
_FAULT = FAULT_HEADER.encode()
SANDBOX_HOST = "http://sandbox"
#: provider -> path of its API in the sandbox app
PREFIXES = {"edges": "/v1", "linkedapi": "/linkedapi", "connectsafely": "/linkedin",
            "inspect": "/_sandbox"}
BASE_URLS = {name: SANDBOX_HOST + prefix for name, prefix in PREFIXES.items()}
#: the project's example leads (absent from an installed wheel: then only generated profiles)
DEFAULT_LEADS = Path(__file__).resolve().parents[2] / "sequences" / "leads.csv"


class SandboxTransport(httpx.AsyncBaseTransport):
    """A minimal direct ASGI transport (faster than ``httpx.ASGITransport``). A response the
    sandbox marks as a simulated timeout raises ``httpx.ReadTimeout``, as a real one would."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": url.scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "server": (url.host, url.port or 80),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        received = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Mapping[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        if status == 504 and any(k.lower() == _FAULT for k, v in headers):
            raise httpx.ReadTimeout("sandbox: simulated timeout", request=request)
        return httpx.Response(status, headers=headers, content=b"".join(chunks),
                              request=request)


def default_world(clock: Clock, seed: int = 0, *, leads: Path | None = None,
                  profiles: int = 50, config: WorldConfig | None = None) -> World:
    """The world used when no scenario is given: ``ident-alice`` (Edges, engagement),
    ``ident-bob`` (Edges, standard), ``acct-alice`` (LinkedAPI), ``acc_12345``
    (ConnectSafely), profiles from ``leads`` (a leads CSV) plus ``profiles`` generated ones."""
    world = World(clock, seed=seed, config=config)
    add_default_identities(world)
    if leads is not None and leads.exists():
        world.populate_from_csv(leads)
    if profiles:
        world.populate(profiles)
    return world


class Sandbox:
    """One world, its app and an in-process transport; persisted under ``state_dir``."""

    def __init__(self, world: World, state_dir: Path | None = None, *,
                 callback_client: httpx.AsyncClient | None = None) -> None:
        self.world = world
        self.state_dir = state_dir
        self.app: Starlette = build_app(world, callback_client=callback_client)
        self.transport = SandboxTransport(self.app)

    @classmethod
    def open(cls, state_dir: Path | str | None, clock: Clock | None = None,
             scenario: Path | str | Mapping[str, Any] | None = None, seed: int = 0, *,
             leads: Path | None = None, profiles: int = 50,
             callback_client: httpx.AsyncClient | None = None) -> Sandbox:
        """Load the world saved in ``state_dir`` or make one (from ``scenario``, else the
        default world). Without ``clock`` a :class:`VirtualClock` resumes at the saved time."""
        path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        saved: dict[str, Any] | None = None
        if path is not None and path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
        if clock is None:
            start = parse_iso(saved["clock"]) if saved and saved.get("clock") else None
            if saved is None and scenario is not None:
                start = scenario_start(scenario)
            clock = VirtualClock(start)
        if saved is not None:
            world = World.from_json(saved["world"], clock)
        elif scenario is not None:
            world = world_from_scenario(scenario, clock)
        else:
            world = default_world(clock, seed, leads=leads or DEFAULT_LEADS, profiles=profiles)
        return cls(world, Path(state_dir) if state_dir is not None else None,
                   callback_client=callback_client)

    def save(self) -> Path | None:
        """Write world and virtual clock to ``state_dir/sandbox.json`` (atomically)."""
        if self.state_dir is None:
            return None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        clock = self.world.clock
        data = {"clock": iso(clock.now()) if isinstance(clock, VirtualClock) else None,
                "world": self.world.to_json()}
        target = self.state_dir / STATE_FILE
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".sandbox-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, target)
        return target

    def base_url(self, provider: str) -> str:
        return BASE_URLS[provider]

    def credentials(self, provider: str) -> dict[str, str]:
        """Environment variable name -> sandbox value for ``provider``."""
        creds = dict(CREDENTIALS.get(provider, {}))
        if provider == "linkedapi":
            for ident in self.world.identities.values():
                if ident.provider == "linkedapi" and ident.aliases:
                    creds[identification_env_var(ident.uid)] = ident.aliases[0]
        return creds

    def headers(self, provider: str) -> dict[str, str]:
        creds = self.credentials(provider)
        if provider == "edges":
            return {"X-API-Key": creds["EDGES_API_KEY"]}
        if provider == "linkedapi":
            return {"linked-api-token": creds["LINKEDAPI_TOKEN"],
                    "identification-token": creds["LINKEDAPI_IDENTIFICATION_TOKEN"]}
        if provider == "connectsafely":
            return {"Authorization": f"Bearer {creds['CONNECTSAFELY_API_KEY']}"}
        return {}

    def client(self, provider: str, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on the in-process transport with the provider's base URL
        and sandbox credentials (``provider`` may also be ``inspect``)."""
        return httpx.AsyncClient(transport=self.transport,
                                 base_url=self.base_url(provider) + "/",
                                 headers=self.headers(provider), **kwargs)

    async def tick(self) -> int:
        """Run due schedule iterations and queued async runs (see EdgesAPI.pump)."""
        started: int = await self.app.state.edges.tick()
        return started
