"""``seqrun leads import``: a leads CSV into an applied sequence; ``seqrun leads list``: the
enrolled leads, by sequence and state."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli import render
from engine.cli.options import output_option, state_dir_option


@click.group("leads")
def leads_group() -> None:
    """Leads: import a CSV into a sequence, list the enrolled ones."""


@leads_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sequence", "sequence", required=True, help="An applied sequence's name.")
@click.option("--dry-run", is_flag=True,
              help="Show the plan (who would be enrolled, skipped and why); change nothing.")
@click.option("--max-enroll", type=click.IntRange(min=0), default=None, metavar="N",
              help="Enroll at most N new leads; the rest wait for a later import.")
@output_option()
@state_dir_option()
def leads_import_cmd(
    file: Path, sequence: str, dry_run: bool, max_enroll: int | None, output: str,
    state_dir: Path,
) -> int:
    """Import a leads CSV into an applied sequence; bad rows are reported and skipped. The
    guardrails of `plan` hold: do-not-contact lists, the applied Policy, the caps."""
    # deferred: the runtime loads the store (SQLAlchemy), which `seqrun --help` does not need
    from engine import runtime

    result = runtime.import_leads(file, sequence, state_dir=state_dir, dry_run=dry_run,
                                  max_enroll=max_enroll)
    if output == "json":
        render.print_json(result.to_json())
    else:
        render.render_import(result)
    return 0


@leads_group.command("list")
@click.option("--sequence", "sequence", default=None, help="Only this sequence's leads.")
@click.option("--state", "states", multiple=True, metavar="S",
              help="Only leads at this step or terminal (repeat for several).")
@output_option()
@state_dir_option()
def leads_list_cmd(
    sequence: str | None, states: tuple[str, ...], output: str, state_dir: Path
) -> int:
    """The enrolled leads: sequence, state, identity, next step due (one row per enrollment)."""
    from engine import runtime  # deferred: see leads_import_cmd
    from engine.views.leads import leads

    rows = runtime.read_store(
        state_dir, lambda s: leads(s, sequence=sequence, states=states or None)) or []
    if output == "json":
        render.print_json([r.to_json() for r in rows])
    else:
        render.render_leads(rows)
    return 0


COMMANDS = (leads_group,)
