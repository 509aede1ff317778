"""CLI commands (see engine/cli/__init__.py). Commands return an int exit code."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from engine.cli import cli
from engine.errors import ManifestError

# ---- seqrun validate / seqrun schema (manifest language owner) --------------------------------


def validate(paths: tuple[str, ...], strict: bool, output: str) -> int:
    """Load every manifest under ``paths``; 0 when all are valid, 1 otherwise."""
    from engine.manifest import loader

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
    from engine.manifest.schemas import KINDS, schema_for, schema_text

    if kind is not None:
        click.echo(schema_text(kind), nl=False)
        return 0
    click.echo(json.dumps({k: schema_for(k) for k in KINDS}, indent=2))
    return 0


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--strict", is_flag=True, help="Warnings fail the validation too.")
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def validate_command(paths: tuple[str, ...], strict: bool, output: str) -> int:
    """Validate manifests (files, or directories of *.yaml / *.yml): schema, lint, references."""
    return validate(paths, strict, output)


@cli.command("schema")
@click.argument("kind", required=False)
def schema_command(kind: str | None) -> int:
    """Print the JSON Schema of KIND (Sequence, Workflow, Schedule), or all of them."""
    return schema(kind)


# (The `graph` command is added below by the compiler owner, in its own block.)

# ---- seqrun graph (compiler owner; self-contained block) --------------------------------------


def _register_graph() -> None:
    """Adds ``seqrun graph``; imports stay local so this block is independent of the file."""
    import click

    from engine.cli import cli as group

    @group.command("graph")
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
        from engine.compile.graph import graph
        from engine.compile.machine import (
            compile_schedule,
            compile_sequence,
            compile_workflow,
        )
        from engine.errors import UsageError
        from engine.manifest.lint import did_you_mean
        from engine.manifest.loader import load
        from engine.model import Sequence, Workflow

        drawable = load([file])
        if name is not None:
            picked = [m for m in drawable if m.name == name]
            if not picked:
                hint = did_you_mean(name, [m.name for m in drawable])
                raise UsageError(f"no manifest named {name!r} in {file}{hint}")
            drawable = picked
        if not drawable:
            raise UsageError(f"{file} holds no manifest to draw")
        texts = [
            graph(
                compile_sequence(m)
                if isinstance(m, Sequence)
                else compile_workflow(m)
                if isinstance(m, Workflow)
                else compile_schedule(m),
                fmt,
            )
            for m in drawable
        ]
        click.echo("\n".join(texts), nl=False)
        return 0


_register_graph()
