"""Serving the sandbox over HTTP with uvicorn, on the real clock (``seqrun sandbox serve``).

A background task ticks the Edges API once a second (schedule iterations, queued async runs);
run callbacks are POSTed for real. With a state directory the world is loaded from it and
saved back on shutdown.

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
from engine.sandbox import Sandbox
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
    """A uvicorn server for the sandbox app that saves the world on shutdown."""
    config = uvicorn.Config(_with_shutdown(sandbox.app, sandbox.save), host=host, port=port,
                            log_level=log_level, lifespan="on", access_log=False)
    return uvicorn.Server(config)


async def _ticker(sandbox: Sandbox, interval: float, save_every: int = 60) -> None:
    n = 0
    while True:
        await asyncio.sleep(interval)
        n += 1
        try:
            await sandbox.tick()
            if n % save_every == 0:
                sandbox.save()
        except Exception:  # a failing tick must not stop the server
            log.exception("sandbox tick failed")


async def serve(sandbox: Sandbox, host: str, port: int, *, tick_interval: float = 1.0,
                log_level: str = "info") -> None:
    """Serve until interrupted; save the world when a state directory is set."""
    server = make_server(sandbox, host, port, log_level=log_level)
    ticker = asyncio.create_task(_ticker(sandbox, tick_interval))
    try:
        await server.serve()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        sandbox.save()


def serve_forever(host: str, port: int, *, scenario: Path | None = None,
                  state_dir: Path | None = None, seed: int = 0,
                  latency: str | None = None) -> None:
    """Open (or load) the world on the real clock and serve it (``seqrun sandbox serve``)."""

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10) as callbacks:
            sandbox = Sandbox.open(state_dir, clock=RealClock(), scenario=scenario, seed=seed,
                                   callback_client=callbacks)
            if latency is not None:
                apply_latency(sandbox.world, latency)
            await serve(sandbox, host, port)

    asyncio.run(main())
