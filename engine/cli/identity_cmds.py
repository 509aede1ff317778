"""``seqrun identities list|show|check|add``: the identities of every provider, their health,
limits and usage; ``add`` creates an Edges identity and prints where to connect LinkedIn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli import render
from engine.cli.options import output_option, sandbox_option, state_dir_option

if TYPE_CHECKING:
    from engine.views.identities import IdentitiesReport, IdentityView

# `from engine import runtime` is deferred into the commands below: it loads the store
# (SQLAlchemy) and the sandbox (Starlette), which `seqrun --help` does not need.

_SANDBOX_HELP = "Ask the embedded sandbox's providers instead of the real APIs."


def _usage(view: IdentityView, action: str) -> str:
    cap = view.limits.get(action)
    return (f"{action} {view.used_24h.get(action, 0)}/{cap if cap is not None else '-'}"
            f" (7d {view.used_7d.get(action, 0)})")


def _limits_cell(view: IdentityView) -> str:
    actions = sorted(set(view.limits) | set(view.used_24h) | set(view.used_7d))
    return ", ".join(_usage(view, a) for a in actions) or "-"


def render_identities(report: IdentitiesReport) -> None:
    out = render.console()
    checked = any(v.checked is not None for v in report.identities)
    head = ("IDENTITY", "PROVIDER", "NAME", "TIER", "HEALTH") + (("NOW",) if checked else ()) \
        + ("24H USED/LIMIT (7D)",)
    rows = [(v.id, v.provider, v.name or "-", v.tier or "-", v.health)
            + ((v.checked or "-",) if checked else ()) + (_limits_cell(v),)
            for v in report.identities]
    render.print_table(out, head, rows, title="identities")
    for provider, why in sorted(report.skipped.items()):
        out.print(f"{provider}: not asked ({why})", markup=False)


def _render_one(view: IdentityView) -> None:
    out = render.console()
    lines: Mapping[str, str] = {
        "identity": view.id, "provider": view.provider, "name": view.name or "-",
        "tier": view.tier or "-", "health": view.health + (f" ({view.reason})"
                                                          if view.reason else ""),
        "listed by provider": "yes" if view.listed else "no (known to the store only)",
    }
    for key, value in lines.items():
        out.print(f"{key + ':':<20}{value}", markup=False)
    actions = sorted(set(view.limits) | set(view.used_24h) | set(view.used_7d))
    rows = [(a, str(view.used_24h.get(a, 0)), str(view.provider_used_24h.get(a, "-")),
             str(view.limits.get(a, "-")), str(view.used_7d.get(a, 0))) for a in actions]
    render.print_table(out, ("ACTION", "24H", "24H (PROVIDER)", "LIMIT/24H", "7D"), rows,
                       right=(1, 2, 3, 4))


@click.group("identities")
def identities_group() -> None:
    """The LinkedIn identities of every provider: health, tier, limits and usage."""


@identities_group.command("list")
@sandbox_option(_SANDBOX_HELP)
@output_option()
@state_dir_option()
def list_cmd(sandbox: bool, output: str, state_dir: Path) -> int:
    """Every provider's identities (providers without credentials are named, not asked)."""
    from engine import runtime  # deferred: see the module's note

    report = runtime.identities(state_dir, sandbox=sandbox)
    if output == "json":
        render.print_json(report.to_json())
    else:
        render_identities(report)
    return 0


@identities_group.command("show")
@click.argument("identity")
@sandbox_option(_SANDBOX_HELP)
@output_option()
@state_dir_option()
def show_cmd(identity: str, sandbox: bool, output: str, state_dir: Path) -> int:
    """One identity: health, and per action its usage (24 h, 7 days) and limit."""
    from engine import runtime  # deferred: see the module's note
    from engine.views.identities import one

    view = one(runtime.identities(state_dir, sandbox=sandbox), identity)
    if output == "json":
        render.print_json(view.to_json())
    else:
        _render_one(view)
    return 0


@identities_group.command("check")
@sandbox_option(_SANDBOX_HELP)
@output_option()
@state_dir_option()
def check_cmd(sandbox: bool, output: str, state_dir: Path) -> int:
    """Ask each provider for each identity's health now; exit 1 when one is not healthy."""
    from engine import runtime  # deferred: see the module's note

    report = runtime.identities(state_dir, sandbox=sandbox, check=True)
    if output == "json":
        render.print_json(report.to_json())
    else:
        render_identities(report)
    return 1 if any(v.checked == "unhealthy" for v in report.identities) else 0


@identities_group.command("add")
@click.argument("name")
@click.option("--provider", type=click.Choice(["edges"]), default="edges", show_default=True,
              help="Only Edges creates identities through its API.")
@click.option("--standard", is_flag=True,
              help="A standard identity (default: engagement, seed 001's credit-free outreach).")
@sandbox_option("Create it in the embedded sandbox (its LinkedIn is connected at once).")
@output_option()
@state_dir_option()
def add_cmd(name: str, provider: str, standard: bool, sandbox: bool, output: str,
            state_dir: Path) -> int:
    """Create an identity and print the link where its owner connects LinkedIn."""
    from engine import runtime  # deferred: see the module's note

    made = runtime.add_identity(state_dir, name, provider=provider, engagement=not standard,
                                sandbox=sandbox)
    if output == "json":
        render.print_json({"id": made.id, "name": made.name, "provider": provider,
                           "integration_link": made.link})
        return 0
    click.echo(f"created {provider} identity {made.id} ({made.name})")
    if made.link:
        click.echo(f"connect its LinkedIn account: {made.link}")
    else:
        click.echo("connect its LinkedIn account in the Edges app (no link in the answer)")
    return 0


COMMANDS = [identities_group]
