"""Rendering for the CLI: rich on a terminal, JSON with ``-o json``. The library never prints;
CLI commands render its results with these.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from engine.cli.render_schedules import render_schedule_plan
from engine.cli.render_workflows import workflow_lines
from engine.run.workflow_results import WorkflowResult

if TYPE_CHECKING:
    from engine.apply.leads import LeadsImportResult
    from engine.apply.plan import Plan, SequencePlan
    from engine.apply.sequences import ApplyResult
    from engine.views.control import PauseResult
    from engine.views.status import StatusReport
    from engine.views.why import WhyReport, WorkflowWhy


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); plain text when not a terminal."""
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine output: one JSON document on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _to_json(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


# ---- plan / apply / leads import / status / why / pause ----------------------------------------


def render_plan(plan: Plan, out: Console | None = None) -> None:
    """terraform-style summary of a Plan."""
    out = out or console()
    for sp in plan.sequences:
        _render_sequence_plan(sp, out)
    for wp in plan.workflows:
        out.print(f"[green]+[/] Workflow [bold]{wp.name}[/] ({wp.provider}) will run:")
        out.print("    " + json.dumps(wp.body, indent=2, ensure_ascii=False).replace(
            "\n", "\n    "), markup=False)
    if plan.schedules is not None:
        for line in render_schedule_plan(plan.schedules):
            out.print(line, markup=False)
    for warning in plan.warnings:  # on stderr, as lint warnings: stdout stays the plan
        click.echo(f"warning: {warning}", err=True)
    if not plan.sequences and not plan.workflows and plan.schedules is not None:
        return  # the schedule plan's own summary line says it all
    if not plan.has_changes:
        out.print("No changes. The state matches the manifests.")
    else:
        enroll = sum(len(s.enroll) for s in plan.sequences)
        revs = sum(1 for s in plan.sequences if s.action != "unchanged")
        moves = sum(g.count for s in plan.sequences for g in s.migrations)
        updates = sum(len(s.update) for s in plan.sequences)
        out.print(f"Plan: {revs} sequence revision(s), {enroll} lead(s) to enroll, "
                  f"{moves} lead(s) to migrate, {updates} lead(s) to update, "
                  f"{len(plan.workflows)} workflow(s) to run.")


def _render_sequence_plan(sp: SequencePlan, out: Console) -> None:
    mark = {"create": "[green]+[/]", "update": "[yellow]~[/]", "unchanged": " "}[sp.action]
    head = f"{mark} Sequence [bold]{sp.name}[/] ({sp.provider}) revision {sp.revision}"
    if sp.action == "update":
        head += f" (was {sp.previous_revision})"
    out.print(head + ("" if sp.action != "unchanged" else " [dim]unchanged[/]"))
    _render_enroll(sp, out)
    if sp.already_enrolled:
        out.print(f"      {sp.already_enrolled} lead(s) already enrolled")
    _render_updates(sp, out)
    _render_skips(sp, out)
    if sp.migrate:
        mapping = ", ".join(f"{k}: {v}" for k, v in sp.migrate.items())
        out.print(f"    migrate: {{{mapping}}}")
    for g in sp.in_flight:
        if g.moves:
            out.print(f"    [yellow]~ {g.count} in-flight lead(s) at '{g.state}' "
                      f"({g.revision}) -> '{g.to_state}' ({g.to_revision})[/]")
        else:
            out.print(f"      {g.count} in-flight lead(s) at '{g.state}' keep revision "
                      f"{g.revision}")
    for p in sp.leads_refused:
        out.print(f"    [red]! refused row {p}[/]")


def _render_enroll(sp: SequencePlan, out: Console) -> None:
    if not sp.enroll:
        return
    per: dict[str, int] = {}
    for e in sp.enroll:
        per[e.identity] = per.get(e.identity, 0) + 1
    spread = ", ".join(f"{k}: {v}" for k, v in per.items())
    out.print(f"    [green]+ enroll {len(sp.enroll)} lead(s)[/] at step "
              f"'{sp.initial}' ({spread})")
    for e in sp.enroll[:10]:
        out.print(f"        + {e.profile_url} -> {e.identity}")
    if len(sp.enroll) > 10:
        out.print(f"        ... and {len(sp.enroll) - 10} more")


def _render_updates(sp: SequencePlan, out: Console) -> None:
    if not sp.update:
        return
    out.print(f"    [yellow]~ update {len(sp.update)} enrolled lead(s)' data[/] "
              "(the steps still to come use it)")
    for u in sp.update[:10]:
        diff = ", ".join(f"{k}: {old!r} -> {new!r}"
                         for k, (old, new) in list(u.changes.items())[:3])
        more = f" (+{len(u.changes) - 3} more)" if len(u.changes) > 3 else ""
        out.print(f"        ~ {u.profile_url}: {diff}{more}", markup=False)
    if len(sp.update) > 10:
        out.print(f"        ... and {len(sp.update) - 10} more")


def _render_skips(sp: SequencePlan, out: Console) -> None:
    for s in sp.skipped[:10]:
        out.print(f"    [dim]- skip {s.profile_url}: {s.detail or s.reason}[/]")
    if len(sp.skipped) > 10:
        reasons: dict[str, int] = {}
        for s in sp.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        out.print(f"    [dim]- skip {len(sp.skipped)} lead(s) in all ({summary})[/]")


def render_apply(result: ApplyResult, out: Console | None = None) -> None:
    out = out or console()
    if not result.applied:
        out.print("No changes. Nothing applied.")
    for s in result.sequences:
        created = "new revision" if s.revision_created else "revision"
        out.print(f"Sequence {s.name}: {created} {s.revision}, enrolled {s.enrolled}, "
                  f"migrated {s.migrated}" + (f", updated {s.updated}" if s.updated else ""))
    for name, res in result.workflows.items():
        if isinstance(res, WorkflowResult):
            render_workflow_result(res, out)  # the completion tree, one node per line
        else:
            out.print(f"Workflow {name}: {json.dumps(_to_json(res), default=str)}",
                      markup=False)
    if result.schedules is not None:
        render_schedule_apply(result.schedules, out)
    if result.run is not None:
        out.print(f"Run: {_run_summary(result.run)}")
        for error in getattr(result.run, "errors", None) or []:
            out.print(f"[red]run error: {error}[/]")


def _run_summary(run: Any) -> str:
    data = _to_json(run)
    if isinstance(data, dict):
        return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, list | dict))
    return str(data)


def render_import(result: LeadsImportResult, out: Console | None = None) -> None:
    out = out or console()
    for p in result.refused:
        out.print(f"[red]{p}[/]")
    for s in result.skipped:
        out.print(f"[dim]skip {s.profile_url}: {s.detail or s.reason}[/]")
    out.print(
        f"{result.path}: {result.taken} row(s) taken, {len(result.refused)} refused; "
        f"{result.enrolled} enrolled in {result.sequence}, {result.already_enrolled} already "
        f"enrolled ({result.updated} with data updated), {len(result.skipped)} skipped"
    )


def render_status(report: StatusReport, out: Console | None = None) -> None:
    out = out or console()
    if report.paused_all:
        out.print("[bold red]Kill switch on: every sequence is paused (seqrun resume --all).[/]")
    if not report.sequences and not report.workflows and not report.schedules:
        out.print("No sequences, workflows or schedules applied yet.")
    for s in report.sequences:
        idents = sorted(s.by_identity)
        table = Table(title=f"{s.name} ({s.provider}, revision {s.revision})"
                      + (" [paused]" if s.paused else ""))
        table.add_column("step / terminal")
        table.add_column("leads", justify="right")
        for ident in idents:
            table.add_column(ident, justify="right")
        for state, n in s.funnel:
            if n == 0 and state in ("stopped",):
                continue
            cells = [str(s.by_identity[i].get(state, 0)) for i in idents]
            table.add_row(state, str(n), *cells)
        table.add_row("[bold]total[/]", str(s.total),
                      *[str(sum(s.by_identity[i].values())) for i in idents])
        out.print(table)
    if report.identities:
        table = Table(title="identities (limits used in the last 24 h)")
        table.add_column("identity")
        table.add_column("status")
        actions = sorted({a for i in report.identities for a in i.usage})
        for a in actions:
            table.add_column(a, justify="right")
        table.add_column("paused leads", justify="right")
        for i in report.identities:
            cells = []
            for a in actions:
                used, limit = i.usage.get(a, (0, None))
                cells.append(f"{used}/{limit}" if limit is not None else str(used))
            status = i.status + (f" ({i.reason})" if i.reason else "")
            table.add_row(i.id, status, *cells, str(i.paused_enrollments))
        out.print(table)
    if report.workflows:
        render_workflow_status(report.workflows, out)
    if report.schedules:
        render_schedule_status(report.schedules, out)


def _when(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC as stored), ``-`` when unset."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def render_workflow_status(workflows: Iterable[Any], out: Console | None = None) -> None:
    """``seqrun status``: one row per Workflow, kubectl-get style (aligned plain columns,
    never truncated, so it greps and pipes)."""
    out = out or console()
    head = ("WORKFLOW", "PROVIDER", "STATE", "WORKFLOW ID", "NODES OK", "SUBMITTED (UTC)",
            "FINISHED (UTC)")
    rows: list[tuple[str, ...]] = []
    for w in workflows:
        state = w.state + (f" ({w.error})" if w.error else "")
        if w.state in ("pending", "running") and w.phase in ("queued", "hook", "unknown"):
            state += f" [{w.phase}]"
        rows.append((w.name, w.provider, state, w.workflow_id or "-", f"{w.nodes_ok}/{w.nodes}",
                     _when(w.submitted_at), _when(w.finished_at)))
    _columns(head, rows, out)


def _columns(head: tuple[str, ...], rows: list[tuple[str, ...]], out: Console) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        out.print("   ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip(),
                  markup=False)


def render_schedule_status(schedules: Iterable[Any], out: Console | None = None) -> None:
    """``seqrun status``: one row per managed Schedule, as last applied (kubectl get-style)."""
    out = out or console()
    head = ("SCHEDULE", "MODE", "ACTION", "EDGES UID / RUN", "CRON / RUN STATUS", "CONTINUES",
            "APPLIED (UTC)")
    rows: list[tuple[str, ...]] = [
        (s.name, s.mode, s.action, (s.uid if s.mode == "schedule" else s.run_uid) or "-",
         (s.cron if s.mode == "schedule" else s.run_status) or "-",
         str(s.continues) if s.mode == "async" else "-", _when(s.applied_at))
        for s in schedules
    ]
    _columns(head, rows, out)


def render_why_workflow(report: WorkflowWhy, out: Console | None = None) -> None:
    """``seqrun why --workflow NAME``: state transitions, then each node's result."""
    out = out or console()
    s = report.status
    meta = [f"provider {s.provider}"]
    if report.api:
        meta.append(f"api {report.api}")
    if report.identity:
        meta.append(f"identity {report.identity}")
    if report.revision:
        meta.append(f"revision {report.revision}")
    if report.attempt > 1:
        meta.append(f"attempt {report.attempt}")
    out.print(f"workflow {s.name} ({', '.join(meta)})", markup=False)
    for h in report.history:
        note = f"  {h['note']}" if h.get("note") else ""
        out.print(f"{_when(h.get('at'))}  {h.get('from') or '·'} -> {h.get('to')}{note}",
                  markup=False)
    render_workflow_result(report.result, out)


def render_schedule_apply(result: Any, out: Console | None = None) -> None:
    """What applying Schedules did (engine.apply.schedules.ScheduleApplyResult)."""
    out = out or console()
    for step in getattr(result, "steps", None) or []:
        out.print(f"  {step}", markup=False)
    counts = {k: len(getattr(result, k, None) or []) for k in
              ("created", "replaced", "deleted", "unchanged")}
    if any(counts.values()):
        out.print("Schedules: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".")
    else:
        out.print(f"Schedules: {json.dumps(_to_json(result), default=str)}", markup=False)


def render_why(report: WhyReport, out: Console | None = None) -> None:
    """One line per transition or provider call, oldest first (greppable, never truncated)."""
    out = out or console()
    out.print(f"[bold]{report.profile_url}[/]")
    for e in report.enrollments:
        out.print(f"  {e['sequence']}: state {e['state']} (revision {e['revision']}, identity "
                  f"{e['identity']}{', paused' if e['paused'] else ''})")
    for entry in report.entries:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S")
        where = f"{entry.sequence or '-'}@{entry.revision or '-'}"
        if entry.source == "action":
            label = entry.label or ("ok" if entry.status == "done" else "")
            line = (f"{when}  {where}  call {entry.kind} at '{entry.from_state}' "
                    f"({entry.trigger}): {entry.status}{' ' + label if label else ''}")
        else:
            line = (f"{when}  {where}  {entry.kind}: {entry.from_state or '·'} -> "
                    f"{entry.to_state or '·'}{' on ' + entry.trigger if entry.trigger else ''}")
            if isinstance(entry.detail, dict) and entry.detail:
                line += "  " + json.dumps(entry.detail, default=str, sort_keys=True)
        out.print(line, markup=False)


def render_pause(result: PauseResult, out: Console | None = None) -> None:
    out = out or console()
    verb = "paused" if result.paused else "resumed"
    out.print(f"{result.target}: {verb} ({result.changed} row(s) changed)")


def render_lines(lines: Iterable[str], out: Console | None = None) -> None:
    out = out or console()
    for line in lines:
        out.print(line, markup=False)


# ---- workflows --------------------------------------------------------------------------------


def render_workflow_result(result: Any, out: Console | None = None) -> None:
    """A workflow run (engine.apply.workflows.WorkflowResult): state, then its completion tree."""
    out = out or console()
    for line in workflow_lines(result):
        out.print(line, markup=False)
