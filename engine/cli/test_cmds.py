"""``seqrun test``: run SequenceTest manifests (engine.seqtest) and report per case."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from engine.cli import render
from engine.cli.inputs import load_manifests
from engine.cli.options import output_option
from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.seqtest import TestReport


@click.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--junit", "junit", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JUnit XML to this file (for CI).")
@output_option()
def test_cmd(paths: tuple[str, ...], junit: Path | None, output: str) -> int:
    """Run the SequenceTest manifests under PATHS (files or directories).

    Each case enrolls one lead on its own embedded sandbox, with the world scripted as the
    case says, plays simulated time and checks the path, the terminal and what was sent.
    Exits 1 when any case fails.
    """
    from engine import seqtest  # deferred: the store, the sandbox and the runner

    manifests = load_manifests(paths)
    if not any(m.kind == "SequenceTest" for m in manifests):
        raise UsageError(f"no SequenceTest manifest in {', '.join(paths)}")
    engine_log = logging.getLogger("engine")
    quiet = logging.getLogger().level >= logging.WARNING  # no -v: the scripted worlds' own
    previous = engine_log.level  # warnings (an identity paused by its case) are not news
    if quiet:
        engine_log.setLevel(logging.ERROR)
    try:
        report = seqtest.run_tests(manifests)
    finally:
        engine_log.setLevel(previous)
    if junit is not None:
        try:
            junit.write_text(seqtest.junit_xml(report), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--junit {junit}: cannot write ({exc.strerror})") from exc
    if output == "json":
        render.print_json(report.to_json())
    else:
        _render(report)
    return 1 if report.failed else 0


def _render(report: TestReport) -> None:
    out = render.console()
    for case in report.cases:
        mark = "[green]PASS[/green]" if case.passed else "[red]FAIL[/red]"
        out.print(f"{mark} {escape(case.test)} > {escape(case.case)}  "
                  f"[dim]{escape(case.where)}[/dim]")
        for check in case.failures:
            out.print(f"     {escape(check.name)}: {escape(check.message)}")
            for line in check.diff:
                style = "red" if line.startswith("-") else "green" if line.startswith("+") else ""
                text = escape(line)
                out.print(f"       [{style}]{text}[/{style}]" if style else f"       {text}")
    passed = len(report.cases) - report.failed
    out.print(f"{passed} passed, {report.failed} failed")


COMMANDS = (test_cmd,)
