"""``seqrun completion bash|zsh|fish``: the shell completion script (click's), to source or
save where the shell loads completions (the README shows where)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_cmd(shell: str) -> int:
    """Print the completion script of SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(seqrun completion bash)"            (in ~/.bashrc)
    zsh:   eval "$(seqrun completion zsh)"             (in ~/.zshrc)
    fish:  seqrun completion fish > ~/.config/fish/completions/seqrun.fish
    """
    root = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    click.echo(cls(root, {}, "seqrun", "_SEQRUN_COMPLETE").source())
    return 0


COMMANDS = (completion_cmd,)
