"""Edges schedules as code: reconcile ``Schedule`` manifests with live schedules, terraform-style.

Edges cannot update a schedule in place, so any change is a replace. A replace never leaves
the user with neither schedule: the new schedule is created first (Edges allows concurrent
schedules), then the old one is cancelled; each step is recorded in an intent
(``kv "schedules-intent"``) so a crash anywhere resumes on the next apply.

    >>> plan = await plan_schedules(manifests, client=client, store=store)   # doctest: +SKIP
    >>> render_schedule_plan(plan)                                            # doctest: +SKIP
    ['-/+ replace inbox-sync (cron: "0 9 * * *" -> "0 8-18/2 * * 1-5")']
    >>> await apply_schedule_plan(plan, client=client, store=store)           # doctest: +SKIP

State (``kv "schedules"``, keyed by manifest name): ``{"uid", "fingerprint", "config", "action",
"origin"}`` where ``config`` is the normalized schedule config with callback header values
replaced by digests (never stored in clear). ``mode: async`` schedules have no Edges schedule:
apply registers them in ``kv "schedule-async"`` and the runner
(:func:`engine.run.schedules.tick_async_schedules`) starts ``run/async`` once, then continues
each finished run; their run is in ``kv "schedule-runs"``. The rules lint checks are in
:mod:`engine.manifest.lint.schedule`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from engine.errors import PlanError, ProviderError
from engine.model import Schedule
from engine.providers.edges.schedule_config import (
    ALL_FIELDS,
    FieldChange,
    desired_config,
    diff_configs,
    digest,
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
    list_identities,
    schedule_uid,
)
from engine.store import Store
from engine.store import schedules as schedule_db

log = logging.getLogger(__name__)

LOCK_NAME = "schedules"
PLAN_FORMAT = "seqrun-schedule-plan/1"

# ---- plan model -----------------------------------------------------------------------------

RowAction = Literal["create", "unchanged", "replace", "delete"]


@dataclass(frozen=True)
class PlanRow:
    """One line of the plan. ``config`` is the desired config (create/replace)."""

    action: RowAction
    name: str
    old_uid: str | None = None
    config: Mapping[str, Any] | None = None
    fingerprint: str | None = None
    changes: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    drift: bool = False
    mode: str = "schedule"  # schedule (a live Edges schedule) | async (registered for the runner)

    def to_json(self, *, redacted: bool = False) -> dict[str, Any]:
        config: dict[str, Any] | None = None
        if self.config is not None:
            config = redact(self.config) if redacted else dict(self.config)
        return {
            "action": self.action,
            "name": self.name,
            "old_uid": self.old_uid,
            "config": config,
            "fingerprint": self.fingerprint,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes],
            "notes": list(self.notes),
            "drift": self.drift,
            "mode": self.mode,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanRow:
        action = data["action"]
        if action not in ("create", "unchanged", "replace", "delete"):
            raise PlanError(f"not a schedule plan: unknown row action {action!r}")
        return cls(
            action=action,
            name=str(data["name"]),
            old_uid=data.get("old_uid"),
            config=data.get("config"),
            fingerprint=data.get("fingerprint"),
            changes=tuple(
                FieldChange(c["field"], c.get("old"), c.get("new")) for c in data.get("changes", [])
            ),
            notes=tuple(data.get("notes", [])),
            drift=bool(data.get("drift", False)),
            mode=str(data.get("mode", "schedule")),
        )


@dataclass(frozen=True)
class SchedulePlan:
    """The diff between manifests and live schedules, and what it was computed against.

    ``live_fingerprint`` hashes the live state of every tracked schedule plus the local state
    and intents for ``names``; applying re-computes it and refuses a stale plan.
    """

    rows: tuple[PlanRow, ...]
    live_fingerprint: str
    names: tuple[str, ...]
    uids: tuple[str, ...]
    prune: bool = False
    created_at: str = ""

    @property
    def has_changes(self) -> bool:
        return any(r.action != "unchanged" for r in self.rows)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "replace": 0, "delete": 0, "unchanged": 0}
        for r in self.rows:
            out[r.action] += 1
        return out

    def to_json(self, *, redacted: bool = False) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_json` reads back. It contains callback header
        values (a saved plan must be able to recreate them): keep the file private. For display,
        ``redacted=True`` replaces them by digests (such a dict cannot be applied)."""
        return {
            "format": PLAN_FORMAT,
            "created_at": self.created_at,
            "prune": self.prune,
            "live_fingerprint": self.live_fingerprint,
            "names": list(self.names),
            "uids": list(self.uids),
            "summary": self.counts(),
            "has_changes": self.has_changes,
            "redacted": redacted,
            "rows": [r.to_json(redacted=redacted) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SchedulePlan:
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f"not a schedule plan (expected format {PLAN_FORMAT!r})")
        if data.get("redacted"):
            raise PlanError("this plan was saved redacted (for display); save it with -out")
        return cls(
            rows=tuple(PlanRow.from_json(r) for r in data["rows"]),
            live_fingerprint=str(data["live_fingerprint"]),
            names=tuple(data.get("names", [])),
            uids=tuple(data.get("uids", [])),
            prune=bool(data.get("prune", False)),
            created_at=str(data.get("created_at", "")),
        )


@dataclass
class ScheduleApplyResult:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)  # name -> scheduled_run_uid now
    steps: list[str] = field(default_factory=list)  # what was done, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "replaced": self.replaced,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "uids": self.uids,
            "steps": self.steps,
        }


# ---- planning -------------------------------------------------------------------------------


async def _snapshot(
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
    by_name: dict[str, Schedule] = {}
    async_by_name: dict[str, Schedule] = {}
    for s in schedules:
        if s.name in by_name or s.name in async_by_name:
            raise PlanError(f"two Schedule manifests are named {s.name!r}")
        (async_by_name if s.mode == "async" else by_name)[s.name] = s
    wanted = list(by_name.values())
    await _check_engagement(list(schedules), client)

    state = dict(schedule_db.items(store, schedule_db.MANAGED))
    intents = dict(schedule_db.items(store, schedule_db.INTENTS))
    registered = dict(schedule_db.items(store, schedule_db.ASYNC))
    names = set(by_name) | {n for n in state if n in async_by_name}
    if prune:
        names |= set(state)
    names |= {n for n in intents if n in by_name or n in async_by_name or prune}
    uids: set[str] = set()
    for n in names:
        if isinstance(state.get(n), Mapping) and state[n].get("uid"):
            uids.add(state[n]["uid"])
        intent = intents.get(n)
        if isinstance(intent, Mapping):
            uids |= {u for u in (intent.get("old_uid"), intent.get("new_uid")) if u}

    actions = {s.action for s in wanted} | {
        state[n]["action"] for n in names if isinstance(state.get(n), Mapping)
        and state[n].get("action")
    }
    active: set[str] = set()
    listed: list[dict[str, Any]] = []
    for action in sorted(actions):
        for item in await list_active_schedules(client, action):
            uid = schedule_uid(item)
            if uid and str(item.get("status") or "ACTIVE").upper() == "ACTIVE":
                active.add(uid)
                listed.append(item)
    tracked = {e.get("uid") for e in state.values() if isinstance(e, Mapping)}
    tracked |= {i.get("new_uid") for i in intents.values() if isinstance(i, Mapping)}

    async_rows = _async_rows(async_by_name, registered, set(by_name), prune)
    names |= {r.name for r in async_rows}
    live_fp, details = await _snapshot(client, store, names, uids)
    rows: list[PlanRow] = []
    for name in sorted(names):
        entry = state.get(name) if isinstance(state.get(name), Mapping) else None
        intent = intents.get(name) if isinstance(intents.get(name), Mapping) else None
        resume_note = ("finishes an interrupted apply",) if intent else ()
        old_uid = entry["uid"] if entry else None
        detail = details.get(old_uid) if old_uid else None
        alive = old_uid is not None and old_uid in active and is_active(detail)
        schedule = by_name.get(name)

        if schedule is None:  # managed but no longer declared: prune
            if entry is None and intent is None:
                continue
            note = () if alive else ("already gone from Edges",)
            rows.append(PlanRow("delete", name, old_uid=old_uid, notes=note + resume_note))
            continue

        desired = desired_config(schedule)
        fp = fingerprint(desired)
        if entry is None:
            notes: tuple[str, ...] = resume_note
            if intent and intent.get("new_uid"):
                notes = (f"finishes an interrupted apply (schedule {intent['new_uid']} exists)",)
            elif not intent:
                notes = _lookalikes(schedule, listed, tracked)
            rows.append(PlanRow("create", name, config=desired, fingerprint=fp, notes=notes))
            continue
        completed = detail is not None and str(detail.get("status")).upper() == "COMPLETED"
        if not alive and completed and not intent and entry.get("fingerprint") == fp:
            # A one-shot (schedule_at, no cron) schedule that already ran: nothing to redo.
            rows.append(PlanRow("unchanged", name, old_uid=old_uid, config=desired,
                                fingerprint=fp, notes=("one-shot schedule already ran",)))
            continue
        if not alive:
            if intent:
                notes = resume_note
                drift = False
            elif completed:
                notes = (f"schedule {old_uid} already ran; a new one-shot schedule is created",)
                drift = False
            else:
                notes = (f"drift: schedule {old_uid} was cancelled outside seqrun",)
                drift = True
            rows.append(
                PlanRow("create", name, config=desired, fingerprint=fp, notes=notes, drift=drift)
            )
            continue
        assert detail is not None and old_uid is not None
        live = live_config(detail, schedule.action)
        known = known_fields(detail)
        changes = diff_configs(live, desired, known)
        if isinstance(entry.get("config"), Mapping):
            # What Edges does not show (e.g. callback headers) is compared with what we applied.
            hidden = ALL_FIELDS
            seen = {c.field for c in changes}
            changes += tuple(
                c for c in diff_configs(entry["config"], desired, hidden - known)
                if c.field not in seen
            )
        stored = entry.get("config")
        drift_changes = diff_configs(stored, live, known) if isinstance(stored, Mapping) else ()
        notes_l: list[str] = []
        if drift_changes:
            fields = ", ".join(c.field for c in drift_changes)
            notes_l.append(f"drift: changed outside seqrun ({fields})")
        if not changes and not intent:
            rows.append(
                PlanRow("unchanged", name, old_uid=old_uid, config=desired, fingerprint=fp,
                        notes=tuple(notes_l))
            )
            continue
        rows.append(
            PlanRow(
                "replace",
                name,
                old_uid=old_uid,
                config=desired,
                fingerprint=fp,
                changes=changes,
                notes=tuple(notes_l) + resume_note,
                drift=bool(drift_changes),
            )
        )
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
    registered: Mapping[str, Any],
    cron_names: set[str],
    prune: bool,
) -> list[PlanRow]:
    rows: list[PlanRow] = []
    names = set(declared) | {n for n in registered if prune or n in cron_names}
    for name in sorted(names):
        reg = registered.get(name) if isinstance(registered.get(name), Mapping) else None
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


# ---- applying -------------------------------------------------------------------------------


def _apply_async(row: PlanRow, store: Store) -> None:
    if row.action == "delete":
        schedule_db.delete(store, schedule_db.ASYNC, row.name)
        schedule_db.delete(store, schedule_db.RUNS, row.name)
    elif row.action in ("create", "replace"):
        assert row.config is not None
        schedule_db.put(store, schedule_db.ASYNC, row.name, {
            "config": redact(row.config), "fingerprint": row.fingerprint,
            "applied_at": schedule_db.now_iso(),
        })


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


async def _converge(
    row: PlanRow, *, client: httpx.AsyncClient, store: Store, result: ScheduleApplyResult
) -> str:
    """Make ``row.name`` be exactly one live schedule with ``row.config``; every step idempotent."""
    assert row.config is not None and row.fingerprint is not None
    name, config, fp = row.name, row.config, row.fingerprint
    intent = schedule_db.get(store, schedule_db.INTENTS, name)
    resumed = isinstance(intent, Mapping) and intent.get("fingerprint") == fp
    if not resumed:
        # An interrupted apply may have created a schedule for a config nobody wants any more.
        leftover = intent.get("new_uid") if isinstance(intent, Mapping) else None
        if leftover and leftover != row.old_uid and await cancel_schedule(client, str(leftover)):
            result.steps.append(f"cancel {leftover} (left by an interrupted apply)")
        intent = {
            "op": row.action,
            "old_uid": row.old_uid,
            "fingerprint": fp,
            "new_uid": None,
            "old_cancelled": False,
            "started_at": schedule_db.now_iso(),
        }
        schedule_db.put(store, schedule_db.INTENTS, name, intent)
    else:
        result.steps.append(f"resume interrupted apply of {name}")
    assert isinstance(intent, Mapping)
    intent = dict(intent)
    old_uids = [u for u in (row.old_uid, intent.get("old_uid")) if u]

    new_uid = intent.get("new_uid")
    if new_uid and not is_active(await get_schedule(client, str(new_uid))):
        new_uid = None
    if not new_uid and resumed:
        new_uid = await _find_orphan(client, store, config)
        if new_uid:
            result.steps.append(f"adopt {new_uid} created by an interrupted apply")
    if not new_uid:
        try:
            new_uid = await create_schedule(client, config)
        except ProviderError as exc:
            if exc.status != 409 or not old_uids:
                raise
            # This Edges refuses two concurrent schedules: cancel first, the intent covers
            # a crash before the create.
            for uid in old_uids:
                if await cancel_schedule(client, str(uid)):
                    result.steps.append(f"cancel {uid} (no concurrent schedules)")
            intent["old_cancelled"] = True
            schedule_db.put(store, schedule_db.INTENTS, name, intent)
            new_uid = await create_schedule(client, config)
        result.steps.append(f"create {name} -> {new_uid}")
        intent["new_uid"] = new_uid
        schedule_db.put(store, schedule_db.INTENTS, name, intent)

    for uid in old_uids:
        if uid != new_uid and await cancel_schedule(client, str(uid)):
            result.steps.append(f"cancel {uid}")
    schedule_db.put(
        store,
        schedule_db.MANAGED,
        name,
        {
            "uid": new_uid,
            "fingerprint": fp,
            "config": redact(config),
            "action": config["action"],
            "origin": "created",
            "applied_at": schedule_db.now_iso(),
        },
    )
    schedule_db.delete(store, schedule_db.INTENTS, name)
    return str(new_uid)


async def _delete(
    row: PlanRow, *, client: httpx.AsyncClient, store: Store, result: ScheduleApplyResult
) -> None:
    intent = schedule_db.get(store, schedule_db.INTENTS, row.name)
    uids = [row.old_uid]
    if isinstance(intent, Mapping):
        uids += [intent.get("old_uid"), intent.get("new_uid")]
    schedule_db.put(store, schedule_db.INTENTS, row.name, {"op": "delete", "old_uid": row.old_uid,
                                       "fingerprint": None, "started_at": schedule_db.now_iso()})
    for uid in dict.fromkeys(u for u in uids if u):
        if await cancel_schedule(client, str(uid)):
            result.steps.append(f"cancel {uid}")
    schedule_db.delete(store, schedule_db.MANAGED, row.name)
    schedule_db.delete(store, schedule_db.INTENTS, row.name)


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
        live_fp, _ = await _snapshot(client, store, plan.names, plan.uids)
        if live_fp != plan.live_fingerprint:
            raise PlanError(
                "stale plan: live schedules or local state changed since the plan was made; "
                "run plan again"
            )
        for row in plan.rows:
            if row.mode == "async":
                _apply_async(row, store)
                if row.action != "unchanged":
                    result.steps.append(f"{row.action} {row.name} (async, runner-driven)")
                {"create": result.created, "replace": result.replaced,
                 "delete": result.deleted, "unchanged": result.unchanged}[row.action].append(
                    row.name)
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
    return result


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
            if isinstance(entry, Mapping) and entry.get("uid") == uid and other != name:
                raise PlanError(f"schedule {uid} is already managed as {other!r}")
        current = schedule_db.get(store, schedule_db.MANAGED, name)
        if isinstance(current, Mapping) and current.get("uid") not in (None, uid):
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


# ---- rendering (pure; the CLI prints) -------------------------------------------------------


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
