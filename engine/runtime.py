"""The runtime of one command: the store, the clock, the embedded sandbox (or none) and the
providers, wired in one place; then one function per thing the CLI does over them.

A command opens a :class:`Runtime` on a state directory, works, and closes it: the provider
clients are closed, the store too, and the sandbox (its world and virtual clock) is saved
unless the command changes nothing. Example::

    report = status(Path(".seqrun"), None, virtual_clock=False)

Nothing here prints: results go back to the caller (engine.cli renders them), problems are
raised (engine.errors) or logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from engine.apply import leads as lead_apply
from engine.apply import plan as planner
from engine.apply import schedules as edges_schedules
from engine.apply import search as lead_search
from engine.apply import sequences as sequence_apply
from engine.apply.leads import LeadsImportResult
from engine.apply.plan import Plan
from engine.apply.schedules import ScheduleApplyResult, SchedulePlan
from engine.apply.sequences import ApplyResult
from engine.clock import Clock, RealClock
from engine.errors import (
    ConfigError,
    LockError,
    ProviderError,
    ProviderUnreachable,
    SeqrunError,
    StoreError,
    UsageError,
    one_line,
)
from engine.manifest.leads import LeadImport, leads_from_rows
from engine.model import Caps, Manifest, PeopleSearch, Schedule, Sequence
from engine.providers import REGISTRY
from engine.providers.base import NewIdentity, Provider, ProviderSpec
from engine.providers.clients import Reachability, make_client, unreachable_text
from engine.providers.edges.identities import create_identity as create_edges_identity
from engine.run.notify import Notifier
from engine.run.runner import Runner, RunSummary, TickResult
from engine.run.schedules import AsyncRunResult, tick_async_schedules
from engine.run.state import settle_after
from engine.sandbox import LEGACY_FILE, Sandbox
from engine.sandbox.durable import DB_FILE
from engine.serve.config import ServeConfig, edges_run_callback
from engine.store import Store
from engine.store import schedules as schedule_db
from engine.store.db import HEAD, has_state
from engine.store.sqlite_file import make_state_dir
from engine.views import control
from engine.views import fanout as fanout_views
from engine.views import identities as identity_views
from engine.views import status as views
from engine.views import why as why_views
from engine.views.control import PauseResult
from engine.views.fanout import LeadResult
from engine.views.forecast import Forecast
from engine.views.forecast import forecast as forecast_view
from engine.views.status import StatusReport
from engine.views.why import WhyReport, WorkflowWhy

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: ``--until`` once parsed: a span from the clock's now, or a moment
Until = timedelta | datetime
#: draws progress: called with (start, end), yields the runner's ``on_tick``
Progress = Callable[[datetime, datetime], AbstractContextManager[Callable[[TickResult], None]]]
#: asked with the plan before anything is changed; True goes on
Approve = Callable[[Plan], bool]


# ---- wiring --------------------------------------------------------------------------------


@dataclass
class Runtime:
    """Store, clock and provider clients for one command (sandbox or real)."""

    store: Store
    clock: Clock
    sandbox: Sandbox | None = None
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    #: the providers this command could not reach (the CLI warns, see ``unreached``)
    reachability: Reachability = field(default_factory=Reachability)
    providers: dict[str, Provider] = field(default_factory=dict)  # adapters made so far

    def provider(self, name: str) -> Provider:
        """The adapter of provider ``name`` on this runtime's client and clock, made once
        (ConfigError: an unknown provider, or its credential missing)."""
        if name not in self.providers:
            spec = REGISTRY.get(name)
            if spec is None or spec.factory is None:
                raise ConfigError(f"unknown provider {name!r}")
            self.providers[name] = _make_provider(spec, self.client_for(name), self.clock)
        return self.providers[name]

    def client_for(self, provider: str) -> httpx.AsyncClient:
        """The provider's client, made on first use (ConfigError names a missing credential)."""
        if provider not in self.clients:
            self.clients[provider] = make_client(provider, sandbox=self.sandbox, env=os.environ,
                                                 reachability=self.reachability)
        return self.clients[provider]

    def note_unreached(self, result: TickResult | RunSummary) -> None:
        """Tell ``result`` (a tick or a run) the providers that could not be reached."""
        result.unreachable = dict(self.reachability.unreachable)


def open_sandbox(state_dir: Path, virtual_clock: bool, *, write: bool = True,
                 ) -> tuple[Sandbox, Clock]:
    """The embedded sandbox saved in ``state_dir`` and the clock to run on: its persisted
    virtual clock, or the real one. ``write``: written through (else nothing is written)."""
    with sandbox_state(state_dir, "read"):
        if virtual_clock:
            box = Sandbox.open(state_dir, write=write)
            return box, box.world.clock
        clock = RealClock()
        return Sandbox.open(state_dir, clock=clock, write=write), clock


@contextmanager
def sandbox_state(state_dir: Path, doing: str) -> Iterator[None]:
    """The sandbox's saved world (``sandbox.db`` beside the store, or an older version's
    ``sandbox.json``) that cannot be read or written as a StoreError naming it and the
    remedy, not a traceback."""
    path = state_dir / DB_FILE
    if not path.exists() and (state_dir / LEGACY_FILE).exists():
        path = state_dir / LEGACY_FILE
    try:
        yield
    except OSError as exc:  # a full disk, a directory gone or not writable
        raise StoreError(f"cannot {doing} the sandbox state {path} "
                         f"({one_line(exc.strerror or str(exc))}): free some space or make "
                         "the state directory writable, then run again") from exc
    except (ValueError, KeyError, TypeError, AttributeError, sqlite3.DatabaseError) as exc:
        # not a saved world (sqlite3's OperationalError, e.g. a full disk, is caught above
        # only when it is an OSError: it is a DatabaseError, named as damage or the cause)
        raise StoreError(f"the sandbox state {path} is damaged or unwritable "
                         f"({type(exc).__name__}: {one_line(str(exc))}): restore it from a "
                         "backup, or delete it to start a new simulated world") from exc


@asynccontextmanager
async def open_runtime(
    state_dir: Path, *, sandbox: bool = False, virtual_clock: bool = False, save: bool = True
) -> AsyncIterator[Runtime]:
    """The runtime over ``state_dir``; the sandbox writes its world through (every answered
    call) unless ``save`` is False. ``virtual_clock`` is the sandbox's (so it needs
    ``sandbox``)."""
    if virtual_clock and not sandbox:
        raise ValueError("the virtual clock lives in the sandbox: virtual_clock needs sandbox")
    store = Store.open(None, state_dir)
    rt = Runtime(store, RealClock())
    try:
        if sandbox:
            rt.sandbox, rt.clock = open_sandbox(state_dir, virtual_clock, write=save)
        yield rt
        # the store this command worked on must still be the one it opened (deleted or
        # replaced meanwhile: StoreError, and the command fails)
        store.verify()
    finally:
        for client in rt.clients.values():
            await client.aclose()
        if rt.sandbox is not None:
            with sandbox_state(state_dir, "save"):
                rt.sandbox.close()  # the virtual clock too, where it moved without a call
        store.close()


def with_runtime(
    state_dir: Path,
    work: Callable[[Runtime], Awaitable[_T]],
    *,
    sandbox: bool = False,
    virtual_clock: bool = False,
    save: bool = True,
) -> _T:
    """Run ``work`` on a fresh runtime in its own event loop; its result.

    The result is handed over beside the loop, not as its main task's result: when
    ``asyncio.run`` restores the SIGINT handler, ``signal.signal`` builds the repr of the old
    one, a partial holding the main task, whose repr is its result's full dataclass repr
    (truncated only afterwards). For a plan of 1,000,000 leads that string and its parts
    were ~500 MB and seconds of CPU at the very end of `plan` (CPython 3.11)."""
    done: list[_T] = []

    async def main() -> None:
        async with open_runtime(
            state_dir, sandbox=sandbox, virtual_clock=virtual_clock, save=save
        ) as rt:
            try:
                done.append(await work(rt))
            except ProviderError as exc:
                # a provider call failed because its host could not be reached: say so
                # (which provider, which host) rather than a bare SERVER_ERROR
                if not rt.reachability.unreachable:
                    raise
                lines = [unreachable_text(name, seen)
                         for name, seen in sorted(rt.reachability.unreachable.items())]
                raise ProviderUnreachable("; ".join(lines)) from exc

    asyncio.run(main())
    return done[0]


@contextmanager
def open_store(state_dir: Path, *, upgrade: bool = False) -> Iterator[Store]:
    """The store alone, for commands that call no provider (the do-not-contact list);
    ``upgrade``: migrated whatever its database (``seqrun db upgrade``)."""
    store = Store.open(None, state_dir, upgrade=upgrade)
    try:
        yield store
        store.verify()
    finally:
        store.close()


@dataclass(frozen=True)
class Upgrade:
    """``seqrun db upgrade``: the store and its schema revision before and after."""

    store: str
    was: str | None
    now: str

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "was": self.was, "now": self.now}


def db_upgrade(state_dir: Path) -> Upgrade:
    """Migrate the store (``$SEQRUN_DATABASE_URL`` or the state directory's) to this
    seqrun's schema; every worker must then run this version (a worker of an older one
    meets a newer schema and stops, saying so)."""
    with open_store(state_dir, upgrade=True) as store:
        return Upgrade(str(store.path or store.url), store.migrated_from, HEAD)


def run_workers(argv: list[str], count: int, *, capture: bool) -> list[tuple[int, str]]:
    """``seqrun run --workers N``: ``argv`` (the same command without ``--workers``) as
    ``count`` processes on this machine, each one worker on the store; SIGINT/SIGTERM are
    passed on to them. Each one's exit code, and its stdout when ``capture``."""
    import signal
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "engine", *argv],
                              stdout=subprocess.PIPE if capture else None, text=True)
             for _ in range(count)]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    saved = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        done: list[tuple[int, str]] = []
        for p in procs:
            out, _ = p.communicate()  # reads the pipe as it fills (wait() alone could block)
            done.append((p.returncode, out or ""))
        return done
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def read_store(state_dir: Path, read: Callable[[Store], _T]) -> _T | None:
    """``read`` over the store alone (``dnc list``, ``leads list``); None, and no state
    directory made, when nothing was applied there yet."""
    if not has_state(state_dir):
        return None
    with open_store(state_dir) as store:
        return read(store)


def new_sandbox(state_dir: Path, *, scenario: Path | Mapping[str, Any] | None, seed: int) -> None:
    """Make (and save) the world a simulation plays on: the scenario's (a file or its loaded
    mapping), else the default one."""
    make_state_dir(state_dir)  # owner-only, as the store makes it (the sandbox comes first)
    with sandbox_state(state_dir, "save"):
        Sandbox.open(state_dir, scenario=scenario, seed=seed).close()


def _make_provider(spec: ProviderSpec, client: httpx.AsyncClient, clock: Clock) -> Provider:
    assert spec.factory is not None
    return spec.factory(client, clock=clock)


def build_providers(rt: Runtime, *, skip_unconfigured: bool = False) -> dict[str, Provider]:
    """One adapter per provider an applied sequence uses, on the runtime's clients and clock.

    A missing credential raises ConfigError; with ``skip_unconfigured`` that provider is left
    out (logged) and the sequences of the others still run."""
    providers: dict[str, Provider] = {}
    for row in rt.store.list_sequences():
        spec = REGISTRY.get(row.provider)
        if spec is None or spec.factory is None or row.provider in providers:
            continue
        try:
            providers[row.provider] = rt.provider(row.provider)
        except ConfigError as exc:
            if not skip_unconfigured:
                raise
            _log.warning("not running %s sequences: %s", row.provider, exc)
    return providers


# ---- plan / apply / leads ------------------------------------------------------------------


def plan(
    manifests: list[Manifest], *, state_dir: Path, sandbox: bool, prune: bool,
    caps: Caps | None = None, skip_bad_rows: bool = False,
) -> Plan:
    """What applying ``manifests`` would do. It changes nothing: the sandbox (if any) resumes
    its own clock and is not saved."""

    async def work(rt: Runtime) -> Plan:
        return await planner.make_plan(manifests, store=rt.store, client_for=rt.client_for,
                                       now=rt.clock.now(), prune=prune, caps=caps,
                                       clock=rt.clock, skip_bad_rows=skip_bad_rows,
                                       provider_for=rt.provider)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox, save=False)


async def run_due(rt: Runtime) -> TickResult | dict[str, str]:
    """One runner tick over every applied sequence, as one more worker: it acts for the
    identities it can lease (its fair share beside the `seqrun run` workers alive; those
    take the rest)."""
    runner = Runner(rt.store, build_providers(rt, skip_unconfigured=True), rt.clock,
                    settle_after=settle_after(), tick_hooks=[notify_hook(rt)],
                    async_callback=edges_run_callback(ServeConfig.from_env()))
    async with runner.hold_leases():
        tick = await runner.tick()
    rt.note_unreached(tick)
    return tick


def apply(
    manifests: list[Manifest],
    *,
    approve: Approve,
    run: bool,
    prune: bool,
    state_dir: Path,
    sandbox: bool,
    virtual_clock: bool,
    caps: Caps | None = None,
    skip_bad_rows: bool = False,
) -> ApplyResult:
    """Plan, ask ``approve``, persist and enroll; with ``run`` then run the due steps once.
    ``caps``: apply's ``--max-enroll`` / ``--max-sends-per-day``."""
    sequences = [m for m in manifests if isinstance(m, Sequence)]

    async def work(rt: Runtime) -> ApplyResult:
        if run:
            # the run after the apply needs each sequence's provider: a missing credential is
            # an error now (ConfigError names the variable), before anything is persisted
            for provider in sorted({m.provider for m in sequences}):
                rt.client_for(provider)
        result = await sequence_apply.apply(manifests, store=rt.store, clock=rt.clock,
                                            approve=approve, client_for=rt.client_for,
                                            prune=prune, caps=caps,
                                            skip_bad_rows=skip_bad_rows)
        if run and sequences:
            result.run = await run_due(rt)
        result.unreachable = dict(rt.reachability.unreachable)
        return result

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=virtual_clock)


def apply_saved_plan(
    saved: SchedulePlan, *, state_dir: Path, sandbox: bool, virtual_clock: bool
) -> ApplyResult:
    """Apply a Schedule plan saved by ``seqrun plan -out FILE``, as it was approved."""

    async def work(rt: Runtime) -> ApplyResult:
        return await sequence_apply.apply_saved_schedule_plan(saved, store=rt.store, clock=rt.clock,
                                                       client_for=rt.client_for)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=virtual_clock)


def import_leads(
    file: Path, sequence: str, *, state_dir: Path, dry_run: bool = False,
    max_enroll: int | None = None,
) -> LeadsImportResult:
    """Enroll a leads CSV's rows into an applied sequence (``dry_run``: the plan only)."""

    async def work(rt: Runtime) -> LeadsImportResult:
        return lead_apply.import_leads(file, sequence, store=rt.store, now=rt.clock.now(),
                                       dry_run=dry_run, max_enroll=max_enroll)

    return with_runtime(state_dir, work)


# ---- views ---------------------------------------------------------------------------------


def status(state_dir: Path, name: str | None, *, virtual_clock: bool) -> StatusReport:
    """The funnel, identities, workflows and schedules (limits on the sandbox's clock when
    ``virtual_clock``); nothing applied yet: an empty report, no state directory made."""
    clock = "virtual" if virtual_clock else "real"
    if not has_state(state_dir):
        if name is not None:
            _require_state(state_dir, f"no applied sequence, workflow or schedule named {name!r}")
        return StatusReport(RealClock().now(), False, clock=clock)

    async def work(rt: Runtime) -> StatusReport:
        return views.status(rt.store, name, now=rt.clock.now(), clock=clock)

    return with_runtime(state_dir, work, sandbox=virtual_clock, virtual_clock=virtual_clock,
                        save=False)


def _require_state(state_dir: Path, what: str) -> None:
    if not has_state(state_dir):  # NotFoundError, and no state directory made
        raise views.NotFoundError(f"{what}: nothing applied yet in {state_dir}")


def why(state_dir: Path, lead_url: str) -> WhyReport:
    """Every transition and provider call of one lead."""
    _require_state(state_dir, f"no lead {lead_url}")

    async def work(rt: Runtime) -> WhyReport:
        return why_views.why(rt.store, lead_url)

    return with_runtime(state_dir, work)


def why_workflow(state_dir: Path, name: str) -> WorkflowWhy:
    """A workflow's state history and node results."""
    _require_state(state_dir, f"no applied workflow named {name!r}")

    async def work(rt: Runtime) -> WorkflowWhy:
        return why_views.why_workflow(rt.store, name)

    return with_runtime(state_dir, work)


def fan_out_results(state_dir: Path, name: str) -> list[LeadResult]:
    """Each lead's run of a ``for_each`` Workflow."""
    _require_state(state_dir, f"no fan-out workflow {name!r} has run")

    async def work(rt: Runtime) -> list[LeadResult]:
        return fanout_views.fan_out_results(rt.store, name)

    return with_runtime(state_dir, work)


def set_paused(
    state_dir: Path, paused: bool, *, sequence: str | None, identity: str | None,
    everything: bool,
) -> PauseResult:
    """Pause or resume a sequence, an identity or everything (the kill switch)."""

    async def work(rt: Runtime) -> PauseResult:
        result = control.set_paused(rt.store, paused, sequence=sequence, identity=identity,
                                    everything=everything, now=rt.clock.now())
        if paused:  # the pause's notice now: a kill switch stops the runner's tick hooks
            await Notifier(rt.store, rt.clock).deliver()
        return result

    return with_runtime(state_dir, work)


def set_rollout(
    state_dir: Path, name: str, stage: str, *, virtual_clock: bool
) -> control.RolloutResult:
    """``seqrun promote`` (``stage="promoted"``) or ``seqrun rollback`` of a sequence's
    rollout, at the sandbox's clock with ``virtual_clock``."""

    async def work(rt: Runtime) -> control.RolloutResult:
        act = control.promote if stage == "promoted" else control.rollback
        return act(rt.store, name, now=rt.clock.now())

    return with_runtime(state_dir, work, sandbox=virtual_clock, virtual_clock=virtual_clock)


def search_leads(provider: str, identity: str, search: PeopleSearch, *, state_dir: Path,
                 sandbox: bool) -> tuple[LeadImport, int]:
    """``seqrun leads search``: the people the provider finds, read by the CSV's rules, and
    how many it returned (nothing is enrolled)."""

    async def work(rt: Runtime) -> tuple[LeadImport, int]:
        rows = await lead_search.search_people(provider, identity, search,
                                               client_for=rt.client_for, clock=rt.clock)
        return leads_from_rows(rows, f"search({provider}, {identity})"), len(rows)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox)


# ---- identities ----------------------------------------------------------------------------


def every_provider(rt: Runtime) -> tuple[dict[str, Provider], dict[str, str]]:
    """An adapter per registered provider whose credentials are set (all in the sandbox),
    and the others with why they were left out."""
    providers: dict[str, Provider] = {}
    skipped: dict[str, str] = {}
    for name, spec in sorted(REGISTRY.items()):
        if spec.factory is None:
            continue
        try:
            providers[name] = rt.provider(name)
        except ConfigError as exc:
            skipped[name] = str(exc)
    return providers, skipped


def identities(state_dir: Path, *, sandbox: bool, check: bool = False,
               ) -> identity_views.IdentitiesReport:
    """Every provider's identities joined with the store (``check``: health asked now)."""

    async def work(rt: Runtime) -> identity_views.IdentitiesReport:
        providers, skipped = every_provider(rt)
        report = await identity_views.list_identities(rt.store, providers, rt.clock.now(),
                                                      skipped=skipped)
        return await identity_views.check_identities(report, providers) if check else report

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox, save=False)


def add_identity(state_dir: Path, name: str, *, provider: str, engagement: bool,
                 sandbox: bool) -> NewIdentity:
    """Create an identity at a provider that can (Edges); where to connect its LinkedIn."""
    if provider != "edges":
        raise UsageError(f"identities add: {provider} identities are connected in its own app; "
                         "only edges creates identities through its API")

    async def work(rt: Runtime) -> NewIdentity:
        client = rt.client_for(provider)
        return await create_edges_identity(client, name, engagement=engagement)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox)


# ---- run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """How long to run: one tick, until a moment (``until``), or as a daemon."""

    once: bool = False
    until: Until | None = None
    virtual_clock: bool = False
    poll_interval: float = 30.0
    progress: Progress | None = None


@dataclass
class RunOutcome:
    """What a run did, the funnel after it, and what the async Schedules did meanwhile."""

    result: TickResult | RunSummary
    funnel: StatusReport
    async_runs: list[AsyncRunResult]

    def to_json(self) -> dict[str, Any]:
        return {"run": self.result.to_json(), "status": self.funnel.to_json(),
                "async_schedules": summarize_async_runs(self.async_runs)}


def summarize_async_runs(runs: Iterable[AsyncRunResult]) -> dict[str, dict[str, Any]]:
    """Per async Schedule: how many runs were started / continued, and the last run."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        entry = out.setdefault(r.name, {"started": 0, "restarted": 0, "continued": 0,
                                        "ticks": 0, "run_uid": None, "status": None})
        entry["ticks"] += 1
        if r.outcome in ("started", "restarted", "continued"):
            entry[r.outcome] += 1
        entry["run_uid"], entry["status"] = r.run_uid, r.status
    return out


def async_schedules_hook(
    rt: Runtime, seen: list[AsyncRunResult]
) -> Callable[[TickResult], Awaitable[bool]]:
    """A runner tick hook: every tick (``--once``, ``--until``, the daemon) also advances the
    registered ``mode: async`` Schedules (start ``run/async`` once, then ``POST
    /runs/{uid}/continue`` after each finished run). What they did is appended to ``seen``.
    Nothing is asked of Edges when no async Schedule is applied."""

    async def hook(result: TickResult) -> bool:
        if not schedule_db.exists(rt.store, schedule_db.ASYNC):
            return False
        try:
            runs = await tick_async_schedules(client=rt.client_for("edges"), store=rt.store)
        except LockError as exc:  # another process drives them this tick
            _log.warning("async schedules not advanced: %s", exc)
            return False
        except SeqrunError as exc:  # a provider or configuration error: logged, next tick
            _log.warning("async schedules: %s", exc)
            result.errors.append(f"async schedules: {exc}")
            return False
        seen.extend(runs)
        # while async runs go on, run_until steps through time so each finished run is
        # continued on the way
        return True

    return hook


def notify_hook(rt: Runtime) -> Callable[[TickResult], Awaitable[bool]]:
    """A runner tick hook: the tick's errors and the new events become notices, sent to the
    sequences' ``notify:`` targets (see engine.run.notify). A failure is logged, retried."""
    notifier = Notifier(rt.store, rt.clock)

    async def hook(result: TickResult) -> bool:
        try:
            await notifier.deliver(result.errors)
        except SeqrunError as exc:
            _log.warning("notices not sent: %s", exc)
        return False

    return hook


def _deadline(until: Until | None, now: datetime) -> datetime | None:
    return now + until if isinstance(until, timedelta) else until


async def drive(
    rt: Runtime, opts: RunOptions, seen: list[AsyncRunResult]
) -> TickResult | RunSummary:
    """Run the runner over every applied sequence as ``opts`` says."""
    runner = Runner(rt.store, build_providers(rt), rt.clock, settle_after=settle_after(),
                    tick_hooks=[async_schedules_hook(rt, seen), notify_hook(rt)],
                    async_callback=edges_run_callback(ServeConfig.from_env()))
    end = _deadline(opts.until, rt.clock.now())
    if opts.once or (end is not None and opts.virtual_clock):
        async with runner.hold_leases():
            if opts.once:
                return await runner.tick()
            assert end is not None
            if opts.progress is None:
                return await runner.run_until(end)
            with opts.progress(rt.clock.now(), end) as on_tick:
                return await runner.run_until(end, on_tick=on_tick)
    stop = asyncio.Event()
    if end is not None:
        delay = max(0.0, (end - rt.clock.now()).total_seconds())
        asyncio.get_running_loop().call_later(delay, stop.set)
    return await runner.run_forever(opts.poll_interval, stop=stop)


def run(state_dir: Path, opts: RunOptions, *, sandbox: bool) -> RunOutcome:
    """Run the due steps (see :class:`RunOptions`), then read the funnel."""
    seen: list[AsyncRunResult] = []

    async def work(rt: Runtime) -> TickResult | RunSummary:
        result = await drive(rt, opts, seen)
        rt.note_unreached(result)
        return result

    result = with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=opts.virtual_clock)
    funnel = status(state_dir, None, virtual_clock=opts.virtual_clock)
    return RunOutcome(result, funnel, seen)


def forecast(state_dir: Path) -> Forecast:
    """The day-by-day forecast of the run a simulation left in ``state_dir`` (read back from
    its store, up to the sandbox's virtual clock)."""

    async def work(rt: Runtime) -> Forecast:
        return forecast_view(rt.store, now=rt.clock.now())

    return with_runtime(state_dir, work, sandbox=True, virtual_clock=True, save=False)


def quick_forecast(manifests: list[Manifest], span: timedelta, *, seed: int = 0) -> Forecast:
    """What ``seqrun simulate`` would show for ``span`` (``plan --forecast``): the Sequences of
    ``manifests`` applied and run on a fresh default sandbox, in a throwaway state directory
    and store; nothing of the user's state is read or written."""
    import tempfile

    from engine.store.db import throwaway_store

    sequences: list[Manifest] = [m for m in manifests if isinstance(m, Sequence)]
    with throwaway_store(), tempfile.TemporaryDirectory(prefix="seqrun-forecast-") as scratch:
        state_dir = Path(scratch)
        new_sandbox(state_dir, scenario=None, seed=seed)
        apply(sequences, approve=lambda _plan: True, run=True, prune=False,
              state_dir=state_dir, sandbox=True, virtual_clock=True)
        run(state_dir, RunOptions(until=span, virtual_clock=True), sandbox=True)
        return forecast(state_dir)


@dataclass
class Simulation:
    """``seqrun simulate``: the apply, the run over simulated time, where the state was kept,
    and the forecast read back from it."""

    applied: ApplyResult
    outcome: RunOutcome
    kept: Path | None
    forecast: Forecast | None = None

    @property
    def failed(self) -> bool:
        return bool(getattr(self.applied.run, "errors", None) or self.outcome.result.errors)

    def to_json(self) -> dict[str, Any]:
        return {"apply": self.applied.to_json(), **self.outcome.to_json(),
                "state_dir": None if self.kept is None else str(self.kept),
                "forecast": None if self.forecast is None else self.forecast.to_json()}


# ---- Schedules (Edges) ---------------------------------------------------------------------


def import_schedule(name: str, uid: str, *, state_dir: Path, sandbox: bool) -> dict[str, Any]:
    """Adopt the live Edges schedule ``uid`` as the Schedule manifest ``name``."""

    async def work(rt: Runtime) -> dict[str, Any]:
        return await edges_schedules.import_schedule(name, uid, client=rt.client_for("edges"),
                                                     store=rt.store)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox)


def plan_schedules(
    schedules: list[Schedule], *, state_dir: Path, sandbox: bool, prune: bool
) -> SchedulePlan:
    """What applying ``schedules`` would create, replace or delete (a plan changes nothing)."""

    async def work(rt: Runtime) -> SchedulePlan:
        return await edges_schedules.plan_schedules(schedules, client=rt.client_for("edges"),
                                                    store=rt.store, prune=prune)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox, save=False)


def apply_schedules(
    plan_or_schedules: SchedulePlan | list[Schedule],
    *,
    approve: Callable[[SchedulePlan], bool],
    state_dir: Path,
    sandbox: bool,
    prune: bool,
) -> tuple[SchedulePlan, ScheduleApplyResult | None]:
    """Apply a saved plan as it is, or plan ``schedules``, ask ``approve`` and apply; the
    result is None when not approved."""

    async def work(rt: Runtime) -> tuple[SchedulePlan, ScheduleApplyResult | None]:
        client = rt.client_for("edges")
        plan = plan_or_schedules
        if not isinstance(plan, SchedulePlan):
            plan = await edges_schedules.plan_schedules(plan, client=client, store=rt.store,
                                                        prune=prune)
            if not approve(plan):
                return plan, None
        return plan, await edges_schedules.apply_schedule_plan(plan, client=client,
                                                               store=rt.store)

    return with_runtime(state_dir, work, sandbox=sandbox, virtual_clock=sandbox)


# ---- the receiver (`seqrun serve`) ---------------------------------------------------------


def serve(state_dir: Path, host: str, port: int, config: ServeConfig) -> None:
    """Receive provider callbacks and webhooks into the store until interrupted (the runner,
    `seqrun run`, consumes them; both may share one SQLite store)."""
    from engine.serve.server import serve as serve_forever  # deferred: uvicorn

    config.require_a_secret()
    with open_store(state_dir) as store:
        try:
            asyncio.run(serve_forever(store, config, host, port))
        except SystemExit as exc:  # uvicorn exits when it cannot bind (it logged why)
            if exc.code not in (0, None):
                raise ConfigError(f"cannot serve on {host}:{port}") from None
