"""`seqrun serve` for real: uvicorn on loopback, fed by the sandbox's own webhook deliveries,
and side by side with a runner on one SQLite store (WAL) without "database is locked"."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from engine.apply.workflows import run_workflow, workflow_record
from engine.cli import main
from engine.clock import VirtualClock
from engine.model import ActionStep
from engine.run.runner import Runner
from engine.sandbox import Sandbox
from engine.serve.config import SECRET_HEADER, ServeConfig
from engine.serve.server import make_server
from engine.store import Store
from engine.store.inbound import inbound_events, pending_inbound
from tests.test_apply_workflows_run import check_then_invite
from tests.test_run_runner import ID, Env, make_seq
from tests.test_sandbox_scenario import _free_port

EDGES = "edges-secret-0123456789abcdef"
LINKEDAPI = "linkedapi-token-0123456789abcdef"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[str]:
    """A receiver on loopback over the store in ``tmp_path``; its base URL."""
    store = Store.open(None, tmp_path)
    port = _free_port()
    server = make_server(store, ServeConfig(EDGES, LINKEDAPI), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
    assert not thread.is_alive()


async def test_the_sandbox_delivers_integration_webhooks_to_a_real_receiver(
    tmp_path: Path, receiver: str
) -> None:
    store = Store.open(None, tmp_path)
    async with httpx.AsyncClient(timeout=5) as outbound:
        sandbox = Sandbox.open(None, clock=VirtualClock(), callback_client=outbound)
        async with sandbox.client("inspect") as box:
            url = f"{receiver}/hooks/edges/integrations"
            # the right secret, a wrong one, none: only the first is recorded
            for headers in ({SECRET_HEADER: EDGES}, {SECRET_HEADER: "wrong-0123456789abcdef"},
                            {}):
                r = await box.post("integration-webhooks", json={"url": url, "headers": headers})
                assert r.status_code < 300, r.text
            assert (await box.post("auth", json={"identity": ID, "ok": False})).status_code < 300
            await box.post("tick")
            statuses = [c.get("http_status") for c in (await box.get("callbacks")).json()
                        if c.get("kind") == "integration"]
    assert sorted(statuses) == [200, 401, 401]
    (event,) = inbound_events(store)
    assert (event.kind, event.subject, event.payload["event"]) == ("integration", ID,
                                                                  "AUTH_EXPIRED")
    result = await Runner(store, {}, VirtualClock()).tick()
    assert result.paused_identities == [ID]
    ident = store.get_identity(ID)
    assert ident is not None and ident.status == "auth_expired"


async def test_serve_and_run_side_by_side_on_one_sqlite_store(
    tmp_path: Path, receiver: str
) -> None:
    """Callbacks POSTed from 4 threads (each twice) while a runner plays a campaign on the
    same file: every POST answered 200 (a locked store would be 503), no runner error."""
    env = Env(tmp_path, make_seq(steps=(ActionStep("visit", "visit_profile"),
                                        ActionStep("connect", "connect"))))
    eids = [env.lead(f"lead{i}") for i in range(30)]

    def post(i: int) -> int:
        body = {"callback_ref_uid": f"cbr-{i % 60}", "run": {"run_uid": f"run-{i}"},
                "data": []}
        with httpx.Client(base_url=receiver, timeout=30) as c:
            return c.post("/hooks/edges/callbacks", json=body,
                          headers={SECRET_HEADER: EDGES}).status_code

    runner = env.runner()
    with ThreadPoolExecutor(4) as pool:
        sent = pool.map(post, range(120))  # 60 callbacks, each delivered twice
        summary = await runner.run_until(env.clock.now() + timedelta(days=2),
                                         step=timedelta(minutes=30))
        codes = list(sent)
    await runner.tick()  # what arrived after the last tick
    assert codes == [200] * 120
    assert summary.actions == 60 and not summary.errors
    assert {env.state(e) for e in eids} == {"completed"}
    events = inbound_events(env.store)
    assert len(events) == 60
    assert pending_inbound(env.store) == []
    assert all(e.outcome == "ignored: no managed schedule runs this" for e in events)


def test_seqrun_serve_prints_the_urls_receives_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SEQRUN_EDGES_WEBHOOK_SECRET": EDGES,
           "SEQRUN_LINKEDAPI_WEBHOOK_SECRET": LINKEDAPI,
           "SEQRUN_PUBLIC_URL": "https://hooks.example.com"}
    env.pop("SEQRUN_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--state-dir",
         str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while True:
                assert time.monotonic() < deadline, "seqrun serve did not start"
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            r = c.post(f"/hooks/linkedapi/{LINKEDAPI}/events", json={
                "id": "evt-1", "type": "account.frozen",
                "data": {"accountId": "acct-alice", "status": "frozen"}})
            assert r.json() == {"recorded": True}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal
    assert "https://hooks.example.com/hooks/edges/callbacks" in out
    assert ("https://hooks.example.com/hooks/linkedapi/$SEQRUN_LINKEDAPI_WEBHOOK_SECRET/events"
            in out)
    assert EDGES not in out + err and LINKEDAPI not in out + err
    store = Store.open(None, tmp_path)
    assert [e.subject for e in inbound_events(store)] == ["acct-alice"]


def test_seqrun_serve_without_a_secret_says_which_variables_to_set(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEQRUN_EDGES_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("SEQRUN_LINKEDAPI_WEBHOOK_SECRET", raising=False)
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "SEQRUN_EDGES_WEBHOOK_SECRET" in err and "Traceback" not in err


async def test_a_hook_workflow_completes_through_a_real_receiver(
    tmp_path: Path, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQRUN_LINKEDAPI_WEBHOOK_SECRET", LINKEDAPI)
    store = Store.open(None, tmp_path)
    clock = VirtualClock()
    wf = check_then_invite(api="account", result_handling="hook", webhook=(
        f"{receiver}/hooks/linkedapi/$SEQRUN_LINKEDAPI_WEBHOOK_SECRET/workflows/"
        "check-then-invite"))
    async with httpx.AsyncClient(timeout=5) as outbound:
        sandbox = Sandbox.open(None, clock=clock, callback_client=outbound)
        async with sandbox.client("linkedapi") as client:
            result = await run_workflow(wf, client=client, store=store, clock=clock)
            assert result.state == "running"
            clock.advance(timedelta(minutes=5))
            await client.get("account")  # the sandbox finishes it and POSTs the result
    (event,) = inbound_events(store)
    assert event.kind == "hook"
    await Runner(store, {}, clock).tick()
    record = workflow_record(store, "check-then-invite")
    assert record is not None and record["state"] == "completed"
    assert [n["status"] for n in record["nodes"]] == ["ok", "ok", "ok"]


def test_seqrun_serve_on_a_port_in_use_fails_without_a_traceback(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQRUN_EDGES_WEBHOOK_SECRET", EDGES)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "Traceback" not in err
