"""``seqrun db upgrade``: migrate the store's schema to this seqrun's (the store of
``$SEQRUN_DATABASE_URL`` or of the state directory)."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli import render
from engine.cli.options import output_option, state_dir_option

# `from engine import runtime` is deferred into the command: it loads SQLAlchemy.


@click.group("db")
def db_group() -> None:
    """The store's schema (migrations)."""


@db_group.command("upgrade")
@output_option()
@state_dir_option()
def upgrade_cmd(output: str, state_dir: Path) -> int:
    """Migrate the store to this seqrun's schema (once, before workers of a new version
    start; a worker of an older version then stops with an error saying so)."""
    from engine import runtime  # deferred: see the module's note

    done = runtime.db_upgrade(state_dir)
    if output == "json":
        render.print_json(done.to_json())
    elif done.was == done.now:
        render.render_lines([f"{done.store}: schema at {done.now}, nothing to do"])
    else:
        render.render_lines([f"{done.store}: schema migrated from {done.was or 'empty'} "
                             f"to {done.now}"])
    return 0


COMMANDS = (db_group,)
