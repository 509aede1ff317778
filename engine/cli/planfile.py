"""Saved Schedule plans: ``seqrun plan -out FILE`` writes one, ``seqrun apply FILE`` reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.apply.schedules import PLAN_FORMAT, SchedulePlan
from engine.errors import OutputError, one_line


def save_plan_file(plan: SchedulePlan, out: Path) -> None:
    """Write a plan for a later ``apply FILE`` (owner-only: it holds callback headers)."""
    # A saved plan carries callback headers: owner-only, like terraform plan files.
    text = json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise OutputError(f"cannot write the plan to {out} ({one_line(exc.strerror or str(exc))}):"
                          " choose a file in an existing directory this user can write") from exc


def read_plan_file(path: Path) -> SchedulePlan | None:
    """The saved plan at ``path``, or None when ``path`` is not a saved plan."""
    if not path.is_file() or path.suffix in (".yaml", ".yml"):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        return None
    return SchedulePlan.from_json(data)
