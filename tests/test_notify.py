"""Notices out: a Sequence's ``notify:`` target receives an AUTH_EXPIRED made in the sandbox,
a paused sequence and a run error, each exactly once, on a loopback HTTP server (or a
command); a failing target is retried, and the secret never reaches the store."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import VirtualClock
from engine.model import Notify
from engine.run.notify import Notice, Notifier, send
from engine.sandbox import Sandbox  # type: ignore[attr-defined,unused-ignore]
from engine.store import Store
from tests.conftest import ROOT, invoke

EXAMPLE = ROOT / "sequences" / "notify-on-trouble.yaml"
SECRET = "notify-secret-0123456789"


class Receiver:
    """A loopback HTTP server keeping every POST (headers and JSON body)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], Any]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append((dict(self.headers), json.loads(body)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/seqrun-notices"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, kind: str | None = None) -> list[Any]:
        return [b for _, b in self.got if kind is None or b["kind"] == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def manifest(tmp: Path, url: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "http://127.0.0.1:9000/seqrun-notices", url).replace("csv: leads.csv",
                                                             f"csv: {ROOT / 'sequences'}/leads.csv")
    path = tmp / "notify.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_auth_expired_in_the_sandbox_reaches_the_target_once(
    cli_dir: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEQRUN_NOTIFY_SECRET", SECRET)
    path = manifest(cli_dir, receiver.url)
    code, _, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve", "--no-run")
    assert code == 0, err
    box = Sandbox.open(cli_dir / ".seqrun")
    box.world.set_auth("ident-alice", False)  # the LinkedIn session expires
    box.save()
    box.close()
    for _ in range(2):  # a second run sends nothing again
        code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+3d")
        assert code == 0, err
    (notice,) = receiver.bodies()
    headers = receiver.got[0][0]
    assert notice["kind"] == "auth_expired" and notice["subject"] == "ident-alice"
    assert notice["sequence"] == "notify-on-trouble"
    assert headers["X-Seqrun-Secret"] == SECRET
    assert headers["X-Seqrun-Notice-Id"] == notice["id"]
    store = Store.open(None, cli_dir / ".seqrun")
    try:
        notified = store.events("notify-on-trouble", kind="notified")
        assert [e.data["notice"] for e in notified] == [notice["id"]]
    finally:
        store.close()
    stored = b"".join(p.read_bytes() for p in (cli_dir / ".seqrun").iterdir() if p.is_file())
    assert SECRET.encode() not in stored

    # the pause of the sequence is noticed at once, once
    code, _, err = invoke(capsys, "pause", "notify-on-trouble")
    assert code == 0, err
    code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--once")
    assert [b["subject"] for b in receiver.bodies("sequence_paused")] == ["notify-on-trouble"]


def test_history_before_the_apply_is_not_sent(
    cli_dir: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store.open(None, cli_dir / ".seqrun")
    store.record_event("identity_paused", "ident-alice", {"status": "auth_expired"})
    store.close()
    path = manifest(cli_dir, receiver.url)
    path.write_text(path.read_text().replace("    secret_env: SEQRUN_NOTIFY_SECRET\n", ""))
    code, _, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve")
    assert code == 0, err
    assert receiver.got == []


def test_a_failing_target_is_retried_until_it_takes_the_notice(
    cli_dir: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEQRUN_NOTIFY_SECRET", SECRET)
    code, _, err = invoke(capsys, "apply", str(manifest(cli_dir, receiver.url)), "--sandbox",
                          "--virtual-clock", "--auto-approve", "--no-run")
    assert code == 0, err
    box = Sandbox.open(cli_dir / ".seqrun")
    box.world.set_auth("ident-alice", False)
    box.save()
    box.close()
    receiver.status = 500
    for answer in (500, 200, 200):
        receiver.status = answer
        code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--once")
        assert code == 0, err
    ids = [b["id"] for b in receiver.bodies()]
    assert len(ids) == 2 and len(set(ids)) == 1  # refused once, then taken, then never again


async def test_send_names_a_missing_secret_variable_never_a_value() -> None:
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(204))
    notice = Notice("1:s", "run_error", "s", "*", VirtualClock().now(), "boom")
    target = Notify(url="http://hooks.test/n", secret_env="SEQRUN_NOPE")
    assert await send(target, notice, {}, transport) == (
        "the environment variable SEQRUN_NOPE is not set")
    assert calls == []
    assert await send(target, notice, {"SEQRUN_NOPE": "s3cr3t-value"}, transport) is None
    assert calls[0].headers["X-Seqrun-Secret"] == "s3cr3t-value"


async def test_a_command_target_gets_the_notice_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "notices.jsonl"
    target = Notify(command=(sys.executable, "-c",
                             f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())"))
    notice = Notice("7:s", "sequence_paused", "s", "s", VirtualClock().now(), "sequence")
    assert await send(target, notice, {}) is None
    assert json.loads(out.read_text())["id"] == "7:s"
    failing = Notify(command=(sys.executable, "-c", "raise SystemExit(3)"))
    assert await send(failing, notice, {}) == f"{sys.executable!r} exited 3"


def applied_notifier(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], got: list[Any]
) -> tuple[Store, VirtualClock, Notifier]:
    """The notify manifest applied (no secret header) and a notifier over its store whose
    target appends each notice it receives to ``got``."""
    path = manifest(cli_dir, "http://hooks.test/notices")
    path.write_text(path.read_text().replace("    secret_env: SEQRUN_NOTIFY_SECRET\n", ""))
    code, _, err = invoke(capsys, "apply", str(path), "--sandbox", "--virtual-clock",
                          "--auto-approve", "--no-run")
    assert code == 0, err
    transport = httpx.MockTransport(
        lambda r: got.append(json.loads(r.content)) or httpx.Response(200))
    store = Store.open(None, cli_dir / ".seqrun")
    clock = VirtualClock()
    notifier = Notifier(store, clock, transport=transport, env={})
    return store, clock, notifier


def test_a_run_error_is_noticed_once_a_day(
    cli_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[Any] = []
    store, clock, notifier = applied_notifier(cli_dir, capsys, got)

    async def ticks() -> None:
        for _ in range(3):  # three ticks failing the same way
            await notifier.deliver(["edges: the provider answered 500"])
        clock.advance(timedelta(days=1, seconds=1))
        await notifier.deliver(["edges: the provider answered 500"])

    try:
        asyncio.run(ticks())
    finally:
        store.close()
    assert [(n["kind"], n["detail"]) for n in got] == [
        ("run_error", "edges: the provider answered 500")] * 2


def test_a_held_canary_is_noticed_once(cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the guardrails' runner holds a canary by pausing the sequence and recording a `rollout`
    # event at stage held (engine.run.guards); a promoted one is no notice
    got: list[Any] = []
    store, clock, notifier = applied_notifier(cli_dir, capsys, got)
    name = next(iter(notifier.targets()))
    store.record_event("rollout", name, {"stage": "promoted", "reason": None}, at=clock.now(),
                       trigger="rollout")
    store.record_event("rollout", name, {"stage": "held", "reason": "canary of 20: failed "
                       "rate 25% is not below 5%"}, at=clock.now(), trigger="rollout")

    async def ticks() -> None:
        await notifier.deliver()
        await notifier.deliver()

    try:
        asyncio.run(ticks())
    finally:
        store.close()
    assert [(n["kind"], n["sequence"], n["detail"]) for n in got] == [
        ("canary_held", name, "canary of 20: failed rate 25% is not below 5%")]


def test_plan_warns_when_the_secret_variable_is_not_set(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEQRUN_NOTIFY_SECRET", raising=False)
    code, _, err = invoke(capsys, "plan", str(EXAMPLE), "--sandbox")
    assert code == 0
    assert "notify.secret_env SEQRUN_NOTIFY_SECRET is not set" in err
    monkeypatch.setenv("SEQRUN_NOTIFY_SECRET", SECRET)
    code, _, err = invoke(capsys, "plan", str(EXAMPLE), "--sandbox")
    assert code == 0 and "SEQRUN_NOTIFY_SECRET" not in err


def policy(tmp: Path, url: str) -> Path:
    path = tmp / "policy.yaml"
    path.write_text(f"""apiVersion: seqrun/v1
kind: Policy
metadata:
  name: acme-org
spec:
  notify:
    url: {url}
""", encoding="utf-8")
    return path


def test_the_policy_target_and_a_sequence_target_each_receive_a_notice_once(
    cli_dir: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # two sequences share ident-alice: the sequence with its own target hears of it once, the
    # organisation's target once for the event (naming both sequences), crash-safe cursors
    monkeypatch.setenv("SEQRUN_NOTIFY_SECRET", SECRET)
    org = Receiver()
    try:
        own = manifest(cli_dir, receiver.url)
        other = cli_dir / "other.yaml"
        other.write_text(own.read_text().replace("name: notify-on-trouble", "name: quiet-one")
                         .replace("  notify:\n    url: " + receiver.url + "\n"
                                  "    secret_env: SEQRUN_NOTIFY_SECRET\n"
                                  "    events: [auth_expired, sequence_paused, canary_held, "
                                  "run_error]\n", ""))
        assert "notify" not in other.read_text()
        code, _, err = invoke(capsys, "apply", str(own), str(other),
                              str(policy(cli_dir, org.url)), "--sandbox", "--virtual-clock",
                              "--auto-approve", "--no-run")
        assert code == 0, err
        box = Sandbox.open(cli_dir / ".seqrun")
        box.world.set_auth("ident-alice", False)
        box.save()
        box.close()
        for _ in range(2):  # a second run sends nothing again
            code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--until", "+3d")
            assert code == 0, err
        (mine,) = receiver.bodies()
        (theirs,) = org.bodies()
        assert mine["kind"] == theirs["kind"] == "auth_expired"
        assert theirs["subject"] == "ident-alice" and theirs["id"].endswith(":@policy")
        assert theirs["sequences"] == ["notify-on-trouble", "quiet-one"]
        assert "X-Seqrun-Secret" not in org.got[0][0]  # the Policy's target has no secret

        # a pause of the sequence without a target reaches the organisation's only
        code, _, err = invoke(capsys, "pause", "quiet-one")
        assert code == 0, err
        code, _, err = invoke(capsys, "run", "--sandbox", "--virtual-clock", "--once")
        assert [b["sequence"] for b in org.bodies("sequence_paused")] == ["quiet-one"]
        assert receiver.bodies("sequence_paused") == []
        store = Store.open(None, cli_dir / ".seqrun")
        try:
            notified = store.events("acme-org", kind="notified")
            assert [e.data["notice"] for e in notified] == [b["id"] for b in org.bodies()]
        finally:
            store.close()
    finally:
        org.server.shutdown()
        org.server.server_close()


def test_the_policy_target_survives_a_crash_between_send_and_commit(
    cli_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # the notice is sent, then the process dies before its cursor moves: the next tick sends
    # it again with the same id (the receiver drops the repeat), then never again
    code, _, err = invoke(capsys, "apply", str(policy(cli_dir, "http://hooks.test/org")),
                          "--sandbox", "--virtual-clock", "--auto-approve", "--no-run")
    assert code == 0, err
    got: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        got.append(json.loads(request.content))
        if len(got) == 1:  # the receiver took it; the process dies before the answer
            raise KeyboardInterrupt
        return httpx.Response(200)

    store = Store.open(None, cli_dir / ".seqrun")
    clock = VirtualClock()
    store.record_event("run_error", "*", {"error": "edges: the provider answered 500"},
                       at=clock.now())

    async def ticks() -> None:
        notifier = Notifier(store, clock, transport=httpx.MockTransport(answer), env={})
        with pytest.raises(KeyboardInterrupt):
            await notifier.deliver()
        restarted = Notifier(store, clock, transport=httpx.MockTransport(answer), env={})
        await restarted.deliver()
        await restarted.deliver()

    try:
        asyncio.run(ticks())
    finally:
        store.close()
    assert [(n["kind"], n["sequence"]) for n in got] == [("run_error", "*")] * 2
    assert got[0]["id"] == got[1]["id"]


def test_plan_warns_when_the_policy_s_secret_variable_is_not_set(
    cli_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEQRUN_ORG_SECRET", raising=False)
    path = policy(cli_dir, "http://hooks.test/org")
    path.write_text(path.read_text() + "    secret_env: SEQRUN_ORG_SECRET\n")
    code, _, err = invoke(capsys, "plan", str(path), "--sandbox")
    assert code == 0
    assert "Policy acme-org: notify.secret_env SEQRUN_ORG_SECRET is not set" in err
