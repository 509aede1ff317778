"""The receiver's configuration, from the environment only (secrets never come from a flag, a
manifest or the store), and the URLs to give each provider.

* ``SEQRUN_EDGES_WEBHOOK_SECRET``: Edges run callbacks and integration webhooks carry it in
  the ``X-Seqrun-Secret`` header (put it in ``callback.headers``; Edges echoes them back);
* ``SEQRUN_LINKEDAPI_WEBHOOK_SECRET``: LinkedAPI sends no header we choose, so its webhooks
  carry it as a path segment;
* ``SEQRUN_PUBLIC_URL``: where providers reach the receiver (``https://hooks.example.com``).

Example::

    config = ServeConfig.from_env({"SEQRUN_EDGES_WEBHOOK_SECRET": "s3cret"})
    [u.url for u in callback_urls(config)]  # ['http://127.0.0.1:8080/hooks/edges/callbacks', ...]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ConfigError
from engine.model import ActionStep, Manifest, Schedule, Sequence, Workflow

EDGES_SECRET_ENV = "SEQRUN_EDGES_WEBHOOK_SECRET"
LINKEDAPI_SECRET_ENV = "SEQRUN_LINKEDAPI_WEBHOOK_SECRET"
PUBLIC_URL_ENV = "SEQRUN_PUBLIC_URL"
SECRET_HEADER = "X-Seqrun-Secret"
MAX_BODY = 2 * 1024 * 1024  # bytes; an Edges `on: final` callback of 500 messages is ~300 KB
MIN_SECRET = 16  # characters: a guessable secret is refused at start

EDGES_CALLBACKS = "/hooks/edges/callbacks"
EDGES_INTEGRATIONS = "/hooks/edges/integrations"
LINKEDAPI_EVENTS = "/hooks/linkedapi/{token}/events"
LINKEDAPI_HOOK = "/hooks/linkedapi/{token}/workflows/{name}"
HEALTH = "/healthz"


@dataclass(frozen=True)
class ServeConfig:
    """The secrets (None: that provider's endpoints answer 401 to everything), the public
    URL and the body limit."""

    edges_secret: str | None = None
    linkedapi_secret: str | None = None
    public_url: str | None = None
    max_body: int = MAX_BODY

    def __repr__(self) -> str:  # never the secrets, whatever prints this object
        return (
            f"ServeConfig(edges_secret={'set' if self.edges_secret else None}, "
            f"linkedapi_secret={'set' if self.linkedapi_secret else None}, "
            f"public_url={self.public_url!r}, max_body={self.max_body})"
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, max_body: int = MAX_BODY
    ) -> ServeConfig:
        env = os.environ if env is None else env
        edges = _secret(env, EDGES_SECRET_ENV)
        linkedapi = _secret(env, LINKEDAPI_SECRET_ENV)
        public = env.get(PUBLIC_URL_ENV, "").strip() or None
        if public is not None:
            parts = urlsplit(public)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"{PUBLIC_URL_ENV} must be an http(s) URL, not {public!r}")
            public = public.rstrip("/")
        return cls(edges, linkedapi, public, max_body)

    def require_a_secret(self) -> None:
        """The receiver would accept nothing: say which variables to set."""
        if not self.edges_secret and not self.linkedapi_secret:
            raise ConfigError(
                f"set {EDGES_SECRET_ENV} (Edges callbacks and webhooks) and/or "
                f"{LINKEDAPI_SECRET_ENV} (LinkedAPI webhooks): without a secret the receiver "
                "accepts nothing"
            )


def _secret(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "")
    if not value:
        return None
    if len(value) < MIN_SECRET or value != value.strip():
        # the value itself is never repeated in an error
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET} characters without surrounding spaces "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if "/" in value or "?" in value or "#" in value or "%" in value:
        raise ConfigError(f"{name} must not contain '/', '?', '#' or '%' (it may be a URL path)")
    return value


@dataclass(frozen=True)
class CallbackUrl:
    """A URL to give a provider: where, for what, and how it is authenticated."""

    provider: str
    purpose: str
    url: str
    auth: str


def callback_urls(config: ServeConfig, local: str = "http://127.0.0.1:8080") -> list[CallbackUrl]:
    """The URLs to register with each provider whose secret is set, on ``SEQRUN_PUBLIC_URL``
    (else ``local``). A path token is shown as ``$SEQRUN_LINKEDAPI_WEBHOOK_SECRET``, never
    its value."""
    base = config.public_url or local.rstrip("/")
    out: list[CallbackUrl] = []
    if config.edges_secret:
        header = f"header {SECRET_HEADER}: ${EDGES_SECRET_ENV}"
        out.append(CallbackUrl("edges", "run and schedule callbacks (callback.url)",
                               base + EDGES_CALLBACKS, header))
        out.append(CallbackUrl("edges", "integration webhooks (AUTH_EXPIRED, AUTH_SUCCESS, "
                               "DELETED)", base + EDGES_INTEGRATIONS, header))
    if config.linkedapi_secret:
        token = "$" + LINKEDAPI_SECRET_ENV
        out.append(CallbackUrl("linkedapi", "webhook events (admin webhook.set)",
                               base + LINKEDAPI_EVENTS.format(token=token), "path token"))
        out.append(CallbackUrl("linkedapi", "result_handling: hook (a Workflow's webhook)",
                               base + LINKEDAPI_HOOK.format(token=token, name="WORKFLOW_NAME"),
                               "path token"))
    return out


SECRET_PLACEHOLDER = "$" + LINKEDAPI_SECRET_ENV


def expand_webhook(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """A Workflow's ``webhook`` as sent to LinkedAPI: the placeholder
    ``$SEQRUN_LINKEDAPI_WEBHOOK_SECRET`` (what ``seqrun serve`` prints) replaced by the
    secret, so that the manifest never holds it."""
    if url is None or SECRET_PLACEHOLDER not in url:
        return url
    env = os.environ if env is None else env
    secret = _secret(env, LINKEDAPI_SECRET_ENV)
    if secret is None:
        raise ConfigError(f"the webhook names ${LINKEDAPI_SECRET_ENV}: set it (the receiver's "
                          "LinkedAPI token)")
    return url.replace(SECRET_PLACEHOLDER, secret)


def mask_webhook(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """``url`` with the LinkedAPI secret put back as its placeholder (what the store keeps)."""
    env = os.environ if env is None else env
    secret = env.get(LINKEDAPI_SECRET_ENV)
    if url is None or not secret:
        return url
    return url.replace(secret, SECRET_PLACEHOLDER)


def expand_header(value: str, env: Mapping[str, str] | None = None) -> str:
    """A Schedule's callback header value as sent to Edges: exactly
    ``$SEQRUN_EDGES_WEBHOOK_SECRET`` becomes the secret (so the manifest never holds it);
    any other value is sent as written."""
    if value != "$" + EDGES_SECRET_ENV:
        return value
    secret = _secret(os.environ if env is None else env, EDGES_SECRET_ENV)
    if secret is None:
        raise ConfigError(f"a callback header names ${EDGES_SECRET_ENV}: set it (the "
                          "receiver's Edges secret)")
    return secret


def receiver_warnings(
    manifests: Iterable[Manifest], env: Mapping[str, str] | None = None
) -> list[str]:
    """What ``plan`` warns about: a manifest whose results only reach seqrun through
    ``seqrun serve`` (a ``hook`` Workflow, a Schedule with a callback) while no receiver is
    configured for it, or whose URL is not the receiver's."""
    env = os.environ if env is None else env
    out: list[str] = []
    for m in manifests:
        if isinstance(m, Workflow) and m.result_handling == "hook":
            path = LINKEDAPI_HOOK.format(token=SECRET_PLACEHOLDER, name=m.name)
            if not env.get(LINKEDAPI_SECRET_ENV):
                out.append(f"Workflow {m.name}: result_handling: hook needs `seqrun serve` with "
                           f"{LINKEDAPI_SECRET_ENV} set; until a result arrives it stays running")
            elif not (m.webhook or "").endswith(path):
                out.append(f"Workflow {m.name}: its webhook is not the receiver's; use "
                           f"$SEQRUN_PUBLIC_URL{path} or the result never settles it")
        elif isinstance(m, Schedule) and m.callback is not None:
            if not env.get(EDGES_SECRET_ENV):
                out.append(f"Schedule {m.name}: its callbacks need `seqrun serve` with "
                           f"{EDGES_SECRET_ENV} set, or the runner never sees its results")
            elif (not m.callback.url.rstrip("/").endswith(EDGES_CALLBACKS)
                  or m.callback.headers.get(SECRET_HEADER) != "$" + EDGES_SECRET_ENV):
                out.append(f"Schedule {m.name}: its callback is not the receiver's; use url "
                           f"$SEQRUN_PUBLIC_URL{EDGES_CALLBACKS} with header {SECRET_HEADER}: "
                           f"${EDGES_SECRET_ENV}")
        elif isinstance(m, Sequence) and _uses_async(m) and edges_run_callback(
                ServeConfig(env.get(EDGES_SECRET_ENV) or None, None,
                            env.get(PUBLIC_URL_ENV) or None)) is None:
            out.append(f"Sequence {m.name}: execution: async without {PUBLIC_URL_ENV} and "
                       f"{EDGES_SECRET_ENV}: its runs are polled (GET /runs/{{uid}}, about 3 "
                       "calls an action instead of 1); set both and run `seqrun serve`")
    return out


def _uses_async(seq: Sequence) -> bool:
    return any(isinstance(s, ActionStep) and seq.is_async(s) for s in seq.steps)


def edges_run_callback(config: ServeConfig) -> dict[str, Any] | None:
    """The ``callback`` of an ``execution: async`` run: the receiver's URL on the public URL,
    with the secret header Edges echoes back; None without both (runs are then polled)."""
    if not config.public_url or not config.edges_secret:
        return None
    return {"url": config.public_url + EDGES_CALLBACKS,
            "headers": {SECRET_HEADER: config.edges_secret}, "on": "all"}
