"""``seqrun validate``, ``seqrun schema`` and ``seqrun graph``: the manifest language."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from engine.cli.options import output_option
from engine.errors import ManifestError, UsageError
from engine.model import Policy, Sequence, SequenceTest, Workflow


def validate(paths: tuple[str, ...], strict: bool, output: str) -> int:
    """Load every manifest under ``paths``; 0 when all are valid, 1 otherwise."""
    from engine.manifest import loader  # deferred: jsonschema

    try:
        manifests = loader.load(paths, strict=strict)
        warnings = loader.last_warnings
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
@output_option(None)
def validate_command(paths: tuple[str, ...], strict: bool, output: str) -> int:
    """Validate manifests (files, or directories of *.yaml / *.yml): schema, lint, references."""
    return validate(paths, strict, output)


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
