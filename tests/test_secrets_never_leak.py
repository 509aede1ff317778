"""Provider keys never leave the request headers: not into the store (every column of every
table), the logs (DEBUG), error output, `why`, `status -o json` nor saved plans, even when
a hostile provider echoes them back in every answer (401, 400, 500 bodies and headers) or
cannot be reached at all.

The providers are one loopback server that quotes whatever credential it was sent; the
commands run through the CLI with recognisable fake keys in the environment."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "EDGES_API_KEY": "sk-FAKE-SECRET-EDGES-1234567890",
    "LINKEDAPI_TOKEN": "sk-FAKE-SECRET-LINKEDAPI-TOKEN-2345678901",
    "LINKEDAPI_IDENTIFICATION_TOKEN": "sk-FAKE-SECRET-LINKEDAPI-IDENT-3456789012",
    "LINKEDAPI_IDENTIFICATION_TOKEN__ACCT_ALICE": "sk-FAKE-SECRET-ALICE-IDENT-4567890123",
    "CONNECTSAFELY_API_KEY": "sk-FAKE-SECRET-CONNECTSAFELY-5678901234",
}
# a key echoed back may be cut, re-cased or have its prefix dropped: look for its core too
NEEDLES = [*SECRETS.values(), "FAKE-SECRET", "fake-secret"]
PROVIDERS = ("edges", "linkedapi", "connectsafely")
MANIFESTS = ("founders-outreach.yaml", "founders-on-linkedapi.yaml",
             "founders-on-connectsafely.yaml")


class Hostile:
    """One loopback server for the three providers that quotes every credential header it
    receives in each answer. ``mode``: ``auth`` (401), ``refused`` (400), ``broken`` (500),
    ``listing`` (Edges lists of nothing, 401 elsewhere)."""

    def __init__(self) -> None:
        self.mode = "auth"
        self.requests = 0
        self.keys_seen: set[str] = set()
        self.app = Starlette(routes=[Route("/{path:path}", self.answer,
                                           methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])

    async def answer(self, request: Request) -> Response:
        self.requests += 1
        self.keys_seen.update(v for k, v in request.headers.items() if v in SECRETS.values()
                              or v.removeprefix("Bearer ") in SECRETS.values())
        sent = [v for k, v in request.headers.items()
                if k.lower() in ("x-api-key", "authorization", "linked-api-token",
                                 "identification-token")]
        quoted = " ".join(sent)
        echo = {"X-Echo-Key": quoted[:200]}
        if self.mode == "listing" and request.method == "GET":
            return JSONResponse([], headers=echo)
        status, label = {"auth": (401, "UNAUTHORIZED"), "refused": (400, "BAD_PARAMETERS"),
                         "broken": (500, "INTERNAL_ERROR")}.get(self.mode, (401, "UNAUTHORIZED"))
        body = {"error_label": label, "errorCode": label, "success": False,
                "message": f"you sent {quoted}", "error": f"key {quoted} rejected",
                "detail": {"headers": dict(request.headers), "key": quoted}}
        return JSONResponse(body, status_code=status, headers=echo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[Hostile, str]]:
    server_app = Hostile()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(server_app.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield server_app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def work(cli_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (*MANIFESTS, "leads.csv"):
        (cli_dir / name).write_bytes((ROOT / "sequences" / name).read_bytes())
    schedule = (ROOT / "sequences" / "edges-incremental-schedule.yaml").read_text()
    # a full sync: planning it asks Edges for nothing but the live schedules
    (cli_dir / "schedule.yaml").write_text(schedule.replace("incremental\n", "full\n"))
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("SEQRUN_SETTLE_AFTER", "0")
    return cli_dir


def _point_at(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    for provider in PROVIDERS:
        suffix = "/v1" if provider == "edges" else ""
        monkeypatch.setenv(f"SEQRUN_{provider.upper()}_BASE_URL", base + suffix)


def _store_text(state: Path) -> str:
    """Every value of every column of every table, as text."""
    engine = sa.create_engine(f"sqlite:///{state / 'state.db'}")
    chunks: list[str] = []
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    chunks.extend(repr(v) for v in row)
    finally:
        engine.dispose()
    return "\n".join(chunks)


def _assert_clean(where: str, text: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} found in {where}: ...{_around(text, needle)}..."


def _around(text: str, needle: str) -> str:
    i = text.find(needle)
    return text[max(0, i - 200): i + len(needle) + 100]


def _commands(capsys: pytest.CaptureFixture[str], state: Path) -> list[tuple[str, int, str]]:
    """apply (with its run), run --once, status -o json, why (a lead of each manifest):
    (command, exit code, everything it printed)."""
    d = ["--state-dir", str(state)]
    runs: list[tuple[str, ...]] = []
    for manifest in MANIFESTS:
        runs += [("apply", manifest, "--auto-approve", "-o", "json", *d),
                 ("apply", manifest, "--auto-approve", *d)]
    runs += [("run", "--once", *d), ("run", "--once", "-o", "json", *d),
             ("status", "-o", "json", *d), ("status", *d)]
    leads = (Path(state).parent / "leads.csv").read_text().splitlines()[1:3]
    runs += [("why", row.split(",")[0], *d) for row in leads]
    runs += [("plan", "schedule.yaml", "-out", "plan.json", *d), ("apply", "plan.json", *d)]
    out = []
    for argv in runs:
        code, stdout, stderr = invoke(capsys, "-vv", *argv)
        out.append((" ".join(argv[:2]), code, stdout + stderr))
    return out


@pytest.mark.parametrize("mode", ["auth", "refused", "broken", "listing", "unreachable"])
def test_fake_keys_never_leave_the_request_headers(
    work: Path, hostile: tuple[Hostile, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, mode: str,
) -> None:
    server, base = hostile
    if mode == "unreachable":
        _point_at(monkeypatch, f"http://127.0.0.1:{_free_port()}")  # nobody listens there
    else:
        server.mode = mode
        _point_at(monkeypatch, base)
    caplog.set_level(logging.DEBUG)
    before = server.requests
    state = work / ".seqrun"
    results = _commands(capsys, state)
    if mode != "unreachable":  # every provider was called, with its keys
        assert server.requests > before
        sent = {k.removeprefix("Bearer ") for k in server.keys_seen}
        # acct-alice's own identification token replaces the plain one
        assert sent == set(SECRETS.values()) - {SECRETS["LINKEDAPI_IDENTIFICATION_TOKEN"]}
    for command, _code, printed in results:
        _assert_clean(f"the output of `{command}`", printed)
    assert any(code != 0 for _c, code, _p in results)  # the faults were reported
    _assert_clean("the logs", "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.exc_info!r}" for r in caplog.records))
    _assert_clean("the store", _store_text(state))
    status = json.loads(invoke(capsys, "status", "-o", "json", "--state-dir", str(state))[1])
    _assert_clean("status -o json", json.dumps(status))
    saved = work / "plan.json"
    assert saved.exists() == (mode == "listing")  # planned when Edges lists its schedules
    if saved.exists():
        _assert_clean("the saved plan", saved.read_text())
    for path in state.iterdir():  # the sandbox world, sidecars: anything written there
        if path.is_file():
            _assert_clean(str(path), path.read_bytes().decode("utf-8", "replace"))


def test_every_provider_credential_is_a_secret_name() -> None:
    from engine.providers import REGISTRY
    from engine.providers.linkedapi.credentials import identity_env_var
    from engine.secrets import is_secret_name, redact

    names = [n for spec in REGISTRY.values() for n in spec.credentials]
    assert names and all(is_secret_name(n) for n in names)
    assert is_secret_name(identity_env_var("acct-alice"))
    assert not is_secret_name("SEQRUN_EDGES_BASE_URL")
    env = {"EDGES_API_KEY": "sk-FAKE-1234567890", "SHORT_KEY": "abc", "HOME": "/root/x/y/z"}
    assert redact("key sk-FAKE-1234567890, abc, /root/x/y/z", env) == "key ***, abc, /root/x/y/z"
