"""The secret values this process holds, to blank them out of text that came from outside.

Credentials come only from environment variables and go only into request headers; but a
provider may quote the key it was sent back in an error ("invalid key sk-..."), and that
text would then reach an error line, the store, ``why`` and the logs. :func:`redact` blanks
every secret value out of such text where it enters seqrun (:class:`engine.errors.
ProviderError`).

A secret is the value (8 characters or more) of a variable whose name ends in ``KEY``,
``TOKEN``, ``SECRET`` or ``PASSWORD`` (optionally followed by ``__<SUFFIX>``, as in
``LINKEDAPI_IDENTIFICATION_TOKEN__<IDENTITY>``): every provider credential variable is one
(a test checks the registry's).

>>> redact("bad key sk-1234567890", {"EDGES_API_KEY": "sk-1234567890"})
'bad key ***'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
MIN_LENGTH = 8  # shorter values are too likely to be ordinary words to blank out
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)(__\w+)?$")


def is_secret_name(name: str) -> bool:
    """Does the variable ``name`` hold a secret?"""
    return _SECRET_NAME.search(name.upper()) is not None


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of ``env`` (the process environment by default), longest first
    (a key that contains another is blanked whole)."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if len(v) >= MIN_LENGTH and is_secret_name(k)}
    return sorted(found, key=len, reverse=True)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secret_values(env):
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_value(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """``value`` (JSON-like: str, list, dict) with every secret string blanked out."""
    if isinstance(value, str):
        return redact(value, env)
    if isinstance(value, Mapping):
        return {k: redact_value(v, env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, env) for v in value]
    return value
