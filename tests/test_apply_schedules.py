"""Schedules as code: plan/apply against a fake of the Edges schedule endpoints.

The fake (``FakeEdges``) serves exactly the endpoints engine.providers.edges uses, through
``httpx.MockTransport``; faults are injected per call to exercise crash recovery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.apply.schedules import (
    SchedulePlan,
    apply_schedule_plan,
    import_schedule,
    plan_schedules,
)
from engine.cli import main
from engine.cli.render_schedules import render_schedule_plan
from engine.clock import VirtualClock
from engine.errors import LockError, PlanError, ProviderError
from engine.manifest.lint.schedule import schedule_problems
from engine.manifest.loader import load
from engine.model import Callback, Metadata, Schedule, SourceMap
from engine.providers.edges.schedules import list_active_schedules
from engine.run.schedules import run_async_schedule, tick_async_schedules
from engine.sandbox import Sandbox
from engine.store import Store
from engine.store import schedules as schedule_db
from tests.conftest import ROOT

BASE = "https://api.edges.run/v1/"


@dataclass
class FakeEdges:
    """In-memory Edges: schedules, runs, identities. ``page_size`` forces pagination."""

    identities: dict[str, str] = field(
        default_factory=lambda: {"ident-alice": "engagement", "ident-bob": "standard",
                                 "ident-carol": "engagement", "ident-dan": "engagement"}
    )
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    page_size: int = 2
    concurrent: bool = True  # False: refuse a second ACTIVE schedule with the same identities
    faults: dict[str, list[int]] = field(default_factory=dict)  # op -> statuses to answer next
    lose_create_answer: int = 0  # create, then answer 500 (the answer is lost)
    hide_headers: bool = False  # GET /schedules/{uid} omits callback headers
    next_as_url: bool = False  # X-Pagination-Next carries a full URL instead of a cursor
    calls: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def add(self, action: str, **config: Any) -> str:
        uid = f"sch-{next(self._ids)}"
        self.schedules[uid] = {"scheduled_run_uid": uid, "action_name": action,
                               "status": "ACTIVE", "inputs": [], "parameters": {},
                               "timezone": "UTC", **config}
        return uid

    def active(self, action: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.schedules.values() if s["status"] == "ACTIVE"
                and (action is None or s["action_name"] == action)]

    def _fault(self, op: str) -> httpx.Response | None:
        queue = self.faults.get(op)
        if queue:
            status = queue.pop(0)
            return httpx.Response(status, json={"error_label": "GENERIC_ERROR",
                                                "message": "injected", "status_code": status})
        return None

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        parts = path.strip("/").split("/")
        method = request.method
        self.calls.append(f"{method} {path}")
        if method == "GET" and parts == ["identities"]:
            return httpx.Response(200, json={"data": [
                {"uid": u, "name": u, "type": t} for u, t in self.identities.items()]})
        if method == "GET" and parts == ["schedules"]:
            q = request.url.params
            rows = [s for s in self.schedules.values()
                    if s["action_name"] == q.get("action_name", s["action_name"])
                    and s["status"] == q.get("status", s["status"])]
            start = int(q.get("cursor", "0"))
            page = rows[start:start + self.page_size]
            headers = {}
            if start + self.page_size < len(rows):
                cursor = str(start + self.page_size)
                headers["X-Pagination-Next"] = (
                    str(request.url.copy_set_param("cursor", cursor)) if self.next_as_url
                    else cursor)
            return httpx.Response(200, json={"data": [
                {k: page_row[k] for k in ("scheduled_run_uid", "action_name", "status", "cron")}
                for page_row in page]}, headers=headers)
        if method == "GET" and parts[0] == "schedules" and len(parts) == 2:
            s = self.schedules.get(parts[1])
            if s and self.hide_headers and isinstance(s.get("callback"), dict):
                s = {**s, "callback": {k: v for k, v in s["callback"].items() if k != "headers"}}
            return httpx.Response(200, json=s) if s else httpx.Response(
                404, json={"error_label": "STATUS_404", "message": "no such schedule"})
        if method == "POST" and parts[0] == "schedules" and parts[2:] == ["cancel"]:
            if (fault := self._fault("cancel")) is not None:
                return fault
            s = self.schedules.get(parts[1])
            if s is None:
                return httpx.Response(404, json={"error_label": "STATUS_404"})
            s["status"] = "CANCELLED"
            return httpx.Response(200, json=s)
        if method == "POST" and parts[0] == "actions" and parts[2:] == ["run", "schedule"]:
            if (fault := self._fault("create")) is not None:
                return fault
            body = json.loads(request.content)
            if not self.concurrent and any(
                set(s.get("identity_ids", [])) & set(body["identity_ids"])
                for s in self.active(parts[1])
            ):
                return httpx.Response(409, json={"error_label": "CONFLICT",
                                                 "message": "an active schedule exists"})
            uid = self.add(parts[1], **body)
            if self.lose_create_answer:
                self.lose_create_answer -= 1
                return httpx.Response(502, text="bad gateway")
            return httpx.Response(201, json=self.schedules[uid])
        if method == "POST" and parts[0] == "actions" and parts[2:] == ["run", "async"]:
            uid = f"run-{next(self._ids)}"
            self.runs[uid] = {"uid": uid, "status": "RUNNING", "action_name": parts[1],
                              "body": json.loads(request.content), "continued_from": None}
            return httpx.Response(201, json=self.runs[uid])
        if method == "GET" and parts[0] == "runs" and len(parts) == 2:
            return httpx.Response(200, json=self.runs[parts[1]])
        if method == "POST" and parts[0] == "runs" and parts[2:] == ["continue"]:
            old = self.runs[parts[1]]
            if old["status"].upper() not in ("SUCCEEDED", "FAILED"):
                return httpx.Response(409, json={"error_label": "RUN_NOT_FINISHED"})
            uid = f"run-{next(self._ids)}"
            self.runs[uid] = {**old, "uid": uid, "status": "RUNNING", "continued_from": old["uid"]}
            return httpx.Response(201, json=self.runs[uid])
        return httpx.Response(404, json={"error_label": "STATUS_404", "message": path})


def make_schedule(
    name: str,
    *,
    cron: str | None = "0 9 * * *",
    identities: tuple[str, ...] = ("ident-alice",),
    parameters: dict[str, Any] | None = None,
    action: str = "linkedin-extract-messages",
    timezone: str = "Europe/Paris",
    mode: str = "schedule",
    schedule_at: str | None = None,
    inputs: tuple[dict[str, Any], ...] = ({"linkedin_thread_url": "2-abc=="},),
    callback: Callback | None = None,
) -> Schedule:
    return Schedule(
        metadata=Metadata(name=name),
        provider="edges",
        action=action,
        identities=identities,
        cron=cron,
        timezone=timezone,
        mode=mode,
        schedule_at=schedule_at,
        inputs=inputs,
        parameters=parameters if parameters is not None else {"max_results": 500},
        callback=callback,
        source=SourceMap(f"{name}.yaml", {"$": (1, 1), "$.spec.cron": (12, 9)}),
    )


@pytest.fixture
def edges() -> FakeEdges:
    return FakeEdges()


@pytest.fixture
async def client(edges: FakeEdges) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(edges.handler), base_url=BASE) as c:
        yield c


def entry(store: Store, kind: schedule_db.Kind, name: str) -> dict[str, Any]:
    value = schedule_db.get(store, kind, name)
    assert isinstance(value, dict), f"no {kind.table.name}/{name}"
    return value


def state(store: Store, name: str) -> dict[str, Any]:
    return entry(store, schedule_db.MANAGED, name)


async def converge(schedules: list[Schedule], client: httpx.AsyncClient, store: Store,
                   prune: bool = False) -> SchedulePlan:
    plan = await plan_schedules(schedules, client=client, store=store, prune=prune)
    await apply_schedule_plan(plan, client=client, store=store)
    return plan


# ---- create / no-op / replace -------------------------------------------------------------


async def test_create_then_noop(edges: FakeEdges, client: httpx.AsyncClient, store: Store) -> None:
    s = make_schedule("inbox-sync", callback=Callback("https://hooks.example.com/x",
                                                      {"Authorization": "Bearer t0ken"}))
    plan = await plan_schedules([s], client=client, store=store)
    assert [r.action for r in plan.rows] == ["create"]
    assert render_schedule_plan(plan)[0] == "+ create inbox-sync"
    result = await apply_schedule_plan(plan, client=client, store=store)
    assert result.created == ["inbox-sync"]
    [live] = edges.active()
    assert live["cron"] == "0 9 * * *" and live["timezone"] == "Europe/Paris"
    assert live["identity_ids"] == ["ident-alice"]
    assert live["callback"]["headers"] == {"Authorization": "Bearer t0ken"}
    entry = state(store, "inbox-sync")
    assert entry["uid"] == live["scheduled_run_uid"]
    assert "t0ken" not in json.dumps(entry)  # header values are stored as digests

    again = await plan_schedules([s], client=client, store=store)
    assert not again.has_changes
    assert [r.action for r in again.rows] == ["unchanged"]
    assert render_schedule_plan(again)[-1].startswith("No changes.")
    await apply_schedule_plan(again, client=client, store=store)
    assert len(edges.active()) == 1


async def test_change_cron_is_replace(edges: FakeEdges, client: httpx.AsyncClient,
                                      store: Store) -> None:
    await converge([make_schedule("inbox-sync")], client, store)
    [old] = edges.active()
    changed = make_schedule("inbox-sync", cron="0 8-18/2 * * 1-5")
    plan = await plan_schedules([changed], client=client, store=store)
    [row] = plan.rows
    assert row.action == "replace" and not row.drift
    assert render_schedule_plan(plan)[0] == (
        f'-/+ replace inbox-sync (cron: "0 9 * * *" -> "0 8-18/2 * * 1-5") '
        f"[{old['scheduled_run_uid']}]"
    )
    result = await apply_schedule_plan(plan, client=client, store=store)
    assert result.replaced == ["inbox-sync"]
    [new] = edges.active()
    assert new["cron"] == "0 8-18/2 * * 1-5"
    assert edges.schedules[old["scheduled_run_uid"]]["status"] == "CANCELLED"
    # the new schedule was created before the old one was cancelled
    create_at = max(i for i, c in enumerate(edges.calls) if c.endswith("/run/schedule"))
    cancel_at = max(i for i, c in enumerate(edges.calls) if c.endswith("/cancel"))
    assert create_at < cancel_at
    assert state(store, "inbox-sync")["uid"] == new["scheduled_run_uid"]
    assert schedule_db.items(store, schedule_db.INTENTS) == {}


# ---- migration of full-mode schedules to incremental (seed 000) ----------------------------


async def test_migrate_three_full_schedules_to_incremental(
    edges: FakeEdges, client: httpx.AsyncClient, store: Store
) -> None:
    names = ["sync-alice", "sync-carol", "sync-dan"]
    idents = ["ident-alice", "ident-carol", "ident-dan"]
    hook = "https://hooks.example.com/edges"
    cb: dict[str, Any] = {"url": hook, "headers": {}, "on": "all"}
    uids = [
        edges.add("linkedin-extract-messages", identity_ids=[i], cron="0 9 * * *",
                  timezone="Europe/Paris", inputs=[{"linkedin_thread_url": "2-abc=="}],
                  parameters={"max_results": 500}, callback=cb)
        for i in idents
    ]
    edges.add("linkedin-extract-connections", identity_ids=["ident-alice"], cron="0 0 * * *")
    for name, uid in zip(names, uids, strict=True):
        await import_schedule(name, uid, client=client, store=store)

    # Imported as-is, the full-mode manifests are unchanged...
    full = [make_schedule(n, identities=(i,), callback=Callback(hook))
            for n, i in zip(names, idents, strict=True)]
    assert not (await plan_schedules(full, client=client, store=store)).has_changes

    # ...and saying sync_mode: incremental makes three replaces.
    incremental = [make_schedule(n, identities=(i,), callback=Callback(hook),
                                 parameters={"max_results": 500, "sync_mode": "incremental"})
                   for n, i in zip(names, idents, strict=True)]
    plan = await plan_schedules(incremental, client=client, store=store)
    assert [r.action for r in plan.rows] == ["replace"] * 3
    assert all(
        [(c.field, c.old, c.new) for c in r.changes]
        == [("parameters.sync_mode", None, "incremental")] for r in plan.rows
    )
    assert 'parameters.sync_mode: (unset) -> "incremental"' in render_schedule_plan(plan)[0]
    result = await apply_schedule_plan(plan, client=client, store=store)
    assert sorted(result.replaced) == names
    migrated = edges.active("linkedin-extract-messages")
    assert len(migrated) == 3
    for s in migrated:
        assert s["parameters"] == {"max_results": 500, "sync_mode": "incremental"}
        assert s["inputs"] == [{"linkedin_thread_url": "2-abc=="}]
        assert s["callback"]["url"] == cb["url"]
    assert all(edges.schedules[u]["status"] == "CANCELLED" for u in uids)
    assert len(edges.active("linkedin-extract-connections")) == 1  # untouched
    assert not (await plan_schedules(incremental, client=client, store=store)).has_changes


async def test_incremental_needs_engagement_identity(client: httpx.AsyncClient,
                                                     store: Store) -> None:
    s = make_schedule("bob-sync", identities=("ident-bob",),
                      parameters={"sync_mode": "incremental"})
    with pytest.raises(PlanError, match="'ident-bob' is a standard identity"):
        await plan_schedules([s], client=client, store=store)
    ghost = make_schedule("ghost", identities=("ident-ghost",),
                          parameters={"sync_mode": "incremental"})
    with pytest.raises(PlanError, match="'ident-ghost' was not found"):
        await plan_schedules([ghost], client=client, store=store)


@pytest.mark.parametrize("next_as_url", [False, True])
async def test_list_follows_pagination(edges: FakeEdges, client: httpx.AsyncClient,
                                       next_as_url: bool) -> None:
    edges.next_as_url = next_as_url
    uids = {edges.add("linkedin-extract-messages", cron="0 9 * * *") for _ in range(5)}
    edges.add("linkedin-extract-connections", cron="0 9 * * *")
    listed = await list_active_schedules(client, "linkedin-extract-messages")
    assert {s["scheduled_run_uid"] for s in listed} == uids
    assert sum(c == "GET /schedules" for c in edges.calls) == 3


# ---- prune and drift ------------------------------------------------------------------------


async def test_prune_deletes_only_managed_undeclared(edges: FakeEdges, client: httpx.AsyncClient,
                                                     store: Store) -> None:
    keep, gone = make_schedule("keep"), make_schedule("gone", identities=("ident-carol",))
    await converge([keep, gone], client, store)
    foreign = edges.add("linkedin-extract-messages", identity_ids=["ident-dan"], cron="0 1 * * *")
    gone_uid = state(store, "gone")["uid"]

    without = await plan_schedules([keep], client=client, store=store)
    assert [(r.action, r.name) for r in without.rows] == [("unchanged", "keep")]

    plan = await plan_schedules([keep], client=client, store=store, prune=True)
    assert [(r.action, r.name) for r in plan.rows] == [("delete", "gone"), ("unchanged", "keep")]
    assert render_schedule_plan(plan)[0] == f"- delete gone [{gone_uid}]"
    result = await apply_schedule_plan(plan, client=client, store=store)
    assert result.deleted == ["gone"]
    assert edges.schedules[gone_uid]["status"] == "CANCELLED"
    assert edges.schedules[foreign]["status"] == "ACTIVE"
    assert schedule_db.get(store, schedule_db.MANAGED, "gone") is None


async def test_drift_cancelled_outside(edges: FakeEdges, client: httpx.AsyncClient,
                                       store: Store) -> None:
    s = make_schedule("inbox-sync")
    await converge([s], client, store)
    uid = state(store, "inbox-sync")["uid"]
    edges.schedules[uid]["status"] = "CANCELLED"
    plan = await plan_schedules([s], client=client, store=store)
    [row] = plan.rows
    assert row.action == "create" and row.drift
    assert f"drift: schedule {uid} was cancelled outside seqrun" in row.notes
    await apply_schedule_plan(plan, client=client, store=store)
    assert len(edges.active()) == 1
    assert not (await plan_schedules([s], client=client, store=store)).has_changes


async def test_drift_changed_outside(edges: FakeEdges, client: httpx.AsyncClient,
                                     store: Store) -> None:
    s = make_schedule("inbox-sync")
    await converge([s], client, store)
    uid = state(store, "inbox-sync")["uid"]
    edges.schedules[uid]["cron"] = "*/5 * * * *"  # someone edited it behind seqrun's back
    plan = await plan_schedules([s], client=client, store=store)
    [row] = plan.rows
    assert row.action == "replace" and row.drift
    assert [(c.field, c.old, c.new) for c in row.changes] == [("cron", "*/5 * * * *", "0 9 * * *")]
    assert "drift: changed outside seqrun (cron)" in row.notes
    await apply_schedule_plan(plan, client=client, store=store)
    [live] = edges.active()
    assert live["cron"] == "0 9 * * *"


async def test_hidden_callback_headers_compared_with_applied(
    edges: FakeEdges, client: httpx.AsyncClient, store: Store
) -> None:
    edges.hide_headers = True
    url = "https://hooks.example.com/x"
    s = make_schedule("inbox-sync", callback=Callback(url, {"X-Token": "one"}))
    await converge([s], client, store)
    assert not (await plan_schedules([s], client=client, store=store)).has_changes
    rotated = make_schedule("inbox-sync", callback=Callback(url, {"X-Token": "two"}))
    plan = await plan_schedules([rotated], client=client, store=store)
    [row] = plan.rows
    assert row.action == "replace"
    assert [c.field for c in row.changes] == ["callback.headers"]
    rendered = "\n".join(render_schedule_plan(plan))
    assert "one" not in rendered and "two" not in rendered  # values shown as digests only
    shown = plan.to_json(redacted=True)
    assert '"two"' not in json.dumps(shown)
    with pytest.raises(PlanError, match="redacted"):
        SchedulePlan.from_json(shown)
    assert SchedulePlan.from_json(plan.to_json()) == plan


# ---- saved plans ----------------------------------------------------------------------------


async def test_saved_plan_roundtrip_and_stale_refused(edges: FakeEdges, client: httpx.AsyncClient,
                                                      store: Store) -> None:
    await converge([make_schedule("inbox-sync")], client, store)
    plan = await plan_schedules([make_schedule("inbox-sync", cron="0 10 * * *")],
                                client=client, store=store)
    saved = json.loads(json.dumps(plan.to_json()))
    assert saved["summary"] == {"create": 0, "replace": 1, "delete": 0, "unchanged": 0}
    assert SchedulePlan.from_json(saved) == plan

    uid = state(store, "inbox-sync")["uid"]
    edges.schedules[uid]["timezone"] = "UTC"  # live state moves after the plan was saved
    with pytest.raises(PlanError, match="stale plan"):
        await apply_schedule_plan(SchedulePlan.from_json(saved), client=client, store=store)
    assert edges.schedules[uid]["status"] == "ACTIVE"
    assert len(edges.active()) == 1

    fresh = await plan_schedules([make_schedule("inbox-sync", cron="0 10 * * *")],
                                 client=client, store=store)
    await apply_schedule_plan(SchedulePlan.from_json(fresh.to_json()), client=client, store=store)
    assert [s["cron"] for s in edges.active()] == ["0 10 * * *"]


async def test_not_a_plan_refused() -> None:
    with pytest.raises(PlanError, match="not a schedule plan"):
        SchedulePlan.from_json({"format": "something else"})


# ---- crash safety ---------------------------------------------------------------------------


async def test_failed_create_keeps_old_and_resumes(edges: FakeEdges, client: httpx.AsyncClient,
                                                   store: Store) -> None:
    await converge([make_schedule("inbox-sync")], client, store)
    old = state(store, "inbox-sync")["uid"]
    changed = make_schedule("inbox-sync", cron="0 12 * * *")
    edges.faults["create"] = [500]
    with pytest.raises(ProviderError):
        await converge([changed], client, store)
    assert [s["scheduled_run_uid"] for s in edges.active()] == [old]  # never left with none
    assert schedule_db.get(store, schedule_db.INTENTS, "inbox-sync") is not None

    plan = await plan_schedules([changed], client=client, store=store)
    assert plan.rows[0].action == "replace"
    assert "finishes an interrupted apply" in plan.rows[0].notes
    await apply_schedule_plan(plan, client=client, store=store)
    [live] = edges.active()
    assert live["cron"] == "0 12 * * *"
    assert schedule_db.items(store, schedule_db.INTENTS) == {}


async def test_crash_between_cancel_and_create_recovered(
    edges: FakeEdges, client: httpx.AsyncClient, store: Store
) -> None:
    """An Edges that refuses concurrent schedules: cancel first, then the create fails once."""
    await converge([make_schedule("inbox-sync")], client, store)
    old = state(store, "inbox-sync")["uid"]
    edges.concurrent = False
    changed = make_schedule("inbox-sync", parameters={"max_results": 1000})
    edges.faults["create"] = [409, 503]  # refused (concurrency), then the retry after cancel dies
    with pytest.raises(ProviderError):
        await converge([changed], client, store)
    assert edges.schedules[old]["status"] == "CANCELLED"
    assert edges.active() == []
    assert entry(store, schedule_db.INTENTS, "inbox-sync")["old_cancelled"] is True

    plan = await plan_schedules([changed], client=client, store=store)
    [row] = plan.rows
    assert row.action == "create" and not row.drift
    assert "finishes an interrupted apply" in row.notes
    await apply_schedule_plan(plan, client=client, store=store)
    [live] = edges.active()
    assert live["parameters"] == {"max_results": 1000}
    assert state(store, "inbox-sync")["uid"] == live["scheduled_run_uid"]
    assert schedule_db.items(store, schedule_db.INTENTS) == {}


async def test_lost_create_answer_adopts_instead_of_duplicating(
    edges: FakeEdges, client: httpx.AsyncClient, store: Store
) -> None:
    await converge([make_schedule("inbox-sync")], client, store)
    changed = make_schedule("inbox-sync", cron="0 7 * * *")
    edges.lose_create_answer = 1
    with pytest.raises(ProviderError):
        await converge([changed], client, store)
    assert len(edges.active()) == 2  # created, but we never learnt its uid
    await converge([changed], client, store)
    [live] = edges.active()
    assert live["cron"] == "0 7 * * *"
    assert not (await plan_schedules([changed], client=client, store=store)).has_changes


async def test_apply_holds_the_lock(client: httpx.AsyncClient, store: Store) -> None:
    plan = await plan_schedules([make_schedule("inbox-sync")], client=client, store=store)
    with store.lock("schedules"), pytest.raises(LockError):
        await apply_schedule_plan(plan, client=client, store=store)


# ---- import ---------------------------------------------------------------------------------


async def test_import_refuses_unknown_or_taken(edges: FakeEdges, client: httpx.AsyncClient,
                                               store: Store) -> None:
    with pytest.raises(PlanError, match="not an active Edges schedule"):
        await import_schedule("x", "sch-404", client=client, store=store)
    uid = edges.add("linkedin-extract-messages", identity_ids=["ident-alice"], cron="0 9 * * *")
    entry = await import_schedule("x", uid, client=client, store=store)
    assert entry["origin"] == "imported" and entry["uid"] == uid
    with pytest.raises(PlanError, match="already managed as 'x'"):
        await import_schedule("y", uid, client=client, store=store)


# ---- async incremental runs -----------------------------------------------------------------


async def test_async_continue_flow(edges: FakeEdges, client: httpx.AsyncClient,
                                   store: Store) -> None:
    s = make_schedule("inbox-async", cron=None, mode="async",
                      parameters={"sync_mode": "incremental", "max_results": 200})
    first = await run_async_schedule(s, client=client, store=store)
    assert first.outcome == "started"
    body = edges.runs[first.run_uid]["body"]
    assert body["parameters"] == {"sync_mode": "incremental", "max_results": 200}
    assert "cron" not in body and body["identity_ids"] == ["ident-alice"]

    still = await run_async_schedule(s, client=client, store=store)
    assert still.outcome == "running"
    assert not any(c.endswith("/continue") for c in edges.calls)

    edges.runs[first.run_uid]["status"] = "SUCCEEDED"
    [cont] = await tick_async_schedules([s, make_schedule("cron-one")], client=client, store=store)
    assert cont.outcome == "continued"
    assert edges.runs[cont.run_uid]["continued_from"] == first.run_uid
    assert entry(store, schedule_db.RUNS, "inbox-async")["continues"] == 1

    edges.runs[cont.run_uid]["status"] = "succeeded"  # lower-case statuses are accepted too
    again = await run_async_schedule(s, client=client, store=store)
    assert again.outcome == "continued"
    assert edges.runs[again.run_uid]["continued_from"] == cont.run_uid


async def test_async_schedules_are_registered_for_the_runner(
    edges: FakeEdges, client: httpx.AsyncClient, store: Store
) -> None:
    s = make_schedule("inbox-async", cron=None, mode="async",
                      parameters={"sync_mode": "incremental"})
    plan = await plan_schedules([s], client=client, store=store)
    assert render_schedule_plan(plan)[0] == "+ create inbox-async [async]"
    await apply_schedule_plan(plan, client=client, store=store)
    assert edges.active() == []  # no Edges schedule: the runner drives it
    assert not (await plan_schedules([s], client=client, store=store)).has_changes

    [first] = await tick_async_schedules(client=client, store=store)  # from the store alone
    assert first.outcome == "started"
    edges.runs[first.run_uid]["status"] = "SUCCEEDED"
    [cont] = await tick_async_schedules(client=client, store=store)
    assert cont.outcome == "continued"

    bigger = make_schedule("inbox-async", cron=None, mode="async",
                           parameters={"sync_mode": "incremental", "max_results": 10})
    plan = await plan_schedules([bigger], client=client, store=store)
    assert render_schedule_plan(plan)[0] == (
        "-/+ replace inbox-async [async] (parameters.max_results: (unset) -> 10)")
    await apply_schedule_plan(plan, client=client, store=store)
    [restart] = await tick_async_schedules(client=client, store=store)
    assert restart.outcome == "restarted"
    assert edges.runs[restart.run_uid]["body"]["parameters"]["max_results"] == 10

    # switching to a cron schedule removes the async registration
    cron = make_schedule("inbox-async", parameters={"sync_mode": "incremental"})
    plan = await plan_schedules([cron], client=client, store=store)
    assert [(r.action, r.mode) for r in plan.rows] == [("delete", "async"), ("create", "schedule")]
    await apply_schedule_plan(plan, client=client, store=store)
    assert await tick_async_schedules(client=client, store=store) == []
    assert len(edges.active()) == 1


# ---- validation extras ----------------------------------------------------------------------

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, []),
        ({"cron": "0 25 * * *"}, ["invalid cron expression '0 25 * * *'"]),
        ({"timezone": "Mars/Olympus"}, ["unknown IANA timezone 'Mars/Olympus'"]),
        ({"schedule_at": "2025-12-31T10:00:00Z"},
         ["schedule_at 2025-12-31T10:00:00Z is in the past"]),
        ({"schedule_at": "2026-02-01T10:00:00"}, []),
        ({"schedule_at": "tomorrow"}, ["not an ISO 8601 date-time: 'tomorrow'"]),
        ({"parameters": {"max_results": 0}}, ["max_results must be between 1 and 100000"]),
        ({"parameters": {"max_results": 100001}}, ["max_results must be between 1 and 100000"]),
        ({"parameters": {"max_results": 100000}}, []),
        ({"action": "linkedin-message-profile"},
         ["linkedin-message-profile does not support schedule mode: an outreach action would "
          "resend the same message every iteration"]),
        ({"action": "linkedin-search-people", "parameters": {"sync_mode": "incremental"}},
         ["linkedin-search-people has no incremental mode (only linkedin-extract-connections, "
          "linkedin-extract-conversations, linkedin-extract-messages)"]),
        ({"cron": None}, ["a schedule needs cron (or mode: async)"]),
        ({"mode": "async", "parameters": {"sync_mode": "incremental"}},
         ["mode: async takes no cron (runs are continued)"]),
        ({"mode": "async", "cron": None}, ["mode: async continues runs, which needs sync_mode: "
                                           "incremental"]),
        ({"identities": ()}, ["a schedule needs at least one identity"]),
    ],
)
def test_schedule_problems(kwargs: dict[str, Any], expected: list[str]) -> None:
    problems = schedule_problems(make_schedule("s", **kwargs), NOW)
    assert [p.message for p in problems] == expected


def test_schedule_problems_are_positioned() -> None:
    [p] = schedule_problems(make_schedule("s", cron="nope"), NOW)
    assert str(p) == "s.yaml:12:9: $.spec.cron: invalid cron expression 'nope'"



# ---- against the real sandbox --------------------------------------------------------------

# The repo's copy of ../shared/examples/inbox-sync.yaml (CI has no ../shared).
EXAMPLE = ROOT / "sequences" / "inbox-sync.yaml"
THREAD = {"linkedin_thread_url": "2-abc=="}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def sandbox(tmp_path: Path, clock: VirtualClock) -> Sandbox:
    sb = Sandbox.open(tmp_path / "sandbox", clock=clock)
    for uid in ("ident-carol", "ident-dan"):
        sb.world.add_identity(uid, name=uid, type="engagement", provider="edges")
    return sb


@pytest.fixture
async def sbclient(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox.client("edges") as c:
        yield c


def example() -> Schedule:
    [s] = load([EXAMPLE])
    assert isinstance(s, Schedule)
    return s


async def live(c: httpx.AsyncClient, action: str = "linkedin-extract-messages",
               ) -> list[dict[str, Any]]:
    r = await c.get("schedules", params={"action_name": action, "status": "ACTIVE"})
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()
    return rows


async def detail(c: httpx.AsyncClient, uid: str) -> dict[str, Any]:
    r = await c.get(f"schedules/{uid}")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


async def test_sandbox_example_create_noop_replace(sbclient: httpx.AsyncClient,
                                                   store: Store) -> None:
    s = example()
    plan = await converge([s], sbclient, store)
    assert [r.action for r in plan.rows] == ["create"]
    [made] = await live(sbclient)
    assert made["cron"] == "0 8-18/2 * * 1-5" and made["parameters"] == {"sync_mode": "incremental"}
    assert made["max_results"] == 500  # the sandbox keeps it beside the parameters

    again = await plan_schedules([s], client=sbclient, store=store)
    assert not again.has_changes

    changed = dataclasses.replace(s, cron="0 9 * * *")
    plan = await plan_schedules([changed], client=sbclient, store=store)
    assert render_schedule_plan(plan)[0] == (
        f'-/+ replace inbox-sync (cron: "0 8-18/2 * * 1-5" -> "0 9 * * *") '
        f"[{made['scheduled_run_uid']}]"
    )
    await apply_schedule_plan(plan, client=sbclient, store=store)
    [now] = await live(sbclient)
    assert now["cron"] == "0 9 * * *"
    assert (await detail(sbclient, made["scheduled_run_uid"]))["status"] == "CANCELLED"


async def test_sandbox_migration_of_three_full_schedules(sbclient: httpx.AsyncClient,
                                                         store: Store) -> None:
    idents = ["ident-alice", "ident-carol", "ident-dan"]
    old = []
    for ident in idents:  # what the hand-written scripts of seed 000 created
        r = await sbclient.post("actions/linkedin-extract-messages/run/schedule", json={
            "identity_ids": [ident], "inputs": [THREAD], "cron": "0 9 * * *",
            "timezone": "Europe/Paris", "parameters": {"max_results": 200},
            "callback": {"url": "https://hooks.example.com/edges"}})
        assert r.status_code == 201, r.text
        old.append(r.json()["scheduled_run_uid"])
    await sbclient.post("actions/linkedin-extract-connections/run/schedule", json={
        "identity_ids": ["ident-alice"], "cron": "0 0 * * *"})
    names = [f"sync-{i.removeprefix('ident-')}" for i in idents]
    for name, uid in zip(names, old, strict=True):
        await import_schedule(name, uid, client=sbclient, store=store)

    manifests = [
        make_schedule(n, identities=(i,), parameters={"max_results": 200,
                                                      "sync_mode": "incremental"},
                      callback=Callback("https://hooks.example.com/edges"), inputs=(THREAD,))
        for n, i in zip(names, idents, strict=True)
    ]
    plan = await plan_schedules(manifests, client=sbclient, store=store)
    assert [(r.action, [c.field for c in r.changes]) for r in plan.rows] == [
        ("replace", ["parameters.sync_mode"])] * 3
    await apply_schedule_plan(plan, client=sbclient, store=store)
    migrated = await live(sbclient)
    assert sorted(m["identity_ids"][0] for m in migrated) == idents
    for m in migrated:
        assert m["parameters"] == {"sync_mode": "incremental"} and m["max_results"] == 200
        assert m["inputs"] == [THREAD] and m["cron"] == "0 9 * * *"
        assert m["timezone"] == "Europe/Paris"
    for uid in old:
        assert (await detail(sbclient, uid))["status"] == "CANCELLED"
    assert len(await live(sbclient, "linkedin-extract-connections")) == 1
    assert not (await plan_schedules(manifests, client=sbclient, store=store)).has_changes


async def test_sandbox_prune_and_drift(sbclient: httpx.AsyncClient, store: Store) -> None:
    a = make_schedule("a", inputs=(THREAD,))
    b = make_schedule("b", identities=("ident-carol",), inputs=(THREAD,))
    await converge([a, b], sbclient, store)
    a_uid = state(store, "a")["uid"]
    await sbclient.post(f"schedules/{a_uid}/cancel")  # drift: cancelled by hand
    plan = await plan_schedules([a], client=sbclient, store=store, prune=True)
    assert [(r.action, r.name, r.drift) for r in plan.rows] == [
        ("create", "a", True), ("delete", "b", False)]
    lines = render_schedule_plan(plan)
    assert lines[:2] == [
        "+ create a", f"    # drift: schedule {a_uid} was cancelled outside seqrun"]
    await apply_schedule_plan(plan, client=sbclient, store=store)
    [only] = await live(sbclient)
    assert only["identity_ids"] == ["ident-alice"] and only["scheduled_run_uid"] != a_uid
    assert schedule_db.get(store, schedule_db.MANAGED, "b") is None


async def test_sandbox_stale_plan_refused(sbclient: httpx.AsyncClient, store: Store) -> None:
    s = make_schedule("inbox-sync", inputs=(THREAD,))
    await converge([s], sbclient, store)
    uid = state(store, "inbox-sync")["uid"]
    saved = (await plan_schedules([dataclasses.replace(s, cron="0 10 * * *")],
                                  client=sbclient, store=store)).to_json()
    await sbclient.post(f"schedules/{uid}/cancel")
    with pytest.raises(PlanError, match="stale plan"):
        await apply_schedule_plan(SchedulePlan.from_json(saved), client=sbclient, store=store)
    assert await live(sbclient) == []  # nothing was created from the stale plan


@dataclass
class FailingCreates(httpx.AsyncBaseTransport):
    """Answers the next schedule creates with ``statuses`` without passing them on."""

    inner: httpx.AsyncBaseTransport
    statuses: list[int]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/run/schedule") \
                and self.statuses:
            status = self.statuses.pop(0)
            return httpx.Response(status, json={"error_label": "INJECTED", "message": "x"},
                                  request=request)
        return await self.inner.handle_async_request(request)


async def test_sandbox_crash_between_cancel_and_create_recovered(
    sandbox: Sandbox, sbclient: httpx.AsyncClient, store: Store
) -> None:
    s = make_schedule("inbox-sync", inputs=(THREAD,))
    await converge([s], sbclient, store)
    old = state(store, "inbox-sync")["uid"]
    changed = dataclasses.replace(s, cron="0 11 * * *")
    # 409: "no concurrent schedules" -> cancel first; then the create fails (the crash).
    flaky = FailingCreates(sandbox.transport, [409, 503])
    async with httpx.AsyncClient(transport=flaky, base_url=sbclient.base_url,
                                 headers=sbclient.headers) as bad:
        with pytest.raises(ProviderError):
            await converge([changed], bad, store)
    assert await live(sbclient) == []
    assert (await detail(sbclient, old))["status"] == "CANCELLED"

    plan = await plan_schedules([changed], client=sbclient, store=store)
    assert [(r.action, r.notes) for r in plan.rows] == [
        ("create", ("finishes an interrupted apply",))]
    await apply_schedule_plan(plan, client=sbclient, store=store)
    [now] = await live(sbclient)
    assert now["cron"] == "0 11 * * *"
    assert state(store, "inbox-sync")["uid"] == now["scheduled_run_uid"]
    assert schedule_db.items(store, schedule_db.INTENTS) == {}


async def test_sandbox_failed_create_never_leaves_none(
    sandbox: Sandbox, sbclient: httpx.AsyncClient, store: Store
) -> None:
    s = make_schedule("inbox-sync", inputs=(THREAD,))
    await converge([s], sbclient, store)
    old = state(store, "inbox-sync")["uid"]
    changed = dataclasses.replace(s, cron="0 11 * * *")
    flaky = FailingCreates(sandbox.transport, [503])
    async with httpx.AsyncClient(transport=flaky, base_url=sbclient.base_url,
                                 headers=sbclient.headers) as bad:
        with pytest.raises(ProviderError):
            await converge([changed], bad, store)
    assert [x["scheduled_run_uid"] for x in await live(sbclient)] == [old]
    await converge([changed], sbclient, store)
    [now] = await live(sbclient)
    assert now["cron"] == "0 11 * * *"


async def test_sandbox_skipped_iteration_while_run_is_going(
    sandbox: Sandbox, sbclient: httpx.AsyncClient, store: Store, clock: VirtualClock
) -> None:
    """More visits than the smart limit: the first run blocks until tomorrow, so the next
    iterations are skipped; none of that is drift or makes a saved plan stale."""
    profiles = [{"linkedin_profile_url": u} for u in list(sandbox.world.profiles)[:45]] * 2
    s = make_schedule("visits", action="linkedin-visit-profile", cron="*/10 * * * *",
                      timezone="UTC", parameters={}, inputs=tuple(profiles))
    await converge([s], sbclient, store)
    uid = state(store, "visits")["uid"]
    saved = (await plan_schedules([s], client=sbclient, store=store)).to_json()
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        await sandbox.tick()
    d = await detail(sbclient, uid)
    assert d["iterations"] == 1 and d["skipped_iterations"] == 2
    run = (await sbclient.get(f"runs/{d['last_run_uid']}")).json()
    assert run["status"] == "BLOCKED"
    plan = await plan_schedules([s], client=sbclient, store=store)
    assert [r.action for r in plan.rows] == ["unchanged"] and not plan.rows[0].notes
    await apply_schedule_plan(SchedulePlan.from_json(saved), client=sbclient, store=store)


async def test_sandbox_async_continue(sandbox: Sandbox, sbclient: httpx.AsyncClient,
                                      store: Store, clock: VirtualClock) -> None:
    s = make_schedule("inbox-async", cron=None, mode="async", inputs=(THREAD,),
                      parameters={"sync_mode": "incremental", "max_results": 50})
    first = await run_async_schedule(s, client=sbclient, store=store)
    assert first.outcome == "started"
    clock.advance(timedelta(minutes=1))
    second = await run_async_schedule(s, client=sbclient, store=store)
    assert second.outcome == "continued" and second.run_uid == first.run_uid
    run = (await sbclient.get(f"runs/{first.run_uid}")).json()
    assert run["iteration"] == 2


async def test_sandbox_standard_identity_refused(sbclient: httpx.AsyncClient,
                                                 store: Store) -> None:
    s = dataclasses.replace(example(), identities=("ident-bob",))
    with pytest.raises(PlanError, match="identity 'ident-bob' is a standard identity"):
        await plan_schedules([s], client=sbclient, store=store)


# ---- CLI (embedded sandbox) -----------------------------------------------------------------


def run_cli(*args: str) -> int:
    return main(list(args))


def write_example(tmp_path: Path, cron: str | None = None, ident: str | None = None) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    if cron:
        text = text.replace('"0 8-18/2 * * 1-5"', f'"{cron}"')
    if ident:
        text = text.replace("ident-alice", ident)
    path = tmp_path / "inbox-sync.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_cli_plan_apply_noop_detailed_exitcode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sd = str(tmp_path / "state")
    common = ("--sandbox", "--state-dir", sd)
    assert run_cli("schedules", "plan", str(EXAMPLE), "--detailed-exitcode", *common) == 2
    assert "+ create inbox-sync" in capsys.readouterr().out
    assert run_cli("schedules", "apply", str(EXAMPLE), "--auto-approve", *common) == 0
    assert "1 created" in capsys.readouterr().out
    assert run_cli("schedules", "plan", str(EXAMPLE), "--detailed-exitcode", *common) == 0
    assert "No changes." in capsys.readouterr().out

    manifest = write_example(tmp_path, cron="0 9 * * *")
    assert run_cli("schedules", "plan", manifest, "-o", "json", *common) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["replace"] == 1
    assert data["rows"][0]["changes"] == [
        {"field": "cron", "old": "0 8-18/2 * * 1-5", "new": "0 9 * * *"}]


def test_cli_saved_plan_and_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sd = str(tmp_path / "state")
    common = ("--sandbox", "--state-dir", sd)
    planfile = str(tmp_path / "plan.json")
    assert run_cli("schedules", "plan", str(EXAMPLE), "-out", planfile, *common) == 0
    assert (Path(planfile).stat().st_mode & 0o777) == 0o600
    assert run_cli("schedules", "apply", planfile, *common) == 0
    capsys.readouterr()
    # the same saved plan again: the live state moved (the schedule now exists)
    assert run_cli("schedules", "apply", planfile, *common) == 1
    assert "stale plan" in capsys.readouterr().err
    assert run_cli("schedules", "plan", str(EXAMPLE), "--detailed-exitcode", *common) == 0


def test_cli_import_then_migrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = tmp_path / "state"

    async def hand_made() -> str:
        sb = Sandbox.open(state_dir)
        async with sb.client("edges") as c:
            r = await c.post("actions/linkedin-extract-messages/run/schedule", json={
                "identity_ids": ["ident-alice"], "cron": "0 8-18/2 * * 1-5",
                "timezone": "Europe/Paris", "parameters": {"max_results": 500},
                "callback": {"url": "https://hooks.example.com/seqrun/edges"}})
        sb.save()
        uid: str = r.json()["scheduled_run_uid"]
        return uid

    uid = asyncio.run(hand_made())
    common = ("--sandbox", "--state-dir", str(state_dir))
    assert run_cli("import", "schedule", "inbox-sync", uid, *common) == 0
    assert f"imported schedule {uid} as inbox-sync" in capsys.readouterr().out
    assert run_cli("schedules", "plan", str(EXAMPLE), *common) == 0
    out = capsys.readouterr().out
    assert f'-/+ replace inbox-sync (parameters.sync_mode: (unset) -> "incremental") [{uid}]' in out
    assert run_cli("schedules", "apply", str(EXAMPLE), "--auto-approve", *common) == 0
    assert run_cli("schedules", "plan", str(EXAMPLE), "--detailed-exitcode", *common) == 0


def test_cli_refuses_incremental_on_standard_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_example(tmp_path, ident="ident-bob")
    assert run_cli("schedules", "plan", manifest, "--sandbox",
                   "--state-dir", str(tmp_path / "s")) == 1
    assert "'ident-bob' is a standard identity" in capsys.readouterr().err


def test_cli_apply_needs_approval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--sandbox", "--state-dir", str(tmp_path / "state"))
    assert run_cli("schedules", "apply", str(EXAMPLE), *common) == 1
    assert "--auto-approve" in capsys.readouterr().err
    assert run_cli("schedules", "plan", str(EXAMPLE), "--detailed-exitcode", *common) == 2


async def test_sandbox_one_shot_schedule_that_ran_is_unchanged(
    sandbox: Sandbox, sbclient: httpx.AsyncClient, store: Store, clock: VirtualClock
) -> None:
    at = (clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    s = make_schedule("once", cron=None, schedule_at=at, timezone="UTC", inputs=(THREAD,))
    await converge([s], sbclient, store)
    clock.advance(timedelta(hours=2))
    await sandbox.tick()
    assert (await detail(sbclient, state(store, "once")["uid"]))["status"] == "COMPLETED"
    plan = await plan_schedules([s], client=sbclient, store=store)
    assert [(r.action, r.notes) for r in plan.rows] == [
        ("unchanged", ("one-shot schedule already ran",))]


async def test_cron_schedule_switched_to_async_is_cancelled(
    edges: FakeEdges, client: httpx.AsyncClient, store: Store
) -> None:
    await converge([make_schedule("inbox", parameters={"sync_mode": "incremental"})],
                   client, store)
    [cron] = edges.active()
    switched = make_schedule("inbox", cron=None, mode="async",
                             parameters={"sync_mode": "incremental"})
    plan = await plan_schedules([switched], client=client, store=store)
    assert render_schedule_plan(plan)[:2] == [
        f"- delete inbox [{cron['scheduled_run_uid']}]", "+ create inbox [async]"]
    await apply_schedule_plan(plan, client=client, store=store)
    assert edges.active() == []
    assert [r.outcome for r in await tick_async_schedules(client=client, store=store)] == [
        "started"]


async def test_sandbox_create_next_to_unmanaged_lookalike_suggests_import(
    sbclient: httpx.AsyncClient, store: Store
) -> None:
    r = await sbclient.post("actions/linkedin-extract-messages/run/schedule", json={
        "identity_ids": ["ident-alice"], "cron": "0 9 * * *"})
    uid = r.json()["scheduled_run_uid"]
    plan = await plan_schedules([example()], client=sbclient, store=store)
    [row] = plan.rows
    assert row.action == "create"
    assert row.notes[0].endswith(f"seqrun import schedule inbox-sync {uid}")
