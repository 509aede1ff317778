"""The thin CLI: parse, call the library, map the error tree to exit codes here and only here.

Exit codes: 0 ok; 1 invalid input or a failed run; 2 usage (and `plan --detailed-exitcode`
with changes); 3 a provider could not be reached and nothing could be done
(:class:`engine.errors.ProviderUnreachable`); 130 interrupted. The code of an error is its
class's ``exit_code``.

One module per command group adds its commands (``COMMANDS``) to :data:`cli`. Commands
return an int exit code and raise from engine.errors. ``main(argv) -> int``.

The commands import ``engine.runtime`` (the store, the sandbox, the runner) and the manifest
loader inside their bodies: `seqrun --help` then loads none of SQLAlchemy, Starlette or
jsonschema (about a third of the start-up time it would take with them).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from engine import __version__
from engine.cli import (
    apply_cmds,
    completion_cmds,
    db_cmds,
    dnc_cmds,
    identity_cmds,
    leads_cmds,
    manifest_cmds,
    run_cmds,
    sandbox_cmds,
    schedule_cmds,
    serve_cmds,
    status_cmds,
    test_cmds,
    workflow_cmds,
)
from engine.errors import ManifestError, SeqrunError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqrun")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """seqrun: LinkedIn outreach sequences as code."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpcore's DEBUG trace quotes every response header a provider sends (a session
    # cookie, a key echoed back): secrets must never reach a log, so the wire trace stays off
    # (httpx's own line per request, method, URL and status, is kept).
    logging.getLogger("httpcore").setLevel(logging.INFO)


for _module in (manifest_cmds, apply_cmds, run_cmds, status_cmds, leads_cmds, dnc_cmds,
                schedule_cmds, sandbox_cmds, serve_cmds, completion_cmds, test_cmds,
                identity_cmds, workflow_cmds, db_cmds):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (see the module's docstring)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="seqrun",
                          standalone_mode=False)  # prog_name: _SEQRUN_COMPLETE, `python -m`
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
