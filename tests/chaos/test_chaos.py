"""The short chaos run for CI: `seqrun apply`/`run` SIGKILLed at random instants against a
served sandbox, then the store is compared with the sandbox's ground truth (see harness.py;
the long run is `python -m tests.chaos.harness --kills 100`, recorded in docs/reliability.md)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.chaos.harness import run_chaos

SEED = int(os.environ.get("SEQRUN_CHAOS_SEED", "7"))


@pytest.mark.timeout(600)
def test_kills_mid_run_lose_nothing_and_send_nothing_twice(tmp_path: Path) -> None:
    report = run_chaos(tmp_path, leads=300, identities=12, kills=6, seed=SEED)
    summary = asdict(report)
    assert report.kills >= 5, summary
    assert report.duplicates == [], summary
    assert report.lost == [], summary
    assert report.phantom == [], summary
    assert report.wrong_route == [], summary
    assert report.restarts_refused == 0, summary
    ended = report.terminals.get("completed", 0) + report.terminals.get("removed", 0)
    assert ended + len(report.waiting) == 300, summary
