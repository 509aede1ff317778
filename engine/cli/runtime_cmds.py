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
            from engine.providers.client import make_client

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


@cli.command("plan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes (0 none, 1 error).")
@_output_option
@_sandbox_option
@_state_dir_option
def plan_cmd(
    paths: tuple[str, ...], detailed_exitcode: bool, output: str, sandbox: bool, state_dir: Path
) -> int:
    """Show what `seqrun apply` would do: revisions, leads to enroll or skip, migrations."""
    from engine import report
    from engine.planner import load_manifests, make_plan

    manifests = load_manifests(paths)

    async def work(rt: _Runtime) -> Any:
        return await make_plan(manifests, store=rt.store, client_for=rt.client_for,
                               now=rt.clock.now())

    # plan changes nothing: the sandbox (if any) resumes its own clock and is not saved
    plan = _arun(state_dir, work, sandbox=sandbox, virtual_clock=sandbox, save=False)
    if output == "json":
        report.print_json(plan.to_json())
    else:
        report.render_plan(plan)
    return 2 if detailed_exitcode and plan.has_changes else 0


def _approver(auto_approve: bool, output: str) -> Callable[[Any], bool]:
    from engine import report

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
    from engine.runner import Runner

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
    return await runner.tick()


@cli.command("apply")
@click.argument("paths", nargs=-1, required=True)
@click.option("--auto-approve", is_flag=True, help="Skip the prompt (required when not a TTY).")
@click.option("--no-run", is_flag=True, help="Persist and enroll, but do not run due steps.")
@click.option("--virtual-clock", is_flag=True,
              help="With --sandbox: use the sandbox's persisted virtual clock.")
@_output_option
@_sandbox_option
@_state_dir_option
def apply_cmd(
    paths: tuple[str, ...],
    auto_approve: bool,
    no_run: bool,
    virtual_clock: bool,
    output: str,
    sandbox: bool,
    state_dir: Path,
) -> int:
    """Validate, plan, ask, persist the revision, enroll the leads, then run due steps once."""
    from engine import report
    from engine.planner import apply, load_manifests

    manifests = load_manifests(paths)
    approve = _approver(auto_approve, output)

    async def work(rt: _Runtime) -> Any:
        result = await apply(manifests, store=rt.store, clock=rt.clock, approve=approve,
                             client_for=rt.client_for)
        if not no_run and any(m.kind == "Sequence" for m in manifests):
            result.run = await _run_due(rt)
        return result

    result = _arun(state_dir, work, sandbox=sandbox, virtual_clock=virtual_clock)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_apply(result)
    return 0


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
    from engine import report
    from engine.planner import import_leads

    async def work(rt: _Runtime) -> Any:
        return import_leads(file, sequence, store=rt.store, now=rt.clock.now())

    result = _arun(state_dir, work)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_import(result)
    return 0


@cli.command("status")
@click.argument("name", required=False)
@click.option("--virtual-clock", is_flag=True,
              help="Count the last 24 h on the embedded sandbox's virtual clock.")
@_output_option
@_state_dir_option
def status_cmd(name: str | None, virtual_clock: bool, output: str, state_dir: Path) -> int:
    """Funnel per step and terminal, per identity, and limits used in the last 24 h."""
    from engine import report
    from engine.observe import status

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
@click.argument("lead_url")
@_output_option
@_state_dir_option
def why_cmd(lead_url: str, output: str, state_dir: Path) -> int:
    """Every transition of one lead: time, revision, trigger, provider call and label."""
    from engine import report
    from engine.observe import why

    async def work(rt: _Runtime) -> Any:
        return why(rt.store, lead_url)

    result = _arun(state_dir, work)
    if output == "json":
        report.print_json(result.to_json())
    else:
        report.render_why(result)
    return 0


def _pause_resume(
    paused: bool, name: str | None, identity: str | None, everything: bool, output: str,
    state_dir: Path,
) -> int:
    from engine import report
    from engine.observe import set_paused

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
