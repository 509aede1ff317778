"""Schedule commands: ``seqrun import schedule NAME UID`` and ``seqrun schedules plan|apply``.

``seqrun schedules plan/apply`` reconcile Schedule manifests on their own; ``seqrun plan/apply``
reach the same library functions (engine.apply.schedules) for Schedule manifests.
Commands return an int exit code; errors are raised from engine.errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from engine.apply.schedules import SchedulePlan
from engine.cli.inputs import ask_approval
from engine.cli.options import output_option, prune_option, sandbox_option, state_dir_option
from engine.cli.planfile import read_plan_file, save_plan_file
from engine.cli.render_schedules import render_schedule_plan
from engine.errors import UsageError
from engine.model import Schedule

# `from engine import runtime` is deferred into the commands below: it loads the store
# (SQLAlchemy), the sandbox (Starlette) and the runner, which `seqrun --help` does not need.

_SANDBOX_HELP = "Use the embedded sandbox instead of the real Edges API."
_STATE_DIR_HELP = "Where the store (and the sandbox world) live."
_PRUNE_HELP = "Also delete managed schedules no manifest declares."


def _load_schedules(paths: tuple[str, ...]) -> list[Schedule]:
    # deferred: the loader pulls in jsonschema, which `seqrun --help` does not need
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


@click.group("import")
def import_group() -> None:
    """Adopt resources that already exist at a provider."""


@import_group.command("schedule")
@click.argument("name")
@click.argument("uid")
@sandbox_option(_SANDBOX_HELP)
@state_dir_option(_STATE_DIR_HELP)
def import_schedule_cmd(name: str, uid: str, sandbox: bool, state_dir: Path) -> int:
    """Adopt the live Edges schedule UID as the Schedule manifest NAME."""
    from engine import runtime  # deferred: see the module's note

    entry = runtime.import_schedule(name, uid, state_dir=state_dir, sandbox=sandbox)
    click.echo(f"imported schedule {uid} as {name} ({entry['action']})")
    return 0


@click.group("schedules")
def schedules_group() -> None:
    """Reconcile Schedule manifests with live Edges schedules (terraform-style)."""


@schedules_group.command("plan")
@click.argument("paths", nargs=-1, required=True)
@prune_option(_PRUNE_HELP)
@click.option("-out", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the plan for `schedules apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 1 error, 2 changes.")
@output_option(None)
@sandbox_option(_SANDBOX_HELP)
@state_dir_option(_STATE_DIR_HELP)
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
    from engine import runtime  # deferred: see the module's note

    schedules = _load_schedules(paths)
    plan = runtime.plan_schedules(schedules, state_dir=state_dir, sandbox=sandbox, prune=prune)
    _echo_plan(plan, output)
    if out is not None:
        save_plan_file(plan, out)
        if output != "json":
            click.echo(f"Saved the plan to {out}; apply it with `seqrun schedules apply {out}`.")
    return 2 if detailed_exitcode and plan.has_changes else 0


@schedules_group.command("apply")
@click.argument("paths", nargs=-1, required=True)
@prune_option(_PRUNE_HELP)
@click.option("--auto-approve", is_flag=True, help="Do not ask before applying.")
@output_option(None)
@sandbox_option(_SANDBOX_HELP)
@state_dir_option(_STATE_DIR_HELP)
def apply_cmd(
    paths: tuple[str, ...],
    prune: bool,
    auto_approve: bool,
    output: str,
    sandbox: bool,
    state_dir: Path,
) -> int:
    """Apply manifests (plan, confirm, apply) or a plan saved by `schedules plan -out FILE`."""
    from engine import runtime  # deferred: see the module's note

    saved = read_plan_file(Path(paths[0])) if len(paths) == 1 else None
    plan_or_schedules = saved if saved is not None else _load_schedules(paths)

    def approve(plan: SchedulePlan) -> bool:
        if output != "json":
            _echo_plan(plan, "text")
        return not plan.has_changes or auto_approve or ask_approval(err=True)

    plan, result = runtime.apply_schedules(plan_or_schedules, approve=approve,
                                           state_dir=state_dir, sandbox=sandbox, prune=prune)
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


COMMANDS = (import_group, schedules_group)
