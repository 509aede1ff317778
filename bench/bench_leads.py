# ruff: noqa: E501  (the manifests are written as a user writes them)
"""Benchmark: ``seqrun leads import`` and ``seqrun plan`` of big leads files (issue 14, "Speed").

Run: ``python bench/bench_leads.py [--rows 100000,1000000] [--json]``. For each size it writes a
leads CSV (columns as a CRM export: URL in mixed forms, names, company, title, timezone; 1 row
in 200 a duplicate, 1 in 500 a bad URL), then runs, each in its own process through the CLI:

* ``seqrun leads import FILE --sequence bench`` into an applied sequence with no leads;
* ``seqrun plan seq.yaml`` of a sequence whose ``leads.csv`` is the file, on an empty store
  (preflight of its two templates included; ``--skip-bad-rows`` as the file has bad rows).

It reports each process's CPU time and peak RSS (``resource.getrusage`` of the process, read
by the process itself at its end) and the wall time. Budget (issue 14): 1,000,000 rows in at
most 20 s and 500 MB each; exit 1 when the largest size misses it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S, BUDGET_MB = 20.0, 500.0

MANIFEST = """\
apiVersion: seqrun/v1
kind: Sequence
metadata: {name: bench}
spec:
  provider: edges
  identities: [ident-alice, ident-bob, ident-carol]
  leads: {csv: CSV}
  steps:
    - id: visit
      action: visit_profile
    - id: connect
      action: connect
      with:
        note: "Hi {{ lead.first_name | default('there') }}, I follow {{ lead.company_name | default('your work') }}."
      next: completed
"""
TIMEZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "", "Europe/London")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("linkedin_profile_url,first_name,last_name,company_name,title,timezone\n")
        for i in range(rows):
            n = i - 1 if i % 200 == 199 else i  # a duplicate of the row before
            url = (f"https://example.com/in/x{n}" if i % 500 == 499
                   else f"https://www.linkedin.com/in/Lead-{n:07d}/" if n % 3 == 0
                   else f"linkedin.com/in/lead-{n:07d}?trk=crm" if n % 3 == 1
                   else f"https://www.linkedin.com/in/lead-{n:07d}")
            fh.write(f"{url},First{n % 900},Last{n % 5000},Company {n % 30000},"
                     f"Head of Growth,{TIMEZONES[n % len(TIMEZONES)]}\n")


def child(args: list[str]) -> int:
    """Run one CLI command in this process and print its CPU time and peak RSS."""
    from engine.cli import main  # the CLI's own import cost is part of the figure

    # as in a terminal: a benchmark started in the background (`&`, CI) inherits SIGINT
    # ignored, and asyncio.run then installs no handler of its own (see runtime.with_runtime)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.process_time()
    code = main(args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"exit": code, "cpu_s": round(time.process_time() - start, 2),
                      "user_s": round(usage.ru_utime, 2),
                      "rss_mb": round(usage.ru_maxrss / 1024, 1)}), file=sys.stderr)
    return 0


def measure(directory: Path, args: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", *args], cwd=directory,
                          capture_output=True, text=True, env={**os.environ,
                                                               "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    report = json.loads(done.stderr.strip().splitlines()[-1])
    report["wall_s"] = round(wall, 2)
    report["stdout_tail"] = done.stdout.strip().splitlines()[-1:] or [""]
    return dict(report)


def run_size(rows: int, only: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_csv(directory / "big.csv", rows)
        (directory / "one.csv").write_text("linkedin_profile_url\n"
                                           "https://www.linkedin.com/in/seed-lead\n")
        (directory / "seq.yaml").write_text(MANIFEST.replace("CSV", "one.csv"))
        subprocess.run([sys.executable, "-m", "engine", "apply", "seq.yaml", "--no-run",
                        "--auto-approve"], cwd=directory, check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        out: dict[str, Any] = {"rows": rows}
        if only in (None, "import"):
            out["import"] = measure(directory, ["leads", "import", "big.csv", "--sequence",
                                                "bench"])
        if only in (None, "plan"):
            plan_dir = directory / "plan"
            plan_dir.mkdir()
            (plan_dir / "seq.yaml").write_text(MANIFEST.replace("CSV", "../big.csv"))
            out["plan"] = measure(plan_dir, ["plan", "seq.yaml", "--skip-bad-rows"])
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--only", choices=("import", "plan"), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    results = [run_size(n, args.only) for n in sizes]
    last = results[-1]
    kinds = [k for k in ("import", "plan") if k in last]
    ok = all(last[k]["cpu_s"] <= BUDGET_S and last[k]["rss_mb"] <= BUDGET_MB
             for k in kinds) if sizes[-1] >= 1_000_000 else True
    if args.json:
        print(json.dumps({"results": results, "ok": ok}, indent=2))
    else:
        for r in results:
            for kind in kinds:
                m = r[kind]
                print(f"{kind:>6} {r['rows']:>9,} rows: {m['cpu_s']:6.2f} s CPU, "
                      f"{m['wall_s']:6.2f} s wall, {m['rss_mb']:7.1f} MB peak RSS "
                      f"(exit {m['exit']}) {m['stdout_tail'][0][:90]}")
        print("budget (1M rows: 20 s, 500 MB):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
