"""`seqrun test` of the shipped SequenceTest suite (sequences/), end to end through the CLI.

    python bench/bench_seqtest.py [--repeat 3] [--json] [--budget-s S]

Runs `seqrun test sequences/ -o json` in a subprocess (best of --repeat) and reports its wall
time, its CPU time (the child's user + system), the cases run and the CPU per case. Exit 1
when a case fails, or when --budget-s is given and the best CPU time exceeds it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once() -> tuple[float, float, dict[str, object]]:
    """(wall s, CPU s, the JSON report) of one `seqrun test sequences/`."""
    cpu, wall = _child_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", "test", "sequences/", "-o", "json"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - wall, _child_cpu() - cpu
    if done.returncode not in (0, 1):
        raise SystemExit(f"seqrun test failed ({done.returncode}): {done.stderr.strip()}")
    report: dict[str, object] = json.loads(done.stdout)
    return wall, cpu, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--budget-s", type=float, default=None)
    args = parser.parse_args()
    runs = [run_once() for _ in range(max(args.repeat, 1))]
    wall, cpu, report = min(runs, key=lambda r: r[1])
    cases = len(report["cases"])  # type: ignore[arg-type]
    result = {"cases": cases, "failed": report["failed"], "wall_s": round(wall, 2),
              "cpu_s": round(cpu, 2), "cpu_per_case_ms": round(1000 * cpu / max(cases, 1), 1),
              "runs_cpu_s": [round(r[1], 2) for r in runs]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"seqrun test sequences/: {cases} cases, {report['failed']} failed; best of "
              f"{len(runs)}: {cpu:.2f} s CPU ({wall:.2f} s wall), "
              f"{result['cpu_per_case_ms']} ms CPU a case")
    over = args.budget_s is not None and cpu > args.budget_s
    return 1 if report["failed"] or over else 0


if __name__ == "__main__":
    sys.exit(main())
