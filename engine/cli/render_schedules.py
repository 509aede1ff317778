"""Terraform-like lines for a Schedule plan (pure: the commands print them).

    >>> render_schedule_plan(plan)   # doctest: +SKIP
    ['-/+ replace inbox-sync (cron: "0 9 * * *" -> "0 8-18/2 * * 1-5")', 'Plan: ...']
"""

from __future__ import annotations

import json
from typing import Any

from engine.apply.schedules import SchedulePlan


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


_SIGILS = {"create": "+", "unchanged": "=", "replace": "-/+", "delete": "-"}


def render_schedule_plan(plan: SchedulePlan) -> list[str]:
    """Terraform-like lines, e.g. ``-/+ replace inbox-sync (cron: "0 9 * * *" -> "0 8 * * *")``."""
    lines: list[str] = []
    for row in plan.rows:
        line = f"{_SIGILS[row.action]} {row.action} {row.name}"
        if row.mode == "async":
            line += " [async]"
        if row.changes:
            parts = [f"{c.field}: {_show(c.old)} -> {_show(c.new)}" for c in row.changes]
            line += f" ({'; '.join(parts)})"
        if row.old_uid and row.action in ("replace", "delete", "unchanged"):
            line += f" [{row.old_uid}]"
        lines.append(line)
        lines.extend(f"    # {note}" for note in row.notes)
    c = plan.counts()
    if plan.has_changes:
        lines.append(
            f"Plan: {c['create']} to create, {c['replace']} to replace, {c['delete']} to delete, "
            f"{c['unchanged']} unchanged."
        )
    else:
        lines.append(f"No changes. {c['unchanged']} schedule(s) up to date.")
    return lines
