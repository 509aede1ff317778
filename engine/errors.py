"""The error tree. The CLI maps these to exit codes in one place (engine/cli/__init__.py).

Exit codes: 0 ok, 1 invalid input or failed run, 2 usage, 3 a provider could not be reached
and nothing could be done (:class:`ProviderUnreachable`), 130 interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.secrets import redact, redact_value

# Control characters (but tab) and Unicode line breaks, shown escaped so that a user's text
# (a YAML key, a CSV header) cannot split a report line or forge another `file:line:col` line.
_ESCAPES = {
    c: chr(c).encode("unicode_escape").decode("ascii")
    for c in [*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}


def one_line(text: str) -> str:
    """``text`` with control characters and line breaks escaped (``a\\nb`` for a newline)."""
    return text.translate(_ESCAPES)


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a manifest, rendered as ``file:line:col: path: message`` on one line
    (control characters in the path or message are shown escaped)."""

    file: str
    line: int
    col: int
    path: str = "$"
    message: str = ""
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return one_line(f"{self.file}:{self.line}:{self.col}: {self.path}: {tag}{self.message}")


class SeqrunError(Exception):
    """Base of every error seqrun reports to a user. Never carries a secret."""

    exit_code = 1


class UsageError(SeqrunError):
    exit_code = 2


class ManifestError(SeqrunError):
    """Every problem found in the manifests, sorted by position."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LeadsError(SeqrunError):
    """A leads file that cannot be read at all (bad rows are reported, not raised)."""


class StoreError(SeqrunError):
    pass


class LockError(StoreError):
    """Another apply or run holds the state lock."""


class PlanError(SeqrunError):
    """A plan that cannot be applied (stale, refused migration, missing approval)."""


class ProviderUnreachable(SeqrunError):
    """A provider's host could not be reached (connection refused, no such host) and the
    command could do nothing: its leads wait. Its own exit code, so a cron job or a
    supervisor can tell an outage from a refused manifest."""

    exit_code = 3


class OutputError(SeqrunError):
    """A file seqrun was asked to write (``plan -out FILE``) that cannot be written."""


class ConfigError(SeqrunError):
    """Missing credentials or settings (named by variable, never by value)."""


@dataclass
class ProviderError(SeqrunError):
    """A provider call failed. ``label`` is a canonical label (see engine.providers.base)."""

    label: str
    message: str = ""
    status: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    retry_after: float | None = None

    def __post_init__(self) -> None:
        # the message and details come from the provider, which may quote the key it was
        # sent: blanked here, where provider text enters, before it is shown, stored or logged
        self.message = redact(self.message)
        self.params = redact_value(self.params)
        super().__init__(f"{self.label}: {self.message}" if self.message else self.label)

    def __hash__(self) -> int:  # exceptions must stay hashable for tracebacks/logging
        return id(self)
