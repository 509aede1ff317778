"""The options commands share (``--state-dir``, ``-o/--output``, ``--sandbox``,
``--virtual-clock``, ``--prune``) and the parsing of ``--until``.

Each is a decorator factory so a command can keep its own help text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

STATE_DIR = ".seqrun"


def state_dir_option(
    text: str = "Where the store (and the embedded sandbox) live.",
) -> Callable[[F], F]:
    return click.option(
        "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=STATE_DIR,
        show_default=True, help=text,
    )


def output_option(text: str | None = "text (rich) or json.") -> Callable[[F], F]:
    return click.option(
        "-o", "--output", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help=text,
    )


def sandbox_option(
    text: str = "Use the embedded sandbox instead of the real APIs.",
) -> Callable[[F], F]:
    return click.option("--sandbox", is_flag=True, help=text)


def virtual_clock_option(text: str) -> Callable[[F], F]:
    return click.option("--virtual-clock", is_flag=True, help=text)


_PRUNE_HELP = "Schedules: also delete the managed schedules no manifest declares any more."


def prune_option(text: str = _PRUNE_HELP) -> Callable[[F], F]:
    return click.option("--prune", is_flag=True, help=text)


def skip_bad_rows_option() -> Callable[[F], F]:
    return click.option(
        "--skip-bad-rows", is_flag=True,
        help="Enroll the lead rows that pass preflight and list the ones left out (without "
             "it, a row that would fail fails the plan).")


def check_virtual_clock(sandbox: bool, virtual_clock: bool) -> None:
    """UsageError for ``--virtual-clock`` without ``--sandbox``."""
    if virtual_clock and not sandbox:
        raise UsageError("--virtual-clock needs --sandbox (the virtual clock lives in it)")


def parse_until(text: str) -> timedelta | datetime:
    """``+30d`` / ``+12h`` (a span from the clock's now) or an ISO date-time (UTC when naive)."""
    # deferred: the loader pulls in jsonschema, which `seqrun --help` does not need
    from engine.manifest.loader import parse_duration

    text = text.strip()
    if text.startswith("+"):
        try:
            return parse_duration(text[1:])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--until {text!r}: not a duration like +30d or +12h") from exc
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--until {text!r}: not +<duration> nor an ISO date-time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)
