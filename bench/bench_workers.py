"""Benchmark: delivered actions per second with 1, 2 and 4 `seqrun run` workers on one store
(issue 13, "Speed"), how that scales per core, and what a lease costs.

Run: ``python bench/bench_workers.py`` (``--workers 1,2,4 --leads 1000 --identities 40
--latency 0.05 --poll-interval 0.2 --repeat 1``, ``--database-url postgresql+psycopg://...``
for PostgreSQL, ``--json``). With ``--repeat R`` each count runs R times (the order
alternating) and the run whose workers spent the least CPU a delivery is kept.

For each worker count: a fresh campaign (visit -> connect, already-connected leads messaged)
over ``--identities`` identities is applied (``--no-run``) against ``seqrun sandbox serve``
with ``--latency`` seconds on every call and no other fault; then N ``seqrun run`` processes
start on the one store under the kill switch, and once each holds its share of the
identities the switch is turned off and they run until every lead ended. Throughput is the
delivered actions (the sandbox's ground truth) over the span from the first intent to the
last outcome in the store (process start-up and the first rebalance are not in it). The
workers' CPU is read from /proc over that span only (start-up, and the CPU a second of each
worker once nothing is left to do, are reported apart): the target, 4 workers >= 3 x one,
holds on a machine with a core per worker when the workers' CPU per delivery at 4 stays
within 4/3 of one worker's, which is what a box with fewer cores can show (see
:func:`verdict`; exit 1 when not met). The campaign's limits (visit 80, connect 25 a day per
identity) cap the leads at ~25 per identity. The lease cost is measured in process: one
``IdentityLeases.balance()`` (reap, heartbeat, candidates, live workers, claim) and one
heartbeat, on the same database, in milliseconds of wall time, mean of 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.clock import RealClock  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.vocab import TERMINALS  # noqa: E402
from tests.chaos.harness import Served, _env, write_inputs  # noqa: E402

IDLE_S = 3.0  # seconds the workers are watched with nothing left to do


def _fresh_url(base: str | None) -> tuple[str | None, str | None]:
    """A PostgreSQL URL on a new schema (and the schema), or (None, None) for SQLite."""
    if not base:
        return None, None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def _drop(base: str | None, schema: str | None) -> None:
    if base and schema:
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _seqrun(args: list[str], work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "engine", *args, "--state-dir",
                             str(work / "state")], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _balanced(store: Store, workers: int, identities: int) -> bool:
    """Every worker is live and holds its fair share of the identities."""
    live = store.live_workers()
    held = sorted(len(w.identities) for w in live)
    return len(live) == workers and sum(held) == identities and held[0] >= identities // workers


def one_run(workers: int, *, leads: int, identities: int, latency: float,
            database: str | None, poll: float) -> dict[str, Any]:
    url, schema = _fresh_url(database)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        write_inputs(work, leads=leads, identities=identities, seed=1, latency=latency)
        world = work / "world.yaml"  # latency only
        text = world.read_text()
        for knob in ("rate_429: 0.02", "rate_5xx: 0.01", "rate_timeout: 0.01"):
            text = text.replace(knob, knob.split(":")[0] + ": 0.0")
        world.write_text(text)
        served = Served(work)
        try:
            env = _env(served, work)
            env["SEQRUN_LEASE_TTL"] = "10"
            if url:
                env["SEQRUN_DATABASE_URL"] = url
                os.environ["SEQRUN_DATABASE_URL"] = url
            _seqrun(["apply", str(work / "chaos.yaml"), "--auto-approve", "--no-run"],
                    work, env).wait()
            # the workers start under the kill switch (they lease, they do not act) and the
            # campaign starts once each holds its share: start-up and the first rebalance
            # are not measured
            _seqrun(["pause", "--all"], work, env).wait()
            procs = [_seqrun(["run", "--poll-interval", str(poll)], work, env)
                     for _ in range(workers)]
            store = Store.open(url, work / "state")
            try:
                while not _balanced(store, workers, identities):
                    time.sleep(0.2)
                cpu0 = sum(_cpu(p.pid) for p in procs)
                sandbox0 = _cpu(served.proc.pid)
                _seqrun(["resume", "--all"], work, env).wait()
                while not all(e.state in TERMINALS for e in store.enrollments()):
                    time.sleep(0.2)
                worker_cpu = sum(_cpu(p.pid) for p in procs) - cpu0
                sandbox_cpu = _cpu(served.proc.pid) - sandbox0
                actions = store.actions()
            finally:
                store.close()
            # what the workers cost with nothing left to do (their ticks, heartbeats)
            idle0 = sum(_cpu(p.pid) for p in procs)
            time.sleep(IDLE_S)
            idle = sum(_cpu(p.pid) for p in procs) - idle0
            for p in procs:
                p.terminate()
                p.wait()
            delivered = len(served.get("/deliveries"))
        finally:
            served.stop()
            os.environ.pop("SEQRUN_DATABASE_URL", None)
            _drop(database, schema)
    start = min(a.created_at for a in actions)
    end = max(a.finished_at or a.created_at for a in actions)
    span = (end - start).total_seconds()
    # calls that failed (a retry waits its backoff, >= 1 minute: it stretches the span)
    failed = Counter(f"{a.status}:{a.label}" for a in actions if a.status != "done")
    return {"workers": workers, "delivered": delivered, "calls": len(actions),
            "not_done": dict(failed),
            "span_s": round(span, 2), "delivered_per_s": round(delivered / span, 1),
            "workers_cpu_ms_per_delivery": round(worker_cpu * 1000 / delivered, 2),
            "workers_cpu_ms_per_call": round(worker_cpu * 1000 / len(actions), 2),
            "sandbox_cpu_ms_per_call": round(sandbox_cpu * 1000 / len(actions), 2),
            # the share of a core each worker had over the span (1.0: CPU-bound on a core)
            "cores_per_worker": round(worker_cpu / span / workers, 2),
            "startup_cpu_s_per_worker": round(cpu0 / workers, 2),
            "idle_cpu_ms_per_s_per_worker": round(idle * 1000 / IDLE_S / workers, 1),
            "load_1min": round(os.getloadavg()[0], 1)}


def scaling(runs: list[dict[str, Any]], *, identities: int, latency: float) -> dict[str, Any]:
    """For each run against the first (one worker): the measured ratio, the workers' CPU
    per delivery over the first's, and the ratio that CPU implies with a core per worker
    (N x CPU at 1 / CPU at N, at most the latency bound: each identity's calls are serial)."""
    base = runs[0]
    per_cpu_1 = 1000 / base["workers_cpu_ms_per_delivery"]  # deliveries per CPU second
    deliveries_per_call = base["delivered"] / base["calls"]
    bound = identities / latency * deliveries_per_call
    out = []
    for r in runs:
        n = r["workers"] / base["workers"]
        cpu_ratio = r["workers_cpu_ms_per_delivery"] / base["workers_cpu_ms_per_delivery"]
        implied = min(r["workers"] * 1000 / r["workers_cpu_ms_per_delivery"], bound)
        out.append({"workers": r["workers"],
                    "measured_x": round(r["delivered_per_s"] / base["delivered_per_s"], 2),
                    "cpu_per_delivery_x": round(cpu_ratio, 2),
                    "implied_per_s": round(implied, 1),
                    "implied_x": round(implied / min(per_cpu_1 * base["workers"], bound), 2),
                    "ideal_x": n})
    return {"latency_bound_per_s": round(bound, 1), "runs": out}


def verdict(scale: dict[str, Any], runs: list[dict[str, Any]]) -> tuple[bool, str]:
    """The issue's target (the largest run >= 3/4 of the ideal ratio: 4 workers >= 3 x one)
    on what this box can show. Measured, when the box has a core for each worker, the sandbox
    and the database besides; otherwise from the workers' CPU per delivery (the box, not the
    workers, is then the limit when that CPU stays flat). Any run delivering a different
    number of actions than the first (a lead lost or served twice) fails."""
    last = max(scale["runs"], key=lambda r: r["workers"])
    target = 0.75 * last["ideal_x"]
    cores = os.cpu_count() or 1
    if len({r["delivered"] for r in runs}) > 1:
        return False, "the runs delivered different numbers of actions: " + ", ".join(
            str(r["delivered"]) for r in runs)
    if cores >= last["workers"] + 2:
        ok = last["measured_x"] >= target
        return ok, (f"measured {last['measured_x']} x with {last['workers']} workers on "
                    f"{cores} cores: target {target:.2f} x {'met' if ok else 'NOT met'}")
    ok = last["implied_x"] >= target
    why = ("the workers' CPU per delivery stays within "
           f"{last['ideal_x'] / target:.2f} x of one worker's ({last['cpu_per_delivery_x']} x): "
           "the box is the limit" if ok else
           f"the workers' CPU per delivery grows {last['cpu_per_delivery_x']} x: the workers, "
           "not the box, are the limit")
    return ok, (f"this box ({cores} cores for {last['workers']} workers, the sandbox and the "
                f"database) cannot show the target: measured {last['measured_x']} x; with a "
                f"core per worker {last['implied_x']} x (target {target:.2f} x: "
                f"{'met' if ok else 'NOT met'}), as {why}")


async def _lease_cost(url: str | None, identities: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-leases-") as tmp:
        store = Store.open(url, Path(tmp))
        try:
            for i in range(identities):
                store.put_identity(f"ident-{i:02d}", "edges")
            runner = Runner(store, {}, RealClock())
            async with runner.hold_leases(timedelta(minutes=1)) as leases:
                leases.rebalance_every = 0.0
                t0 = time.perf_counter()
                for _ in range(200):
                    leases.balance()
                balance = (time.perf_counter() - t0) / 200
                t0 = time.perf_counter()
                for _ in range(200):
                    leases._beat()
                beat = (time.perf_counter() - t0) / 200
        finally:
            store.close()
    return {"balance_ms": round(balance * 1000, 2), "heartbeat_ms": round(beat * 1000, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--leads", type=int, default=1000)
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--database-url", default=None, help="PostgreSQL (default: SQLite)")
    ap.add_argument("--poll-interval", type=float, default=0.2,
                    help="the workers' --poll-interval (an idle worker ticks this often)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each count (best kept)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    every: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for round_ in range(args.repeat):  # the order alternates, so a load trend evens out
        for n in counts if round_ % 2 == 0 else counts[::-1]:
            every[n].append(one_run(n, leads=args.leads, identities=args.identities,
                                    latency=args.latency, database=args.database_url,
                                    poll=args.poll_interval))
    # best of the repeats: the run whose workers spent the least CPU a delivery (a loaded
    # box inflates it, it never deflates it)
    runs = [min(every[n], key=lambda r: r["workers_cpu_ms_per_delivery"]) for n in counts]
    url, schema = _fresh_url(args.database_url)
    try:
        cost = asyncio.run(_lease_cost(url, args.identities))
    finally:
        _drop(args.database_url, schema)
    scale = scaling(runs, identities=args.identities, latency=args.latency)
    ok, says = verdict(scale, [r for n in counts for r in every[n]])
    out = {"database": "postgresql" if args.database_url else "sqlite",
           "latency_s": args.latency, "leads": args.leads, "identities": args.identities,
           "cores": os.cpu_count(), "runs": runs, "scaling": scale, "lease_cost": cost,
           "every_run": [r for n in counts for r in every[n]],
           "verdict": says, "met": ok}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    print(f"{out['database']}, {args.leads} leads, {args.identities} identities, "
          f"{args.latency * 1000:.0f} ms a call, {out['cores']} cores")
    for r, s in zip(runs, scale["runs"], strict=True):
        print(f"  {r['workers']} worker(s): {r['delivered']} delivered in {r['span_s']} s = "
              f"{r['delivered_per_s']}/s ({s['measured_x']} x); workers' CPU a delivery "
              f"{r['workers_cpu_ms_per_delivery']} ms ({s['cpu_per_delivery_x']} x), "
              f"{r['cores_per_worker']} of a core each; with a core per worker "
              f"{s['implied_per_s']}/s ({s['implied_x']} x); sandbox CPU a call "
              f"{r['sandbox_cpu_ms_per_call']} ms; start-up {r['startup_cpu_s_per_worker']} s "
              f"CPU a worker, idle {r['idle_cpu_ms_per_s_per_worker']} ms CPU/s a worker; "
              f"calls not done {r['not_done'] or 0}; load {r['load_1min']}")
    print(f"  latency bound {scale['latency_bound_per_s']}/s; lease cost: balance "
          f"{cost['balance_ms']} ms, heartbeat {cost['heartbeat_ms']} ms")
    print(f"  {'met' if ok else 'NOT MET'}: {says}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
