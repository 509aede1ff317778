"""Planning: diff Schedule manifests against the live Edges schedules and the local state
(read-only). Each name gets one row: create, unchanged, replace (Edges cannot update a schedule
in place) or delete (``prune``); ``mode: async`` Schedules get rows of their own that register
them for the runner.

    >>> plan = await plan_schedules(manifests, client=client, store=store)   # doctest: +SKIP
    >>> plan.counts()                                                          # doctest: +SKIP
    {'create': 0, 'replace': 1, 'delete': 0, 'unchanged': 2}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from engine.apply.schedules.model import PlanRow, SchedulePlan
from engine.errors import PlanError
from engine.model import Schedule
from engine.providers.edges.schedule_config import (
    ALL_FIELDS,
    desired_config,
    diff_configs,
    digest,
    fingerprint,
    known_fields,
    live_config,
    redact,
)
from engine.providers.edges.schedules import (
    get_schedule,
    is_active,
    list_active_schedules,
    list_identities,
    schedule_uid,
)
from engine.store import Store
from engine.store import schedules as schedule_db

RESUME_NOTE = ("finishes an interrupted apply",)


async def snapshot(
    client: httpx.AsyncClient, store: Store, names: Iterable[str], uids: Iterable[str]
) -> tuple[str, dict[str, dict[str, Any] | None]]:
    """Fetch the details of ``uids`` and hash them with the local state of ``names``."""
    details: dict[str, dict[str, Any] | None] = {}
    for uid in sorted(set(uids)):
        details[uid] = await get_schedule(client, uid)
    live = {
        uid: (
            {"status": str(d.get("status") or "ACTIVE").upper(), "config": redact(live_config(d))}
            if d is not None
            else None
        )
        for uid, d in details.items()
    }
    names = sorted(set(names))
    local = {
        "state": {n: schedule_db.get(store, schedule_db.MANAGED, n) for n in names},
        "intents": {n: schedule_db.get(store, schedule_db.INTENTS, n) for n in names},
        "async": {n: schedule_db.get(store, schedule_db.ASYNC, n) for n in names},
    }
    return digest({"live": live, "local": local})[:16], details


async def _check_engagement(
    schedules: Sequence[Schedule], client: httpx.AsyncClient
) -> None:
    incremental = [s for s in schedules if s.parameters.get("sync_mode") == "incremental"]
    if not incremental:
        return
    identities = await list_identities(client)
    for s in incremental:
        for ident in s.identities:
            info = identities.get(ident)
            if info is None:
                raise PlanError(
                    f"schedule {s.name!r}: sync_mode incremental needs an engagement identity; "
                    f"identity {ident!r} was not found"
                )
            kind = str(info.get("type") or "standard")
            if kind != "engagement":
                raise PlanError(
                    f"schedule {s.name!r}: sync_mode incremental needs an engagement identity; "
                    f"identity {ident!r} is a {kind} identity (recreate it with type: engagement)"
                )

async def plan_schedules(
    schedules: Sequence[Schedule],
    *,
    client: httpx.AsyncClient,
    store: Store,
    prune: bool = False,
) -> SchedulePlan:
    """Diff Schedule manifests against live Edges schedules and the local state. Read-only.

    ``mode: async`` schedules have no live Edges schedule: their rows (``mode="async"``)
    register them in the store for the runner (:mod:`engine.run.schedules`). A name that
    switches mode gets a delete row for its old form. Raises :class:`PlanError` when an
    incremental schedule uses a non-engagement identity, or when two manifests share a name.
    """
    by_name, async_by_name = _split_by_mode(schedules)
    await _check_engagement(list(schedules), client)
    state = schedule_db.items(store, schedule_db.MANAGED)
    intents = schedule_db.items(store, schedule_db.INTENTS)
    registered = schedule_db.items(store, schedule_db.ASYNC)
    names, uids = _tracked(state, intents, set(by_name), set(async_by_name), prune)
    actions = {s.action for s in by_name.values()} | {
        state[n]["action"] for n in names if n in state and state[n].get("action")
    }
    active, listed = await _list_active(client, actions)
    tracked = {e.get("uid") for e in state.values()}
    tracked |= {i.get("new_uid") for i in intents.values()}

    async_rows = _async_rows(async_by_name, registered, set(by_name), prune)
    names |= {r.name for r in async_rows}
    live_fp, details = await snapshot(client, store, names, uids)
    live = _Live(state, intents, details, active, listed, tracked)
    rows = [row for name in sorted(names) if (row := _row(name, by_name.get(name), live))]
    rows.extend(async_rows)
    rows.sort(key=lambda r: (r.name, r.action != "delete"))
    return SchedulePlan(
        rows=tuple(rows),
        live_fingerprint=live_fp,
        names=tuple(sorted(names)),
        uids=tuple(sorted(uids)),
        prune=prune,
        created_at=schedule_db.now_iso(),
    )


def _split_by_mode(
    schedules: Iterable[Schedule],
) -> tuple[dict[str, Schedule], dict[str, Schedule]]:
    """(cron/one-shot Schedules, ``mode: async`` Schedules), by name."""
    by_name: dict[str, Schedule] = {}
    async_by_name: dict[str, Schedule] = {}
    for s in schedules:
        if s.name in by_name or s.name in async_by_name:
            raise PlanError(f"two Schedule manifests are named {s.name!r}")
        (async_by_name if s.mode == "async" else by_name)[s.name] = s
    return by_name, async_by_name


def _tracked(
    state: Mapping[str, Mapping[str, Any]],
    intents: Mapping[str, Mapping[str, Any]],
    declared: set[str],
    async_declared: set[str],
    prune: bool,
) -> tuple[set[str], set[str]]:
    """The names the plan covers and the live schedule uids their state and intents point to."""
    names = declared | {n for n in state if n in async_declared}
    if prune:
        names |= set(state)
    names |= {n for n in intents if n in declared or n in async_declared or prune}
    uids: set[str] = set()
    for n in names:
        if n in state and state[n].get("uid"):
            uids.add(state[n]["uid"])
        if n in intents:
            uids |= {u for u in (intents[n].get("old_uid"), intents[n].get("new_uid")) if u}
    return names, uids


async def _list_active(
    client: httpx.AsyncClient, actions: Iterable[str]
) -> tuple[set[str], list[dict[str, Any]]]:
    """The uids of the ACTIVE schedules of ``actions``, and the listed schedules themselves."""
    active: set[str] = set()
    listed: list[dict[str, Any]] = []
    for action in sorted(actions):
        for item in await list_active_schedules(client, action):
            uid = schedule_uid(item)
            if uid and str(item.get("status") or "ACTIVE").upper() == "ACTIVE":
                active.add(uid)
                listed.append(item)
    return active, listed


@dataclass(frozen=True)
class _Live:
    """What a plan compares the manifests with: local state, intents, live schedules."""

    state: Mapping[str, dict[str, Any]]
    intents: Mapping[str, dict[str, Any]]
    details: Mapping[str, dict[str, Any] | None]
    active: set[str]
    listed: list[dict[str, Any]]
    tracked: set[Any]


@dataclass(frozen=True)
class _Known:
    """One managed name: its state entry, pending intent and live schedule (if any)."""

    name: str
    entry: dict[str, Any] | None
    intent: dict[str, Any] | None
    detail: dict[str, Any] | None
    alive: bool

    @property
    def old_uid(self) -> str | None:
        return self.entry["uid"] if self.entry else None

    @property
    def resume(self) -> tuple[str, ...]:
        return RESUME_NOTE if self.intent else ()


def _row(name: str, schedule: Schedule | None, live: _Live) -> PlanRow | None:
    entry = live.state.get(name)
    old_uid = entry["uid"] if entry else None
    detail = live.details.get(old_uid) if old_uid else None
    alive = old_uid is not None and old_uid in live.active and is_active(detail)
    known = _Known(name, entry, live.intents.get(name), detail, alive)
    if schedule is None:  # managed but no longer declared: prune
        if known.entry is None and known.intent is None:
            return None
        note = () if alive else ("already gone from Edges",)
        return PlanRow("delete", name, old_uid=old_uid, notes=note + known.resume)
    if known.entry is None:
        return _create_row(known, schedule, live)
    if not alive:
        return _gone_row(known, schedule)
    return _compare_row(known, schedule)


def _create_row(known: _Known, schedule: Schedule, live: _Live) -> PlanRow:
    desired = desired_config(schedule)
    notes: tuple[str, ...] = known.resume
    if known.intent and known.intent.get("new_uid"):
        notes = (f"finishes an interrupted apply (schedule {known.intent['new_uid']} exists)",)
    elif not known.intent:
        notes = _lookalikes(schedule, live.listed, live.tracked)
    return PlanRow("create", known.name, config=desired, fingerprint=fingerprint(desired),
                   notes=notes)


def _gone_row(known: _Known, schedule: Schedule) -> PlanRow:
    """The managed schedule is no longer live: ran (one-shot), cancelled, or mid-apply."""
    assert known.entry is not None
    desired = desired_config(schedule)
    fp = fingerprint(desired)
    old_uid = known.old_uid
    completed = known.detail is not None and str(known.detail.get("status")).upper() == "COMPLETED"
    if completed and not known.intent and known.entry.get("fingerprint") == fp:
        # A one-shot (schedule_at, no cron) schedule that already ran: nothing to redo.
        return PlanRow("unchanged", known.name, old_uid=old_uid, config=desired,
                       fingerprint=fp, notes=("one-shot schedule already ran",))
    drift = False
    if known.intent:
        notes = known.resume
    elif completed:
        notes = (f"schedule {old_uid} already ran; a new one-shot schedule is created",)
    else:
        notes = (f"drift: schedule {old_uid} was cancelled outside seqrun",)
        drift = True
    return PlanRow("create", known.name, config=desired, fingerprint=fp, notes=notes, drift=drift)


def _compare_row(known: _Known, schedule: Schedule) -> PlanRow:
    """The managed schedule is live: unchanged, or a replace with its field changes."""
    assert known.detail is not None and known.entry is not None
    desired = desired_config(schedule)
    fp = fingerprint(desired)
    live = live_config(known.detail, schedule.action)
    shown = known_fields(known.detail)
    changes = diff_configs(live, desired, shown)
    stored = known.entry.get("config")
    drift_changes: tuple[Any, ...] = ()
    if isinstance(stored, Mapping):
        # What Edges does not show (e.g. callback headers) is compared with what we applied.
        seen = {c.field for c in changes}
        changes += tuple(
            c for c in diff_configs(stored, desired, ALL_FIELDS - shown) if c.field not in seen
        )
        drift_changes = diff_configs(stored, live, shown)
    notes: tuple[str, ...] = ()
    if drift_changes:
        notes = (f"drift: changed outside seqrun ({', '.join(c.field for c in drift_changes)})",)
    if not changes and not known.intent:
        return PlanRow("unchanged", known.name, old_uid=known.old_uid, config=desired,
                       fingerprint=fp, notes=notes)
    return PlanRow("replace", known.name, old_uid=known.old_uid, config=desired, fingerprint=fp,
                   changes=changes, notes=notes + known.resume, drift=bool(drift_changes))


def _lookalikes(
    schedule: Schedule, listed: Iterable[Mapping[str, Any]], tracked: set[Any]
) -> tuple[str, ...]:
    """A note when unmanaged live schedules run the same action for the same identities: the
    user probably wants to adopt one (import) rather than add another."""
    same = [
        uid for item in listed
        if (uid := schedule_uid(item)) and uid not in tracked
        and (item.get("action_name") or item.get("action")) == schedule.action
        and sorted(item.get("identity_ids") or []) == sorted(schedule.identities)
    ]
    if not same:
        return ()
    return (
        f"unmanaged live schedule(s) {', '.join(same)} run the same action for the same "
        f"identities; to replace one instead of adding another: "
        f"seqrun import schedule {schedule.name} {same[0]}",
    )


def _async_rows(
    declared: Mapping[str, Schedule],
    registered: Mapping[str, Mapping[str, Any]],
    cron_names: set[str],
    prune: bool,
) -> list[PlanRow]:
    rows: list[PlanRow] = []
    names = set(declared) | {n for n in registered if prune or n in cron_names}
    for name in sorted(names):
        reg = registered.get(name)
        schedule = declared.get(name)
        if schedule is None:
            if reg is not None:
                rows.append(PlanRow("delete", name, mode="async",
                                    notes=("the runner stops continuing its runs",)))
            continue
        desired = desired_config(schedule)
        fp = fingerprint(desired)
        if reg is None:
            rows.append(PlanRow("create", name, config=desired, fingerprint=fp, mode="async",
                                notes=("run/async once, then continue after each run",)))
        elif reg.get("fingerprint") == fp:
            rows.append(PlanRow("unchanged", name, config=desired, fingerprint=fp, mode="async"))
        else:
            rows.append(PlanRow(
                "replace", name, config=desired, fingerprint=fp, mode="async",
                changes=diff_configs(reg.get("config") or {}, desired),
                notes=("the next tick starts a new run chain",),
            ))
    return rows
