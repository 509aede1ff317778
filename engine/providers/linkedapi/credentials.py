"""LinkedAPI credentials: the main token and the LinkedIn account's identification token.

The adapter is handed an ``httpx.AsyncClient`` that already carries both headers (see
:func:`headers_from_env`). An identity with its own LinkedIn account gets its identification
token from ``LINKEDAPI_IDENTIFICATION_TOKEN__<IDENTITY>``; the token value is never logged or
raised.

Example::

    >>> identity_env_var("acct-alice")
    'LINKEDAPI_IDENTIFICATION_TOKEN__ACCT_ALICE'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from engine.errors import ConfigError

TOKEN_ENV = "LINKEDAPI_TOKEN"
IDENTIFICATION_ENV = "LINKEDAPI_IDENTIFICATION_TOKEN"
TOKEN_HEADER = "linked-api-token"
IDENTIFICATION_HEADER = "identification-token"


def identity_env_var(identity: str) -> str:
    """``LINKEDAPI_IDENTIFICATION_TOKEN__<IDENTITY>``: upper-cased, non-alphanumerics -> ``_``."""
    return f"{IDENTIFICATION_ENV}__{re.sub(r'[^A-Z0-9]', '_', identity.upper())}"


def identification_token(identity: str | None, env: Mapping[str, str]) -> str | None:
    """The identity's own identification token, else the plain one, else None."""
    if identity:
        own = env.get(identity_env_var(identity))
        if own:
            return own
    return env.get(IDENTIFICATION_ENV) or None


def identity_headers(identity: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """The header that overrides the client's identification token for an identity with
    its own LinkedIn account; empty otherwise (the client's default header applies)."""
    if identity:
        own = env.get(identity_env_var(identity))
        if own:
            return {IDENTIFICATION_HEADER: own}
    return {}


def headers_from_env(
    env: Mapping[str, str] | None = None, identity: str | None = None
) -> dict[str, str]:
    """The auth headers for LinkedAPI from environment variables.

    Raises ConfigError naming the missing variable (never a value)."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV)
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set (the LinkedAPI main token)")
    ident = identification_token(identity, env)
    if not ident:
        wanted = (
            f"{identity_env_var(identity)} or {IDENTIFICATION_ENV}"
            if identity
            else IDENTIFICATION_ENV
        )
        raise ConfigError(f"{wanted} is not set (the LinkedIn account's identification token)")
    return {TOKEN_HEADER: token, IDENTIFICATION_HEADER: ident}
