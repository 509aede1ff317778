"""Benchmark: delivered actions per second with 1, 2 and 4 `seqrun run` workers on one store
(issue 13, "Speed"), and what a lease costs.

Run: ``python bench/bench_workers.py`` (``--workers 1,2,4 --leads 400 --identities 40
--latency 0.05``, ``--database-url postgresql+psycopg://...`` for PostgreSQL, ``--json``).

For each worker count: a fresh campaign (visit -> connect, already-connected leads messaged)
over ``--identities`` identities is applied (``--no-run``) against ``seqrun sandbox serve``
with ``--latency`` seconds on every call and no other fault; then N ``seqrun run`` processes
start on the one store under the kill switch, and once each holds its share of the
identities the switch is turned off and they run until every lead ended. Throughput is the
delivered actions (the sandbox's ground truth) over the span from the first intent to the
last outcome in the store (process start-up and the first rebalance are not in it). The
lease cost is measured in process: one ``IdentityLeases.balance()`` (reap, heartbeat,
candidates, live workers, claim) and one heartbeat, on the same database, in milliseconds of
wall time, mean of 200.
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
            database: str | None) -> dict[str, Any]:
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
            procs = [_seqrun(["run", "--poll-interval", "0.2"], work, env)
                     for _ in range(workers)]
            store = Store.open(url, work / "state")
            try:
                while not _balanced(store, workers, identities):
                    time.sleep(0.2)
                _seqrun(["resume", "--all"], work, env).wait()
                while not all(e.state in TERMINALS for e in store.enrollments()):
                    time.sleep(0.2)
                actions = store.actions()
            finally:
                store.close()
            worker_cpu = sum(_cpu(p.pid) for p in procs)
            sandbox_cpu = _cpu(served.proc.pid)
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
    return {"workers": workers, "delivered": delivered, "calls": len(actions),
            "span_s": round(span, 2), "delivered_per_s": round(delivered / span, 1),
            "workers_cpu_ms_per_call": round(worker_cpu * 1000 / len(actions), 2),
            "sandbox_cpu_ms_per_call": round(sandbox_cpu * 1000 / len(actions), 2),
            "load_1min": round(os.getloadavg()[0], 1)}


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
    ap.add_argument("--leads", type=int, default=400)
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--database-url", default=None, help="PostgreSQL (default: SQLite)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = [one_run(int(n), leads=args.leads, identities=args.identities,
                    latency=args.latency, database=args.database_url)
            for n in args.workers.split(",")]
    url, schema = _fresh_url(args.database_url)
    try:
        cost = asyncio.run(_lease_cost(url, args.identities))
    finally:
        _drop(args.database_url, schema)
    out = {"database": "postgresql" if args.database_url else "sqlite",
           "latency_s": args.latency, "leads": args.leads, "identities": args.identities,
           "runs": runs, "lease_cost": cost}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['database']}, {args.leads} leads, {args.identities} identities, "
          f"{args.latency * 1000:.0f} ms a call")
    base = runs[0]["delivered_per_s"]
    for r in runs:
        print(f"  {r['workers']} worker(s): {r['delivered']} delivered in {r['span_s']} s = "
              f"{r['delivered_per_s']}/s ({r['delivered_per_s'] / base:.2f} x); CPU a call: "
              f"workers {r['workers_cpu_ms_per_call']} ms, sandbox "
              f"{r['sandbox_cpu_ms_per_call']} ms; load {r['load_1min']}")
    print(f"  lease cost: balance {cost['balance_ms']} ms, heartbeat {cost['heartbeat_ms']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
