"""``seqrun plan`` and ``seqrun apply``: Sequences, Workflows and Schedules, terraform-style."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.apply.schedules import SchedulePlan
from engine.cli import render
from engine.cli.inputs import load_manifests, plan_approver
from engine.cli.options import (
    check_virtual_clock,
    output_option,
    prune_option,
    sandbox_option,
    skip_bad_rows_option,
    state_dir_option,
    virtual_clock_option,
)
from engine.cli.planfile import read_plan_file, save_plan_file
from engine.cli.render_forecast import render_week
from engine.cli.render_run import warn_unreachable
from engine.cli.render_schedules import render_schedule_plan
from engine.errors import UsageError
from engine.model import Caps

if TYPE_CHECKING:
    from engine.apply.sequences import ApplyResult

def caps_options(f: click.decorators.FC) -> click.decorators.FC:
    """``--max-enroll N`` and ``--max-sends-per-day N`` (plan and apply)."""
    f = click.option("--max-sends-per-day", type=click.IntRange(min=0), default=None,
                     metavar="N", help="At most N sends (connect, message, InMail) per 24 h "
                     "per sequence across its identities (tightens caps: in the manifest).")(f)
    return click.option("--max-enroll", type=click.IntRange(min=0), default=None, metavar="N",
                        help="Enroll at most N new leads per sequence in this apply; the rest "
                        "wait for a later one (plan shows them).")(f)


def caps_of(max_enroll: int | None, max_sends_per_day: int | None) -> Caps | None:
    if max_enroll is None and max_sends_per_day is None:
        return None
    return Caps(max_enroll, max_sends_per_day)


# `from engine import runtime` is deferred into the commands below: it loads the store
# (SQLAlchemy), the sandbox (Starlette) and the runner, which `seqrun --help` does not need.


@click.command("plan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes (0 none, 1 error).")
@click.option("-out", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the (Schedule) plan for `seqrun apply FILE`.")
@click.option("--forecast", "forecast", is_flag=True,
              help="Also show the first week's projected sends per day and identity, from a "
                   "quick simulation on the embedded sandbox (as `seqrun simulate --until +7d`).")
@skip_bad_rows_option()
@prune_option()
@caps_options
@output_option()
@sandbox_option()
@state_dir_option()
def plan_cmd(
    paths: tuple[str, ...], detailed_exitcode: bool, out: Path | None, skip_bad_rows: bool,
    prune: bool, max_enroll: int | None, max_sends_per_day: int | None, output: str,
    sandbox: bool, state_dir: Path, forecast: bool,
) -> int:
    """Show what `seqrun apply` would do: revisions, leads to enroll or skip, migrations,
    workflows to run, schedules to create, replace or delete.

    Preflight: every template is rendered for every lead to enroll; rows that would fail
    (an empty value without a default, a text over the provider's maximum, a refused URL) are
    listed as FILE:LINE and the plan exits 1, unless --skip-bad-rows. The identities are
    checked at the provider (with --sandbox, or when its credentials are set)."""
    from engine import runtime  # deferred: see the module's note

    manifests = load_manifests(paths)
    if out is not None and any(m.kind != "Schedule" for m in manifests):
        raise UsageError("-out saves Schedule plans only; plan Sequences and Workflows "
                         "without it (`seqrun apply` re-plans them)")
    plan = runtime.plan(manifests, state_dir=state_dir, sandbox=sandbox, prune=prune,
                        caps=caps_of(max_enroll, max_sends_per_day), skip_bad_rows=skip_bad_rows)
    week = runtime.quick_forecast(manifests, timedelta(days=7)) if forecast else None
    if output == "json":
        data = plan.to_json(redacted=True)  # callback header values never shown
        render.print_json(data if week is None else {**data, "forecast": week.to_json()})
    else:
        render.render_plan(plan)
        if week is not None:
            render_week(week)
    if plan.failed:
        raise plan.failure(listed=output != "json")
    if out is not None and plan.schedules is not None:
        save_plan_file(plan.schedules, out)
        if output != "json":
            flags = " --sandbox" if sandbox else ""
            click.echo(f"Saved the plan to {out}; apply it with `seqrun apply {out}{flags}`.")
    return 2 if detailed_exitcode and plan.has_changes else 0


@click.command("apply")
@click.argument("paths", nargs=-1, required=True)
@click.option("--auto-approve", is_flag=True, help="Skip the prompt (required when not a TTY).")
@click.option("--no-run", is_flag=True, help="Persist and enroll, but do not run due steps.")
@virtual_clock_option("With --sandbox: use the sandbox's persisted virtual clock.")
@skip_bad_rows_option()
@prune_option()
@caps_options
@output_option()
@sandbox_option()
@state_dir_option()
def apply_cmd(
    paths: tuple[str, ...],
    auto_approve: bool,
    no_run: bool,
    virtual_clock: bool,
    skip_bad_rows: bool,
    prune: bool,
    max_enroll: int | None,
    max_sends_per_day: int | None,
    output: str,
    sandbox: bool,
    state_dir: Path,
) -> int:
    """Validate, plan, ask, persist the revision, enroll the leads, then run due steps once.

    `seqrun apply FILE` applies a plan saved by `seqrun plan -out FILE` as it was approved (no
    prompt); it is refused when the live schedules moved since ("stale plan").
    """
    saved = read_plan_file(Path(paths[0])) if len(paths) == 1 else None
    if saved is not None:
        if prune:
            raise UsageError("--prune is decided when planning: `seqrun plan --prune -out FILE`")
        return _apply_saved(saved, output=output, sandbox=sandbox, virtual_clock=virtual_clock,
                            state_dir=state_dir)
    result = apply_manifests(paths, auto_approve=auto_approve, no_run=no_run, prune=prune,
                             output=output, sandbox=sandbox, virtual_clock=virtual_clock,
                             state_dir=state_dir, caps=caps_of(max_enroll, max_sends_per_day),
                             skip_bad_rows=skip_bad_rows)
    _print_apply(result, output)
    # applied, but a provider could not be reached: a warning, exit 3 when nothing was done
    warn_unreachable(result.unreachable, done=_did_something(result),
                     postponed=getattr(result.run, "postponed", 0))
    # applied, but the run of the due steps failed for some identity (a failed run, like
    # `run`), or a workflow ended failed: the command failed
    failed_workflow = any(getattr(w, "state", None) == "failed" for w in result.workflows.values())
    return 1 if getattr(result.run, "errors", None) or failed_workflow else 0


def _did_something(result: ApplyResult) -> bool:
    """Did the provider calls of an apply get anywhere (an action, a workflow not failed)?"""
    acted = getattr(result.run, "actions", 0) > 0
    return acted or any(getattr(w, "state", "failed") != "failed"
                        for w in result.workflows.values())


def _apply_saved(
    saved: SchedulePlan, *, output: str, sandbox: bool, virtual_clock: bool, state_dir: Path
) -> int:
    from engine import runtime  # deferred: see the module's note

    if output == "text":
        render.render_lines(render_schedule_plan(saved))
    check_virtual_clock(sandbox, virtual_clock)
    result = runtime.apply_saved_plan(saved, state_dir=state_dir, sandbox=sandbox,
                                      virtual_clock=virtual_clock)
    _print_apply(result, output)
    return 0


def apply_manifests(
    paths: tuple[str, ...],
    *,
    auto_approve: bool,
    no_run: bool,
    prune: bool,
    output: str,
    sandbox: bool,
    virtual_clock: bool,
    state_dir: Path,
    caps: Caps | None = None,
    skip_bad_rows: bool = False,
) -> ApplyResult:
    """`apply` of manifest files (validate, plan, ask, persist, enroll, run the due steps)."""
    from engine import runtime  # deferred: see the module's note

    manifests = load_manifests(paths)
    check_virtual_clock(sandbox, virtual_clock)
    return runtime.apply(manifests, approve=plan_approver(auto_approve, output), run=not no_run,
                         prune=prune, state_dir=state_dir, sandbox=sandbox,
                         virtual_clock=virtual_clock, caps=caps, skip_bad_rows=skip_bad_rows)


def _print_apply(result: ApplyResult, output: str) -> None:
    if output == "json":
        render.print_json(result.to_json())
    else:
        render.render_apply(result)


COMMANDS = (plan_cmd, apply_cmd)
