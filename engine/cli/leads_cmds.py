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


# the columns `leads search -o csv` writes, in this order (a leads CSV `apply` reads back)
SEARCH_COLUMNS = ("linkedin_profile_url", "full_name", "first_name", "last_name",
                  "company_name", "job_title", "location", "headline")


@leads_group.command("search")
@click.option("--provider", required=True, help="edges or linkedapi (their people search).")
@click.option("--identity", required=True, help="The identity that searches.")
@click.option("--keywords", default=None)
@click.option("--title", default=None, help="A job title (edges, linkedapi).")
@click.option("--company", default=None, help="A current company (edges, linkedapi).")
@click.option("--location", default=None, help="A location (linkedapi).")
@click.option("--network", multiple=True, type=click.Choice(["1st", "2nd", "3rd"]),
              help="Connection degree of the identity (edges); repeat for several.")
@click.option("--max", "max_", type=click.IntRange(1, 1000), default=25, show_default=True)
@click.option("--sandbox", is_flag=True, help="Search the embedded sandbox's world.")
@click.option("-o", "--output", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True, help="csv: a leads file to review, then `leads: {csv: ...}`.")
@state_dir_option()
def leads_search_cmd(provider: str, identity: str, keywords: str | None, title: str | None,
                     company: str | None, location: str | None, network: tuple[str, ...],
                     max_: int, sandbox: bool, output: str, state_dir: Path) -> int:
    """Search people with a provider (nothing is enrolled): the rows a `leads: {search}`
    sequence would import, normalized and de-duplicated as CSV rows are."""
    from engine import runtime
    from engine.errors import UsageError
    from engine.model import PeopleSearch

    search = PeopleSearch(keywords=keywords, title=title, company=company, location=location,
                          network=network, max=max_)
    if not search.filters():
        raise UsageError("leads search: give at least one of --keywords, --title, --company, "
                         "--location, --network")
    found, count = runtime.search_leads(provider, identity, search, state_dir=state_dir,
                                        sandbox=sandbox)
    for problem in found.refused:
        click.echo(f"refused {problem}", err=True)
    if output == "json":
        render.print_json({"found": count, "leads": found.rows,
                           "refused": [str(p) for p in found.refused]})
    elif output == "csv":
        _write_csv(found.rows)
    else:
        render.print_table(render.console(), ("PROFILE", "NAME", "TITLE", "COMPANY"),
                           [(r["linkedin_profile_url"], r.get("full_name", "-"),
                             r.get("job_title", r.get("headline", "-")),
                             r.get("company_name", "-")) for r in found.rows],
                           title=f"{count} people found, {found.taken} leads")
    return 0


def _write_csv(rows: list[dict[str, str]]) -> None:
    import csv
    import sys

    columns = [c for c in SEARCH_COLUMNS if any(c in r for r in rows)] or [SEARCH_COLUMNS[0]]
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


COMMANDS = (leads_group,)
