"""What lint's rule modules share: the report they write findings to, the routing words, and
the hints for timezones and provider capabilities."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from typing import Literal

from engine.errors import Problem
from engine.manifest.explain import did_you_mean
from engine.model import SourceMap
from engine.providers import REGISTRY
from engine.providers.base import ProviderSpec
from engine.vocab import ERROR_LABELS

Severity = Literal["error", "warning"]

PAUSE = "pause"  # a routing target that is not a state: the runner pauses the identity
# Labels an `on:` map may route: canonical error labels plus the reply event.
ROUTE_LABELS: tuple[str, ...] = (*ERROR_LABELS, "reply")


class Report:
    """Collects the findings about one manifest, positioned through its source map."""

    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def __call__(self, path: str, message: str, severity: Severity = "error") -> None:
        self.problems.append(self.source.problem(path, message, severity))


@lru_cache(maxsize=1)
def all_timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def timezone_error(name: str) -> str | None:
    """The message for an unknown IANA timezone (with a did-you-mean), None for a known one."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown IANA timezone {name!r}{did_you_mean(name, all_timezones())}"
    return None


def unsupported(action: str, spec: ProviderSpec) -> str:
    """Why ``spec``'s provider cannot run ``action``, naming the providers that can."""
    able = sorted(name for name, s in REGISTRY.items() if action in s.capabilities)
    alternatives = f"providers that can: {', '.join(able)}" if able else "no provider can"
    return f"provider {spec.name!r} cannot {action} ({alternatives})"
