"""Provider registry. Importing this package registers every adapter."""

from __future__ import annotations

# Each adapter module calls register(...) at import time.
from engine.providers import connectsafely, edges, linkedapi  # noqa: F401
from engine.providers.base import REGISTRY, ProviderSpec, register

__all__ = ["REGISTRY", "ProviderSpec", "get_spec", "register"]


def get_spec(name: str) -> ProviderSpec:
    return REGISTRY[name]
