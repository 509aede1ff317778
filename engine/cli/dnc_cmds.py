"""``seqrun dnc add|remove|list``: the do-not-contact list in the store.

A lead on the list is skipped by ``plan``/``apply`` (never enrolled) and an enrollment already
in flight is moved to ``stopped`` by the runner before its next action. URLs are normalized
like the leads CSV (``engine.urls.normalize_profile_url``), so any spelling of a profile
matches. Commands return an int exit code; errors are raised from engine.errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from engine.cli import render
from engine.cli.options import output_option, state_dir_option
from engine.errors import LeadsError
from engine.urls import normalize_profile_url

# `from engine import runtime` is deferred into the commands below: it loads the store
# (SQLAlchemy), which `seqrun --help` does not need.


def normalize_urls(urls: Iterable[str]) -> list[str]:
    """The normalized profile URLs, in order, without repeats; :class:`LeadsError` naming
    every bad one (nothing is changed then)."""
    out: list[str] = []
    bad: list[str] = []
    for url in urls:
        try:
            norm = normalize_profile_url(url)
        except ValueError as exc:
            bad.append(f"  {url!r}: {exc}")
            continue
        if norm not in out:
            out.append(norm)
    if bad:
        raise LeadsError(
            f"{len(bad)} bad LinkedIn profile URL(s), nothing changed:\n" + "\n".join(bad)
        )
    return out


@click.group("dnc")
def dnc_group() -> None:
    """The do-not-contact list: leads never enrolled, and stopped if already in flight."""


@dnc_group.command("add")
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@click.option("--reason", default=None, help="Why (shown by plan and list).")
@state_dir_option()
def add_cmd(urls: tuple[str, ...], reason: str | None, state_dir: Path) -> int:
    """Put profiles on the do-not-contact list (an entry already there gets the new reason)."""
    from engine import runtime  # deferred: see the module's note

    wanted = normalize_urls(urls)
    with runtime.open_store(state_dir) as store:
        known = store.do_not_contact()
        with store.tx() as conn:
            for url in wanted:
                store.add_do_not_contact(url, reason, conn=conn)
    for url in wanted:
        verb = "updated" if url in known else "added"
        click.echo(f"{verb} {url}" + (f" ({reason})" if reason else ""))
    return 0


@dnc_group.command("remove")
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@state_dir_option()
def remove_cmd(urls: tuple[str, ...], state_dir: Path) -> int:
    """Take profiles off the do-not-contact list (stopped enrollments stay stopped)."""
    from engine import runtime  # deferred: see the module's note

    wanted = normalize_urls(urls)
    with runtime.open_store(state_dir) as store, store.tx() as conn:
        removed = {url: store.remove_do_not_contact(url, conn=conn) for url in wanted}
    for url, done in removed.items():
        click.echo(f"removed {url}" if done else f"not on the list: {url}")
    return 0


@dnc_group.command("list")
@output_option("text or json.")
@state_dir_option()
def list_cmd(output: str, state_dir: Path) -> int:
    """Every profile on the do-not-contact list, with its reason."""
    from engine import runtime  # deferred: see the module's note

    entries = runtime.read_store(state_dir, lambda s: sorted(s.do_not_contact().items()))
    entries = entries or []
    if output == "json":
        render.print_json([{"profile_url": u, "reason": r} for u, r in entries])
        return 0
    if not entries:
        click.echo("The do-not-contact list is empty.")
        return 0
    render.print_table(render.console(), ("PROFILE URL", "REASON"),
                       [(url, reason or "-") for url, reason in entries],
                       title=f"do-not-contact list ({len(entries)})")
    return 0


COMMANDS = (dnc_group,)
