"""The sandbox's front door: the control API kept to its owner (:class:`ControlGuard`), and
request bodies checked once, before any route sees them (:class:`BodyGuard`).

A body too large is a 413, a body that is not JSON (by its content type) a 415, malformed
JSON, invalid UTF-8 or JSON nested deeper than :data:`MAX_DEPTH` a 400: each in the error
shape of the provider whose path it is, never a 5xx. A route then reads the already parsed
body (:func:`engine.sandbox.common.read_json`).

Example::

    app = Starlette(routes=..., middleware=[Middleware(ControlGuard, token=None),
                                            Middleware(BodyGuard)])
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.responses import Response

from engine.sandbox.common import JSON, PARSED_BODY

__all__ = ["MAX_BODY", "MAX_DEPTH", "TOKEN_ENV", "BodyGuard", "ControlGuard", "error_response",
           "is_loopback"]

#: the largest body a route reads (bytes); real request bodies are a few KB
MAX_BODY = 1 << 20
#: deeper JSON is refused: no provider body nests more than a few levels, and a deep one
#: would exhaust the stack of whatever walks it
MAX_DEPTH = 64

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def error_response(path: str, status: int, message: str) -> Response:
    """A request-level error in the shape of the provider whose path ``path`` is."""
    if path.startswith("/v1/"):  # Edges (providers.md §1: the standard error shape)
        return JSON({"error_label": "BAD_INPUT", "error_scope": "input",
                     "error_ref": "ERR-00000", "message": message, "status_code": status,
                     "params": {}}, status)
    if path.startswith("/linkedapi/account/"):  # the legacy Account API
        return JSON({"status": "failed",
                     "error": {"type": "invalidRequestPayload", "message": message}}, status)
    if path.startswith("/linkedapi/"):
        return JSON({"success": False,
                     "error": {"type": "invalidRequestPayload", "message": message}}, status)
    if path.startswith("/linkedin/"):  # ConnectSafely
        return JSON({"success": False, "error": message, "code": "validation_error",
                     "message": message}, status)
    return JSON({"error": message}, status)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "") or media.endswith("+json")


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests more than :data:`MAX_DEPTH` arrays/objects (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def _check(raw: bytes, content_type: str | None) -> tuple[int, str] | tuple[None, Any]:
    """``(status, message)`` of a refused body, or ``(None, parsed body)``."""
    if not raw.strip():
        return None, None
    if content_type is not None and not _is_json(content_type):
        return 415, f"the body must be JSON (Content-Type application/json), not {content_type!r}"
    deep = f"the JSON body is nested deeper than {MAX_DEPTH} levels"
    try:
        # strict and bounded: invalid UTF-8, lone surrogates and a nesting past orjson's
        # own limit (1024) are a JSONDecodeError, never a RecursionError
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return 400, deep if "depth" in str(exc) else f"the body must be valid JSON ({exc})"
    # a body with few brackets cannot nest deeply: walk only the others
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(value):
        return 400, deep
    return None, value


class BodyGuard:
    """ASGI middleware: reads (at most :data:`MAX_BODY` of) a request's body, refuses a bad
    one in the provider's error shape, else hands the parsed body on in ``scope[PARSED_BODY]``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        length = content_type = None
        for key, value in scope.get("headers", []):
            name = key.lower()
            if name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        raw = await _read(receive, length)
        if raw is None:
            refused: tuple[int, Any] | tuple[None, Any] = (
                413, f"the body is larger than {MAX_BODY} bytes")
        else:
            refused = _check(raw, content_type)
        status, value = refused
        if status is not None:
            await error_response(scope["path"], status, value)(scope, receive, send)
            return
        scope[PARSED_BODY] = value
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


async def _read(receive: Receive, length: str | None) -> bytes | None:
    """The whole body, or None when it is larger than :data:`MAX_BODY`."""
    if length is not None and length.strip().isdigit() and int(length) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


# ---- the control API -----------------------------------------------------------------------

#: the variable holding the token of the control API (``/_sandbox``)
TOKEN_ENV = "SEQRUN_SANDBOX_TOKEN"
CONTROL_PREFIX = "/_sandbox"
_LOOPBACK_NAMES = frozenset({"localhost", "testclient"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or a name) is this machine's loopback."""
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ControlGuard:
    """ASGI middleware keeping ``/_sandbox`` (faults, webhooks, the clock, ground truth) to
    those allowed to change the world under a client's feet: with a token, every control
    request carries it (``X-Sandbox-Token: T`` or ``Authorization: Bearer T``, compared in
    constant time; else 401); without one, only loopback clients (else 403). The provider
    APIs keep their own credentials."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 token: str | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == CONTROL_PREFIX
                                        or path.startswith(CONTROL_PREFIX + "/")):
            refused = self._refused(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refused(self, scope: Scope) -> Response | None:
        if self.token is None:
            client = scope.get("client")
            if client and is_loopback(client[0]):
                return None
            return JSON({"error": "the control API answers loopback clients only (serve with "
                                  f"{TOKEN_ENV} set to open it to others)"}, 403)
        given = _presented_token(scope)
        if given is not None and hmac.compare_digest(given, self.token):
            return None
        return JSON({"error": f"the control API needs its token ({TOKEN_ENV}) in "
                              "X-Sandbox-Token or Authorization: Bearer"}, 401,
                    {"WWW-Authenticate": "Bearer"})


def _presented_token(scope: Scope) -> bytes | None:
    for key, value in scope.get("headers", []):
        name = key.lower()
        if name == b"x-sandbox-token":
            return bytes(value).strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return bytes(value[7:]).strip()
    return None
