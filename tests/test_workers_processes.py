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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.store import Store
from engine.store import tables as t
from engine.vocab import TERMINALS
from tests.chaos.harness import ChaosReport, Served, _env, verify, write_inputs
from tests.conftest import postgres_schema

IDENTITIES = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """'' (the state directory's SQLite file) or a PostgreSQL URL on a fresh schema, set as
    SEQRUN_DATABASE_URL for this process (the harness's checks open the store with it)."""
    if request.param == "sqlite":
        yield ""
        return
    with postgres_schema("p") as url:
        monkeypatch.setenv("SEQRUN_DATABASE_URL", url)
        yield url


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


# ---- the test at full size -------------------------------------------------------------

FLEET_LEADS, FLEET_IDENTITIES = 1000, 20


FLEET_SEQUENCE = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: chaos
spec:
  provider: edges
  identities: [{identities}]
  leads:
    csv: leads.csv
  steps:
    - id: visit
      action: visit_profile
    - id: check
      action: check_connection
      next: hello
      "on":
        NOT_CONNECTED: completed
        INVITATION_PENDING: completed
    - id: hello
      action: send_message
      with:
        text: "Hello {{{{ lead.first_name }}}}, we are already connected."
      next: completed
"""


def _fleet_inputs(work: Path) -> None:
    """The chaos world at 1,000 leads over 20 identities, faults off, 10 ms a call, every
    lead already connected (5 % inaccessible), and a campaign that fits an identity's smart
    limits of the day (50 leads each: 50 visits of 80, 50 messages of 50): visit (an
    inaccessible profile is removed), check the connection, message (invitations, 25 a day,
    would hold leads to tomorrow on the real clock)."""
    write_inputs(work, leads=FLEET_LEADS, identities=FLEET_IDENTITIES, seed=13, latency=0.01)
    world = work / "world.yaml"
    text = world.read_text()
    for knob in ("rate_429: 0.02", "rate_5xx: 0.01", "rate_timeout: 0.01"):
        text = text.replace(knob, knob.split(":")[0] + ": 0.0")
    world.write_text(text.replace("already_connected_fraction: 0.15",
                                  "already_connected_fraction: 1.0"))
    idents = ", ".join(f"ident-{i:02d}" for i in range(FLEET_IDENTITIES))
    (work / "chaos.yaml").write_text(FLEET_SEQUENCE.format(identities=idents))


def _one_worker_funnel(work: Path) -> tuple[dict[str, object], Counter[str]]:
    """The reference: the same campaign on the same scenario and seed, one runner
    (`seqrun simulate`, the embedded sandbox). The funnel (final states, by identity) and the
    invitations and messages it delivered (from the store it kept)."""
    keep = work / "reference"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQRUN_")}
    done = subprocess.run([sys.executable, "-m", "engine", "simulate", "chaos.yaml",
                           "--scenario", "world.yaml", "--until", "+1d", "--keep", str(keep),
                           "-o", "json"], cwd=work, env=env, capture_output=True, check=True)
    (seq,) = json.loads(done.stdout)["status"]["sequences"]
    store = Store.open(f"sqlite:///{keep / 'state.db'}", keep)
    try:
        sent = Counter(a.action for a in store.actions()
                       if a.status == "done" and a.action in ("connect", "send_message"))
    finally:
        store.close()
    return {"funnel": seq["funnel"], "by_identity": seq["by_identity"]}, sent


def _cli(args: list[str], work: Path, env: dict[str, str]) -> bytes:
    """`seqrun ARGS` on the state directory, to its end; its stdout."""
    return subprocess.run([sys.executable, "-m", "engine", *args, "--state-dir",
                           str(work / "state")], cwd=work, env=env, capture_output=True,
                          check=True).stdout


def _open_leads(work: Path) -> int:
    s = _store(work)
    try:
        return sum(1 for e in s.enrollments() if e.state not in TERMINALS)
    finally:
        s.close()


def _leases(work: Path) -> dict[str, tuple[str | None, object, object]]:
    """identity -> (worker, acquired_at, expires_at) of every lease row."""
    s = _store(work)
    try:
        with s.transaction() as c:
            le = t.identity_leases
            return {str(r.identity): (r.worker, r.acquired_at, r.expires_at)
                    for r in c.execute(sa.select(le))}
    finally:
        s.close()


def _worker_of(work: Path, pid: int) -> tuple[str, tuple[str, ...]] | None:
    s = _store(work)
    try:
        mine = [w for w in s.live_workers() if w.pid == pid]
        return (mine[0].id, mine[0].identities) if mine else None
    finally:
        s.close()


@pytest.mark.timeout(600)
def test_a_fleet_of_workers_runs_1000_leads_as_one_worker_would(
    database: str, tmp_path: Path
) -> None:
    """PostgreSQL: three `seqrun run` processes (SQLite: two) on one store against the served
    sandbox, 1,000 leads over 20 identities. One is SIGKILLed mid-tick: its identities go on
    in the others before its leases would have expired (a dead process of this host is
    reaped at once). A worker added mid-run takes its share (joined under the kill switch,
    under which leases are kept, so that the campaign cannot end before it arrives). The
    sandbox's ground truth: no identity ever had two calls being answered at once, nothing
    delivered twice, no lead lost or misrouted, and the same funnel as one runner on the same
    scenario and seed (every draw of the world is keyed by identity and profile, so call
    order does not change it)."""
    work = tmp_path
    _fleet_inputs(work)
    reference, sent_by_one = _one_worker_funnel(work)
    served = Served(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = _env(served, work)
        env["SEQRUN_LEASE_TTL"] = "8"
        if database:
            env["SEQRUN_DATABASE_URL"] = database
        applied = _seqrun(["apply", "chaos.yaml", "--auto-approve", "--no-run"], work, env,
                          "apply")
        assert applied.wait() == 0, _errors(work)
        first = 3 if database else 2
        run = ["run", "--poll-interval", "0.2", "-o", "json"]
        procs = [_seqrun(run, work, env, f"w{i}") for i in range(first)]
        names = {p.pid: f"w{i}" for i, p in enumerate(procs)}
        victim = procs[-1]

        def victim_acts() -> bool:  # it holds identities and has called for them
            mine = _worker_of(work, victim.pid)
            if not mine or not mine[1]:
                return False
            s = _store(work)
            try:
                return any(a.identity in mine[1] and a.status == "done" for a in s.actions())
            finally:
                s.close()

        _wait("the victim to act", victim_acts, procs, work)
        found = _worker_of(work, victim.pid)
        assert found is not None
        victim_id = found[0]
        # its leases now (renewed later: later still; released later: taken earlier still)
        expiry = {i: until for i, (w, _, until) in _leases(work).items() if w == victim_id}
        held = sorted(expiry)
        assert held
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        procs.remove(victim)
        # the kill switch holds the campaign (leases are still kept under it) so that leads
        # are left for the newcomer: 10 ms calls would end it before a process starts
        _cli(["pause", "--all"], work, env)
        assert _open_leads(work) > FLEET_LEADS // 4

        def taken_over() -> bool:
            leases = _leases(work)
            return all(leases[i][0] not in (None, victim_id) for i in held)

        _wait("the victim's identities to be taken over", taken_over, procs, work)
        leases = _leases(work)
        for identity in held:  # taken within the lease time the victim had left
            assert leases[identity][1] < expiry[identity], (identity, leases[identity])

        newcomer = _seqrun(run, work, env, "newcomer")
        names[newcomer.pid] = "newcomer"
        procs.append(newcomer)
        fair = FLEET_IDENTITIES // len(procs)
        _wait("the newcomer's share", lambda: len((_worker_of(work, newcomer.pid) or
                                                   ("", ()))[1]) >= fair, procs, work)
        _cli(["resume", "--all"], work, env)
        _wait("every lead to end", lambda: _open_leads(work) == 0, procs, work)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        summaries = []
        for p in procs:
            assert p.wait(60) == 0, _errors(work)
            summaries.append(json.loads((work / f"{names[p.pid]}.out").read_text())["run"])
        assert summaries[-1]["actions"] > 0  # the newcomer called for its share
        assert set(held) <= {i for s in summaries for i in s["taken_over"]}

        assert served.get("/overlaps") == []  # one identity, one call at a time
        report = ChaosReport(seed=13, leads=FLEET_LEADS, identities=FLEET_IDENTITIES)
        verify(work, served, report)
        # no duplicate, nothing lost, phantom or misrouted (the lists, not the long report)
        assert report.ok, (report.duplicates, report.lost, report.phantom, report.wrong_route)
        assert report.unverified == 0  # a visit in flight at the kill is made again
        assert not report.waiting, report
        status = _cli(["status", "-o", "json"], work, env)
        (seq,) = json.loads(status)["sequences"]
        # the same funnel as one worker
        assert {"funnel": seq["funnel"], "by_identity": seq["by_identity"]} == reference
        sent = Counter(d["kind"] for d in served.get("/deliveries"))
        assert (sent["invite"], sent["message"]) == (0, sent_by_one["send_message"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        served.stop()
