"""Chaos harness: `seqrun run` SIGKILLed at random instants against a served sandbox.

    python -m tests.chaos.harness --leads 300 --identities 12 --kills 100 --seed 1

The sandbox is served on loopback (real clock, latency on every call so kills land mid-call,
some 429/5xx/timeouts); `seqrun apply` then `seqrun run` run as subprocesses on one state
directory and are killed with SIGKILL at random instants, then restarted. At the end a clean
run settles what is left and the store is compared with the sandbox's ground truth:

* duplicates: deliveries of the same kind to the same person by the same identity beyond one;
* lost: leads not in the terminal their world implies (inaccessible -> removed, everyone else
  -> completed), unless they are waiting for a due time ahead (a retry's backoff after a
  provider error): those are counted as waiting, with their reason;
* phantom: actions the store records as delivered (status done, an effect kind) that the
  sandbox never received;
* wrong route: an already-connected lead must be messaged (the ALREADY_CONNECTED route), a
  lead who was not must be invited and never messaged.

The seed drives the world and the kill instants; it is printed so a failing run can be
replayed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from engine.store import Store
from engine.vocab import TERMINALS

ROOT = Path(__file__).resolve().parents[2]

SEQUENCE = """\
apiVersion: seqrun/v1
kind: Sequence
metadata:
  name: chaos
spec:
  provider: edges
  identities: [{identities}]
  leads:
    csv: leads.csv
  limits:
    visit: 80
    connect: 25
    message: 50
  steps:
    - id: visit
      action: visit_profile
    - id: connect
      action: connect
      with:
        note: "Hi {{{{ lead.first_name }}}}, chaos-tested note."
      on:
        ALREADY_CONNECTED: hello
        INVITATION_PENDING: completed
      next: completed
    - id: hello
      action: send_message
      with:
        text: "Hello {{{{ lead.first_name }}}}, we are already connected."
      next: completed
"""

SCENARIO = """\
seed: {seed}
identities:
{identities}
profiles:
  csv: leads.csv
behaviour:
  accept_probability: 0.0
  reply_probability: 0.0
  already_connected_fraction: 0.15
  writes_first_fraction: 0.0
  inaccessible_fraction: 0.05
faults:
  latency_s: {latency}
  rate_429: 0.02
  rate_5xx: 0.01
  rate_timeout: 0.01
  retry_after_s: 1
"""

# delivery kinds of the sandbox an action of the store stands for
EFFECT_KIND = {"connect": "invite", "send_message": "message", "visit_profile": "visit"}


@dataclass
class ChaosReport:
    seed: int
    leads: int
    identities: int
    kills: int = 0
    kills_in_apply: int = 0
    restarts_refused: int = 0
    deliveries: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    wrong_route: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    unverified: int = 0
    terminals: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.phantom or self.wrong_route)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_inputs(work: Path, *, leads: int, identities: int, seed: int, latency: float) -> None:
    idents = [f"ident-{i:02d}" for i in range(identities)]
    rows = ["linkedin_profile_url,full_name,first_name,company_name,timezone"]
    rows += [f"https://www.linkedin.com/in/chaos-{seed}-{i:05d},Lead {i},Lead{i},Co,"
             for i in range(leads)]
    (work / "leads.csv").write_text("\n".join(rows) + "\n")
    (work / "chaos.yaml").write_text(SEQUENCE.format(identities=", ".join(idents)))
    ident_yaml = "\n".join(f"  - {{uid: {u}, name: {u}, provider: edges}}" for u in idents)
    (work / "world.yaml").write_text(
        SCENARIO.format(seed=seed, identities=ident_yaml, latency=latency))


class Served:
    """`seqrun sandbox serve` in a subprocess, on a free loopback port."""

    def __init__(self, work: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "sandbox", "serve", "--port", str(self.port),
             "--scenario", str(work / "world.yaml")],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # start-up only: not a measurement
        while True:
            try:
                httpx.get(self.base + "/_sandbox/clock", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.1)

    def get(self, path: str, **params: str) -> Any:
        return httpx.get(self.base + "/_sandbox" + path, params=params, timeout=30).json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _env(served: Served, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SEQRUN_", "EDGES_", "LINKEDAPI_", "CONNECTSAFELY_"))}
    env.update({"SEQRUN_EDGES_BASE_URL": served.base + "/v1", "EDGES_API_KEY": "sbx-edges-key",
                "PYTHONPATH": str(ROOT),
                # the served sandbox answers within its latency: a call lost to a kill has
                # landed (or never will) after a few seconds, not the default 5 minutes
                "SEQRUN_SETTLE_AFTER": "5"})
    return env


def _seqrun(args: list[str], work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`seqrun ARGS` on the state directory; its stderr goes to ``work/stderr.txt``."""
    with (work / "stderr.txt").open("wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "engine", *args, "--state-dir",
                                 str(work / "state")], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def _kill_after(proc: subprocess.Popen[bytes], delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` s; False when it had already exited."""
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _refused(proc: subprocess.Popen[bytes], work: Path) -> bool:
    err = (work / "stderr.txt").read_text(errors="replace")
    return proc.returncode == 1 and "lock is held" in err


def drive(work: Path, served: Served, report: ChaosReport, *, kills: int, rng: random.Random,
          apply_kills: int) -> None:
    env = _env(served, work)
    manifest = str(work / "chaos.yaml")
    for _ in range(apply_kills):  # kills inside apply (enrollment, the first due steps)
        if _kill_after(_seqrun(["apply", manifest, "--auto-approve"], work, env),
                       rng.uniform(0.8, 4.0)):
            report.kills_in_apply += 1
    while True:  # an apply that finishes
        proc = _seqrun(["apply", manifest, "--auto-approve"], work, env)
        proc.wait()
        if proc.returncode == 0:
            break
        if _refused(proc, work):
            report.restarts_refused += 1
            time.sleep(1)
            continue
        raise RuntimeError(f"apply failed: {(work / 'stderr.txt').read_text()[-2000:]}")
    while report.kills < kills:
        proc = _seqrun(["run", "--poll-interval", "0.5"], work, env)
        if _kill_after(proc, rng.uniform(0.8, 4.0)):  # start-up takes ~1 s
            report.kills += 1
        elif _refused(proc, work):
            report.restarts_refused += 1
            time.sleep(1)


def settle(work: Path, served: Served, *, rounds: int = 40) -> None:
    """Clean `run --once` ticks until no lead is left in a step (or ``rounds`` ticks)."""
    env = _env(served, work)
    for _ in range(rounds):
        proc = _seqrun(["run", "--once"], work, env)
        proc.wait()
        if _open_leads(work) == 0:
            return
        time.sleep(1.0)  # retries back off on the real clock


def _open_leads(work: Path) -> int:
    store = Store.open(None, work / "state")
    try:
        return sum(1 for e in store.enrollments() if e.state not in TERMINALS)
    finally:
        store.close()


def verify(work: Path, served: Served, report: ChaosReport) -> None:

    deliveries = served.get("/deliveries")
    report.deliveries = len(deliveries)
    got = Counter((d["identity"], d["profile_url"], d["kind"]) for d in deliveries)
    report.duplicates = [{"identity": i, "profile_url": p, "kind": k, "count": n}
                         for (i, p, k), n in got.items() if n > 1 and k != "visit"]
    store = Store.open(None, work / "state")
    try:
        terminals: Counter[str] = Counter()
        now = datetime.now(UTC)
        for enr in store.enrollments():
            lead = store.get_lead(enr.lead_id)
            assert lead is not None
            terminals[enr.state] += 1
            _check_phantoms(store, enr, lead.profile_url, got, report)
            if enr.state not in TERMINALS and enr.next_due_at is not None and (
                enr.next_due_at > now
            ):  # a retry's backoff ahead: its end is not known yet
                report.waiting.append(f"{lead.profile_url} ({enr.identity}): {enr.state} until "
                                      f"{enr.next_due_at:%H:%M:%S} ({enr.last_error})")
                continue
            _check_end(served, enr, lead.profile_url, got, report)
        report.terminals = dict(terminals)
    finally:
        store.close()


def _check_end(served: Served, enr: Any, url: str, got: Counter[tuple[str, str, str]],
               report: ChaosReport) -> None:
    """The lead's terminal and what it was sent, against the world's truth."""
    truth = served.get("/relationship", identity=enr.identity, profile=url)
    accessible = truth.get("accessible", True) if isinstance(truth, dict) else True
    expected = "completed" if accessible else "removed"
    if enr.state != expected:
        report.lost.append(f"{url} ({enr.identity}): {enr.state}, expected {expected}")
    invited = got[(enr.identity, url, "invite")]
    messaged = got[(enr.identity, url, "message")]
    # nobody accepts in this world: connected now means connected before us
    want = (0, 1) if truth.get("relationship") == "connected" else (1, 0)
    if accessible and (invited, messaged) != want:
        report.wrong_route.append(
            f"{url} ({enr.identity}): {invited} invitation(s), {messaged} message(s), "
            f"expected {want[0]} and {want[1]}")


def _check_phantoms(store: Store, enr: Any, url: str, got: Counter[tuple[str, str, str]],
                    report: ChaosReport) -> None:
    """Every action the store records as delivered was received (unverified: counted)."""
    for action in store.actions(enrollment_id=enr.id):
        kind = EFFECT_KIND.get(action.action)
        if action.status != "done" or kind is None:
            continue
        if isinstance(action.response, dict) and action.response.get("unverified"):
            report.unverified += 1
            continue
        if got[(enr.identity, url, kind)] == 0:
            report.phantom.append(f"{url} ({enr.identity}): {action.action} recorded "
                                  f"done ({action.label or 'ok'}), never delivered")


def run_chaos(work: Path, *, leads: int, identities: int, kills: int, seed: int,
              apply_kills: int = 1, latency: float = 0.05) -> ChaosReport:
    work.mkdir(parents=True, exist_ok=True)
    write_inputs(work, leads=leads, identities=identities, seed=seed, latency=latency)
    report = ChaosReport(seed=seed, leads=leads, identities=identities)
    served = Served(work)
    try:
        drive(work, served, report, kills=kills, rng=random.Random(seed),
              apply_kills=apply_kills)
        settle(work, served)
        verify(work, served, report)
    finally:
        served.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--identities", type=int, default=12)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="seqrun-chaos-"))
    print(f"chaos: seed {args.seed}, state in {work}", file=sys.stderr)
    report = run_chaos(work, leads=args.leads, identities=args.identities, kills=args.kills,
                       seed=args.seed)
    print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
