"""The sandbox: a simulated LinkedIn behind the Edges, LinkedAPI and ConnectSafely APIs.

Embedded (no port) through an in-process httpx transport, or served by ``seqrun sandbox
serve``. With a state directory the world and its virtual clock are kept in its
``sandbox.db``, written through before every answer (crash-safe: see engine/sandbox/durable.py),
so a later process, even after a SIGKILL, sees the same simulated LinkedIn.

Example::

    sandbox = Sandbox.open(Path(".seqrun"))
    async with sandbox.client("edges") as client:
        r = await client.post("actions/linkedin-me/run/live",
                              json={"input": {}, "identity_ids": ["ident-alice"]})
    sandbox.close()
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette

from engine.clock import Clock, VirtualClock
from engine.errors import ConfigError
from engine.sandbox.app import build_app
from engine.sandbox.common import (
    CREDENTIALS,
    FAULT_HEADER,
    add_default_identities,
    identification_env_var,
    iso,
    parse_iso,
)
from engine.sandbox.durable import DB_FILE, WorldDB, persisting
from engine.sandbox.scenario import scenario_start, world_from_scenario
from engine.sandbox.world import World, WorldConfig
from engine.sandbox.world.records import RowTracker

__all__ = ["BASE_URLS", "Sandbox", "SandboxTransport", "default_world"]

#: where versions before the write-through database kept the world (read while the database
#: holds none)
LEGACY_FILE = "sandbox.json"
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
    """One world, its app and an in-process transport; kept under ``state_dir`` (see
    engine/sandbox/durable.py: every answered call is written through before its answer)."""

    def __init__(self, world: World, state_dir: Path | None = None, *,
                 callback_client: httpx.AsyncClient | None = None,
                 db: WorldDB | None = None, saved: bool = False,
                 control_token: str | None = None) -> None:
        """``db``: where to write the world through (``saved``: it already holds this world,
        else the whole world is written first). ``control_token``: what ``/_sandbox``
        requires (None: loopback clients only)."""
        self.world = world
        self.state_dir = state_dir
        self.app: Starlette = build_app(world, callback_client=callback_client,
                                        control_token=control_token)
        self._db = db
        self._tracker: RowTracker | None = None
        self._clock_saved: str | None = None
        if db is not None and saved:
            self._tracker = RowTracker(world)
            self._clock_saved = self._clock_iso()
        elif db is not None:
            self.save()
        #: the app behind the transport and the server: writes the world before answering
        self.asgi = persisting(self.app, self._after_call) if db is not None else self.app
        self.transport = SandboxTransport(self.asgi)

    @classmethod
    def open(cls, state_dir: Path | str | None, clock: Clock | None = None,
             scenario: Path | str | Mapping[str, Any] | None = None, seed: int = 0, *,
             leads: Path | None = None, profiles: int = 50,
             callback_client: httpx.AsyncClient | None = None, write: bool = True,
             replace: bool = False, control_token: str | None = None) -> Sandbox:
        """Load the world saved in ``state_dir`` or make one (from ``scenario``, else the
        default world). Without ``clock`` a :class:`VirtualClock` resumes at the saved time.

        ``write``: keep the world written through (False: a look that changes nothing on
        disk). A ``scenario`` beside a saved world is refused (ConfigError) unless
        ``replace``, which starts over from the scenario."""
        folder = Path(state_dir) if state_dir is not None else None
        db = _open_db(folder, write)
        saved_clock, saved, in_db = _load(folder, db)
        if db is not None and not write:  # read, then let go: a look writes nothing
            db.close()
            db = None
        if saved is not None and scenario is not None:
            if not replace:
                raise ConfigError(
                    f"{folder}: this state directory already holds a sandbox world; a "
                    f"scenario would be ignored (give a new --state-dir, or --replace to "
                    f"start over from the scenario)")
            saved_clock, saved, in_db = None, None, False
        if clock is None:
            start = parse_iso(saved_clock) if saved is not None and saved_clock else None
            if saved is None and scenario is not None:
                start = scenario_start(scenario)
            clock = VirtualClock(start)
        if saved is not None:
            world = World.from_json(saved, clock)
        elif scenario is not None:
            world = world_from_scenario(scenario, clock)
        else:
            world = default_world(clock, seed, leads=leads or DEFAULT_LEADS, profiles=profiles)
        # a world saved before the write numbers was numbered on loading: written whole
        return cls(world, folder, callback_client=callback_client, db=db,
                   saved=in_db and not world.resequenced, control_token=control_token)

    def _clock_iso(self) -> str | None:
        clock = self.world.clock
        return iso(clock.now()) if isinstance(clock, VirtualClock) else None

    def _after_call(self, scope: Mapping[str, Any]) -> None:
        # the control API may change what the row tracker does not follow (the config, a
        # profile in place): the whole world after it
        if scope["path"].startswith(PREFIXES["inspect"]) and scope["method"] != "GET":
            self.save()
        else:
            self.persist()

    def persist(self) -> None:
        """Write what changed since the last write (nothing without a state directory)."""
        if self._db is None or self._tracker is None:
            return
        rows = self._tracker.changes()
        clock = self._clock_iso()
        if clock != self._clock_saved:
            rows.append(("meta", "clock", orjson.dumps(clock)))
            self._clock_saved = clock
        self._db.write(rows)

    def save(self) -> Path | None:
        """Write the whole world and virtual clock to ``state_dir/sandbox.db`` (one
        transaction); None when the sandbox keeps nothing."""
        if self._db is None:
            return None
        self._clock_saved = self._clock_iso()
        self._db.write_all(self.world, self._clock_saved)
        self._tracker = RowTracker(self.world)
        return self._db.path

    def close(self) -> None:
        """Write what changed, then let go of the database."""
        if self._db is not None:
            self.persist()
            self._db.close()
            self._db = None

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
        self.persist()
        return started


def _open_db(folder: Path | None, write: bool) -> WorldDB | None:
    """The state directory's database: made if need be when ``write``; else only an
    existing one, to read."""
    if folder is None:
        return None
    path = folder / DB_FILE
    if not write and not path.exists():
        return None
    return WorldDB(path)


def _load(folder: Path | None, db: WorldDB | None,
          ) -> tuple[str | None, dict[str, Any] | None, bool]:
    """The saved clock and world, and whether they came from the database (else from the
    ``sandbox.json`` of earlier versions, then written into the database)."""
    if db is not None:
        clock, doc = db.load()
        if doc is not None:
            return clock, doc, True
    legacy = folder / LEGACY_FILE if folder is not None else None
    if legacy is None or not legacy.exists():
        return None, None, False
    saved = json.loads(legacy.read_text(encoding="utf-8"))
    return saved.get("clock"), saved["world"], False
