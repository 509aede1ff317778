"""`seqrun simulate` of N leads over 30 simulated days, end to end through the CLI.

    python bench/bench_simulate.py [--leads 10000] [--days 30] [--json]

Writes a demo-campaign-shaped sequence over 5 Edges identities and N generated leads to a temp
dir, runs `seqrun simulate` in a subprocess and reports its wall time, its CPU time, the
actions it delivered and CPU per action. It drives the CLI, so the same script measures any
layout of the code (the renovation's before/after). Exit 1 when --budget-s is given and the
CPU time exceeds it.
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

ROOT = Path(__file__).resolve().parent.parent
ZONES = ["Europe/Paris", "America/New_York", "Asia/Singapore", "Europe/London", ""]
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
             "--scenario", str(Path(tmp) / "world.yaml"),
             "-o", "json"], cwd=tmp, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"simulate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    actions = _delivered(json.loads(proc.stdout))
    return {"leads": leads, "days": days, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "actions": actions, "cpu_ms_per_action": round(1000 * cpu / max(actions, 1), 3)}


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
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    figures = run(args.leads, args.days)
    if args.json:
        print(json.dumps(figures))
    else:
        print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 1 if args.budget_s is not None and figures["cpu_s"] > args.budget_s else 0


if __name__ == "__main__":
    raise SystemExit(main())
