"""Serving the receiver with uvicorn until interrupted (``seqrun serve``).

uvicorn's access log is off: a LinkedAPI request line carries the path token.

Example::

    asyncio.run(serve(store, ServeConfig.from_env(), "127.0.0.1", 8080))
"""

from __future__ import annotations

import uvicorn

from engine.serve.app import build_app
from engine.serve.config import ServeConfig
from engine.store import Store


def make_server(store: Store, config: ServeConfig, host: str, port: int, *,
                log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the receiver (no access log: paths may carry a secret)."""
    app = build_app(store, config)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                         access_log=False, lifespan="off",
                                         server_header=False))


async def serve(store: Store, config: ServeConfig, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM."""
    await make_server(store, config, host, port).serve()
