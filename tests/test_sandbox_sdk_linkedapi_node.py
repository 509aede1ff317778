"""LinkedAPI's official Node SDK works against the sandbox by changing only its base URL.

Needs `node` and the `@linkedapi/node` package (CI installs it with npm into .ci/node_modules);
skipped where either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.clock import RealClock
from engine.sandbox import Sandbox
from engine.sandbox.server import make_server
from tests.conftest import ROOT

SCRIPT = Path(__file__).parent / "sdk" / "linkedapi_node_check.js"
NODE_MODULES = ROOT / ".ci" / "node_modules"
ADA = "https://www.linkedin.com/in/ada-lovelace-0001"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "@linkedapi" / "node").is_dir(),
    reason="node or @linkedapi/node not installed (.ci/run installs it)",
)
def test_official_node_sdk_against_the_sandbox(tmp_path: Path) -> None:
    sandbox = Sandbox.open(tmp_path, clock=RealClock(), profiles=3)
    port = _free_port()
    server = make_server(sandbox, "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        done = subprocess.run(
            ["node", str(SCRIPT), f"http://127.0.0.1:{port}/linkedapi"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == 'check {"data":{"connectionStatus":"notConnected"},"errors":[]}'
    assert lines[1] == 'invite {"errors":[]}'
    assert lines[2].startswith('invite2 {"errors":[{"type":"alreadyPending"')
    assert lines[3].startswith("auth error invalidLinkedApiToken")
    invites = [d for d in sandbox.world.delivered if d.kind == "invite" and d.profile_url == ADA]
    assert len(invites) == 1  # the second request was refused, not delivered
