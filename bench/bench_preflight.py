# ruff: noqa: E501  (the manifests are written as a user writes them)
"""Benchmark: preflight of a leads file (issue 14, "Speed").

Run: ``python bench/bench_preflight.py [--rows 100000] [--json]``. It writes a sequence with 4
templated texts (a connection note and three messages, with spintax and ``default`` filters)
and a leads CSV of ``--rows`` rows (first names from 500, companies from 20,000, 40 pain points,
every 97th row with an empty pain point, every 101st with a long company name), then reports
the CPU time (``time.process_time``) of:

* reading the CSV (``read_leads``: URL normalization, dedupe);
* preflight: every text of every step rendered for every row (``RowChecker.check_file``), and
  how many distinct renderings that took (each text once per distinct input);
* ``seqrun plan``'s whole sequence plan (``make_plan`` on an empty store: read, preflight,
  enrollment planning).

Exit 1 when preflight of 100,000 rows takes more than ``--budget-s`` (default 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.apply.plan import make_plan  # noqa: E402
from engine.apply.preflight import RowChecker  # noqa: E402
from engine.manifest.leads import read_leads  # noqa: E402
from engine.manifest.loader import load  # noqa: E402
from engine.model import Sequence  # noqa: E402
from engine.store import Store  # noqa: E402

MANIFEST = """\
apiVersion: seqrun/v1
kind: Sequence
metadata: {name: bench-preflight}
spec:
  provider: edges
  identities: [ident-alice, ident-bob]
  leads: {csv: leads.csv}
  steps:
    - id: connect
      action: connect
      with:
        note: "{Hi|Hello} {{ lead.first_name }}, I follow {{ lead.company_name }} and would like to connect."
      "on": {ALREADY_CONNECTED: intro}
    - id: accepted
      wait_for: connection_accepted
      timeout: 14d
      on_timeout: completed
    - id: intro
      action: send_message
      with:
        text: "Thanks {{ lead.first_name | default('there') }}! {Curious|Wondering} how {{ lead.company_name }} handles {{ lead.pain_point }}."
    - id: breather
      wait: 3d
    - id: follow_up
      action: send_message
      with:
        text: "Quick follow-up, {{ lead.first_name | default('there') }}: {worth|open to} a call about {{ lead.pain_point }}?"
    - id: last
      action: send_message
      with:
        text: "Last note from me, {{ lead.first_name | default('there') }}. {Cheers|Best}!"
      next: completed
"""


def write_inputs(directory: Path, rows: int) -> Path:
    """The manifest and its leads CSV in ``directory``; returns the manifest's path."""
    (directory / "seq.yaml").write_text(MANIFEST)
    lines = ["linkedin_profile_url,first_name,company_name,pain_point"]
    for i in range(rows):
        company = f"Company {i % 20_000}" + (" Worldwide Holdings" * 16 if i % 101 == 0 else "")
        pain = "" if i % 97 == 0 else f"pain point {i % 40}"
        lines.append(f"https://www.linkedin.com/in/lead-{i:07d},Name{i % 500},{company},{pain}")
    (directory / "leads.csv").write_text("\n".join(lines) + "\n")
    return directory / "seq.yaml"


def timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--budget-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (seq,) = load([write_inputs(directory, args.rows)])
        assert isinstance(seq, Sequence) and seq.leads.csv is not None
        csv_path = seq.leads.csv
        read_s, leads = timed(lambda: read_leads(csv_path))
        checker = RowChecker(seq)
        check_s, failing = timed(lambda: checker.check_file(leads))
        renders = sum(len(t.seen) for t in checker.texts)
        store = Store.open(None, directory / ".seqrun")
        plan_s, plan = timed(lambda: asyncio.run(make_plan([seq], store=store)))
        store.close()
    report = {
        "rows": args.rows,
        "texts": len(checker.texts),
        "read_csv_s": round(read_s, 2),
        "preflight_s": round(check_s, 2),
        "preflight_us_per_row": round(check_s / args.rows * 1e6, 1),
        "distinct_renderings": renders,
        "failing_rows": len(failing),
        "plan_s": round(plan_s, 2),
        "plan_enroll": len(plan.sequences[0].enroll),
        "plan_bad_rows": len(plan.sequences[0].bad_rows),
    }
    budget = args.budget_s * args.rows / 100_000
    report["budget_s"] = budget
    report["ok"] = check_s <= budget
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>22}: {value}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
