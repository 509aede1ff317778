"""Provider calls per delivered action: the engine next to the seed's naive orchestrator.

    python bench/bench_calls.py [--json] [--days 10] [--leads 300]

The seed guide's "complete orchestrator" (section 18) is a daily cron that walks every lead
of every identity: it checks a lead's relationship when the lead is added (section 17) and
before connecting, syncs conversations before every message (sync-before-send, one page),
polls each pending invitation once a day, and stops an action for the day at
LIMIT_REACHED; the guide reckons about 2 calls per action. It is
implemented here (:class:`Naive`) over the same Edges adapter and HTTP counting as the engine,
and both run on the same seeded world (a fresh copy each) for three workloads:

* ``visit_message``: visit, then a message (every lead already connected, nobody replies);
* ``message_replies``: a message, 2 days, a follow-up (30 % reply, a reply stops the lead);
* ``full_outreach``: visit, connect, wait for acceptance (14 d, else withdraw), intro,
  3 days, follow-up (the default world: 60 % accept, 30 % reply, 10 % already connected,
  3 % inaccessible).

Requests are counted at the transport; delivered actions are the world's ground truth. The
budget: engine calls per delivered action <= 0.55 x the naive orchestrator's on every
workload (exit 1 otherwise). It catches an engine that polls, re-syncs or re-checks more
than it must (a sync per send, a relationship check per connect, a poll per waiting lead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_runtime import START, edges_over, setup  # noqa: E402

from engine import vocab  # noqa: E402
from engine.clock import VirtualClock  # noqa: E402
from engine.errors import ProviderError  # noqa: E402
from engine.model import (  # noqa: E402
    ActionStep,
    Metadata,
    Sequence,
    Step,
    WaitForStep,
    WaitStep,
)
from engine.providers.base import Lead  # noqa: E402
from engine.providers.edges.actions import EdgesProvider  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from engine.sandbox import Sandbox  # noqa: E402
from engine.sandbox.world import World, WorldConfig  # noqa: E402
from engine.store import Store  # noqa: E402

BUDGET = 0.55
LIMITS = {"visit_profile": 60, "connect": 20, "send_message": 40}
IDENTITIES = ("ident-0", "ident-1", "ident-2")


@dataclass(frozen=True)
class Workload:
    name: str
    steps: tuple[Step, ...]
    config: Callable[[], WorldConfig]


def _workloads() -> list[Workload]:
    intro = ActionStep("intro", "send_message", with_={"text": "Hi {{ lead.first_name }}!"})
    follow = ActionStep("follow_up", "send_message", with_={"text": "Worth a call?"},
                        next="completed")

    def connected(replies: float) -> WorldConfig:
        return WorldConfig(already_connected_fraction=1.0, writes_first_fraction=0.0,
                           inaccessible_fraction=0.0, reply_probability=replies)

    return [
        Workload("visit_message", (ActionStep("visit", "visit_profile"),
                                   ActionStep("intro", "send_message",
                                              with_={"text": "Hi {{ lead.first_name }}!"},
                                              next="completed")),
                 lambda: connected(0.0)),
        Workload("message_replies", (intro, WaitStep("breather", timedelta(days=2)), follow),
                 lambda: connected(0.3)),
        Workload("full_outreach", (
            ActionStep("visit", "visit_profile"),
            ActionStep("connect", "connect", with_={"note": "Hi {{ lead.first_name }}"},
                       on={"ALREADY_CONNECTED": "intro", "INVITATION_PENDING": "accepted"}),
            WaitForStep("accepted", "connection_accepted", timedelta(days=14), "withdraw"),
            intro, WaitStep("breather", timedelta(days=3)), follow,
            ActionStep("withdraw", "withdraw_invitation", next="removed"),
        ), WorldConfig),
    ]


def _world(workload: Workload, leads: int) -> tuple[VirtualClock, World, list[str]]:
    clock = VirtualClock(START)
    world = World(clock, seed=11, config=workload.config())
    for name in IDENTITIES:
        world.add_identity(name, provider="edges")
    return clock, world, [p.url for p in world.populate(leads)]


async def engine_run(workload: Workload, leads: int, days: int, tmp: Path) -> dict[str, Any]:
    clock, world, urls = _world(workload, leads)
    provider, counting = edges_over(Sandbox(world))
    store = Store.open(None, tmp / workload.name)
    seq = Sequence(metadata=Metadata(workload.name), provider="edges", identities=IDENTITIES,
                   steps=workload.steps, limits=dict(LIMITS), cooldown=None,
                   normalized={"bench": workload.name})
    compiled = setup(store, seq)
    for i, url in enumerate(urls):
        lead = store.upsert_lead(url, {"first_name": "Lead"})
        store.enroll(lead, seq.name, compiled.revision, IDENTITIES[i % len(IDENTITIES)],
                     compiled.initial, clock.now())
    runner = Runner(store, {"edges": provider}, clock, compiled={compiled.revision: compiled})
    await runner.run_until(START + timedelta(days=days))
    store.close()
    return _figures(sum(counting.requests.values()), len(world.delivered))


@dataclass
class _LeadState:
    url: str
    identity: str
    step: int = 0
    due: datetime = START
    since: datetime = START  # when the current step began (acceptance timeout)
    done: bool = False
    checked: bool = False  # the relationship check when the lead is added


@dataclass
class Naive:
    """The seed's daily cron orchestrator (section 18), step by step for every lead."""

    provider: EdgesProvider
    steps: tuple[Step, ...]
    clock: VirtualClock
    leads: list[_LeadState]
    me: dict[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {s.id: n for n, s in enumerate(self.steps)}

    async def day(self) -> None:
        now = self.clock.now()
        sent: dict[tuple[str, str], int] = {}
        stopped: set[tuple[str, str]] = set()
        for lead in self.leads:
            if lead.done or lead.due > now:
                continue
            await self._one(lead, now, sent, stopped)

    def _go(self, lead: _LeadState, target: str | None, now: datetime) -> None:
        if target is None:
            lead.step += 1
        elif target in ("completed", "removed", "replied", "failed"):
            lead.done = True
            return
        else:
            lead.step = self.index[target]
        if lead.step >= len(self.steps):
            lead.done = True
            return
        lead.since = now
        step = self.steps[lead.step]
        lead.due = now + step.duration if isinstance(step, WaitStep) else now

    async def _one(self, lead: _LeadState, now: datetime, sent: dict[tuple[str, str], int],
                   stopped: set[tuple[str, str]]) -> None:
        if not lead.checked:  # "when adding a lead to a sequence, check for existing
            lead.checked = True  # relationships" (section 17)
            await self._connected(lead)
        step = self.steps[lead.step]
        if isinstance(step, WaitStep):
            self._go(lead, None, now)
            step = self.steps[lead.step] if not lead.done else step
            if lead.done or not isinstance(step, ActionStep):
                return
        if isinstance(step, WaitForStep):
            if await self._connected(lead):  # a daily poll of each pending invitation
                self._go(lead, self.steps[lead.step + 1].id, now)
            elif now - lead.since >= step.timeout:
                self._go(lead, step.on_timeout, now)
            else:
                lead.due = now + timedelta(days=1)
            return
        assert isinstance(step, ActionStep)
        action = step.action
        if (lead.identity, action) in stopped or sent.get((lead.identity, action), 0) >= LIMITS[
                action]:
            lead.due = now + timedelta(days=1)
            return
        if action == "connect" and await self._connected(lead):  # check before connecting
            self._go(lead, "intro", now)
            return
        if action == "send_message" and await self._replied(lead):  # sync before send
            lead.done = True
            return
        params = {"text": "Hi!", "note": "Hi!"}
        try:
            await self.provider.perform(lead.identity, action, Lead(lead.url), params)
        except ProviderError as exc:
            self._error(lead, step, exc, now, stopped)
            return
        sent[(lead.identity, action)] = sent.get((lead.identity, action), 0) + 1
        self._go(lead, step.next, now)

    def _error(self, lead: _LeadState, step: ActionStep, exc: ProviderError, now: datetime,
               stopped: set[tuple[str, str]]) -> None:
        if exc.label == vocab.LIMIT_REACHED:
            stopped.add((lead.identity, step.action))
            lead.due = now + timedelta(days=1)
        elif exc.label in step.on:
            self._go(lead, step.on[exc.label], now)
        elif exc.label in (vocab.PROFILE_NOT_ACCESSIBLE, vocab.NOT_CONNECTED):
            lead.done = True
        else:
            lead.due = now + timedelta(days=1)

    async def _connected(self, lead: _LeadState) -> bool:
        """One relationship check: the first page of connections (newest first)."""
        page = await self.provider.run_live("linkedin-extract-connections", lead.identity, {})
        items = page if isinstance(page, list) else []
        return any(isinstance(i, dict) and str(i.get("linkedin_profile_url", "")).rstrip("/")
                   == lead.url for i in items)

    async def _replied(self, lead: _LeadState) -> bool:
        """Sync before send: the first page of conversations; the lead wrote last?"""
        if lead.identity not in self.me:
            self.me[lead.identity] = await self.provider.me(lead.identity)
        page = await self.provider.run_live("linkedin-extract-conversations", lead.identity, {})
        for item in page if isinstance(page, list) else []:
            if not isinstance(item, dict):
                continue
            url = str(item.get("linkedin_profile_url") or "").rstrip("/")
            last = item.get("last_message") or {}
            if url == lead.url and isinstance(last, dict):
                return str(last.get("linkedin_profile_id")) != self.me[lead.identity]
        return False


async def naive_run(workload: Workload, leads: int, days: int) -> dict[str, Any]:
    clock, world, urls = _world(workload, leads)
    provider, counting = edges_over(Sandbox(world))
    naive = Naive(provider, workload.steps, clock,
                  [_LeadState(u, IDENTITIES[i % len(IDENTITIES)]) for i, u in enumerate(urls)])
    for day in range(days):
        await clock.sleep((START + timedelta(days=day) - clock.now()).total_seconds())
        await naive.day()
    return _figures(sum(counting.requests.values()), len(world.delivered))


def _figures(calls: int, delivered: int) -> dict[str, Any]:
    return {"calls": calls, "delivered": delivered,
            "calls_per_action": round(calls / max(delivered, 1), 3)}


async def main(leads: int, days: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for workload in _workloads():
            engine = await engine_run(workload, leads, days, Path(d))
            naive = await naive_run(workload, leads, days)
            ratio = engine["calls_per_action"] / max(naive["calls_per_action"], 1e-9)
            out[workload.name] = {"engine": engine, "naive": naive, "ratio": round(ratio, 3)}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    figures = asyncio.run(main(args.leads, args.days))
    ok = all(f["ratio"] <= BUDGET for f in figures.values())
    if args.json:
        print(json.dumps({"figures": figures, "budget": BUDGET, "ok": ok}, indent=2))
    else:
        for name, f in figures.items():
            e, n = f["engine"], f["naive"]
            print(f"{name:16} engine {e['calls_per_action']:.3f} ({e['calls']} calls, "
                  f"{e['delivered']} delivered)  naive {n['calls_per_action']:.3f} "
                  f"({n['calls']} calls, {n['delivered']} delivered)  ratio {f['ratio']:.2f} "
                  f"(budget <= {BUDGET})")
    sys.exit(0 if ok else 1)
