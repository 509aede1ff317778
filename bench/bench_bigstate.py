"""`plan`, `apply --no-run`, `status` and `why` on a 100,000-lead state, on SQLite or PostgreSQL.

    python bench/bench_bigstate.py [--leads 100000] [--postgres URL] [--json]

Writes the simulate benchmark's campaign (bench_simulate.write_inputs) with N leads to a temp
dir, then runs `seqrun plan` twice (the second with nothing applied yet either: the same
work), `seqrun apply --no-run` and again with no change, each in a subprocess with --sandbox
(CPU time and peak RSS of the child), then times the library calls behind `seqrun status`
and `seqrun why` in this process (best of 5). With --postgres URL (a database it may empty)
the store is that database ($SEQRUN_DATABASE_URL); its server's CPU is not in these
figures (status and why also report their best wall time). Exit 1 when a budget of the
performance issue is missed: plan <= 5 s, apply <= 10 s and <= 300 MB, status and why
<= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = {"plan_cpu_s": 5.0, "apply_cpu_s": 10.0, "apply_rss_mb": 300.0,
           "status_ms": 300.0, "why_ms": 300.0}


def _child(env: dict[str, str], cwd: Path, *args: str) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of one `seqrun` command run in a subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = ("import resource, sys\nfrom engine.cli import main\n"
            "sys.argv = ['seqrun', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\nelse:\n    rc = 0\n"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 2):  # plan exits 2 when it has changes to make
        raise SystemExit(f"{args[:2]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = next((int(line.split()[1]) for line in proc.stderr.splitlines()
                if line.startswith("RSS ")), 0)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(cpu, 2), round(rss / 1024, 1)


def _best_ms(fn: Any, repeat: int = 5) -> tuple[float, float]:
    """Best CPU time of this process and best wall time (which holds a database server's
    work), in ms."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        started, clock = time.process_time(), time.perf_counter()
        fn()
        cpu = min(cpu, time.process_time() - started)
        wall = min(wall, time.perf_counter() - clock)
    return round(1000 * cpu, 1), round(1000 * wall, 1)


def run(leads: int, url: str | None) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    import bench_simulate

    env = {k: v for k, v in os.environ.items() if k != "SEQRUN_DATABASE_URL"}
    if url is not None:
        bench_simulate._empty(url)
        env["SEQRUN_DATABASE_URL"] = url
    out: dict[str, float] = {"leads": leads}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        manifest = str(bench_simulate.write_inputs(cwd, leads))
        state = ["--state-dir", str(cwd / "state"), "--sandbox"]
        out["plan_cpu_s"], out["plan_rss_mb"] = _child(env, cwd, "plan", manifest, *state)
        out["apply_cpu_s"], out["apply_rss_mb"] = _child(
            env, cwd, "apply", manifest, "--auto-approve", "--no-run", *state)
        out["replan_cpu_s"], _ = _child(env, cwd, "plan", manifest, *state)
        out["reapply_cpu_s"], _ = _child(
            env, cwd, "apply", manifest, "--auto-approve", "--no-run", *state)
        out.update(_views(cwd / "state", url, leads))
    return out


def _views(state_dir: Path, url: str | None, leads: int) -> dict[str, float]:
    from datetime import UTC, datetime

    from engine.store import Store
    from engine.views.status import status
    from engine.views.why import why

    store = Store.open(url, state_dir)
    try:
        now = datetime.now(UTC)
        lead = f"https://www.linkedin.com/in/bench-lead-{leads // 2:06d}"
        report = status(store, now=now)
        assert report.sequences, "no sequence applied"
        out: dict[str, float] = {}
        out["status_ms"], out["status_wall_ms"] = _best_ms(lambda: status(store, now=now))
        out["why_ms"], out["why_wall_ms"] = _best_ms(lambda: why(store, lead))
        return out
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--postgres", default=None, metavar="URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.leads, args.postgres)
    figures["store"] = "postgresql" if args.postgres else "sqlite"  # type: ignore[assignment]
    missed = [k for k, budget in BUDGETS.items() if float(figures[k]) > budget]
    if args.json:
        print(json.dumps({**figures, "missed": missed}))
    else:
        print(" ".join(f"{k}={v}" for k, v in figures.items()))
        print("budgets missed: " + (", ".join(missed) if missed else "none"))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
