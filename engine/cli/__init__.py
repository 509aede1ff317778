"""The thin CLI: parse, call the library, map the error tree to exit codes here and only here.

Each command module registers its commands on :data:`cli`. ``main(argv) -> int``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from engine import __version__
from engine.errors import ManifestError, SeqrunError

log = logging.getLogger("engine")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqrun")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """seqrun: LinkedIn outreach sequences as code."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _register() -> None:
    # Imported for their side effect of adding commands to `cli`.
    from engine.cli import dnc_cmds, manifest_cmds, runtime_cmds, sandbox_cmds, schedule_cmds  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 invalid input or failed run, 2 usage."""
    _register()
    try:
        result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code  # 2 for usage errors
    except ManifestError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        click.echo(f"{errors} error(s)", err=True)
        return exc.exit_code
    except SeqrunError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return result if isinstance(result, int) else 0
