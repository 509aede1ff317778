"""`seqrun run` worker processes on one store against the served sandbox (`seqrun sandbox
serve`, real clock): `seqrun run --workers 2` and one more `seqrun run` share a campaign's
identities; the lone one is SIGKILLed mid-run and its identities go on in the others. The
sandbox's ground truth then shows no duplicate, no lost lead, no phantom, no wrong route
(the chaos harness's checks). On SQLite, and on PostgreSQL when SEQRUN_TEST_DATABASE_URL
is set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.store import Store
from engine.vocab import TERMINALS
from tests.chaos.harness import ChaosReport, Served, _env, verify, write_inputs

PG_URL = os.environ.get("SEQRUN_TEST_DATABASE_URL")
IDENTITIES = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """'' (the state directory's SQLite file) or a PostgreSQL URL on a fresh schema, set as
    SEQRUN_DATABASE_URL for this process (the harness's checks open the store with it)."""
    if request.param == "sqlite":
        yield ""
        return
    if not PG_URL:
        pytest.skip("SEQRUN_TEST_DATABASE_URL not set")
    schema = f"p_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    monkeypatch.setenv("SEQRUN_DATABASE_URL", url)
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _seqrun(args: list[str], work: Path, env: dict[str, str], name: str,
            ) -> subprocess.Popen[bytes]:
    with (work / f"{name}.err").open("wb") as err, (work / f"{name}.out").open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "engine", *args, "--state-dir",
                                 str(work / "state")], cwd=work, env=env, stdout=out,
                                stderr=err)


def _store(work: Path) -> Store:
    return Store.open(None, work / "state")


def _wait(what: str, ready: object, procs: list[subprocess.Popen[bytes]], work: Path) -> None:
    """Poll ``ready()`` until true; a hang guard, not a measurement."""
    deadline = time.monotonic() + 240
    while not ready():  # type: ignore[operator]
        for p in procs:
            assert p.poll() is None, f"a worker exited: {_errors(work)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {_errors(work)}"
        time.sleep(0.2)


def _errors(work: Path) -> str:
    return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-1500:]}"
                     for p in sorted(work.glob("*.err")))


def test_worker_processes_share_a_campaign_and_survive_a_sigkill(
    database: str, tmp_path: Path
) -> None:
    work = tmp_path
    write_inputs(work, leads=60, identities=IDENTITIES, seed=13, latency=0.02)
    world = work / "world.yaml"  # latency only: a retry's backoff (minutes) would not end
    text = world.read_text()
    for knob in ("rate_429: 0.02", "rate_5xx: 0.01", "rate_timeout: 0.01"):
        text = text.replace(knob, knob.split(":")[0] + ": 0.0")
    world.write_text(text)
    served = Served(work)
    try:
        env = _env(served, work)
        env["SEQRUN_LEASE_TTL"] = "3"
        if database:
            env["SEQRUN_DATABASE_URL"] = database
        applied = _seqrun(["apply", str(work / "chaos.yaml"), "--auto-approve", "--no-run"],
                          work, env, "apply")
        assert applied.wait() == 0, _errors(work)
        pair = _seqrun(["run", "--workers", "2", "--poll-interval", "0.2"], work, env, "pair")
        lone = _seqrun(["run", "--poll-interval", "0.2"], work, env, "lone")
        procs = [pair, lone]

        def lone_acted() -> bool:  # the lone worker holds identities and called for them
            s = _store(work)
            try:
                mine = [w for w in s.live_workers() if w.pid == lone.pid]
                return bool(mine and mine[0].identities and any(
                    a.identity in mine[0].identities for a in s.actions()))
            finally:
                s.close()

        _wait("the lone worker to act", lone_acted, procs, work)
        lone.send_signal(signal.SIGKILL)  # mid-run: its calls in flight, its leases held
        lone.wait()
        procs.remove(lone)

        def all_terminal() -> bool:
            s = _store(work)
            try:
                return all(e.state in TERMINALS for e in s.enrollments())
            finally:
                s.close()

        _wait("every lead to end", all_terminal, procs, work)
        status = subprocess.run([sys.executable, "-m", "engine", "status", "-o", "json",
                                 "--state-dir", str(work / "state")], cwd=work, env=env,
                                capture_output=True, check=True)
        workers = json.loads(status.stdout)["workers"]
        assert len(workers) == 2 and lone.pid not in {w["pid"] for w in workers}
        held = sorted(i for w in workers for i in w["identities"])
        assert held == [f"ident-{i:02d}" for i in range(IDENTITIES)]  # the lone's taken over
        pair.send_signal(signal.SIGTERM)
        assert pair.wait(60) == 0, _errors(work)
        report = ChaosReport(seed=13, leads=60, identities=IDENTITIES)
        verify(work, served, report)
        assert report.ok, report
        assert report.deliveries > 0 and not report.waiting
        s = _store(work)
        try:
            assert s.live_workers() == []  # the pair retired on SIGTERM; the lone was reaped
        finally:
            s.close()
    finally:
        served.stop()
