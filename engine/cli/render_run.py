"""Rendering of a run: the runner's result as lines, what async Schedules did, and a progress
bar over simulated time (stderr)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, Progress, TextColumn

from engine.cli.render import console
from engine.errors import ProviderUnreachable

if TYPE_CHECKING:
    from engine.run.runner import RunSummary, TickResult


def run_lines(result: TickResult | RunSummary) -> list[str]:
    """One summary line (a tick, or ticks over a span), then what needs a human's eye."""
    data = result.to_json()
    if "ticks" in data:
        head = (f"ran {data['ticks']} tick(s) from {data['started_at']} to {data['ended_at']}: "
                f"{data['actions']} action(s), {data['transitions']} transition(s), "
                f"{data['postponed']} postponed, {data['failed']} failed")
    else:
        head = (f"tick at {data['at']}: {data['due']} due, {data['actions']} action(s), "
                f"{data['transitions']} transition(s), {data['postponed']} postponed, "
                f"{data['failed']} failed")
        if data.get("kill_switch"):
            head += " (kill switch on: nothing ran; `seqrun resume --all`)"
    lines = [head]
    if data["recovered"]:
        lines.append(f"recovered {data['recovered']} interrupted action(s)")
    for ident in data["paused_identities"]:
        lines.append(f"identity {ident} paused (AUTH_EXPIRED): its leads wait for re-auth")
    for ident in data["resumed_identities"]:
        lines.append(f"identity {ident} healthy again: its leads resumed")
    if data.get("taken_over"):
        lines.append(f"took over {', '.join(sorted(set(data['taken_over'])))} from a worker "
                     "gone or stopped (their interrupted actions reconciled first)")
    for error in data.get("errors", []):
        lines.append(f"error: {error} (logged; the other identities ran)")
    return lines


def warn_unreachable(unreachable: Mapping[str, Mapping[str, str]], *, done: bool,
                     postponed: int = 0) -> None:
    """A warning on stderr for each provider whose host could not be reached (the host, never
    the URL); when nothing could be done (``done`` False), the command fails with
    ProviderUnreachable (exit 3) instead of exiting 0 with its leads silently postponed."""
    from engine.providers.clients import unreachable_text  # deferred: loads every adapter

    for name, seen in sorted(unreachable.items()):
        click.echo(f"warning: {unreachable_text(name, seen)}", err=True)
    if unreachable and not done:
        raise ProviderUnreachable(
            f"nothing could be done: {', '.join(sorted(unreachable))} could not be reached; "
            f"{postponed} lead(s) postponed until it can be")


def async_lines(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per async Schedule (``engine.runtime.summarize_async_runs``)."""
    return [
        f"async schedule {name}: {e['started'] + e['restarted']} run(s) started, "
        f"{e['continued']} continued; last run {e['run_uid']} {e['status']}"
        for name, e in summary.items()
    ]


class RunProgress:
    """A rich progress bar over simulated time (stderr), fed by run_until's on_tick."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.total = max(1.0, (end - start).total_seconds())
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[now]}"),
                                 console=console(stderr=True), transient=True)
        self.task = self.progress.add_task("simulating", total=self.total, now="")
        self.actions = 0

    def __enter__(self) -> Callable[[TickResult], None]:
        self.progress.start()
        return self.update

    def update(self, tick: TickResult) -> None:
        self.actions += tick.actions
        done = min(self.total, (tick.at - self.start).total_seconds())
        self.progress.update(self.task, completed=done,
                             now=f"{tick.at:%Y-%m-%d %H:%M} UTC, {self.actions} actions")

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
