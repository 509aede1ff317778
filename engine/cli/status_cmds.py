"""``seqrun status``, ``seqrun why``, ``seqrun pause`` and ``seqrun resume``."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli import render
from engine.cli.options import (
    output_option,
    sandbox_option,
    state_dir_option,
    virtual_clock_option,
)
from engine.errors import UsageError

# `from engine import runtime` is deferred into the commands below: it loads the store
# (SQLAlchemy), the sandbox (Starlette) and the runner, which `seqrun --help` does not need.


def kind_name(text: str) -> tuple[str | None, str]:
    """kubectl-style ``workflow/NAME`` or ``sequence/NAME`` -> (kind, NAME); else (None, text)."""
    kind, sep, rest = text.partition("/")
    if sep and rest and kind.lower() in ("workflow", "workflows", "wf", "sequence", "sequences",
                                         "seq"):
        return ("workflow" if kind.lower().startswith("w") else "sequence"), rest
    return None, text


@click.command("status")
@click.argument("name", required=False)
@sandbox_option("Accepted like on the write commands: status reads only the store, so it "
                "changes nothing (the sandbox's clock comes with --virtual-clock).")
@virtual_clock_option("Count the last 24 h on the embedded sandbox's virtual clock.")
@output_option()
@state_dir_option()
def status_cmd(
    name: str | None, sandbox: bool, virtual_clock: bool, output: str, state_dir: Path
) -> int:
    """Funnel per step and terminal with rates, per identity, limits used in the last 24 h,
    workflows and schedules.

    NAME (or sequence/NAME, workflow/NAME) narrows to one sequence or workflow.
    """
    from engine import runtime  # deferred: see the module's note

    del sandbox  # read-only: the store is the same with or without the sandbox

    if name is not None:
        name = kind_name(name)[1]
    result = runtime.status(state_dir, name, virtual_clock=virtual_clock)
    if output == "json":
        render.print_json(result.to_json())
    else:
        render.render_status(result)
    return 0


@click.command("why")
@click.argument("target", required=False, metavar="LEAD_URL|WORKFLOW")
@click.option("--workflow", "workflow", metavar="NAME",
              help="Show a workflow's state history and each node's result.")
@output_option()
@state_dir_option()
def why_cmd(target: str | None, workflow: str | None, output: str, state_dir: Path) -> int:
    """Why a lead or a workflow is where it is.

    A LinkedIn profile URL: every transition of that lead (time, revision, trigger, provider
    call and label). A workflow (`--workflow NAME`, `workflow/NAME`, or a bare NAME that is
    not a profile URL): its state history and the completion tree, one node per line.
    """
    from engine import runtime  # deferred: see the module's note
    from engine.views.why import is_profile_url  # deferred with it: the store

    if target is not None and workflow is not None:
        raise UsageError("give a lead URL or --workflow NAME, not both")
    if target is None and workflow is None:
        raise UsageError("seqrun why needs a lead URL or --workflow NAME")
    if target is not None:
        kind, rest = kind_name(target)
        if kind == "workflow" or (kind is None and not is_profile_url(target)):
            workflow = rest
    if workflow is not None:
        history = runtime.why_workflow(state_dir, workflow)
        if output == "json":
            render.print_json(history.to_json())
        else:
            render.render_why_workflow(history)
        return 0
    assert target is not None
    report = runtime.why(state_dir, target)
    if output == "json":
        render.print_json(report.to_json())
    else:
        render.render_why(report)
    return 0


def _pause_resume(
    paused: bool, name: str | None, identity: str | None, everything: bool, output: str,
    state_dir: Path,
) -> int:
    from engine import runtime  # deferred: see the module's note

    result = runtime.set_paused(state_dir, paused, sequence=name, identity=identity,
                                everything=everything)
    if output == "json":
        render.print_json(result.to_json())
    else:
        render.render_pause(result)
    return 0


@click.command("pause")
@click.argument("name", required=False)
@click.option("--identity", help="Pause one identity (all its leads, every sequence).")
@click.option("--all", "everything", is_flag=True, help="Kill switch: pause everything.")
@output_option()
@state_dir_option()
def pause_cmd(
    name: str | None, identity: str | None, everything: bool, output: str, state_dir: Path
) -> int:
    """Pause a sequence, an identity (--identity ID) or everything (--all)."""
    return _pause_resume(True, name, identity, everything, output, state_dir)


@click.command("resume")
@click.argument("name", required=False)
@click.option("--identity", help="Resume one identity.")
@click.option("--all", "everything", is_flag=True, help="Turn the kill switch off.")
@output_option()
@state_dir_option()
def resume_cmd(
    name: str | None, identity: str | None, everything: bool, output: str, state_dir: Path
) -> int:
    """Resume a sequence, an identity (--identity ID) or everything (--all)."""
    return _pause_resume(False, name, identity, everything, output, state_dir)


def _rollout(stage: str, name: str, virtual_clock: bool, output: str, state_dir: Path) -> int:
    from engine import runtime  # deferred: see the module's note

    result = runtime.set_rollout(state_dir, name, stage, virtual_clock=virtual_clock)
    if output == "json":
        render.print_json(result.to_json())
    elif stage == "promoted":
        moved = "" if result.migrated is None else (
            f"; {result.migrated} in-flight lead(s) migrated to the new revision")
        click.echo(f"sequence {name}: promoted; {result.released} lead(s) that waited for the "
                   f"canary go now{moved}")
    elif result.migrated is not None:
        click.echo(f"sequence {name}: rolled back (paused); {result.migrated} canary lead(s) "
                   f"moved back to the old revision; `seqrun resume {name}` runs them there, "
                   f"`seqrun promote {name}` migrates everyone instead")
    else:
        click.echo(f"sequence {name}: rolled back (paused; the leads beyond the canary wait; "
                   f"`seqrun promote {name}` undoes it)")
    return 0


@click.command("promote")
@click.argument("name")
@virtual_clock_option("On the embedded sandbox's virtual clock.")
@output_option()
@state_dir_option()
def promote_cmd(name: str, virtual_clock: bool, output: str, state_dir: Path) -> int:
    """Promote a sequence's canary rollout by hand: the rest of its leads go now (a revision
    rollout: the rest of its in-flight leads migrate to the new revision now)."""
    return _rollout("promoted", name, virtual_clock, output, state_dir)


@click.command("rollback")
@click.argument("name")
@virtual_clock_option("On the embedded sandbox's virtual clock.")
@output_option()
@state_dir_option()
def rollback_cmd(name: str, virtual_clock: bool, output: str, state_dir: Path) -> int:
    """Roll a sequence's canary back: pause it; the leads beyond the canary never go (a
    revision rollout: its canary leads move back to the old revision)."""
    return _rollout("rolled_back", name, virtual_clock, output, state_dir)


COMMANDS = (status_cmd, why_cmd, pause_cmd, resume_cmd, promote_cmd, rollback_cmd)
