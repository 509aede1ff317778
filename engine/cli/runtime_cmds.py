"""CLI commands (see engine/cli/__init__.py). Commands return an int exit code."""

from __future__ import annotations

# ==== plan / apply / leads import / status / why / pause / resume (runtime: planner block) ====
# One block owned by the planner work; `run` (the runner work) lives in its own block.
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from engine.cli import cli
from engine.clock import Clock, RealClock
from engine.errors import ConfigError, PlanError, UsageError

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_STATE_DIR = ".seqrun"


@dataclass
class _Runtime:
    """Store, clock and provider clients for one command (sandbox or real)."""

    store: Any
    clock: Clock
    sandbox: Any = None
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client_for(self, provider: str) -> httpx.AsyncClient:
        if provider not in self.clients:
            from engine.providers.http import make_client

            self.clients[provider] = make_client(provider, sandbox=self.sandbox, env=os.environ)
        return self.clients[provider]


def _open_sandbox(state_dir: Path, virtual_clock: bool) -> tuple[Any, Clock]:
    try:
        from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        raise ConfigError("the embedded sandbox is not available in this build") from exc
    if virtual_clock:
        box = Sandbox.open(state_dir)
        clock = getattr(box, "clock", None) or box.world.clock
    else:
        clock = RealClock()
        box = Sandbox.open(state_dir, clock=clock)
    return box, clock


@asynccontextmanager
async def _runtime(
    state_dir: Path, *, sandbox: bool = False, virtual_clock: bool = False, save: bool = True
) -> AsyncIterator[_Runtime]:
    from engine.store import Store

    if virtual_clock and not sandbox:
        raise UsageError("--virtual-clock needs --sandbox (the virtual clock lives in it)")
    store = Store.open(None, state_dir)
    rt = _Runtime(store, RealClock())
    try:
        if sandbox:
            rt.sandbox, rt.clock = _open_sandbox(state_dir, virtual_clock)
        yield rt
        if save and rt.sandbox is not None and hasattr(rt.sandbox, "save"):
            rt.sandbox.save()
    finally:
        for c in rt.clients.values():
            await c.aclose()
        store.close()


def _arun(
    state_dir: Path,
    work: Callable[[_Runtime], Awaitable[_T]],
    *,
    sandbox: bool = False,
    virtual_clock: bool = False,
    save: bool = True,
) -> _T:
    async def main() -> _T:
        async with _runtime(
            state_dir, sandbox=sandbox, virtual_clock=virtual_clock, save=save
        ) as rt:
            return await work(rt)

    return asyncio.run(main())


def _state_dir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=_STATE_DIR,
        show_default=True,
        help="Where the store (and the embedded sandbox) live.",
    )(f)


def _output_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o", "--output", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help="text (rich) or json.",
    )(f)


def _sandbox_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--sandbox", is_flag=True, help="Use the embedded sandbox instead of the real APIs."
    )(f)


_prune_option = click.option(
    "--prune", is_flag=True,
    help="Schedules: also delete the managed schedules no manifest declares any more.",
)


@cli.command("plan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes (0 none, 1 error).")
@click.option("-out", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the (Schedule) plan for `seqrun apply FILE`.")
@_prune_option
@_output_option
@_sandbox_option
@_state_dir_option
def plan_cmd(
    paths: tuple[str, ...], detailed_exitcode: bool, out: Path | None, prune: bool, output: str,
    sandbox: bool, state_dir: Path,
) -> int:
    """Show what `seqrun apply` would do: revisions, leads to enroll or skip, migrations,
    workflows to run, schedules to create, replace or delete."""
    from engine.apply.plan import make_plan
    from engine.cli import render as report
    from engine.cli.schedule_cmds import save_plan_file

    manifests = _load(paths)
    if out is not None and any(m.kind != "Schedule" for m in manifests):
        raise UsageError("-out saves Schedule plans only; plan Sequences and Workflows "
                         "without it (`seqrun apply` re-plans them)")

    async def work(rt: _Runtime) -> Any:
        return await make_plan(manifests, store=rt.store, client_for=rt.client_for,
                               now=rt.clock.now(), prune=prune)

    # plan changes nothing: the sandbox (if any) resumes its own clock and is not saved
    plan = _arun(state_dir, work, sandbox=sandbox, virtual_clock=sandbox, save=False)
    if output == "json":
        report.print_json(plan.to_json(redacted=True))  # callback header values never shown
    else:
        report.render_plan(plan)
    if out is not None and plan.schedules is not None:
        save_plan_file(plan.schedules, out)
        if output != "json":
            flags = " --sandbox" if sandbox else ""
            click.echo(f"Saved the plan to {out}; apply it with `seqrun apply {out}{flags}`.")
    return 2 if detailed_exitcode and plan.has_changes else 0


def _load(paths: tuple[str, ...]) -> list[Any]:
    """Load the manifests; lint warnings go to stderr (errors raise ManifestError)."""
    from engine.apply.plan import load_manifests_with_warnings

    manifests, warnings = load_manifests_with_warnings(paths)
    for problem in warnings:
        click.echo(str(problem), err=True)
    return manifests


def _approver(auto_approve: bool, output: str) -> Callable[[Any], bool]:
    from engine.cli import render as report

    def approve(plan: Any) -> bool:
        if output == "text":
            report.render_plan(plan)
        elif not auto_approve:  # stdout keeps one JSON document; the human reads stderr
            report.render_plan(plan, report.console(stderr=True))
        if auto_approve:
            return True
        if not sys.stdin.isatty():
            raise PlanError(
                "apply needs approval: run it in a terminal to answer the prompt, or pass "
                "--auto-approve (nothing was changed)"
            )
        answer = click.prompt(
            "Do you want to perform these actions? Only 'yes' will be accepted",
            default="", show_default=False,
        )
        return bool(answer.strip() == "yes")

    return approve


async def _run_due(rt: _Runtime) -> Any:
    """One runner tick over every applied sequence's provider."""
    from engine.providers import REGISTRY
    from engine.run.runner import Runner

    providers: dict[str, Any] = {}
    for row in rt.store.list_sequences():
        spec = REGISTRY.get(row.provider)
        if spec is None or spec.factory is None or row.provider in providers:
            continue
        try:
            provider = spec.factory(rt.client_for(row.provider))
        except ConfigError as exc:
            _log.warning("not running %s sequences: %s", row.provider, exc)
            continue
        if hasattr(provider, "clock"):
            # adapters that poll (LinkedAPI) must wait on the command's clock: a virtual
            # clock only moves when slept on
            provider.clock = rt.clock
        providers[row.provider] = provider
    runner = Runner(rt.store, providers, rt.clock)
    from engine.errors import LockError

    try:
        # the same lock as `seqrun run` (never two runners at once), refreshed while it ticks
        async with runner.hold_run_lock(_run_lock_ttl(False)):
            return await runner.tick()
    except LockError as exc:
        _log.warning("due steps not run: %s (the running runner will take them)", exc)
        return {"skipped": str(exc)}


@cli.command("apply")
@click.argument("paths", nargs=-1, required=True)
@click.option("--auto-approve", is_flag=True, help="Skip the prompt (required when not a TTY).")
@click.option("--no-run", is_flag=True, help="Persist and enroll, but do not run due steps.")
@click.option("--virtual-clock", is_flag=True,
              help="With --sandbox: use the sandbox's persisted virtual clock.")
@_prune_option
@_output_option
@_sandbox_option
@_state_dir_option
def apply_cmd(
    paths: tuple[str, ...],
    auto_approve: bool,
    no_run: bool,
    virtual_clock: bool,
    prune: bool,
    output: str,
    sandbox: bool,
    state_dir: Path,
) -> int:
    """Validate, plan, ask, persist the revision, enroll the leads, then run due steps once.

    `seqrun apply FILE` applies a plan saved by `seqrun plan -out FILE` as it was approved (no
    prompt); it is refused when the live schedules moved since ("stale plan").
    """
    from engine.apply.sequences import apply_saved_schedule_plan
    from engine.cli import render as report
    from engine.cli.schedule_cmds import read_plan_file

    saved = read_plan_file(Path(paths[0])) if len(paths) == 1 else None
    if saved is not None:
        if prune:
            raise UsageError("--prune is decided when planning: `seqrun plan --prune -out FILE`")
        if output == "text":
            report.render_lines(_schedule_plan_lines(saved))

        async def apply_saved(rt: _Runtime) -> Any:
            return await apply_saved_schedule_plan(saved, store=rt.store, clock=rt.clock,
                                                   client_for=rt.client_for)

        result = _arun(state_dir, apply_saved, sandbox=sandbox, virtual_clock=virtual_clock)
        if output == "json":
            report.print_json(result.to_json())
        else:
            report.render_apply(result)
        return 0

    result = _apply_manifests(paths, auto_approve=auto_approve, no_run=no_run, prune=prune,
                              output=output, sandbox=sandbox, virtual_clock=virtual_clock,
                              state_dir=state_dir)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_apply(result)
    # applied, but the run of the due steps failed for some identity: a failed run (like `run`)
    return 1 if getattr(result.run, "errors", None) else 0


def _apply_manifests(
    paths: tuple[str, ...],
    *,
    auto_approve: bool,
    no_run: bool,
    prune: bool,
    output: str,
    sandbox: bool,
    virtual_clock: bool,
    state_dir: Path,
) -> Any:
    """`apply` of manifest files (validate, plan, ask, persist, enroll, run the due steps)."""
    from engine.apply.sequences import apply

    manifests = _load(paths)
    approve = _approver(auto_approve, output)

    async def work(rt: _Runtime) -> Any:
        if not no_run:
            # the run after the apply needs each sequence's provider: a missing credential is
            # an error now (ConfigError names the variable), before anything is persisted
            for provider in sorted({m.provider for m in manifests if m.kind == "Sequence"}):
                rt.client_for(provider)
        result = await apply(manifests, store=rt.store, clock=rt.clock, approve=approve,
                             client_for=rt.client_for, prune=prune)
        if not no_run and any(m.kind == "Sequence" for m in manifests):
            result.run = await _run_due(rt)
        return result

    return _arun(state_dir, work, sandbox=sandbox, virtual_clock=virtual_clock)


def _schedule_plan_lines(plan: Any) -> list[str]:
    from engine.apply.schedules import render_schedule_plan

    return list(render_schedule_plan(plan))


@cli.group("leads")
def leads_group() -> None:
    """Lead files."""


@leads_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sequence", "sequence", required=True, help="An applied sequence's name.")
@_output_option
@_state_dir_option
def leads_import_cmd(file: Path, sequence: str, output: str, state_dir: Path) -> int:
    """Import a leads CSV into an applied sequence; bad rows are reported and skipped."""
    from engine.apply.leads import import_leads
    from engine.cli import render as report

    async def work(rt: _Runtime) -> Any:
        return import_leads(file, sequence, store=rt.store, now=rt.clock.now())

    result = _arun(state_dir, work)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_import(result)
    return 0


def _kind_name(text: str) -> tuple[str | None, str]:
    """kubectl-style ``workflow/NAME`` or ``sequence/NAME`` -> (kind, NAME); else (None, text)."""
    kind, sep, rest = text.partition("/")
    if sep and rest and kind.lower() in ("workflow", "workflows", "wf", "sequence", "sequences",
                                         "seq"):
        return ("workflow" if kind.lower().startswith("w") else "sequence"), rest
    return None, text


@cli.command("status")
@click.argument("name", required=False)
@click.option("--virtual-clock", is_flag=True,
              help="Count the last 24 h on the embedded sandbox's virtual clock.")
@_output_option
@_state_dir_option
def status_cmd(name: str | None, virtual_clock: bool, output: str, state_dir: Path) -> int:
    """Funnel per step and terminal, per identity, limits used in the last 24 h, and workflows.

    NAME (or sequence/NAME, workflow/NAME) narrows to one sequence or workflow.
    """
    from engine.cli import render as report
    from engine.views.status import status

    if name is not None:
        name = _kind_name(name)[1]

    async def work(rt: _Runtime) -> Any:
        return status(rt.store, name, now=rt.clock.now())

    result = _arun(state_dir, work, sandbox=virtual_clock, virtual_clock=virtual_clock,
                   save=False)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_status(result)
    return 0


@cli.command("why")
@click.argument("target", required=False, metavar="LEAD_URL|WORKFLOW")
@click.option("--workflow", "workflow", metavar="NAME",
              help="Show a workflow's state history and each node's result.")
@_output_option
@_state_dir_option
def why_cmd(target: str | None, workflow: str | None, output: str, state_dir: Path) -> int:
    """Why a lead or a workflow is where it is.

    A LinkedIn profile URL: every transition of that lead (time, revision, trigger, provider
    call and label). A workflow (`--workflow NAME`, `workflow/NAME`, or a bare NAME that is
    not a profile URL): its state history and the completion tree, one node per line.
    """
    from engine.cli import render as report
    from engine.views.why import is_profile_url, why, why_workflow

    if target is not None and workflow is not None:
        raise UsageError("give a lead URL or --workflow NAME, not both")
    if target is None and workflow is None:
        raise UsageError("seqrun why needs a lead URL or --workflow NAME")
    if target is not None:
        kind, rest = _kind_name(target)
        if kind == "workflow" or (kind is None and not is_profile_url(target)):
            workflow = rest

    async def work(rt: _Runtime) -> Any:
        if workflow is not None:
            return why_workflow(rt.store, workflow)
        assert target is not None
        return why(rt.store, target)

    result = _arun(state_dir, work)
    if output == "json":
        report.print_json(result.to_json())
    elif workflow is not None:
        report.render_why_workflow(result)
    else:
        report.render_why(result)
    return 0


def _pause_resume(
    paused: bool, name: str | None, identity: str | None, everything: bool, output: str,
    state_dir: Path,
) -> int:
    from engine.cli import render as report
    from engine.views.control import set_paused

    async def work(rt: _Runtime) -> Any:
        return set_paused(rt.store, paused, sequence=name, identity=identity,
                          everything=everything, now=rt.clock.now())

    result = _arun(state_dir, work)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_pause(result)
    return 0


@cli.command("pause")
@click.argument("name", required=False)
@click.option("--identity", help="Pause one identity (all its leads, every sequence).")
@click.option("--all", "everything", is_flag=True, help="Kill switch: pause everything.")
@_output_option
@_state_dir_option
def pause_cmd(
    name: str | None, identity: str | None, everything: bool, output: str, state_dir: Path
) -> int:
    """Pause a sequence, an identity (--identity ID) or everything (--all)."""
    return _pause_resume(True, name, identity, everything, output, state_dir)


@cli.command("resume")
@click.argument("name", required=False)
@click.option("--identity", help="Resume one identity.")
@click.option("--all", "everything", is_flag=True, help="Turn the kill switch off.")
@_output_option
@_state_dir_option
def resume_cmd(
    name: str | None, identity: str | None, everything: bool, output: str, state_dir: Path
) -> int:
    """Resume a sequence, an identity (--identity ID) or everything (--all)."""
    return _pause_resume(False, name, identity, everything, output, state_dir)


# ==== end of the planner block ====


# ==== run (runtime: runner block) ====
# One block owned by the runner work; it reuses the planner block's _runtime helpers.


def _runner_providers(rt: _Runtime) -> dict[str, Any]:
    """One Provider per provider used by an applied sequence (credentials from env)."""
    from engine.providers import REGISTRY

    providers: dict[str, Any] = {}
    for row in rt.store.list_sequences():
        spec = REGISTRY.get(row.provider)
        if spec is None or spec.factory is None or row.provider in providers:
            continue
        provider = spec.factory(rt.client_for(row.provider))
        if hasattr(provider, "clock"):
            provider.clock = rt.clock  # polling adapters wait on the command's clock
        providers[row.provider] = provider
    return providers


def _parse_until(text: str, now: Any) -> Any:
    """``+30d`` / ``+12h`` (from the clock's now) or an ISO date-time (UTC when naive)."""
    from datetime import UTC, datetime

    from engine.manifest.loader import parse_duration

    text = text.strip()
    if text.startswith("+"):
        try:
            return now + parse_duration(text[1:])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--until {text!r}: not a duration like +30d or +12h") from exc
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--until {text!r}: not +<duration> nor an ISO date-time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@cli.command("run")
@click.option("--once", is_flag=True, help="Run one tick (the due steps) and exit.")
@_sandbox_option
@click.option("--virtual-clock", is_flag=True,
              help="With --sandbox: simulated time, saved in the state dir (needs --until).")
@click.option("--until", "until", metavar="+30d|ISO",
              help="Run until this time (+duration from now, or an ISO date-time).")
@click.option("--poll-interval", type=float, default=30.0, show_default=True,
              help="Daemon: longest sleep between ticks, in seconds.")
@_output_option
@_state_dir_option
def run_cmd(
    once: bool,
    sandbox: bool,
    virtual_clock: bool,
    until: str | None,
    poll_interval: float,
    output: str,
    state_dir: Path,
) -> int:
    """Run the due steps: one tick (--once), until a time (--until), or as a daemon.

    `seqrun run --sandbox --virtual-clock --until +30d` plays a whole campaign against the
    embedded sandbox in seconds, then prints the funnel.
    """
    from engine.cli import render as report

    if virtual_clock and not (once or until):
        raise UsageError("--virtual-clock needs --until (or --once): simulated time never ends")
    result, funnel, async_runs = _run_runner(once=once, sandbox=sandbox,
                                             virtual_clock=virtual_clock, until=until,
                                             poll_interval=poll_interval, output=output,
                                             state_dir=state_dir)
    if output == "json":
        report.print_json({"run": result.to_json(), "status": funnel.to_json(),
                           "async_schedules": _async_json(async_runs)})
    else:
        report.render_lines(_run_lines(result) + _async_lines(async_runs))
        report.render_status(funnel)
    return 1 if result.errors else 0


def _run_runner(
    *,
    once: bool,
    sandbox: bool,
    virtual_clock: bool,
    until: str | None,
    poll_interval: float,
    output: str,
    state_dir: Path,
) -> tuple[Any, Any, list[Any]]:
    """`run`: the runner's result, the funnel after it, and what async Schedules did."""
    from engine.run.runner import Runner
    from engine.views.status import status

    show_progress = output == "text" and sys.stderr.isatty() and not once
    async_runs: list[Any] = []

    async def work(rt: _Runtime) -> Any:
        runner = Runner(rt.store, _runner_providers(rt), rt.clock,
                        tick_hooks=[_async_schedules_hook(rt, async_runs)])
        end = _parse_until(until, rt.clock.now()) if until else None
        if once or (end is not None and virtual_clock):
            async with runner.hold_run_lock(_run_lock_ttl(virtual_clock)):
                if once:
                    return await runner.tick()
                assert end is not None
                if not show_progress:
                    return await runner.run_until(end)
                with _Progress(rt.clock.now(), end) as on_tick:
                    return await runner.run_until(end, on_tick=on_tick)
        stop = asyncio.Event()
        if end is not None:
            delay = max(0.0, (end - rt.clock.now()).total_seconds())
            asyncio.get_running_loop().call_later(delay, stop.set)
        return await runner.run_forever(poll_interval, stop=stop)

    result = _arun(state_dir, work, sandbox=sandbox, virtual_clock=virtual_clock)
    funnel = _arun(state_dir, lambda rt: _status(rt, status), sandbox=virtual_clock,
                   virtual_clock=virtual_clock, save=False)
    return result, funnel, async_runs


@cli.command("simulate")
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
@_output_option
def simulate_cmd(paths: tuple[str, ...], until: str, keep: Path | None, scenario: Path | None,
                 seed: int, output: str) -> int:
    """Play manifests over simulated time against a fresh embedded sandbox.

    What `seqrun apply --sandbox --virtual-clock` then `seqrun run --sandbox --virtual-clock
    --until` do, in a throwaway state directory: nothing is read from or written to .seqrun,
    no provider is called, no prompt is asked. Prints the plan, the run and the funnel.
    """
    import tempfile
    from datetime import UTC, datetime

    from engine.cli import render as report

    _parse_until(until, datetime.now(UTC))  # a bad --until is refused before anything runs
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise UsageError(f"--keep {keep}: the directory is not empty (give a new one)")
    if scenario is not None:
        from engine.sandbox.scenario import load_scenario

        load_scenario(scenario)  # every problem of the file, before anything runs
    with tempfile.TemporaryDirectory(prefix="seqrun-simulate-") as scratch:
        state_dir = keep if keep is not None else Path(scratch)
        from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]

        Sandbox.open(state_dir, scenario=scenario, seed=seed).save()  # the world to play on
        applied = _apply_manifests(paths, auto_approve=True, no_run=False, prune=False,
                                   output=output, sandbox=True, virtual_clock=True,
                                   state_dir=state_dir)
        result, funnel, async_runs = _run_runner(once=False, sandbox=True, virtual_clock=True,
                                                 until=until, poll_interval=30.0,
                                                 output=output, state_dir=state_dir)
    if output == "json":
        report.print_json({"apply": applied.to_json(), "run": result.to_json(),
                           "status": funnel.to_json(),
                           "async_schedules": _async_json(async_runs),
                           "state_dir": None if keep is None else str(keep)})
    else:
        report.render_apply(applied)
        report.render_lines(_run_lines(result) + _async_lines(async_runs))
        report.render_status(funnel)
        if keep is not None:
            report.render_lines([f"state kept in {keep}: `seqrun status --state-dir {keep} "
                                 f"--virtual-clock`, `seqrun why LEAD --state-dir {keep}`"])
    failed_run = getattr(applied.run, "errors", None) or result.errors
    return 1 if failed_run else 0


def _async_schedules_hook(rt: _Runtime, seen: list[Any]) -> Callable[[Any], Awaitable[bool]]:
    """A runner tick hook: every tick (``--once``, ``--until``, the daemon) also advances the
    registered ``mode: async`` Schedules (start ``run/async`` once, then ``POST
    /runs/{uid}/continue`` after each finished run). What they did is appended to ``seen``.
    Nothing is asked of Edges when no async Schedule is applied."""
    from engine.apply.schedules import NS_ASYNC
    from engine.errors import LockError, SeqrunError
    from engine.run.schedules import tick_async_schedules

    async def hook(result: Any) -> bool:
        if not rt.store.kv_items(NS_ASYNC):
            return False
        try:
            runs = await tick_async_schedules(client=rt.client_for("edges"), store=rt.store)
        except LockError as exc:  # another process drives them this tick
            _log.warning("async schedules not advanced: %s", exc)
            return False
        except SeqrunError as exc:  # a provider or configuration error: logged, next tick
            _log.warning("async schedules: %s", exc)
            result.errors.append(f"async schedules: {exc}")
            return False
        seen.extend(runs)
        # while async runs go on, run_until steps through time so each finished run is
        # continued on the way
        return True

    return hook


def _async_json(runs: list[Any]) -> dict[str, Any]:
    """Per async Schedule: how many runs were started / continued, and the last run."""
    out: dict[str, Any] = {}
    for r in runs:
        entry = out.setdefault(r.name, {"started": 0, "restarted": 0, "continued": 0,
                                        "ticks": 0, "run_uid": None, "status": None})
        entry["ticks"] += 1
        if r.outcome in ("started", "restarted", "continued"):
            entry[r.outcome] += 1
        entry["run_uid"], entry["status"] = r.run_uid, r.status
    return out


def _async_lines(runs: list[Any]) -> list[str]:
    return [
        f"async schedule {name}: {e['started'] + e['restarted']} run(s) started, "
        f"{e['continued']} continued; last run {e['run_uid']} {e['status']}"
        for name, e in _async_json(runs).items()
    ]


async def _status(rt: _Runtime, status: Callable[..., Any]) -> Any:
    return status(rt.store, None, now=rt.clock.now())


def _run_lock_ttl(virtual_clock: bool) -> Any:
    from datetime import timedelta

    # The lock expires on the wall clock: a crashed run frees it after this long (a live one
    # refreshes it in the background, see Runner.hold_run_lock).
    return timedelta(minutes=30 if virtual_clock else 10)


def _run_lines(result: Any) -> list[str]:
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
    for error in data.get("errors", []):
        lines.append(f"error: {error} (logged; the other identities ran)")
    return lines


class _Progress:
    """A rich progress bar over simulated time (stderr), fed by run_until's on_tick."""

    def __init__(self, start: Any, end: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        from engine.cli import render as report

        self.start, self.end = start, end
        self.total = max(1.0, (end - start).total_seconds())
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[now]}"),
                                 console=report.console(stderr=True), transient=True)
        self.task = self.progress.add_task("simulating", total=self.total, now="")
        self.actions = 0

    def __enter__(self) -> Callable[[Any], None]:
        self.progress.start()
        return self.update

    def update(self, tick: Any) -> None:
        self.actions += tick.actions
        done = min(self.total, (tick.at - self.start).total_seconds())
        self.progress.update(self.task, completed=done,
                             now=f"{tick.at:%Y-%m-%d %H:%M} UTC, {self.actions} actions")

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


# ==== end of the runner block ====
