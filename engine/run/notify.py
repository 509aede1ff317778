"""Notices out: a Sequence's ``notify:`` target receives what a human must act on, each once.

The notices come from the events table (one history, no second record of what happened):

=================  ==================================================================
notice             event
=================  ==================================================================
auth_expired       ``identity_paused`` with status auth_expired, of an identity of the
                   sequence (the runner saw it, or ``seqrun serve`` received it)
sequence_paused    ``paused`` of the sequence or of everything (``seqrun pause``)
canary_held        ``rollout`` at stage ``held``: the canary failed ``promote_if`` and the
                   sequence is paused (engine.run.guards)
run_error          ``run_error``, recorded here from a tick's errors (the same message
                   at most once a day)
=================  ==================================================================

Each sequence with a target keeps a cursor (kv ``notify``/NAME: the last event id handled),
starting at the apply that made its current revision (older history is not sent). A notice
is delivered, then the cursor moves and a ``notified`` event is written in one transaction: a
crash between the two sends it again, so the webhook carries ``X-Seqrun-Notice-Id`` for the
receiver to drop a repeat. A target that fails is retried on the next tick, at most
:data:`MAX_ATTEMPTS` times (then a ``notice_failed`` event, and the cursor moves on). The
secret header's value is read from the environment when sent: never stored, logged or shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from engine.clock import Clock
from engine.errors import StoreError
from engine.model import Notify, Sequence
from engine.run.state import sequence_from_store
from engine.store import Store
from engine.store.rows import EventRow

log = logging.getLogger(__name__)

NS = "notify"
MAX_ATTEMPTS = 5
ERROR_REPEAT = timedelta(days=1)  # the same run error is noticed at most once a day
WATCHED = ("identity_paused", "paused", "sequence_paused", "rollout", "run_error")
NOTICE_HEADER = "X-Seqrun-Notice-Id"


@dataclass(frozen=True)
class Notice:
    id: str  # "<event id>:<sequence>": the same notice always has the same id
    kind: str  # auth_expired | sequence_paused | canary_held | run_error
    sequence: str
    subject: str  # the identity, the sequence or "*"
    at: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "sequence": self.sequence,
                "subject": self.subject, "at": self.at.isoformat(), "detail": self.detail}


@dataclass(frozen=True)
class Delivery:
    notice: Notice
    ok: bool
    error: str | None = None


def _kind(ev: EventRow) -> str | None:
    data = ev.data if isinstance(ev.data, Mapping) else {}
    if ev.kind == "identity_paused":
        return "auth_expired" if data.get("status") == "auth_expired" else None
    if ev.kind == "paused":
        return "sequence_paused" if data.get("scope") in ("sequence", "all") else None
    if ev.kind == "rollout":  # a canary that failed `promote_if`: the sequence is paused
        return "canary_held" if data.get("stage") == "held" else None
    return ev.kind if ev.kind in ("sequence_paused", "run_error") else None


def _concerns(ev: EventRow, seq: Sequence) -> bool:
    if ev.kind == "identity_paused":
        return ev.subject in seq.identities
    return ev.subject in (seq.name, "*")


def _detail(ev: EventRow) -> str:
    data = ev.data if isinstance(ev.data, Mapping) else {}
    return str(data.get("reason") or data.get("error") or data.get("scope") or "")


async def send(target: Notify, notice: Notice, env: Mapping[str, str],
               transport: httpx.AsyncBaseTransport | None = None) -> str | None:
    """Deliver one notice; None when delivered, else why not (no secret in it)."""
    body = json.dumps(notice.to_json()).encode()
    if target.command:
        return await _run_command(target.command, body)
    assert target.url is not None
    headers = {"Content-Type": "application/json", NOTICE_HEADER: notice.id}
    if target.secret_env:
        secret = env.get(target.secret_env, "")
        if not secret:
            return f"the environment variable {target.secret_env} is not set"
        headers[target.header] = secret
    try:
        async with httpx.AsyncClient(timeout=10, transport=transport,
                                     follow_redirects=False) as client:
            response = await client.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"POST failed ({type(exc).__name__})"
    return None if response.is_success else f"HTTP {response.status_code}"


async def _run_command(argv: tuple[str, ...], body: bytes) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        return f"cannot run {argv[0]!r} ({exc.strerror or type(exc).__name__})"
    try:
        await asyncio.wait_for(proc.communicate(body), timeout=30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"{argv[0]!r} did not finish in 30 s"
    return None if proc.returncode == 0 else f"{argv[0]!r} exited {proc.returncode}"


class Notifier:
    """Sends the notices of every applied sequence that has a ``notify:`` target."""

    def __init__(self, store: Store, clock: Clock, *, env: Mapping[str, str] = os.environ,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.clock = clock
        self.env = env
        self.transport = transport
        self._built: dict[str, Sequence] = {}  # revision -> its Sequence (built once)

    def targets(self) -> dict[str, Sequence]:
        """The applied sequences whose current revision has a ``notify:`` target."""
        out = {}
        for row in self.store.list_sequences():
            if row.kind != "Sequence":
                continue
            seq = self._built.get(row.current_revision)
            if seq is None:
                try:
                    seq = sequence_from_store(self.store, row.current_revision)
                except StoreError as exc:
                    log.warning("notify: %s", exc)
                    continue
                self._built[row.current_revision] = seq
            if seq.notify is not None:
                out[row.name] = seq
        return out

    def _cursor(self, name: str) -> dict[str, int]:
        saved = self.store.kv_get(NS, name)
        if isinstance(saved, dict):
            return {"after": int(saved.get("after", 0)), "attempts": int(saved.get("attempts", 0))}
        # first seen: from the apply that made the current revision on
        return {"after": self.store.last_event_id("revision", name), "attempts": 0}

    def note_errors(self, errors: list[str], targets: Mapping[str, Sequence]) -> None:
        """Record a tick's errors as ``run_error`` events, each message once a day, when a
        target wants them."""
        if not errors or not any(s.notify and "run_error" in s.notify.events
                                 for s in targets.values()):
            return
        now = self.clock.now()
        with self.store.transaction() as conn:
            for message in dict.fromkeys(errors):
                key = "error:" + hashlib.sha256(message.encode()).hexdigest()[:24]
                seen = self.store.kv_get(NS, key, conn=conn)
                if seen and now - datetime.fromisoformat(seen) < ERROR_REPEAT:
                    continue
                self.store.kv_put(NS, key, now.isoformat(), conn=conn)
                self.store.record_event("run_error", "*", {"error": message}, at=now, conn=conn)

    async def deliver(self, errors: list[str] | None = None) -> list[Delivery]:
        """Record ``errors`` (a tick's), then send every notice not sent yet."""
        targets = self.targets()
        if not targets:
            return []
        self.note_errors(errors or [], targets)
        cursors = {name: self._cursor(name) for name in targets}
        events = self.store.events_after(min(c["after"] for c in cursors.values()), WATCHED)
        done: list[Delivery] = []
        for name, seq in sorted(targets.items()):
            done += await self._deliver_one(seq, cursors[name], events)
        return done

    async def _deliver_one(self, seq: Sequence, cursor: dict[str, int],
                           events: list[EventRow]) -> list[Delivery]:
        assert seq.notify is not None
        done = []
        start = dict(cursor)
        for ev in events:
            if ev.id <= cursor["after"]:
                continue
            kind = _kind(ev)
            if kind is None or kind not in seq.notify.events or not _concerns(ev, seq):
                cursor["after"] = ev.id
                continue
            notice = Notice(f"{ev.id}:{seq.name}", kind, seq.name, ev.subject, ev.at, _detail(ev))
            error = await send(seq.notify, notice, self.env, self.transport)
            done.append(Delivery(notice, error is None, error))
            if error is not None and cursor["attempts"] + 1 < MAX_ATTEMPTS:
                cursor["attempts"] += 1
                log.warning("notify %s: %s notice not delivered: %s (retried next tick)",
                            seq.name, kind, error)
                break
            self._commit(seq.name, ev.id, notice, error)
            cursor.update(after=ev.id, attempts=0)
        if cursor != start or self.store.kv_get(NS, seq.name) is None:
            self.store.kv_put(NS, seq.name, cursor)
        return done

    def _commit(self, name: str, event_id: int, notice: Notice, error: str | None) -> None:
        with self.store.transaction() as conn:
            self.store.kv_put(NS, name, {"after": event_id, "attempts": 0}, conn=conn)
            data = {"notice": notice.id, "kind": notice.kind,
                    **({"error": error} if error else {})}
            self.store.record_event("notice_failed" if error else "notified", name, data,
                                    at=self.clock.now(), conn=conn)
        if error:
            log.warning("notify %s: %s notice given up after %d attempts: %s", name,
                        notice.kind, MAX_ATTEMPTS, error)
