"""Benchmark: accepted callbacks per second of ``seqrun serve``, each written to the store
(issue 12, "Speed": target 1,000/s on SQLite).

Run: ``python bench/bench_serve.py`` (``--calls N``, ``--json``). Each call is an Edges run
callback with a new ``callback_ref_uid`` (authenticated, decoded, committed to SQLite before
its 200). It reports:

* in-process, the ASGI app called as uvicorn calls it, sequential: calls per CPU second
  (``time.process_time``, best of 3), so other processes on a shared machine do not pass for
  receiver cost (HTTP parsing by uvicorn is not in it);
* over loopback: ``seqrun serve`` in a subprocess (uvicorn, h11), 8 concurrent async callers:
  wall-clock, and per CPU second of the server process (its ``/proc`` times), which is what
  the receiver can take with a core to itself.

Exit status 1 when in-process is under the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.serve.app import build_app  # noqa: E402
from engine.serve.config import SECRET_HEADER, ServeConfig  # noqa: E402
from engine.store import Store  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
BUDGET = 1000.0


def _body(i: int) -> dict[str, object]:
    return {"callback_ref_uid": f"cbr-{i}", "run": {"run_uid": f"run-{i}", "status": "RUNNING"},
            "custom_data": {"key": f"{i}:visit:0"}, "data": [{"linkedin_profile_id": i}]}


async def _in_process(calls: int) -> float:
    """The app called as uvicorn calls it (one ASGI request a callback, no HTTP client in the
    measurement): what the receiver itself costs."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(None, tmp)
        app = build_app(store, ServeConfig(SECRET))
        bodies = [json.dumps(_body(i)).encode() for i in range(calls)]
        start = time.process_time()
        for body in bodies:
            assert await _asgi_post(app, "/hooks/edges/callbacks", body) == 200
        spent = time.process_time() - start
        store.close()
    return calls / spent


async def _asgi_post(app: Any, path: str, body: bytes) -> int:
    headers = [(b"content-type", b"application/json"), (SECRET_HEADER.lower().encode(),
               SECRET.encode()), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 1)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _loopback(calls: int, callers: int = 8) -> tuple[float, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SEQRUN_EDGES_WEBHOOK_SECRET": SECRET}
        env.pop("SEQRUN_DATABASE_URL", None)
        proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port),
                                 "--state-dir", tmp], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=30) as c:
                for _ in range(200):
                    try:
                        await c.get("/healthz")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                todo = iter(range(calls))

                async def caller() -> None:
                    for i in todo:
                        r = await c.post("/hooks/edges/callbacks", json=_body(i),
                                         headers={SECRET_HEADER: SECRET})
                        assert r.status_code == 200

                cpu = _cpu_seconds(proc.pid)
                start = time.perf_counter()
                await asyncio.gather(*(caller() for _ in range(callers)))
                wall = calls / (time.perf_counter() - start)
                spent = _cpu_seconds(proc.pid) - cpu
                return wall, calls / spent if spent > 0 else float("nan")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    in_process = max(asyncio.run(_in_process(args.calls)) for _ in range(3))
    loopback, server_cpu = asyncio.run(_loopback(args.calls))
    figures = {"in_process_per_cpu_s": round(in_process), "loopback_per_s": round(loopback),
               "loopback_per_server_cpu_s": round(server_cpu), "budget": BUDGET}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"in-process: {in_process:,.0f} accepted callbacks per CPU second "
              f"(budget {BUDGET:,.0f})")
        print(f"loopback, 8 callers: {loopback:,.0f} accepted callbacks/s (wall clock), "
              f"{server_cpu:,.0f} per CPU second of the `seqrun serve` process")
    return 0 if in_process >= BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
