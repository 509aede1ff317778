"""``seqrun validate``, ``seqrun schema`` and ``seqrun graph``: the manifest language."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from engine.cli.options import output_option
from engine.errors import ManifestError, Problem, UsageError
from engine.model import Manifest, Policy, Sequence, SequenceTest, Workflow


def validate(
    paths: tuple[str, ...], strict: bool, output: str, leads: Path | None = None,
    only_seqrun: bool = False,
) -> int:
    """Load every manifest under ``paths``; 0 when all are valid, 1 otherwise. With ``leads``,
    also preflight its rows against every Sequence (a failing row fails the validation)."""
    from engine.manifest import loader  # deferred: jsonschema

    try:
        manifests = loader.load(paths, strict=strict, only_seqrun=only_seqrun)
        warnings = list(loader.last_warnings)
        if leads is not None:
            rows = _preflight_leads(manifests, leads)
            if any(p.severity == "error" for p in rows):
                raise ManifestError([*rows, *warnings])
            warnings.extend(rows)
    except ManifestError as exc:
        if output != "json":
            raise
        report = {
            "ok": False,
            "manifests": [],
            "problems": [asdict(p) for p in exc.problems],
        }
        click.echo(json.dumps(report, indent=2))
        return 1
    if output == "json":
        listed = [{"kind": m.kind, "name": m.name, "file": m.source.file} for m in manifests]
        report = {"ok": True, "manifests": listed, "problems": [asdict(w) for w in warnings]}
        click.echo(json.dumps(report, indent=2))
        return 0
    for warning in warnings:
        click.echo(str(warning), err=True)
    click.echo(f"ok: {len(manifests)} manifest(s)")
    return 0


def _preflight_leads(manifests: list[Manifest], leads: Path) -> list[Problem]:
    """The rows of ``leads`` that would fail in the Sequences (duplicates as warnings)."""
    from engine.apply.preflight import check_leads  # deferred: the providers (httpx)
    from engine.manifest.leads import read_leads

    sequences = [m for m in manifests if isinstance(m, Sequence)]
    if not sequences:
        raise UsageError("--leads needs a Sequence among the manifests to check the rows with")
    read = read_leads(leads)
    duplicates = [p for p in read.refused if p.severity == "warning"]
    return sorted([*check_leads(sequences, read), *duplicates])


def schema(kind: str | None) -> int:
    """Print the JSON Schema of ``kind``, or of every kind as one JSON object."""
    from engine.manifest.schemas import KINDS, schema_for, schema_text  # deferred: jsonschema

    if kind is not None:
        click.echo(schema_text(kind), nl=False)
        return 0
    click.echo(json.dumps({k: schema_for(k) for k in KINDS}, indent=2))
    return 0


def graph(file: str, fmt: str, name: str | None) -> int:
    """Print the state machine each manifest in ``file`` compiles to."""
    # deferred: the loader (jsonschema), the lint (croniter) and the compiler (transitions)
    from engine.compile import machine
    from engine.compile.graph import graph as draw
    from engine.manifest.explain import did_you_mean
    from engine.manifest.loader import load

    drawable = [m for m in load([file])
                if not isinstance(m, (SequenceTest, Policy))]  # no machine
    if name is not None:
        picked = [m for m in drawable if m.name == name]
        if not picked:
            hint = did_you_mean(name, [m.name for m in drawable])
            raise UsageError(f"no manifest named {name!r} in {file}{hint}")
        drawable = picked
    if not drawable:
        raise UsageError(f"{file} holds no manifest to draw")
    texts = [
        draw(
            machine.compile_sequence(m)
            if isinstance(m, Sequence)
            else machine.compile_workflow(m)
            if isinstance(m, Workflow)
            else machine.compile_schedule(m),
            fmt,
        )
        for m in drawable
    ]
    click.echo("\n".join(texts), nl=False)
    return 0


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--strict", is_flag=True, help="Warnings fail the validation too.")
@click.option("--leads", "leads", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Preflight this leads CSV's rows against the Sequences (templates, lengths, "
                   "URLs); a row that would fail is an error at FILE:LINE.")
@click.option("--only-seqrun", is_flag=True,
              help="Skip YAML that is not a seqrun manifest (no `apiVersion: seqrun/...`), "
                   "as the pre-commit hook does.")
@output_option(None)
def validate_command(
    paths: tuple[str, ...], strict: bool, leads: Path | None, only_seqrun: bool, output: str
) -> int:
    """Validate manifests (files, or directories of *.yaml / *.yml): schema, lint, references."""
    return validate(paths, strict, output, leads, only_seqrun)


@click.command("schema")
@click.argument("kind", required=False)
def schema_command(kind: str | None) -> int:
    """Print the JSON Schema of KIND (Sequence, Workflow, Schedule, SequenceTest, Policy),
    or all of them."""
    return schema(kind)


@click.command("graph")
@click.argument("file", type=click.Path(path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="Output format.",
)
@click.option("--name", default=None, help="Only the manifest with this metadata.name.")
def graph_command(file: str, fmt: str, name: str | None) -> int:
    """Print the state machine each manifest in FILE compiles to (a Schedule: its runs)."""
    return graph(file, fmt, name)


COMMANDS = (validate_command, schema_command, graph_command)
