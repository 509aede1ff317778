"""``mode: async`` Schedules, advanced by the runner once a tick: start ``run/async`` once, then
``POST /runs/{uid}/continue`` each time the previous run has finished."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from engine.errors import ProviderError
from engine.model import Schedule
from engine.providers.edges.runs import (
    RUN_FINISHED,
    continue_run,
    get_run,
    run_uid,
    start_async_run,
)
from engine.providers.edges.schedule_config import desired_config, fingerprint, request_body
from engine.store import Store
from engine.store import schedules as schedule_db

log = logging.getLogger(__name__)

RUNS_LOCK = "schedule-runs"  # held while advancing the async Schedules


@dataclass(frozen=True)
class AsyncRunResult:
    name: str
    outcome: Literal["started", "continued", "running", "restarted"]
    run_uid: str
    status: str


def _run_body(config: Mapping[str, Any]) -> dict[str, Any]:
    body = request_body(config)
    for key in ("cron", "timezone", "schedule_at"):
        body.pop(key, None)
    cb = body.get("callback")
    if isinstance(cb, Mapping):
        hidden = [k for k, v in (cb.get("headers") or {}).items() if str(v).startswith("sha256:")]
        if hidden:
            # Registered configs keep header digests only; pass the manifests to send them.
            log.warning("async schedule callback headers %s not sent (not stored)", hidden)
            body["callback"] = {**cb, "headers": {k: v for k, v in cb["headers"].items()
                                                  if k not in hidden}}
    return body


async def _advance(
    name: str, config: Mapping[str, Any], *, client: httpx.AsyncClient, store: Store
) -> AsyncRunResult:
    fp = fingerprint(config)
    state = schedule_db.get(store, schedule_db.RUNS, name)
    if not isinstance(state, Mapping) or state.get("fingerprint") != fp:
        data = await start_async_run(client, str(config["action"]), _run_body(config))
        uid = run_uid(data) if isinstance(data, Mapping) else None
        if uid is None:
            raise ProviderError("SERVER_ERROR", "async run started but no run uid returned")
        status = str(data.get("status") or "CREATED").upper()
        outcome: Literal["started", "restarted"] = "started" if state is None else "restarted"
        schedule_db.put(store, schedule_db.RUNS, name, {
            "run_uid": uid, "fingerprint": fp, "status": status, "continues": 0,
            "started_at": schedule_db.now_iso(),
        })
        return AsyncRunResult(name, outcome, uid, status)

    uid = str(state["run_uid"])
    data = await get_run(client, uid)
    status = str((data or {}).get("status") or "").upper()
    if status not in RUN_FINISHED:
        if status != state.get("status"):
            schedule_db.put(store, schedule_db.RUNS, name, {**state, "status": status})
        return AsyncRunResult(name, "running", uid, status)
    cont = await continue_run(client, uid)
    new_uid = (run_uid(cont) if isinstance(cont, Mapping) else None) or uid
    new_status = str((cont or {}).get("status") or "CREATED").upper()
    schedule_db.put(store, schedule_db.RUNS, name, {
        **state, "run_uid": new_uid, "status": new_status, "previous_status": status,
        "continues": int(state.get("continues", 0)) + 1, "continued_at": schedule_db.now_iso(),
    })
    return AsyncRunResult(name, "continued", new_uid, new_status)


async def run_async_schedule(
    schedule: Schedule, *, client: httpx.AsyncClient, store: Store
) -> AsyncRunResult:
    """One step of an async incremental Schedule: start ``run/async`` the first time, then
    ``POST /runs/{uid}/continue`` each time the previous run has finished; while a run is
    still going (or blocked), nothing is sent. A changed manifest starts a new run chain.
    State in :data:`engine.store.schedules.RUNS`."""
    return await _advance(schedule.name, desired_config(schedule), client=client, store=store)


async def tick_async_schedules(
    schedules: Iterable[Schedule] | None = None,
    *,
    client: httpx.AsyncClient,
    store: Store,
) -> list[AsyncRunResult]:
    """Advance every ``mode: async`` Schedule once; for the runner/daemon, once per tick.

    Without ``schedules``, the ones registered by the last apply (``schedule_db.ASYNC``) are
    advanced, so the runner needs no manifests. Holds ``store.lock("schedule-runs")``.
    """
    work: dict[str, Mapping[str, Any]] = {}
    if schedules is None:
        for name, entry in schedule_db.items(store, schedule_db.ASYNC).items():
            if isinstance(entry, Mapping) and isinstance(entry.get("config"), Mapping):
                work[name] = entry["config"]
    else:
        work = {s.name: desired_config(s) for s in schedules if s.mode == "async"}
    results = []
    with store.lock(RUNS_LOCK):
        for name in sorted(work):
            results.append(await _advance(name, work[name], client=client, store=store))
    return results
