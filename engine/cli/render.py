"""Rendering for the CLI: rich on a terminal, JSON with ``-o json``. The library never prints;
CLI commands render its results with these.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.cli.render_schedules import render_schedule_plan
from engine.cli.render_workflows import workflow_lines
from engine.run.workflow_results import WorkflowResult

if TYPE_CHECKING:
    from engine.apply.leads import LeadsImportResult
    from engine.apply.plan import Plan, SequencePlan
    from engine.apply.policy import PolicyPlan
    from engine.apply.sequences import ApplyResult
    from engine.experiments import Proportion, StepExperiment
    from engine.views.control import PauseResult
    from engine.views.leads import LeadStatus
    from engine.views.status import SequenceStatus, StatusReport
    from engine.views.why import WhyEntry, WhyReport, WorkflowWhy


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
    if plan.policy is not None:
        _render_policy_plan(plan.policy, out)
    for sp in plan.sequences:
        _render_sequence_plan(sp, out, skip_bad_rows=plan.skip_bad_rows)
    for wp in plan.workflows:
        if wp.parent is not None:
            continue  # a fan-out's lead: summed up below
        out.print(f"[green]+[/] Workflow [bold]{wp.name}[/] ({wp.provider}) will run:")
        out.print("    " + json.dumps(wp.body, indent=2, ensure_ascii=False).replace(
            "\n", "\n    "), markup=False)
    for fan in plan.fan_outs:
        _render_fan_out(fan.parent, [w for w in plan.workflows if w.parent == fan.parent],
                        len(fan.refused), out)
        for why, n in sorted(Counter(fan.waiting.values()).items()):
            out.print(f"    {n} lead(s) {why}: apply defers them", markup=False)
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
        # a revision rollout migrates its canary now, the rest once it is promoted
        now = sum(s.revision_canary if s.revision_canary is not None
                  else sum(g.count for g in s.migrations) for s in plan.sequences)
        later = f" now ({moves - now} after the canary)" if now != moves else ""
        updates = sum(len(s.update) for s in plan.sequences)
        out.print(f"Plan: {revs} sequence revision(s), {enroll} lead(s) to enroll, "
                  f"{now} lead(s) to migrate{later}, {updates} lead(s) to update, "
                  f"{sum(1 for w in plan.workflows if w.has_changes)} workflow(s) to run.")


def _render_fan_out(name: str, children: list[Any], refused: int, out: Console) -> None:
    """A ``for_each`` Workflow: how many leads run, resume or are done, and one lead's body."""
    actions = Counter(w.action for w in children)
    counts = ", ".join(f"{actions[a]} to {a}" if a != "unchanged" else f"{actions[a]} done"
                       for a in ("run", "resume", "unchanged") if actions[a])
    out.print(f"[green]+[/] Workflow [bold]{name}[/] for each lead: {len(children)} lead(s)"
              f" ({counts or 'none'}), {refused} row(s) refused")
    first = next((w for w in children if w.has_changes), None)
    if first is not None:
        out.print(f"    {first.name} will run:", markup=False)
        out.print("    " + json.dumps(first.body, indent=2, ensure_ascii=False).replace(
            "\n", "\n    "), markup=False)


DRIFT_SHOWN = 10  # URLs of each side of a Policy's drift (-o json has them all)


def _render_policy_plan(pp: PolicyPlan, out: Console) -> None:
    mark = {"create": "[green]+[/]", "update": "[yellow]~[/]"}.get(pp.action, " ")
    p = pp.policy
    note = {"unchanged": " [dim]unchanged[/]", "applied": " [dim]applied before[/]"}
    out.print(f"{mark} Policy [bold]{p.name}[/]{note.get(pp.action, '')}: do-not-contact "
              f"{len(p.dnc_urls)} URL(s), {len(p.dnc_domains)} domain(s)")
    for side, urls, where in (("database only", pp.db_only, "`seqrun dnc` list, not the Policy"),
                              ("Policy only", pp.policy_only, "Policy, not the `seqrun dnc` list")):
        if urls:
            shown = ", ".join(urls[:DRIFT_SHOWN])
            more = f" and {len(urls) - DRIFT_SHOWN} more" if len(urls) > DRIFT_SHOWN else ""
            out.print(f"    drift ({side}): {len(urls)} URL(s) on the {where}: "
                      f"{shown}{more}", markup=False)


def _render_sequence_plan(sp: SequencePlan, out: Console, *, skip_bad_rows: bool = False) -> None:
    mark = {"create": "[green]+[/]", "update": "[yellow]~[/]", "unchanged": " "}[sp.action]
    head = f"{mark} Sequence [bold]{sp.name}[/] ({sp.provider}) revision {sp.revision}"
    if sp.action == "update":
        head += f" (was {sp.previous_revision})"
    out.print(head + ("" if sp.action != "unchanged" else " [dim]unchanged[/]"))
    if sp.searched is not None:
        out.print(f"    search: {sp.searched} people found, {len(sp.enroll)} new to enroll, "
                  f"{sp.already_enrolled} already enrolled, {len(sp.skipped)} skipped, "
                  f"{len(sp.leads_refused)} refused")
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
    bad = {(p.file, p.line, p.path, p.message) for p in sp.bad_rows}
    for p in sp.leads_refused:
        if (p.file, p.line, p.path, p.message) not in bad:  # a duplicate: a warning
            out.print(f"    [dim]! refused row {p}[/]", markup=True)
    _render_bad_rows(sp, out, skip_bad_rows)
    for e in sp.experiments:
        total = sum(v.weight for v in e.variants) or 1
        split = ", ".join(f"{v.name} {v.weight / total:.0%}" for v in e.variants)
        out.print(f"    variants at '{e.step}' ({split}): {e.summary}", markup=False)
    for line in sp.guardrails:
        out.print(f"    guardrail: {line}", markup=False)


def _render_bad_rows(sp: SequencePlan, out: Console, skipped: bool) -> None:
    """Preflight's failing rows, one line each (the first 50; `-o json` has them all)."""
    if not sp.bad_rows:
        return
    rows = len({(p.file, p.line) for p in sp.bad_rows})
    verdict = "skipped (--skip-bad-rows)" if skipped else "would fail"
    out.print(f"    [red]! {rows} lead row(s) {verdict}, not enrolled:[/]")
    for p in sp.bad_rows[:50]:
        out.print(f"        ! {p}", markup=False, style="red")
    if len(sp.bad_rows) > 50:
        out.print(f"        ... and {len(sp.bad_rows) - 50} more problem(s)")


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
    if result.deferred:
        reasons = Counter(result.deferred.values())
        why = ", ".join(f"{n}: {r}" for r, n in sorted(reasons.items()))
        out.print(f"{len(result.deferred)} workflow run(s) deferred ({why}): `seqrun apply` "
                  "again once the limit's 24 h or the sending window allows", markup=False)
    if result.schedules is not None:
        render_schedule_apply(result.schedules, out)
    if result.run is not None:
        out.print(f"Run: {_run_summary(result.run)}")
        for error in getattr(result.run, "errors", None) or []:
            out.print(f"[red]run error: {error}[/]")


def _run_summary(run: Any) -> str:
    """The run inside apply, in words (the runner's one-line summary, or why it did not run)."""
    from engine.cli.render_run import run_lines  # deferred: render_run imports this module

    data = _to_json(run)
    if isinstance(data, dict) and "due" in data:
        return "; ".join(run_lines(run))
    if isinstance(data, dict):
        return "; ".join(str(v) for v in data.values())
    return str(data)


IMPORT_SHOWN = 50  # refused and skipped rows listed by `leads import` (-o json: all)


def render_import(result: LeadsImportResult, out: Console | None = None) -> None:
    out = out or console()
    # the first rows of each list: a million-row file can refuse thousands (-o json: all)
    for p in result.refused[:IMPORT_SHOWN]:
        out.print(f"[red]{p}[/]")
    if len(result.refused) > IMPORT_SHOWN:
        out.print(f"[red]... and {len(result.refused) - IMPORT_SHOWN} more refused row(s)[/]")
    for s in result.skipped[:IMPORT_SHOWN]:
        out.print(f"[dim]skip {s.profile_url}: {s.detail or s.reason}[/]")
    if len(result.skipped) > IMPORT_SHOWN:
        out.print(f"[dim]... and {len(result.skipped) - IMPORT_SHOWN} more skipped[/]")
    if result.dry_run:
        for e in result.enroll[:10]:
            out.print(f"+ {e.profile_url} -> {e.identity}", markup=False)
        if len(result.enroll) > 10:
            out.print(f"... and {len(result.enroll) - 10} more")
        out.print(
            f"{result.path}: {result.taken} row(s) taken, {len(result.refused)} refused; "
            f"would enroll {len(result.enroll)} in {result.sequence}, "
            f"{result.already_enrolled} already enrolled ({result.updated} with data to "
            f"update), {len(result.skipped)} skipped. Nothing changed (--dry-run)."
        )
        return
    out.print(
        f"{result.path}: {result.taken} row(s) taken, {len(result.refused)} refused; "
        f"{result.enrolled} enrolled in {result.sequence}, {result.already_enrolled} already "
        f"enrolled ({result.updated} with data updated), {len(result.skipped)} skipped"
    )


REASON_MAX = 60  # an identity's error in the status table; `-o json` has it whole


def print_table(
    out: Console,
    head: tuple[str, ...],
    rows: Iterable[tuple[str, ...]],
    *,
    title: str | None = None,
    right: Iterable[int] = (),
) -> None:
    """A table: rich on a terminal; aligned plain columns (title on a line of its own) when
    piped, so it greps and never wraps. ``right``: the columns to right-align (numbers)."""
    rows = list(rows)
    aligned = set(right)
    if out.is_terminal:
        table = Table(title=escape(title) if title else None)
        for i, name in enumerate(head):
            table.add_column(escape(name), justify="right" if i in aligned else "left")
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        out.print(table)
        return
    if title:
        out.print(title, markup=False)
    _columns(head, rows, out)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _short(text: str, limit: int = REASON_MAX) -> str:
    """One line of at most ``limit`` characters (the full text is in ``-o json``)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _sequence_title(s: SequenceStatus) -> str:
    title = f"{s.name} ({s.provider}, revision {s.revision})"
    if s.paused:
        title += " [paused: seqrun resume " + s.name + "]"
    if s.rollout:  # in-flight leads keep their revision unless the manifest migrates them
        spread = ", ".join(f"{n} on {rev}" + (" (current)" if rev == s.revision else "")
                           for rev, n in sorted(s.in_flight.items(), key=lambda kv: -kv[1]))
        title += f" [rollout: leads in flight {spread}]"
    return title


def _render_funnel(s: SequenceStatus, out: Console) -> None:
    idents = sorted(s.by_identity)
    conv = s.conversion
    rows: list[tuple[str, ...]] = []
    for state, n in s.funnel:
        if n == 0 and state == "stopped" and not conv.reached.get(state):
            continue
        reached = conv.reached.get(state, 0)
        rows.append((state, str(n), str(reached), _pct(conv.reached_rate(state)),
                     *[str(s.by_identity[i].get(state, 0)) for i in idents]))
    rows.append(("total", str(s.total), "", "",
                 *[str(sum(s.by_identity[i].values())) for i in idents]))
    head = ("step / terminal", "now", "reached", "reached %", *[f"now: {i}" for i in idents])
    print_table(out, head, rows, title=_sequence_title(s), right=range(1, len(head)))
    if s.waiting:  # leads due to act but held: by a limit (in line for a slot), a window...
        out.print("waiting to act: " + ", ".join(f"{n} on {why}" for why, n in
                                                 sorted(s.waiting.items())), markup=False)
    if s.unverified:  # settled after a crash with nothing to check: not counted as sent
        out.print("done without evidence (unverified, not counted as sent): " + ", ".join(
            f"{a} {n}" for a, n in sorted(s.unverified.items())), markup=False)


def _render_conversion(s: SequenceStatus, out: Console) -> None:
    conv = s.conversion
    if not conv.overall.enrolled:
        return
    rows = [
        (who, str(r.enrolled), str(r.invited), str(r.accepted), _pct(r.acceptance_rate),
         str(r.already_connected), str(r.messaged), str(r.replied), _pct(r.reply_rate))
        for who, r in [*conv.by_identity.items(), ("all", conv.overall)]
    ]
    head = ("identity", "leads", "invited", "accepted", "acceptance", "already connected",
            "messaged", "replied", "reply rate")
    print_table(out, head, rows, title=f"{s.name}: conversion (acceptance = accepted / "
                "invited; reply rate = replied / leads)", right=range(1, len(head)))
    if conv.reasons:
        print_table(out, ("ended in", "leads", "why"),
                    [(r.terminal, str(r.count), r.text) for r in conv.reasons],
                    title=f"{s.name}: how leads ended", right=(1,))


def _ci(p: Proportion) -> str:
    interval = p.interval
    if interval is None:
        return "-"
    return f"{interval[0] * 100:.1f}-{interval[1] * 100:.1f}%"


def render_experiment(e: StepExperiment, out: Console) -> None:
    """A step's variants: each one's funnel, its rates with 95 % intervals, then the verdict."""
    invites = e.action == "connect"
    head = ("variant", "weight", "leads", "sent", *(("accepted", "acceptance", "95% CI")
            if invites else ()), "replied", "reply rate", "95% CI")
    rows = [
        (v.name + (" (promoted)" if e.promoted == v.name else ""), f"{v.weight:g}",
         str(v.leads), str(v.sent),
         *((str(v.accepted), _pct(v.acceptance.rate), _ci(v.acceptance)) if invites else ()),
         str(v.replied), _pct(v.reply.rate), _ci(v.reply))
        for v in e.variants
    ]
    what = "experiment" if e.declared else "variants (no `experiment:` declared)"
    flags = f", min_sample {e.experiment.min_sample}, alpha {e.experiment.alpha:g}"
    flags += ", auto_promote" if e.experiment.auto_promote else ""
    print_table(out, head, rows, right=range(1, len(head)),
                title=f"{e.sequence}: {what} at {e.step} ({e.experiment.metric}{flags}; rates "
                "of leads sent the variant)")
    out.print(f"{e.step}: {e.summary}", markup=False)


def _render_identities(report: StatusReport, out: Console) -> None:
    actions = sorted({a for i in report.identities for a in i.usage})
    clock = "the sandbox's virtual clock" if report.clock == "virtual" else "the real clock"
    start = report.at - timedelta(hours=24)
    rows: list[tuple[str, ...]] = []
    for i in report.identities:
        cells = []
        for a in actions:
            used, limit = i.usage.get(a, (0, None))
            full = " full" if limit is not None and used >= limit else ""  # the rest waits
            cell = f"{used}/{limit}{full}" if limit is not None else str(used)
            unverified = i.unverified.get(a, 0)  # counted by the limit, not as sent
            cells.append(cell + (f" ({unverified} unverified)" if unverified else ""))
        status = i.status + (f": {_short(i.reason)}" if i.reason else "")
        rows.append((i.id, status, *cells, str(i.paused_enrollments)))
    print_table(out, ("identity", "status", *actions, "paused leads"), rows,
                title=f"identities: limits used from {_utc(start)} to {_utc(report.at)} "
                f"({clock})", right=range(2, len(actions) + 3))
    _render_syncs(report, out)
    last = max((i.last_action_at for i in report.identities if i.last_action_at), default=None)
    if last is not None and last < start:
        hint = (" (after a run on simulated time, add --virtual-clock)"
                if report.clock == "real" else "")
        out.print(f"No action in these 24 h: the latest was at {_utc(last)}{hint}.",
                  markup=False)


def _render_syncs(report: StatusReport, out: Console) -> None:
    """The last conversation sync of each identity whose provider reports one (ConnectSafely)."""
    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    rows = []
    for i in report.identities:
        if not i.sync:
            continue
        at = i.sync.get("last_sync_at")
        when = _utc(datetime.fromisoformat(at)) if isinstance(at, str) else "-"
        rows.append((i.id, when, cell(i.sync.get("sync_status")),
                     cell(i.sync.get("conversations_processed")),
                     cell(i.sync.get("messages_processed")),
                     "yes" if i.sync.get("force") else "no"))
    if rows:
        print_table(out, ("identity", "last sync", "sync status", "conversations", "messages",
                          "forced"), rows,
                    title="conversation syncs: the last one, as the provider reports it",
                    right=range(3, 5))


def render_leads(rows: Iterable[LeadStatus], out: Console | None = None) -> None:
    """``seqrun leads list``: one row per enrollment."""
    out = out or console()
    rows = list(rows)
    if not rows:
        out.print("No leads match.")
        return
    print_table(out, ("PROFILE URL", "NAME", "SEQUENCE", "STATE", "IDENTITY", "NEXT DUE (UTC)",
                      "NOTE"),
                [(r.profile_url, r.name or "-", r.sequence, r.state, r.identity,
                  r.next_due_at.strftime("%Y-%m-%d %H:%M") if r.next_due_at else "-",
                  "paused" if r.paused else _short(r.last_error or "", 40) or "-")
                 for r in rows],
                title=f"{len(rows)} lead(s)")


def render_status(report: StatusReport, out: Console | None = None) -> None:
    out = out or console()
    if report.paused_all:
        out.print("[bold red]Kill switch on: every sequence is paused (seqrun resume --all).[/]")
    if not report.sequences and not report.workflows and not report.schedules:
        out.print("No sequences, workflows or schedules applied yet.")
    for s in report.sequences:
        _render_funnel(s, out)
        _render_conversion(s, out)
        for experiment in s.experiments:
            render_experiment(experiment, out)
        for line in _guardrail_status(s.guardrails):
            out.print(line, markup=False)
    for action, b in report.budgets.items():
        out.print(f"Organisation budget {action}: {b['used']}/{b['budget']} in the last 24 h",
                  markup=False)
    if report.identities:
        _render_identities(report, out)
    if report.workflows:
        render_workflow_status(report.workflows, out)
    if report.schedules:
        render_schedule_status(report.schedules, out)
    if report.workers:
        render_workers(report.workers, out)


def render_workers(workers: Iterable[Any], out: Console | None = None) -> None:
    """``seqrun status``: the live `seqrun run` workers, their identities, last heartbeat."""
    out = out or console()
    head = ("WORKER", "HOST", "PID", "IDENTITIES", "LAST HEARTBEAT (UTC)")
    rows = [(w.id, w.host, str(w.pid), ", ".join(w.identities) or "-",
             _when(w.heartbeat_at.isoformat())) for w in workers]
    print_table(out, head, rows, right=(2,))


def _guardrail_status(g: dict[str, Any]) -> list[str]:
    """A sequence's rollout stage and caps, in words."""
    lines = []
    canary = g.get("canary")
    if canary:
        why = f": {canary['reason']}" if canary.get("reason") else ""
        lines.append(f"  rollout: {canary['stage']} (canary of {canary['size']}){why}")
    rev = g.get("revision")
    if rev:
        why = f": {rev['reason']}" if rev.get("reason") else ""
        olds = ", ".join(rev.get("from_revisions") or ())
        lines.append(f"  revision rollout: {rev['stage']} ({rev['canary']} of {rev['in_flight']} "
                     f"in-flight lead(s) as the canary, {rev['migrated']} migrated from {olds} "
                     f"to {rev['to_revision']}){why}")
    caps = g.get("caps")
    if caps:
        if caps.get("max_sends_per_day") is not None:
            lines.append(f"  sends: {caps['sends_24h']}/{caps['max_sends_per_day']} in the "
                         "last 24 h (max sends per day)")
        if caps.get("max_enroll") is not None:
            lines.append(f"  caps.max_enroll: {caps['max_enroll']}")
    return lines


def _when(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC as stored), ``-`` when unset."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def render_workflow_status(workflows: Iterable[Any], out: Console | None = None) -> None:
    """``seqrun status``: one row per Workflow (a table; kubectl-get columns when piped)."""
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
    print_table(out, head, rows, right=(4,))


def _columns(head: tuple[str, ...], rows: list[tuple[str, ...]], out: Console) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        out.print("   ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip(),
                  markup=False)


def render_schedule_status(schedules: Iterable[Any], out: Console | None = None) -> None:
    """``seqrun status``: one row per managed Schedule, as last applied (a table; kubectl-get
    columns when piped)."""
    out = out or console()
    head = ("SCHEDULE", "MODE", "ACTION", "EDGES UID / RUN", "CRON / RUN STATUS", "CONTINUES",
            "APPLIED (UTC)")
    rows: list[tuple[str, ...]] = [
        (s.name, s.mode, s.action, (s.uid if s.mode == "schedule" else s.run_uid) or "-",
         (s.cron if s.mode == "schedule" else s.run_status) or "-",
         str(s.continues) if s.mode == "async" else "-", _when(s.applied_at))
        for s in schedules
    ]
    print_table(out, head, rows, right=(5,))


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
    lead = report.lead if isinstance(report.lead, dict) else {}
    who = str(lead.get("full_name") or lead.get("first_name") or "").strip()
    company = str(lead.get("company_name") or "").strip()
    about = ", ".join(x for x in (who, company) if x)
    out.print(f"[bold]{escape(report.profile_url)}[/]" + (f" ({escape(about)})" if about else ""))
    for e in report.enrollments:
        out.print(f"  {e['sequence']}: state {e['state']} (revision {e['revision']}, identity "
                  f"{e['identity']}{', paused' if e['paused'] else ''})", markup=False)
        route = e.get("route") or []
        if route:
            hops = [str(route[0]["state"])] + [
                f"-{hop['trigger']}-> {hop['state']}" for hop in route[1:]]
            out.print("    route: " + " ".join(hops), markup=False)
    for entry in report.entries:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S")
        where = f"{entry.sequence or '-'}@{entry.revision or '-'}"
        if entry.source == "action":
            label = entry.label or ("ok" if entry.status == "done" else "")
            line = (f"{when}  {where}  call {entry.kind} at '{entry.from_state}' "
                    f"({entry.trigger}): {entry.status}{' ' + label if label else ''}")
            variant = entry.detail.get("variant") if isinstance(entry.detail, dict) else None
            if variant:
                line += f"  variant {variant}"
        else:
            line = (f"{when}  {where}  {entry.kind}: {entry.from_state or '·'} -> "
                    f"{entry.to_state or '·'}{' on ' + entry.trigger if entry.trigger else ''}")
            extra = _why_detail(entry)
            if extra:
                line += "  " + json.dumps(extra, default=str, sort_keys=True)
        out.print(line, markup=False)
        for field_name, text in sent_text(entry).items():
            body = text.rstrip("\n").replace("\n", "\n" + " " * 24)
            out.print(f"{'':20}{field_name}: {body}", markup=False)


def pause_line(result: PauseResult) -> str:
    """What pause/resume did, in words (``-o json`` keeps the raw count)."""
    verb = "Paused" if result.paused else "Resumed"
    kind, _, name = result.target.partition(" ")
    if kind == "sequence":
        if result.paused:
            return (f"Paused sequence {name}: its leads stay where they are "
                    f"(seqrun resume {name} to go on).")
        return f"Resumed sequence {name}: its leads go on from where they were."
    if kind == "identity":
        held = f"{result.changed} lead(s) " + ("held" if result.paused else "released")
        undo = f" (seqrun resume --identity {name} to go on)" if result.paused else ""
        return f"{verb} identity {name}: {held}{undo}."
    if result.paused:
        return (f"Paused everything (kill switch on): {result.changed} sequence(s) paused, "
                "nothing is sent until seqrun resume --all.")
    return f"Resumed everything (kill switch off): {result.changed} sequence(s) resumed."


#: an event's details the line already says (the call above it, its label) or that only
#: the machine needs (the idempotency key); `-o json` keeps them all
_SAID = frozenset({"action", "label", "key"})


def _why_detail(entry: WhyEntry) -> dict[str, Any]:
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    return {k: v for k, v in detail.items() if k not in _SAID}


def sent_text(entry: WhyEntry) -> dict[str, str]:
    """What a call put in front of the lead (its rendered ``note``/``text``), if anything:
    the runner keeps it with the outcome (``response.sent``)."""
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    response = detail.get("response")
    sent = response.get("sent") if isinstance(response, dict) else None
    return {str(k): str(v) for k, v in sent.items()} if isinstance(sent, dict) else {}


def render_pause(result: PauseResult, out: Console | None = None) -> None:
    out = out or console()
    out.print(pause_line(result), markup=False)


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
