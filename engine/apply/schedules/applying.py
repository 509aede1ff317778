"""Applying a Schedule plan, crash-safe: Edges cannot update a schedule in place, so a change
is a replace, and a replace never leaves the user with neither schedule. The new schedule is
created first (Edges allows concurrent schedules), then the old one is cancelled; each step is
recorded in an intent (:data:`engine.store.schedules.INTENTS`) so that a crash anywhere
resumes on the next apply.

    >>> await apply_schedule_plan(plan, client=client, store=store)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from engine.apply.schedules.model import PlanRow, ScheduleApplyResult, SchedulePlan
from engine.apply.schedules.planning import snapshot
from engine.errors import PlanError, ProviderError
from engine.providers.edges.schedule_config import (
    diff_configs,
    fingerprint,
    known_fields,
    live_config,
    redact,
)
from engine.providers.edges.schedules import (
    cancel_schedule,
    create_schedule,
    get_schedule,
    is_active,
    list_active_schedules,
    schedule_uid,
)
from engine.store import Store
from engine.store import schedules as schedule_db

LOCK_NAME = "schedules"


async def apply_schedule_plan(
    plan: SchedulePlan, *, client: httpx.AsyncClient, store: Store
) -> ScheduleApplyResult:
    """Apply a plan under ``store.lock("schedules")``.

    Refuses (``PlanError("stale plan: ...")``) when the live schedules or the local state moved
    since the plan was computed. Replace = intent -> create new -> cancel old -> state -> clear
    intent; re-running after a crash finishes the job.
    """
    result = ScheduleApplyResult()
    with store.lock(LOCK_NAME):
        live_fp, _ = await snapshot(client, store, plan.names, plan.uids)
        if live_fp != plan.live_fingerprint:
            raise PlanError(
                "stale plan: live schedules or local state changed since the plan was made; "
                "run plan again"
            )
        for row in plan.rows:
            await _apply_row(row, client=client, store=store, result=result)
    return result


async def _apply_row(
    row: PlanRow, *, client: httpx.AsyncClient, store: Store, result: ScheduleApplyResult
) -> None:
    if row.mode == "async":
        _apply_async(row, store)
        if row.action != "unchanged":
            result.steps.append(f"{row.action} {row.name} (async, runner-driven)")
        {"create": result.created, "replace": result.replaced,
         "delete": result.deleted, "unchanged": result.unchanged}[row.action].append(row.name)
    elif row.action == "unchanged":
        result.unchanged.append(row.name)
        if row.old_uid:
            result.uids[row.name] = row.old_uid
    elif row.action == "delete":
        await _delete(row, client=client, store=store, result=result)
        result.deleted.append(row.name)
    else:
        uid = await _converge(row, client=client, store=store, result=result)
        result.uids[row.name] = uid
        (result.created if row.action == "create" else result.replaced).append(row.name)


def _apply_async(row: PlanRow, store: Store) -> None:
    """Register (or forget) a ``mode: async`` Schedule for the runner; nothing is sent."""
    if row.action == "delete":
        schedule_db.delete(store, schedule_db.ASYNC, row.name)
        schedule_db.delete(store, schedule_db.RUNS, row.name)
    elif row.action in ("create", "replace"):
        assert row.config is not None
        schedule_db.put(store, schedule_db.ASYNC, row.name, {
            "config": redact(row.config), "fingerprint": row.fingerprint,
            "applied_at": schedule_db.now_iso(),
        })


async def _converge(
    row: PlanRow, *, client: httpx.AsyncClient, store: Store, result: ScheduleApplyResult
) -> str:
    """Make ``row.name`` be exactly one live schedule with ``row.config``; every step idempotent."""
    assert row.config is not None and row.fingerprint is not None
    intent, resumed = await _open_intent(row, client=client, store=store, result=result)
    old_uids = [u for u in (row.old_uid, intent.get("old_uid")) if u]
    new_uid = await _new_schedule(row, intent, resumed, old_uids,
                                  client=client, store=store, result=result)
    for uid in old_uids:
        if uid != new_uid and await cancel_schedule(client, str(uid)):
            result.steps.append(f"cancel {uid}")
    schedule_db.put(store, schedule_db.MANAGED, row.name, {
        "uid": new_uid,
        "fingerprint": row.fingerprint,
        "config": redact(row.config),
        "action": row.config["action"],
        "origin": "created",
        "applied_at": schedule_db.now_iso(),
    })
    schedule_db.delete(store, schedule_db.INTENTS, row.name)
    return str(new_uid)


async def _open_intent(
    row: PlanRow, *, client: httpx.AsyncClient, store: Store, result: ScheduleApplyResult
) -> tuple[dict[str, Any], bool]:
    """The intent for this apply of ``row``, and whether it resumes an interrupted one."""
    intent = schedule_db.get(store, schedule_db.INTENTS, row.name)
    if intent is not None and intent.get("fingerprint") == row.fingerprint:
        result.steps.append(f"resume interrupted apply of {row.name}")
        return intent, True
    # An interrupted apply may have created a schedule for a config nobody wants any more.
    leftover = intent.get("new_uid") if intent is not None else None
    if leftover and leftover != row.old_uid and await cancel_schedule(client, str(leftover)):
        result.steps.append(f"cancel {leftover} (left by an interrupted apply)")
    intent = {
        "op": row.action,
        "old_uid": row.old_uid,
        "fingerprint": row.fingerprint,
        "new_uid": None,
        "old_cancelled": False,
        "started_at": schedule_db.now_iso(),
    }
    schedule_db.put(store, schedule_db.INTENTS, row.name, intent)
    return intent, False


async def _new_schedule(
    row: PlanRow,
    intent: dict[str, Any],
    resumed: bool,
    old_uids: list[Any],
    *,
    client: httpx.AsyncClient,
    store: Store,
    result: ScheduleApplyResult,
) -> Any:
    """The uid of the live schedule with ``row.config``: the one an interrupted apply created
    (recorded, or found as an orphan), else a new one."""
    assert row.config is not None
    new_uid = intent.get("new_uid")
    if new_uid and not is_active(await get_schedule(client, str(new_uid))):
        new_uid = None
    if not new_uid and resumed:
        new_uid = await _find_orphan(client, store, row.config)
        if new_uid:
            result.steps.append(f"adopt {new_uid} created by an interrupted apply")
    if new_uid:
        return new_uid
    try:
        new_uid = await create_schedule(client, row.config)
    except ProviderError as exc:
        if exc.status != 409 or not old_uids:
            raise
        # This Edges refuses two concurrent schedules: cancel first, the intent covers
        # a crash before the create.
        for uid in old_uids:
            if await cancel_schedule(client, str(uid)):
                result.steps.append(f"cancel {uid} (no concurrent schedules)")
        intent["old_cancelled"] = True
        schedule_db.put(store, schedule_db.INTENTS, row.name, intent)
        new_uid = await create_schedule(client, row.config)
    result.steps.append(f"create {row.name} -> {new_uid}")
    intent["new_uid"] = new_uid
    schedule_db.put(store, schedule_db.INTENTS, row.name, intent)
    return new_uid


async def _find_orphan(
    client: httpx.AsyncClient, store: Store, config: Mapping[str, Any]
) -> str | None:
    """An ACTIVE schedule with exactly this config that no state entry tracks (a create whose
    answer was lost before the intent recorded it)."""
    tracked = {e.get("uid") for e in schedule_db.items(store, schedule_db.MANAGED).values()}
    for item in await list_active_schedules(client, str(config["action"])):
        uid = schedule_uid(item)
        if not uid or uid in tracked:
            continue
        detail = await get_schedule(client, uid)
        if is_active(detail) and detail is not None:
            live = live_config(detail, str(config["action"]))
            if not diff_configs(live, config, known_fields(detail)):
                return uid
    return None


async def _delete(
    row: PlanRow, *, client: httpx.AsyncClient, store: Store, result: ScheduleApplyResult
) -> None:
    intent = schedule_db.get(store, schedule_db.INTENTS, row.name)
    uids = [row.old_uid]
    if intent is not None:
        uids += [intent.get("old_uid"), intent.get("new_uid")]
    schedule_db.put(store, schedule_db.INTENTS, row.name, {
        "op": "delete", "old_uid": row.old_uid, "fingerprint": None,
        "started_at": schedule_db.now_iso(),
    })
    for uid in dict.fromkeys(u for u in uids if u):
        if await cancel_schedule(client, str(uid)):
            result.steps.append(f"cancel {uid}")
    schedule_db.delete(store, schedule_db.MANAGED, row.name)
    schedule_db.delete(store, schedule_db.INTENTS, row.name)


async def import_schedule(
    name: str, uid: str, *, client: httpx.AsyncClient, store: Store
) -> dict[str, Any]:
    """Adopt a live schedule under manifest name ``name``; returns the recorded state entry.

    The next plan compares the manifest against it (e.g. a full-sync schedule whose manifest now
    says ``sync_mode: incremental`` shows as a replace).
    """
    with store.lock(LOCK_NAME):
        detail = await get_schedule(client, uid)
        if not is_active(detail) or detail is None:
            raise PlanError(f"cannot import schedule {uid}: it is not an active Edges schedule")
        for other, entry in schedule_db.items(store, schedule_db.MANAGED).items():
            if entry.get("uid") == uid and other != name:
                raise PlanError(f"schedule {uid} is already managed as {other!r}")
        current = schedule_db.get(store, schedule_db.MANAGED, name)
        if current is not None and current.get("uid") not in (None, uid):
            raise PlanError(
                f"{name!r} already manages schedule {current['uid']}; remove it from the "
                "manifests and apply with --prune first"
            )
        config = live_config(detail)
        entry = {
            "uid": uid,
            "fingerprint": fingerprint(config),
            "config": redact(config),
            "action": config["action"],
            "origin": "imported",
            "applied_at": schedule_db.now_iso(),
        }
        schedule_db.put(store, schedule_db.MANAGED, name, entry)
        return entry
