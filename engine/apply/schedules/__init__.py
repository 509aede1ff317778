"""Edges schedules as code: reconcile ``Schedule`` manifests with live schedules, terraform-style.

- :mod:`~engine.apply.schedules.model`: the plan (rows, saved JSON) and the apply result;
- :mod:`~engine.apply.schedules.planning`: :func:`plan_schedules`, read-only;
- :mod:`~engine.apply.schedules.applying`: :func:`apply_schedule_plan` (crash-safe replaces)
  and :func:`import_schedule` (adopt a live schedule).

    >>> plan = await plan_schedules(manifests, client=client, store=store)   # doctest: +SKIP
    >>> await apply_schedule_plan(plan, client=client, store=store)           # doctest: +SKIP

The Edges calls and the config normalization (desired vs live config, redaction of callback
header values, fingerprints) are in :mod:`engine.providers.edges`; the state (managed schedules,
intents, registered ``mode: async`` schedules, their runs) in :mod:`engine.store.schedules`.
``mode: async`` schedules have no Edges schedule: apply registers them and the runner
(:func:`engine.run.schedules.tick_async_schedules`) starts ``run/async`` once, then continues
each finished run. The rendering is :mod:`engine.cli.render_schedules`; the lint rules are in
:mod:`engine.manifest.lint.schedule`.
"""

from __future__ import annotations

from engine.apply.schedules.applying import LOCK_NAME, apply_schedule_plan, import_schedule
from engine.apply.schedules.model import (
    PLAN_FORMAT,
    PlanRow,
    RowAction,
    ScheduleApplyResult,
    SchedulePlan,
)
from engine.apply.schedules.planning import plan_schedules
from engine.providers.edges.schedule_config import FieldChange

__all__ = [
    "LOCK_NAME",
    "PLAN_FORMAT",
    "FieldChange",
    "PlanRow",
    "RowAction",
    "ScheduleApplyResult",
    "SchedulePlan",
    "apply_schedule_plan",
    "import_schedule",
    "plan_schedules",
]
