"""CLI commands (see engine/cli/__init__.py). Commands return an int exit code."""

from __future__ import annotations

from engine.cli import cli  # noqa: F401

# ---- seqrun graph (compiler owner; self-contained block) --------------------------------------


def _register_graph() -> None:
    """Adds ``seqrun graph``; imports stay local so this block is independent of the file."""
    import click

    from engine.cli import cli as group

    @group.command("graph")
    @click.argument("file", type=click.Path(exists=True, path_type=str))
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["mermaid", "dot"]),
        default="mermaid",
        show_default=True,
        help="Output format.",
    )
    @click.option("--name", default=None, help="Only the Sequence or Workflow with this name.")
    def graph_command(file: str, fmt: str, name: str | None) -> int:
        """Print the state machine each Sequence or Workflow in FILE compiles to."""
        from engine.compiler import compile_sequence, compile_workflow, graph
        from engine.errors import UsageError
        from engine.lint import did_you_mean
        from engine.loader import load
        from engine.model import Sequence, Workflow

        drawable = [m for m in load([file]) if isinstance(m, Sequence | Workflow)]
        if name is not None:
            picked = [m for m in drawable if m.name == name]
            if not picked:
                hint = did_you_mean(name, [m.name for m in drawable])
                raise UsageError(f"no Sequence or Workflow named {name!r} in {file}{hint}")
            drawable = picked
        if not drawable:
            raise UsageError(f"{file} holds no Sequence or Workflow to draw")
        texts = [
            graph(compile_sequence(m) if isinstance(m, Sequence) else compile_workflow(m), fmt)
            for m in drawable
        ]
        click.echo("\n".join(texts), nl=False)
        return 0


_register_graph()
