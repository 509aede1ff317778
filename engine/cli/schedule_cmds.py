"""Schedule commands: ``seqrun import schedule NAME UID`` and ``seqrun schedules plan|apply``.

``seqrun schedules plan/apply`` make the feature reachable on their own; ``seqrun plan/apply``
(runtime_cmds) call the same library functions (engine.apply.schedules) for Schedule manifests.
Commands return an int exit code; errors are raised from engine.errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from engine.apply.schedules import (
    PLAN_FORMAT,
    SchedulePlan,
    apply_schedule_plan,
    import_schedule,
    plan_schedules,
)
from engine.cli import cli
from engine.cli.render_schedules import render_schedule_plan
from engine.errors import ConfigError, PlanError, UsageError
from engine.model import Schedule
from engine.store import Store as ScheduleStore

__all__ = ["read_plan_file", "render_schedule_plan", "save_plan_file", "schedule_context"]

T = TypeVar("T")

DEFAULT_STATE_DIR = ".seqrun"


@dataclass
class ScheduleContext:
    client: httpx.AsyncClient
    store: ScheduleStore


@asynccontextmanager
async def schedule_context(
    sandbox: bool, state_dir: Path, save: bool = True
) -> AsyncIterator[ScheduleContext]:
    """An Edges client (real, or the embedded sandbox, saved on exit when ``save``) and the
    store."""
    from engine.store import Store

    store = Store.open(None, state_dir)
    box: Any = None
    try:
        if sandbox:
            try:
                from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
            except ImportError as exc:
                raise ConfigError("the embedded sandbox is not available in this build") from exc
            box = Sandbox.open(state_dir)
        from engine.providers.http import make_client

        async with make_client("edges", sandbox=box, env=os.environ) as client:
            yield ScheduleContext(client, store)
        if save and box is not None and hasattr(box, "save"):
            box.save()
    finally:
        store.close()


def _run(
    sandbox: bool,
    state_dir: Path,
    work: Callable[[ScheduleContext], Awaitable[T]],
    *,
    save: bool = True,
) -> T:
    async def main() -> T:
        async with schedule_context(sandbox, state_dir, save) as ctx:
            return await work(ctx)

    return asyncio.run(main())


def _load_schedules(paths: tuple[str, ...]) -> list[Schedule]:
    from engine.manifest.loader import load

    schedules = [m for m in load(paths) if isinstance(m, Schedule)]
    if not schedules:
        raise UsageError(f"no Schedule manifest in {', '.join(paths)}")
    return schedules


def _echo_plan(plan: SchedulePlan, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(plan.to_json(redacted=True), indent=2, sort_keys=True))
        return
    for line in render_schedule_plan(plan):
        style = {"+": "green", "-": "red", "=": None}.get(line[:1])
        if line.startswith("-/+"):
            style = "yellow"
        click.secho(line, fg=style)


def save_plan_file(plan: SchedulePlan, out: Path) -> None:
    """Write a plan for a later ``apply FILE`` (owner-only: it holds callback headers)."""
    # A saved plan carries callback headers: owner-only, like terraform plan files.
    text = json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def read_plan_file(path: Path) -> SchedulePlan | None:
    """The saved plan at ``path``, or None when ``path`` is not a saved plan."""
    if not path.is_file() or path.suffix in (".yaml", ".yml"):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        return None
    return SchedulePlan.from_json(data)


def _approved() -> bool:
    if not sys.stdin.isatty():
        raise PlanError(
            "apply needs approval: run it in a terminal to answer the prompt, or pass "
            "--auto-approve (nothing was changed)"
        )
    answer = click.prompt(
        "Do you want to perform these actions? Only 'yes' will be accepted",
        default="", show_default=False, err=True,
    )
    return bool(answer.strip() == "yes")


sandbox_option = click.option(
    "--sandbox", is_flag=True, help="Use the embedded sandbox instead of the real Edges API."
)
state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the store (and the sandbox world) live.",
)
output_option = click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)


@cli.group("import")
def import_group() -> None:
    """Adopt resources that already exist at a provider."""


@import_group.command("schedule")
@click.argument("name")
@click.argument("uid")
@sandbox_option
@state_dir_option
def import_schedule_cmd(name: str, uid: str, sandbox: bool, state_dir: Path) -> int:
    """Adopt the live Edges schedule UID as the Schedule manifest NAME."""

    async def work(ctx: ScheduleContext) -> dict[str, Any]:
        return await import_schedule(name, uid, client=ctx.client, store=ctx.store)

    entry = _run(sandbox, state_dir, work)
    click.echo(f"imported schedule {uid} as {name} ({entry['action']})")
    return 0


@cli.group("schedules")
def schedules_group() -> None:
    """Reconcile Schedule manifests with live Edges schedules (terraform-style)."""


@schedules_group.command("plan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--prune", is_flag=True, help="Also delete managed schedules no manifest declares.")
@click.option("-out", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the plan for `schedules apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 1 error, 2 changes.")
@output_option
@sandbox_option
@state_dir_option
def plan_cmd(
    paths: tuple[str, ...],
    prune: bool,
    out: Path | None,
    detailed_exitcode: bool,
    output: str,
    sandbox: bool,
    state_dir: Path,
) -> int:
    """Show what `schedules apply` would create, replace or delete."""
    schedules = _load_schedules(paths)

    async def work(ctx: ScheduleContext) -> SchedulePlan:
        return await plan_schedules(schedules, client=ctx.client, store=ctx.store, prune=prune)

    plan = _run(sandbox, state_dir, work, save=False)  # a plan changes nothing
    _echo_plan(plan, output)
    if out is not None:
        save_plan_file(plan, out)
        if output != "json":
            click.echo(f"Saved the plan to {out}; apply it with `seqrun schedules apply {out}`.")
    return 2 if detailed_exitcode and plan.has_changes else 0


@schedules_group.command("apply")
@click.argument("paths", nargs=-1, required=True)
@click.option("--prune", is_flag=True, help="Also delete managed schedules no manifest declares.")
@click.option("--auto-approve", is_flag=True, help="Do not ask before applying.")
@output_option
@sandbox_option
@state_dir_option
def apply_cmd(
    paths: tuple[str, ...],
    prune: bool,
    auto_approve: bool,
    output: str,
    sandbox: bool,
    state_dir: Path,
) -> int:
    """Apply manifests (plan, confirm, apply) or a plan saved by `schedules plan -out FILE`."""
    saved = read_plan_file(Path(paths[0])) if len(paths) == 1 else None
    schedules = None if saved is not None else _load_schedules(paths)

    async def work(ctx: ScheduleContext) -> tuple[SchedulePlan, Any]:
        plan = saved
        if plan is None:
            assert schedules is not None
            plan = await plan_schedules(
                schedules, client=ctx.client, store=ctx.store, prune=prune
            )
            if output != "json":
                _echo_plan(plan, "text")
            if plan.has_changes and not auto_approve and not _approved():
                return plan, None
        return plan, await apply_schedule_plan(plan, client=ctx.client, store=ctx.store)

    plan, result = _run(sandbox, state_dir, work)
    if result is None:
        click.echo("Apply cancelled.", err=True)
        return 1
    if output == "json":
        doc = {"plan": plan.to_json(redacted=True), "result": result.to_json()}
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    for step in result.steps:
        click.echo(f"  {step}")
    click.echo(
        f"Apply complete: {len(result.created)} created, {len(result.replaced)} replaced, "
        f"{len(result.deleted)} deleted, {len(result.unchanged)} unchanged."
    )
    return 0
