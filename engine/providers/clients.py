"""HTTP clients for the provider adapters: base URL and credentials from the environment.

Secrets come only from environment variables. They go into request headers and nowhere
else: errors name the variable, never its value.

>>> client = make_client("edges", env={"EDGES_API_KEY": "k"})
>>> str(client.base_url)
'https://api.edges.run/v1/'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from engine.errors import ConfigError
from engine.providers import REGISTRY  # the package registers every adapter
from engine.providers.base import ProviderSpec

log = logging.getLogger(__name__)


class SandboxLike(Protocol):
    """What make_client needs from engine.sandbox.Sandbox."""

    def client(self, provider: str) -> httpx.AsyncClient: ...


@dataclass
class Reachability:
    """The providers a command could not reach (connection refused, no such host, connect
    timeout): provider -> ``{"host": ..., "error": ...}``. The host only, never the URL (it
    could carry credentials)."""

    unreachable: dict[str, dict[str, str]] = field(default_factory=dict)


def unreachable_text(provider: str, seen: Mapping[str, str]) -> str:
    """One line about a provider that could not be reached (host only: no URL, no key)."""
    return (f"provider {provider} unreachable at {seen['host']} ({seen['error']}); "
            f"check {base_url_var(provider)} and the network")


class WatchedTransport(httpx.AsyncBaseTransport):
    """The real transport, noting in a :class:`Reachability` when the provider's host cannot
    be reached (the request never left: nothing happened there). The error goes on to the
    adapter, which maps it as always."""

    def __init__(
        self, provider: str, seen: Reachability, inner: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.provider = provider
        self.seen = seen
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            self.seen.unreachable.setdefault(
                self.provider, {"host": request.url.host, "error": error})
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


def _spec(provider: str) -> ProviderSpec:
    try:
        return REGISTRY[provider]
    except KeyError:
        raise ConfigError(f"unknown provider {provider!r}") from None


def base_url_var(provider: str) -> str:
    """The environment variable that overrides a provider's base URL."""
    return f"SEQRUN_{provider.upper()}_BASE_URL"


def auth_headers(provider: str, env: Mapping[str, str]) -> dict[str, str]:
    """Request headers carrying the provider's credentials, read from ``env``.

    Raises ConfigError naming the first missing variable (never a value).
    """
    spec = _spec(provider)
    values: dict[str, str] = {}
    for var in spec.credentials:
        value = env.get(var, "").strip()
        if not value:
            raise ConfigError(
                f"{provider}: the environment variable {var} is not set "
                f"(it must hold the {provider} credential); or use --sandbox"
            )
        values[var] = value
    if provider == "edges":
        return {"X-API-Key": values["EDGES_API_KEY"]}
    if provider == "connectsafely":
        return {"Authorization": f"Bearer {values['CONNECTSAFELY_API_KEY']}"}
    if provider == "linkedapi":
        headers = {"linked-api-token": values["LINKEDAPI_TOKEN"]}
        if "LINKEDAPI_IDENTIFICATION_TOKEN" in values:
            headers["identification-token"] = values["LINKEDAPI_IDENTIFICATION_TOKEN"]
        return headers
    raise ConfigError(f"{provider}: no known authentication scheme")


def make_client(
    provider: str,
    *,
    sandbox: SandboxLike | None = None,
    env: Mapping[str, str] = os.environ,
    timeout: float = 30,
    transport: httpx.AsyncBaseTransport | None = None,
    reachability: Reachability | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``provider`` with base URL and auth headers.

    With ``sandbox`` the sandbox's own client (in-process transport, sandbox credentials) is
    returned. Otherwise the base URL is ``SEQRUN_<PROVIDER>_BASE_URL`` or the spec default,
    and the credentials come from the variables named in the spec (missing -> ConfigError).
    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``); with
    ``reachability`` a host that cannot be reached is noted there.
    """
    spec = _spec(provider)
    if sandbox is not None:
        return sandbox.client(provider)
    base_url = env.get(base_url_var(provider), "").strip() or spec.default_base_url
    if not base_url:
        raise ConfigError(f"{provider}: no base URL; set {base_url_var(provider)}")
    headers = auth_headers(provider, env)
    log.debug("provider client for %s at %s", provider, base_url)
    if reachability is not None:
        transport = WatchedTransport(provider, reachability, transport)
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=timeout,
        follow_redirects=False,
        transport=transport,
    )
