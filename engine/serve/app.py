"""The receiver's Starlette app: authenticate, bound, decode, record once, then answer.

Every hook endpoint checks, in this order (and never answers 5xx to a bad request):

1. the secret (``X-Seqrun-Secret`` for Edges, the path token for LinkedAPI), compared in
   constant time: missing or wrong is 401 and the body is not even read;
2. the content type (``application/json``, else 415);
3. the size (``Content-Length`` or the bytes actually sent over the limit: 413);
4. the JSON (400 when it does not decode, or lacks what the endpoint needs).

Then the event is committed to the store (:mod:`engine.store.inbound`, once per dedupe key)
and only then is 200 returned, ``{"recorded": true}`` or ``false`` for a retry already
recorded. A store that cannot write (locked past its timeout) is 503 with ``Retry-After``:
the provider retries, nothing is lost.

Example::

    app = build_app(store, ServeConfig.from_env())
    # uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.clock import Clock
from engine.serve import events as ev
from engine.serve.config import (
    EDGES_CALLBACKS,
    EDGES_INTEGRATIONS,
    HEALTH,
    LINKEDAPI_EVENTS,
    LINKEDAPI_HOOK,
    SECRET_HEADER,
    ServeConfig,
)
from engine.store import Store
from engine.store.inbound import record_inbound
from engine.store.workflows import workflow_run

log = logging.getLogger(__name__)

Parse = Callable[[Request, Any], ev.Accepted]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _same(given: str | None, secret: str | None) -> bool:
    """Constant-time equality of the presented secret and ours (False when either is absent)."""
    if not given or not secret:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass")
    )


def _json_type(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and
                                           media.endswith("+json"))


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _Refused(413, f"the body is over {limit} bytes")
        except ValueError:
            raise _Refused(400, "Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _Refused(400, "the body is not valid JSON") from None


class Receiver:
    """The endpoints over one store and one configuration."""

    def __init__(self, store: Store, config: ServeConfig, clock: Clock | None = None) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    def _edges_auth(self, request: Request) -> None:
        if not _same(request.headers.get(SECRET_HEADER), self.config.edges_secret):
            raise _Refused(401, f"missing or wrong {SECRET_HEADER}")

    def _linkedapi_auth(self, request: Request) -> None:
        if not _same(request.path_params.get("token"), self.config.linkedapi_secret):
            raise _Refused(401, "missing or wrong token")

    def _attempt(self, name: str) -> int:
        record = workflow_run(self.store, name)
        attempt = record.get("attempt") if isinstance(record, dict) else None
        return attempt if isinstance(attempt, int) else 0

    def endpoint(
        self, auth: Callable[[Request], None], parse: Parse
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                auth(request)
                if not _json_type(request):
                    raise _Refused(415, "Content-Type must be application/json")
                body = _decode(await _body(request, self.config.max_body))
                # On the event loop, not a worker thread: SQLite takes one writer at a time
                # anyway, and the hop doubled the CPU an event costs (2,800 -> 1,300 per CPU
                # second); a locked store blocks the loop for at most its busy timeout.
                recorded = self._record(parse, request, body)
            except _Refused as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except sa.exc.OperationalError as exc:  # the store is busy or down: retry later
                log.warning("inbound event not recorded: %s", type(exc.orig).__name__)
                return JSONResponse({"error": "store unavailable, retry"}, status_code=503,
                                    headers={"Retry-After": "5"})
            return JSONResponse({"recorded": recorded})

        return handle

    def _record(self, parse: Parse, request: Request, body: Any) -> bool:
        try:
            accepted = parse(request, body)
        except ev.BadEvent as exc:
            raise _Refused(400, str(exc)) from None
        recorded = record_inbound(
            self.store,
            source=accepted.source,
            kind=accepted.kind,
            dedupe_key=accepted.dedupe_key,
            subject=accepted.subject,
            payload=accepted.payload,
            at=None if self.clock is None else self.clock.now(),
        )
        log.info("%s %s %r: %s", accepted.source, accepted.kind, accepted.subject or "-",
                 "recorded" if recorded else "duplicate")
        return recorded

    def _hook(self, request: Request, body: Any) -> ev.Accepted:
        name = str(request.path_params.get("name", ""))
        return ev.linkedapi_hook(body, name, self._attempt(name))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return JSONResponse({"error": "not found" if status == 404 else "not allowed"},
                        status_code=status)


def build_app(store: Store, config: ServeConfig, clock: Clock | None = None) -> Starlette:
    """The receiver's routes over ``store``; see the module docstring for what each answers.
    ``clock``: what stamps an event's ``received_at`` (the wall clock without one; a virtual
    one in tests and benchmarks, so the runner's freshness bounds read the same time)."""
    r = Receiver(store, config, clock)
    routes = [
        Route(HEALTH, r.health, methods=["GET"]),
        Route(EDGES_CALLBACKS, r.endpoint(r._edges_auth, lambda _, b: ev.edges_callback(b)),
              methods=["POST"]),
        Route(EDGES_INTEGRATIONS,
              r.endpoint(r._edges_auth, lambda _, b: ev.edges_integration(b)), methods=["POST"]),
        Route(LINKEDAPI_EVENTS, r.endpoint(r._linkedapi_auth, lambda _, b: ev.linkedapi_event(b)),
              methods=["POST"]),
        Route(LINKEDAPI_HOOK, r.endpoint(r._linkedapi_auth, r._hook), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
