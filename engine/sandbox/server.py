"""Serving the sandbox over HTTP with uvicorn, on the real clock (``seqrun sandbox serve``).

A background task ticks the Edges API once a second (schedule iterations, queued async runs);
run callbacks are POSTed for real. With a state directory the world is loaded from it and
written through before every answer and after every tick (engine/sandbox/durable.py), so a
SIGKILL loses nothing a client was told.

>>> # asyncio.run(serve(Sandbox.open(None, clock=RealClock()), "127.0.0.1", 8765))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from engine.clock import RealClock
from engine.errors import ConfigError
from engine.sandbox import Sandbox
from engine.sandbox.guard import TOKEN_ENV, is_loopback
from engine.sandbox.latency import apply_latency

log = logging.getLogger(__name__)


def _with_shutdown(app: Any, on_shutdown: Callable[[], Any]) -> Any:
    """The app, plus an ASGI lifespan whose shutdown calls ``on_shutdown`` (uvicorn re-raises
    SIGTERM/SIGINT after serving, so code after ``serve()`` may never run)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


def make_server(sandbox: Sandbox, host: str, port: int, *, log_level: str = "info",
                ) -> uvicorn.Server:
    """A uvicorn server for the sandbox app (written through) that closes it on shutdown."""
    config = uvicorn.Config(_with_shutdown(sandbox.asgi, sandbox.close), host=host, port=port,
                            log_level=log_level, lifespan="on", access_log=False)
    return uvicorn.Server(config)


async def _ticker(sandbox: Sandbox, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sandbox.tick()  # written through
        except Exception:  # a failing tick must not stop the server
            log.exception("sandbox tick failed")


async def serve(sandbox: Sandbox, host: str, port: int, *, tick_interval: float = 1.0,
                log_level: str = "info") -> None:
    """Serve until interrupted (the world written through when a state directory is set)."""
    server = make_server(sandbox, host, port, log_level=log_level)
    ticker = asyncio.create_task(_ticker(sandbox, tick_interval))
    try:
        await server.serve()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        sandbox.close()


def serve_forever(host: str, port: int, *, scenario: Path | None = None,
                  state_dir: Path | None = None, seed: int = 0, replace: bool = False,
                  control_token: str | None = None, latency: str | None = None) -> None:
    """Open (or load) the world on the real clock and serve it (``seqrun sandbox serve``).
    A scenario beside a saved world is a ConfigError unless ``replace``. Bound to anything
    but loopback, the control API (``/_sandbox``) needs ``control_token`` (ConfigError
    without one): anyone who reaches it can change faults, register webhooks, move time.
    ``latency``: the world's latency mode (else the saved world's)."""
    if control_token is None and not is_loopback(host):
        raise ConfigError(f"--host {host}: bound beyond loopback, the control API /_sandbox "
                          f"needs a token: set {TOKEN_ENV}")

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10) as callbacks:
            sandbox = Sandbox.open(state_dir, clock=RealClock(), scenario=scenario, seed=seed,
                                   callback_client=callbacks, replace=replace,
                                   control_token=control_token)
            if latency is not None:
                apply_latency(sandbox.world, latency)
                sandbox.save()  # the mode is the world's: kept for the next serve
            await serve(sandbox, host, port)

    asyncio.run(main())
