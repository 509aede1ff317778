"""``seqrun run`` (the runner: one tick, until a time, or a daemon) and ``seqrun simulate``
(apply then run over simulated time in a throwaway state directory)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli import render
from engine.cli.apply_cmds import apply_manifests
from engine.cli.options import (
    check_virtual_clock,
    output_option,
    parse_until,
    sandbox_option,
    state_dir_option,
    virtual_clock_option,
)
from engine.cli.render_forecast import check_chart, render_forecast, write_chart
from engine.cli.render_run import RunProgress, async_lines, run_lines, warn_unreachable
from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.runtime import RunOutcome

# `from engine import runtime` is deferred into the commands below: it loads the store
# (SQLAlchemy), the sandbox (Starlette) and the runner, which `seqrun --help` does not need.


@click.command("run")
@click.option("--once", is_flag=True, help="Run one tick (the due steps) and exit.")
@sandbox_option()
@virtual_clock_option("With --sandbox: simulated time, saved in the state dir (needs --until).")
@click.option("--until", "until", metavar="+30d|ISO",
              help="Run until this time (+duration from now, or an ISO date-time).")
@click.option("--poll-interval", type=float, default=30.0, show_default=True,
              help="Daemon: longest sleep between ticks, in seconds.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Start this many worker processes on this machine (each takes a fair "
                   "share of the identities; at scale run separate `seqrun run` processes "
                   "on one SEQRUN_DATABASE_URL instead).")
@output_option()
@state_dir_option()
def run_cmd(
    once: bool,
    sandbox: bool,
    virtual_clock: bool,
    until: str | None,
    poll_interval: float,
    workers: int,
    output: str,
    state_dir: Path,
) -> int:
    """Run the due steps: one tick (--once), until a time (--until), or as a daemon.

    `seqrun run --sandbox --virtual-clock --until +30d` plays a whole campaign against the
    embedded sandbox in seconds, then prints the funnel.
    """
    from engine import runtime  # deferred: see the module's note

    if virtual_clock and not (once or until):
        raise UsageError("--virtual-clock needs --until (or --once): simulated time never ends")
    check_virtual_clock(sandbox, virtual_clock)
    if workers > 1:
        if sandbox:
            raise UsageError("--workers needs providers the workers share: the embedded "
                             "sandbox (--sandbox) lives in one process; serve it "
                             "(`seqrun sandbox serve`) and point the workers at it")
        return _run_workers(workers, once=once, until=until, poll_interval=poll_interval,
                            output=output, state_dir=state_dir)
    opts = runtime.RunOptions(once=once, until=parse_until(until) if until else None,
                              virtual_clock=virtual_clock, poll_interval=poll_interval,
                              progress=_progress(output, once))
    outcome = runtime.run(state_dir, opts, sandbox=sandbox)
    if output == "json":
        render.print_json(outcome.to_json())
    else:
        _render_run(outcome)
    result = outcome.result
    warn_unreachable(result.unreachable, done=result.actions > 0, postponed=result.postponed)
    return 1 if outcome.result.errors else 0


def _run_workers(count: int, *, once: bool, until: str | None, poll_interval: float,
                 output: str, state_dir: Path) -> int:
    """``count`` processes of this command (without --workers); the worst exit code."""
    import json

    from engine import runtime  # deferred: see the module's note

    argv = ["run", *(["--once"] if once else []), *(["--until", until] if until else []),
            "--poll-interval", str(poll_interval), "-o", output, "--state-dir", str(state_dir)]
    done = runtime.run_workers(argv, count, capture=output == "json")
    if output == "json":
        outs = []
        for code, out in done:
            try:
                outs.append({"exit_code": code, **json.loads(out)})
            except ValueError:
                outs.append({"exit_code": code})
        render.print_json({"workers": outs})
    return max(code for code, _ in done)


def _progress(output: str, once: bool) -> type[RunProgress] | None:
    """A progress bar over simulated time, for a human at a terminal only."""
    return RunProgress if output == "text" and sys.stderr.isatty() and not once else None


def _render_run(outcome: RunOutcome) -> None:
    from engine import runtime  # deferred: see the module's note

    summary = runtime.summarize_async_runs(outcome.async_runs)
    render.render_lines(run_lines(outcome.result) + async_lines(summary))
    render.render_status(outcome.funnel)


@click.command("simulate")
@click.argument("paths", nargs=-1, required=True)
@click.option("--until", "until", default="+30d", show_default=True, metavar="+30d|ISO",
              help="How far to play simulated time (+duration from the start, or ISO).")
@click.option("--keep", "keep", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the simulation's state in this new directory (then `seqrun status` "
                   "or `why --state-dir DIR`).")
@click.option("--scenario", type=click.Path(dir_okay=False, path_type=Path),
              help="The simulated LinkedIn: a scenario file (schemas/scenario.json) instead of "
                   "the default world.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The default world's seed (acceptances, replies, edge cases).")
@click.option("--chart", "chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the forecast (daily load per action against its limit, the funnel "
                   "over time) to FILE: .html (self-contained) or .png (needs seqrun[chart]).")
@output_option()
def simulate_cmd(paths: tuple[str, ...], until: str, keep: Path | None, scenario: Path | None,
                 seed: int, chart: Path | None, output: str) -> int:
    """Play manifests over simulated time against a fresh embedded sandbox.

    What `seqrun apply --sandbox --virtual-clock` then `seqrun run --sandbox --virtual-clock
    --until` do, in a throwaway state directory: nothing is read from or written to .seqrun,
    no provider is called, no prompt is asked. Prints the plan, the run, the funnel and the
    forecast: per day and identity, the actions against each limit, the day each limit first
    binds, the backlog, the funnel by step and the finish date.
    """
    from engine import runtime  # deferred: see the module's note
    from engine.sandbox.scenario import load_scenario  # deferred: jsonschema and Starlette
    from engine.store.db import throwaway_store  # deferred with runtime: SQLAlchemy

    span = parse_until(until)  # a bad --until is refused before anything runs
    if chart is not None:
        check_chart(chart)  # an unknown format or a missing matplotlib, before the run
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise UsageError(f"--keep {keep}: the directory is not empty (give a new one)")
    if scenario is not None:
        load_scenario(scenario)  # every problem of the file, before anything runs
    with (throwaway_store(),
          tempfile.TemporaryDirectory(prefix="seqrun-simulate-") as scratch):
        state_dir = keep if keep is not None else Path(scratch)
        runtime.new_sandbox(state_dir, scenario=scenario, seed=seed)  # the world to play on
        applied = apply_manifests(paths, auto_approve=True, no_run=False, prune=False,
                                  output=output, sandbox=True, virtual_clock=True,
                                  state_dir=state_dir)
        opts = runtime.RunOptions(until=span, virtual_clock=True,
                                  progress=_progress(output, once=False))
        outcome = runtime.run(state_dir, opts, sandbox=True)
        forecast = runtime.forecast(state_dir)
    simulation = runtime.Simulation(applied, outcome, keep, forecast)
    if chart is not None:
        write_chart(forecast, chart)
    if output == "json":
        render.print_json(simulation.to_json())
        return 1 if simulation.failed else 0
    render.render_apply(applied)
    _render_run(outcome)
    render_forecast(forecast)
    if chart is not None:
        render.render_lines([f"chart written to {chart}"])
    if keep is not None:
        render.render_lines([f"state kept in {keep}: `seqrun status --state-dir {keep} "
                             f"--virtual-clock`, `seqrun why LEAD --state-dir {keep}`"])
    return 1 if simulation.failed else 0


COMMANDS = (run_cmd, simulate_cmd)
