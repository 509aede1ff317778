"""``seqrun workflows results NAME``: what a ``for_each`` Workflow did for each lead."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from engine.cli import render
from engine.cli.options import state_dir_option

# `from engine import runtime` is deferred into the command: it loads the store (SQLAlchemy).


@click.group("workflows")
def workflows_group() -> None:
    """Workflows fanned out over leads (for_each)."""


@workflows_group.command("results")
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True)
@state_dir_option()
def results_cmd(name: str, output: str, state_dir: Path) -> int:
    """One row per lead: its workflow (for `seqrun why workflow/NAME[handle]`), state, nodes
    done, error. Exit 1 when a lead's workflow failed."""
    from engine import runtime  # deferred: see the module's note
    from engine.views.fanout import COLUMNS

    rows = runtime.fan_out_results(state_dir, name)
    if output == "json":
        render.print_json([r.to_json() for r in rows])
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(r.to_json() for r in rows)
    else:
        render.print_table(render.console(), ("LEAD", "STATE", "NODES OK", "ERROR", "WORKFLOW"),
                           [(r.lead, r.state, f"{r.nodes_ok}/{r.nodes}", r.error or "-",
                             r.workflow) for r in rows], title=f"{name}: {len(rows)} lead(s)")
    return 1 if any(r.state == "failed" for r in rows) else 0


COMMANDS = [workflows_group]
