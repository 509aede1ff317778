"""What commands read from the user besides options: manifest files (lint warnings go to
stderr) and the approval of a plan at a prompt."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from engine.cli import render
from engine.errors import PlanError

if TYPE_CHECKING:
    from engine.apply.plan import Plan
    from engine.model import Manifest


def load_manifests(paths: tuple[str, ...]) -> list[Manifest]:
    """Load the manifests; lint warnings go to stderr (errors raise ManifestError)."""
    # deferred: the loader pulls in jsonschema, which `seqrun --help` does not need
    from engine.manifest.loader import load_with_warnings

    manifests, warnings = load_with_warnings(paths)
    for problem in warnings:
        click.echo(str(problem), err=True)
    return list(manifests)


def ask_approval(*, err: bool = False) -> bool:
    """The terraform prompt: only ``yes`` approves; PlanError when nobody can answer."""
    if not sys.stdin.isatty():
        raise PlanError(
            "apply needs approval: run it in a terminal to answer the prompt, or pass "
            "--auto-approve (nothing was changed)"
        )
    answer = click.prompt(
        "Do you want to perform these actions? Only 'yes' will be accepted",
        default="", show_default=False, err=err,
    )
    return bool(answer.strip() == "yes")


def plan_approver(auto_approve: bool, output: str) -> Callable[[Plan], bool]:
    """Shows the plan (stderr when stdout keeps one JSON document), then asks for approval."""

    def approve(plan: Plan) -> bool:
        if output == "text":
            render.render_plan(plan)
        elif not auto_approve:  # stdout keeps one JSON document; the human reads stderr
            render.render_plan(plan, render.console(stderr=True))
        return auto_approve or ask_approval()

    return approve
