"""`seqrun simulate` of N leads over 30 simulated days, end to end through the CLI.

    python bench/bench_simulate.py [--leads 10000] [--days 30] [--json] [--budget-s S]
    python bench/bench_simulate.py --linearity 1000,10000 [--days 30]
    python bench/bench_simulate.py --postgres URL [--leads 10000] [--days 30] [--pairs 3]

Writes a demo-campaign-shaped sequence over 5 Edges identities and N generated leads to a temp
dir, runs `seqrun simulate` in a subprocess (its state kept with --keep) and reports its wall
time, its CPU time, the actions it delivered, CPU per action, the event rows per action and
the store's size. It drives the CLI, so the same script measures any layout of the code.
Exit 1 when --budget-s is given and the CPU time exceeds it, or when a run writes more than
3 event rows per delivered action (besides the one `enrolled` row of each lead); with
--linearity, when CPU per unit of work (a lead enrolled or an action delivered) at the largest
size exceeds 1.5x that at the smallest. Per unit of work, not per action: the identities'
limits cap the actions of a month (~12,000 here) however many leads wait, so past ~10,000
leads more leads add waiting leads, not actions, and CPU per action must grow with them.

With --postgres URL (a PostgreSQL database the script may empty, e.g. the one
`bash .ci/postgres.sh` prints): the same campaign on SQLite and on PostgreSQL side by side,
each as the commands `simulate` stands for (`apply --sandbox --virtual-clock`, then
`run --sandbox --virtual-clock --until`: `simulate` itself always plays on a throwaway SQLite
store), the PostgreSQL one with $SEQRUN_DATABASE_URL set. Wall time is the one figure
comparable across the two (PostgreSQL's work is in its server's processes; their CPU is
reported as server_cpu_s, read from the postmaster's reaped children when run as the same
host). --pairs N runs the two N times, alternating which goes first; the figure is the median
of the pairs' ratios (on a shared machine the same code's wall time moves by 20 % from one
run to the next, and a drift of its speed during a pair favours the one that ran first).
Exit 1 when that median exceeds 1.3 (PostgreSQL's wall time / SQLite's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZONES = ["Europe/Paris", "America/New_York", "Asia/Singapore", "Europe/London", ""]
EVENTS_PER_ACTION = 3.0  # event rows per delivered action
LINEARITY = 1.5  # CPU per action, largest size / smallest
POSTGRES_RATIO = 1.3  # PostgreSQL's wall time / SQLite's, one worker
IDENTITIES = ["ident-alice", "ident-bob", "ident-carol", "ident-dave", "ident-erin"]

SEQUENCE = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: bench-simulate
spec:
  provider: edges
  identities: [{identities}]
  leads:
    csv: leads.csv
  window:
    timezone: lead
    fallback_timezone: Europe/Paris
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-18:00"
  limits:
    visit: 60
    connect: 20
    message: 40
  cooldown: 3d
  steps:
    - id: visit
      action: visit_profile
    - id: connect
      action: connect
      with:
        note: "Hi {{{{ lead.first_name }}}}, I follow what {{{{ lead.company_name }}}} builds."
      on:
        ALREADY_CONNECTED: intro
        INVITATION_PENDING: accepted
    - id: accepted
      wait_for: connection_accepted
      timeout: 14d
      on_timeout: withdraw
    - id: intro
      action: send_message
      with:
        text: "Thanks for connecting, {{{{ lead.first_name | default('there') }}}}!"
      on:
        NOT_CONNECTED: connect
    - id: breather
      wait: 3d
    - id: follow_up
      action: send_message
      with:
        text: "{{Quick|Short}} follow-up: worth a 15-minute call?"
      next: completed
    - id: withdraw
      action: withdraw_invitation
      next: removed
"""


SCENARIO = """\
seed: 7
start: "2026-01-05T08:00:00Z"
identities:
{identities}
profiles:
  csv: leads.csv
behaviour:
  accept_probability: 0.6
  reply_probability: 0.3
"""


def write_inputs(directory: Path, leads: int) -> Path:
    identities = "\n".join(f"  - {{uid: {uid}, name: {uid}, provider: edges, type: engagement}}"
                           for uid in IDENTITIES)
    (directory / "world.yaml").write_text(SCENARIO.format(identities=identities))
    manifest = directory / "bench-simulate.yaml"
    manifest.write_text(SEQUENCE.format(identities=", ".join(IDENTITIES)))
    rows = ["linkedin_profile_url,full_name,first_name,company_name,timezone"]
    for i in range(leads):
        rows.append(f"https://www.linkedin.com/in/bench-lead-{i:06d},Lead {i},Lead,Co {i % 97},"
                    f"{ZONES[i % len(ZONES)]}")
    (directory / "leads.csv").write_text("\n".join(rows) + "\n")
    return manifest


def run(leads: int, days: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_inputs(Path(tmp), leads)
        env = {k: v for k, v in os.environ.items() if k != "SEQRUN_DATABASE_URL"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "engine", "simulate", str(manifest), "--until", f"+{days}d",
             "--scenario", str(Path(tmp) / "world.yaml"), "--keep", str(Path(tmp) / "kept"),
             "-o", "json"], cwd=tmp, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"simulate failed ({proc.returncode}): {proc.stderr[-2000:]}")
        db = Path(tmp) / "kept" / "state.db"
        with sqlite3.connect(db) as conn:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            postponed = conn.execute(
                "SELECT count(*) FROM events WHERE kind = 'postponed'").fetchone()[0]
        size_mb = db.stat().st_size / 1e6
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    actions = _delivered(json.loads(proc.stdout))
    per = max(actions, 1)
    return {"leads": leads, "days": days, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "actions": actions, "cpu_ms_per_action": round(1000 * cpu / per, 3),
            "cpu_ms_per_work": round(1000 * cpu / (leads + actions), 3),
            "events": events, "postponed_events": postponed,
            "events_per_action": round(events / per, 2),
            "action_events_per_action": round((events - leads) / per, 2),
            "store_mb": round(size_mb, 1)}


NEW_WORLD = ("import sys; from pathlib import Path; from engine import runtime; "
             "runtime.new_sandbox(Path(sys.argv[1]), scenario=Path(sys.argv[2]), seed=0)")


def run_commands(leads: int, days: int, url: str | None) -> dict[str, float]:
    """The campaign as `apply --sandbox --virtual-clock` then `run --until`, on the store
    ``url`` names (emptied first) or, without one, SQLite in the state dir."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_inputs(Path(tmp), leads)
        state = str(Path(tmp) / "state")
        env = {k: v for k, v in os.environ.items() if k != "SEQRUN_DATABASE_URL"}
        if url is not None:
            _empty(url)
            env["SEQRUN_DATABASE_URL"] = url
        _cli(env, tmp, "-c", NEW_WORLD, state, str(Path(tmp) / "world.yaml"))
        server_before = _server_cpu()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        _cli(env, tmp, "-m", "engine", "apply", str(manifest), "--auto-approve", "--no-run",
             "--sandbox", "--virtual-clock", "--state-dir", state)
        out = _cli(env, tmp, "-m", "engine", "run", "--sandbox", "--virtual-clock", "--until",
                   f"+{days}d", "--state-dir", state, "-o", "json")
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = _server_cpu() - server_before if url is not None else 0.0
        events, postponed = _count_events(url or f"sqlite:///{state}/state.db")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    document = json.loads(out)
    actions = _delivered(document)
    per = max(actions, 1)
    return {"store": "postgresql" if url else "sqlite", "leads": leads, "days": days,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "server_cpu_s": round(server, 2), "actions": actions,
            "wall_ms_per_action": round(1000 * wall / per, 3),
            "events": events, "postponed_events": postponed,
            "events_per_action": round(events / per, 2)}


def _cli(env: dict[str, str], cwd: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{args[:3]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _empty(url: str) -> None:
    """Drop every table of the PostgreSQL database ``url`` (a fresh store for each run)."""
    import sqlalchemy as sa

    from engine.store.db import normalize_url

    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def _count_events(url: str) -> tuple[int, int]:
    import sqlalchemy as sa

    from engine.store.db import normalize_url

    engine = sa.create_engine(normalize_url(url))
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        postponed = conn.execute(
            sa.text("SELECT count(*) FROM events WHERE kind = 'postponed'")).scalar_one()
    engine.dispose()
    return int(events), int(postponed)


def _server_cpu() -> float:
    """CPU seconds of the local PostgreSQL server's processes, the exited backends included
    (the postmaster's reaped children); 0 when no server runs here."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pidfile in Path("/var/run/postgresql").glob("*.pid"):
        try:
            pid = pidfile.read_text().split()[0]
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except (OSError, IndexError):
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick  # utime stime cu cs
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            try:
                cf = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(cf[11]) + int(cf[12])) / tick
    return total


def compare_postgres(
    leads: int, days: int, url: str, pairs: int = 3
) -> tuple[list[dict[str, float]], list[float]]:
    """SQLite and PostgreSQL on the same campaign, ``pairs`` times, SQLite first in the
    first pair, PostgreSQL in the next, and so on: the runs, and each pair's PostgreSQL
    wall / SQLite wall."""
    runs: list[dict[str, float]] = []
    ratios: list[float] = []
    for k in range(pairs):
        order = (None, url) if k % 2 == 0 else (url, None)
        done = [run_commands(leads, days, u) for u in order]
        runs += done
        sqlite, postgres = done if order[0] is None else done[::-1]
        ratios.append(postgres["wall_s"] / max(sqlite["wall_s"], 1e-9))
    return runs, ratios


def _delivered(document: dict[str, object]) -> int:
    """Actions the run delivered, read from the simulate document."""
    run_part = document.get("run")
    if isinstance(run_part, dict):
        for key in ("actions", "delivered", "done"):
            value = run_part.get(key)
            if isinstance(value, int):
                return value
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--linearity", default=None,
                        help="comma-separated lead counts, smallest first (e.g. 1000,10000)")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="compare with PostgreSQL at URL (a database it may empty)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="with --postgres: SQLite/PostgreSQL pairs, alternated (median)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.postgres:
        return _main_postgres(args.leads, args.days, args.postgres, max(args.pairs, 1),
                              args.json)
    sizes = [int(n) for n in args.linearity.split(",")] if args.linearity else [args.leads]
    runs = [run(n, args.days) for n in sizes]
    ok = all(r["action_events_per_action"] <= EVENTS_PER_ACTION for r in runs)
    if args.budget_s is not None:
        ok = ok and runs[-1]["cpu_s"] <= args.budget_s
    ratio = runs[-1]["cpu_ms_per_work"] / max(runs[0]["cpu_ms_per_work"], 1e-9)
    per_action = runs[-1]["cpu_ms_per_action"] / max(runs[0]["cpu_ms_per_action"], 1e-9)
    if len(runs) > 1:
        ok = ok and ratio <= LINEARITY
    if args.json:
        print(json.dumps({"runs": runs, "cpu_per_work_ratio": round(ratio, 2),
                          "cpu_per_action_ratio": round(per_action, 2), "ok": ok}))
    else:
        for figures in runs:
            print(" ".join(f"{k}={v}" for k, v in figures.items()))
        if len(runs) > 1:
            print(f"CPU per unit of work (a lead enrolled or an action delivered) "
                  f"{sizes[-1]} / {sizes[0]} leads: {ratio:.2f} x (budget <= {LINEARITY}); "
                  f"per action {per_action:.2f} x")
    return 0 if ok else 1


def _main_postgres(leads: int, days: int, url: str, pairs: int, as_json: bool) -> int:
    runs, ratios = compare_postgres(leads, days, url, pairs)
    ratio = statistics.median(ratios)
    ok = ratio <= POSTGRES_RATIO
    if as_json:
        print(json.dumps({"runs": runs, "pair_ratios": [round(r, 2) for r in ratios],
                          "postgres_wall_ratio": round(ratio, 2), "ok": ok}))
    else:
        for figures in runs:
            print(" ".join(f"{k}={v}" for k, v in figures.items()))
        print(f"PostgreSQL / SQLite wall time: {ratio:.2f} x, the median of "
              f"{' / '.join(f'{r:.2f}' for r in ratios)} (budget <= {POSTGRES_RATIO})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
