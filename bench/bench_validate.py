"""Benchmark: ``seqrun validate`` of a directory of 1,000 typical manifests (issue 14, "Speed").

Run: ``python bench/bench_validate.py [--count 1000] [--repeat 3] [--baseline DIR] [--json]``.

The manifests are the shipped ``sequences/*.yaml`` (every kind but the one-per-repository
Policy) copied round-robin under distinct names, with the leads files they name, into a
temporary directory; the command runs in its own process (start-up and imports included, as
a user or a pre-commit hook sees it) and its CPU time is read from ``RUSAGE_CHILDREN``, best of
``--repeat``. ``--baseline DIR`` runs the same command with ``DIR`` first on ``PYTHONPATH``
(e.g. ``git archive OLD engine schemas | tar -x -C DIR``), alternating with this checkout so both
see the same moments of a shared box, and prints the ratio. Exit 1 above the budget (3 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 3.0


def write_manifests(folder: Path, count: int) -> None:
    """``count`` manifests from the shipped ones, each renamed ``NAME-i`` so none collide."""
    shipped = sorted(p for p in (ROOT / "sequences").glob("*.yaml") if "policy" not in p.name)
    for extra in (ROOT / "sequences").iterdir():
        if extra.suffix in (".csv", ".txt"):
            shutil.copy(extra, folder / extra.name)
    name = re.compile(r"(?m)^(metadata:\n(?:  .*\n)*?  name: )(\S+)")
    for i in range(count):
        source = shipped[i % len(shipped)]
        text = name.sub(rf"\g<1>\g<2>-{i}", source.read_text(), count=1)
        (folder / f"{i:04d}-{source.name}").write_text(text)


def cpu_of(folder: Path, code: Path | None) -> float:
    """CPU seconds (user + system) of one ``seqrun validate folder`` process."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "validate", str(folder)],
        env=env, cwd=folder, capture_output=True, text=True, check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"validate failed ({done.returncode}): {done.stdout[-500:]}"
                         f"{done.stderr[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a directory holding the code to compare with (engine/, schemas/)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_manifests(folder, args.count)
        here: list[float] = []
        base: list[float] = []
        for _ in range(args.repeat):
            here.append(cpu_of(folder, None))
            if args.baseline is not None:
                base.append(cpu_of(folder, args.baseline.resolve()))
    result: dict[str, float | int] = {"manifests": args.count, "cpu_s": min(here),
                                      "per_manifest_ms": 1000 * min(here) / args.count}
    if base:
        result["baseline_cpu_s"] = min(base)
        result["baseline_over_now"] = min(base) / min(here)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        line = (f"validate of {args.count} manifests: {min(here):.2f} s CPU "
                f"({result['per_manifest_ms']:.2f} ms a manifest; budget {BUDGET_S} s)")
        if base:
            line += f"; baseline {min(base):.2f} s ({min(base) / min(here):.2f}x)"
        print(line)
    return 0 if min(here) <= BUDGET_S * args.count / 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
