"""Benchmark: validate + compile large and many manifests (issue 3, "Speed").

Run: ``python bench/bench_compile.py`` (add ``--json`` for machine output). It writes generated
manifests to a temporary directory, then reports:

* a 500-step sequence: load (parse + schema + lint + build) and compile times;
* a directory of 200 manifests (sequences, workflows, schedules): time per manifest;
* 5,000 vs 500 steps: the ratio of compile time (and of load and lint time). Linear code gives
  about 10x; the budget is 12x.

Timings are the best CPU time (``time.process_time``) of several runs with the garbage
collector paused, like ``timeit``, so that neither other processes on a shared machine nor one
collection of the whole heap pass for quadratic work.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.compile.machine import compile_sequence, compile_workflow  # noqa: E402
from engine.manifest.lint import lint  # noqa: E402
from engine.manifest.loader import load  # noqa: E402
from engine.model import Sequence, Workflow  # noqa: E402

RATIO_BUDGET = 12.0
LEADS = "linkedin_profile_url,first_name,company_name,title\nhttps://www.linkedin.com/in/a,A,B,C\n"


def sequence_yaml(name: str, n_steps: int) -> str:
    """A lint-clean sequence of ``n_steps`` steps: connect, acceptance gate, then messages and
    waits, with a branch every 10 steps looping back through a wait."""
    lines = [
        "apiVersion: seqrun/v1",
        "kind: Sequence",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  provider: edges",
        "  identities: [ident-alice, ident-bob]",
        "  leads:",
        "    csv: leads.csv",
        "  window: {timezone: lead, fallback_timezone: Europe/Paris, hours: '09:00-18:00'}",
        "  limits: {visit: 60, connect: 20, message: 40}",
        "  steps:",
        "    - id: connect",
        "      action: connect",
        "      with: {note: 'Hi {{ lead.first_name }}, saw {{ lead.company_name }}.'}",
        "      on: {ALREADY_CONNECTED: s2}",
        "    - id: accepted",
        "      wait_for: connection_accepted",
        "      timeout: 14d",
        "      on_timeout: removed",
    ]
    for k in range(2, n_steps):
        lines.append(f"    - id: s{k}")
        if k % 10 == 0:
            lines += [
                "      branch:",
                f"        - if: \"lead.company_name == 'Acme {k}'\"",
                f"          goto: s{k - 1}",
            ]
        elif k % 2:
            lines.append("      wait: 1d")
        else:
            lines += [
                "      action: send_message",
                '      with: {text: \'{Hi|Hello} {{ lead.first_name | default("there") }}, '
                f"note {k} about {{{{ lead.title }}}}.'}}",
                "      on: {NOT_CONNECTED: connect}",
            ]
    return "\n".join(lines) + "\n"


def workflow_yaml(name: str) -> str:
    return f"""apiVersion: seqrun/v1
kind: Workflow
metadata:
  name: {name}
spec:
  provider: linkedapi
  steps:
    action: st.openPersonPage
    with: {{personUrl: "https://www.linkedin.com/in/{name}", basicInfo: true}}
    then:
      - action: st.checkConnectionStatus
      - action: st.sendConnectionRequest
        with: {{note: "Hello from {name}"}}
"""


def schedule_yaml(name: str) -> str:
    return f"""apiVersion: seqrun/v1
kind: Schedule
metadata:
  name: {name}
spec:
  provider: edges
  action: linkedin-extract-messages
  identities: [ident-alice]
  cron: "0 8-18/2 * * 1-5"
  timezone: Europe/Paris
  parameters: {{sync_mode: incremental}}
"""


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Best CPU time (process_time: other processes on a shared machine do not count) of
    ``repeat`` runs with the GC paused (collected between runs)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        finally:
            gc.enable()
    return min(times)


def compile_all(manifests: list[Any]) -> None:
    for m in manifests:
        if isinstance(m, Sequence):
            compile_sequence(m)
        elif isinstance(m, Workflow):
            compile_workflow(m)


def paired_best(
    small: Callable[[], Any], large: Callable[[], Any], repeat: int
) -> tuple[float, float]:
    """Best times of ``small`` and ``large``, run alternately so both see the same machine load."""
    a, b = [], []
    for _ in range(repeat):
        a.append(best_of(small, 1))
        b.append(best_of(large, 1))
    return min(a), min(b)


def measure_steps(tmp: Path, sizes: tuple[int, int], repeat: int) -> dict[int, dict[str, float]]:
    seqs: dict[int, Sequence] = {}
    paths: dict[int, Path] = {}
    for n in sizes:
        paths[n] = tmp / f"seq-{n}.yaml"
        paths[n].write_text(sequence_yaml(f"big-{n}", n))
        seq = load([paths[n]])[0]
        assert isinstance(seq, Sequence) and len(seq.steps) == n
        seqs[n] = seq
    small, large = sizes
    out: dict[int, dict[str, float]] = {small: {}, large: {}}
    # compile first: later jobs fragment the heap, which scatters the large machine's objects.
    jobs: dict[str, tuple[Callable[[int], Any], int]] = {
        "compile_s": (lambda n: compile_sequence(seqs[n]), repeat * 5),
        "lint_s": (lambda n: lint(seqs[n]), repeat),
        "validate_compile_s": (lambda n: compile_all(load([paths[n]])), repeat),
    }
    for key, (job, runs) in jobs.items():
        out[small][key], out[large][key] = paired_best(
            functools.partial(job, small), functools.partial(job, large), runs
        )
    return out


class _Item:
    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b


def reference(n_steps: int) -> None:
    """A workload linear by construction, of similar allocation density as compile (about 8
    transitions per step): its ratio is what the machine's memory hierarchy alone gives."""
    table = {}
    for i in range(n_steps * 8):
        table[(str(i), "ok")] = _Item(i, i)


def measure_directory(tmp: Path, count: int, repeat: int) -> dict[str, float]:
    folder = tmp / "many"
    folder.mkdir()
    (folder / "leads.csv").write_text(LEADS)
    for i in range(count):
        if i % 4 == 3:
            text = workflow_yaml(f"wf-{i}")
        elif i % 4 == 2:
            text = schedule_yaml(f"sched-{i}")
        else:
            text = sequence_yaml(f"seq-{i}", 12 + i % 20)
        (folder / f"m{i:03d}.yaml").write_text(text)
    assert len(load([folder])) == count
    total = best_of(lambda: compile_all(load([folder])), repeat)
    return {"manifests": count, "total_s": total, "per_manifest_ms": 1000 * total / count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (x5 for compile)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "leads.csv").write_text(LEADS)
        by_size = measure_steps(tmp, (500, 5000), args.repeat)
        small, large = by_size[500], by_size[5000]
        many = measure_directory(tmp, 200, args.repeat)
    ratios = {k.removesuffix("_s"): large[k] / small[k] for k in small}
    ref_small, ref_large = paired_best(lambda: reference(500), lambda: reference(5000), 10)
    ratios["reference"] = ref_large / ref_small
    result = {
        "steps_500": small,
        "steps_5000": large,
        "ratio_5000_vs_500": ratios,
        "directory_200": many,
        "budget": RATIO_BUDGET,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        row = "validate+compile {validate_compile_s:.3f}s  (lint {lint_s:.3f}s, "
        row += "compile {compile_s:.3f}s)"
        print("500-step sequence:   " + row.format(**small))
        print("5,000-step sequence: " + row.format(**large))
        print(
            "ratio 5,000/500:     "
            + "  ".join(f"{k} {v:.1f}x" for k, v in ratios.items())
            + f"  (budget {RATIO_BUDGET:.0f}x for compile; reference = a linear workload)"
        )
        print(
            "200 manifests:       {total_s:.3f}s validate+compile, "
            "{per_manifest_ms:.2f} ms per manifest".format(**many)
        )
    return 0 if ratios["compile"] <= RATIO_BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
