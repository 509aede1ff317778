"""Provider registry. Importing this package registers every adapter."""

from __future__ import annotations

# Each adapter module calls register(...) at import time.
from engine.providers import connectsafely  # noqa: F401
from engine.providers.base import REGISTRY, ProviderSpec, register
from engine.providers.edges import actions as _edges  # noqa: F401
from engine.providers.linkedapi import actions as _linkedapi  # noqa: F401

__all__ = ["REGISTRY", "ProviderSpec", "get_spec", "register"]


def get_spec(name: str) -> ProviderSpec:
    return REGISTRY[name]
