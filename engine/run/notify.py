"""Notices out: a Sequence's ``notify:`` target, and the Policy's (the organisation's, hearing
of every sequence), receive what a human must act on, each notice once per target.

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
starting at the apply that made its current revision (older history is not sent). The
Policy's target keeps its own (kv ``notify``/``@policy``, from the Policy's apply on) and gets
one notice an event (id ``<event>:@policy``, ``sequences`` listing those it concerns): a
sequence with its own target and the Policy's reach both, each once. A notice
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from engine.clock import Clock
from engine.errors import StoreError
from engine.manifest.policy import policy_from_json
from engine.model import Notify, Sequence
from engine.run.state import sequence_from_store
from engine.store import Store
from engine.store.rows import EventRow
from engine.vocab import POLICY_KEY

log = logging.getLogger(__name__)

NS = "notify"
MAX_ATTEMPTS = 5
ERROR_REPEAT = timedelta(days=1)  # the same run error is noticed at most once a day
WATCHED = ("identity_paused", "paused", "sequence_paused", "rollout", "run_error")
NOTICE_HEADER = "X-Seqrun-Notice-Id"


@dataclass(frozen=True)
class Notice:
    id: str  # "<event id>:<sequence>" (the Policy's: "<event id>:@policy"): always the same
    kind: str  # auth_expired | sequence_paused | canary_held | run_error
    sequence: str
    subject: str  # the identity, the sequence or "*"
    at: datetime
    detail: str
    sequences: tuple[str, ...] = ()  # every sequence it concerns (the Policy's target: many)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "sequence": self.sequence,
                "subject": self.subject, "at": self.at.isoformat(), "detail": self.detail,
                "sequences": list(self.sequences or (self.sequence,))}


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


POLICY_CURSOR = "@policy"  # the Policy's target's cursor key (a sequence name has no "@")


@dataclass(frozen=True)
class Target:
    """One ``notify:`` target and what it hears of: one sequence's notices, or (the
    Policy's) every sequence's, one notice an event."""

    key: str  # its cursor's key: the sequence's name, or POLICY_CURSOR
    notify: Notify
    record_as: str  # the subject of its ``notified`` events: the sequence or the Policy
    started: tuple[str, str]  # (event kind, subject): the apply its cursor starts after
    sequence: Sequence | None = None  # None: the Policy's target (every sequence)

    def notice(self, ev: EventRow, kind: str, applied: Mapping[str, Sequence]) -> Notice | None:
        """The notice ``ev`` is for this target, None when it does not concern it."""
        if kind not in self.notify.events:
            return None
        if self.sequence is not None:
            if not _concerns(ev, self.sequence):
                return None
            return Notice(f"{ev.id}:{self.sequence.name}", kind, self.sequence.name,
                          ev.subject, ev.at, _detail(ev), (self.sequence.name,))
        # the organisation's: one notice an event, naming the sequences it concerns (an
        # identity no applied sequence uses is still the organisation's concern)
        names = tuple(sorted(n for n, s in applied.items() if _concerns(ev, s)))
        shown = names[0] if len(names) == 1 and ev.subject != "*" else "*"
        return Notice(f"{ev.id}:{POLICY_CURSOR}", kind, shown, ev.subject, ev.at, _detail(ev),
                      names)


class Notifier:
    """Sends the notices of every applied sequence to its ``notify:`` target and to the
    applied Policy's (each notice once per target)."""

    def __init__(self, store: Store, clock: Clock, *, env: Mapping[str, str] = os.environ,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.clock = clock
        self.env = env
        self.transport = transport
        self._built: dict[str, Sequence] = {}  # revision -> its Sequence (built once)

    def applied(self) -> dict[str, Sequence]:
        """Every applied sequence (its current revision), by name."""
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
            out[row.name] = seq
        return out

    def targets(self) -> dict[str, Sequence]:
        """The applied sequences whose current revision has a ``notify:`` target."""
        return {name: seq for name, seq in self.applied().items() if seq.notify is not None}

    def _targets(self, applied: Mapping[str, Sequence]) -> list[Target]:
        found = [Target(name, seq.notify, name, ("revision", name), seq)
                 for name, seq in sorted(applied.items()) if seq.notify is not None]
        data = self.store.kv_get(*POLICY_KEY)
        policy = policy_from_json(data) if isinstance(data, dict) else None
        if policy is not None and policy.notify is not None:
            found.append(Target(POLICY_CURSOR, policy.notify, policy.name,
                                ("policy", policy.name)))
        return found

    def _cursor(self, target: Target) -> dict[str, int]:
        saved = self.store.kv_get(NS, target.key)
        if isinstance(saved, dict):
            return {"after": int(saved.get("after", 0)), "attempts": int(saved.get("attempts", 0))}
        # first seen: from the apply that made the sequence's revision (the Policy) on
        return {"after": self.store.last_event_id(*target.started), "attempts": 0}

    def note_errors(self, errors: list[str], targets: Iterable[Target]) -> None:
        """Record a tick's errors as ``run_error`` events, each message once a day, when a
        target wants them."""
        if not errors or not any("run_error" in t.notify.events for t in targets):
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
        applied = self.applied()
        targets = self._targets(applied)
        if not targets:
            return []
        self.note_errors(errors or [], targets)
        cursors = {t.key: self._cursor(t) for t in targets}
        events = self.store.events_after(min(c["after"] for c in cursors.values()), WATCHED)
        done: list[Delivery] = []
        for target in targets:
            done += await self._deliver_one(target, cursors[target.key], events, applied)
        return done

    async def _deliver_one(self, target: Target, cursor: dict[str, int],
                           events: list[EventRow], applied: Mapping[str, Sequence],
                           ) -> list[Delivery]:
        done = []
        start = dict(cursor)
        for ev in events:
            if ev.id <= cursor["after"]:
                continue
            kind = _kind(ev)
            notice = None if kind is None else target.notice(ev, kind, applied)
            if notice is None:
                cursor["after"] = ev.id
                continue
            error = await send(target.notify, notice, self.env, self.transport)
            done.append(Delivery(notice, error is None, error))
            if error is not None and cursor["attempts"] + 1 < MAX_ATTEMPTS:
                cursor["attempts"] += 1
                log.warning("notify %s: %s notice not delivered: %s (retried next tick)",
                            target.record_as, notice.kind, error)
                break
            self._commit(target, ev.id, notice, error)
            cursor.update(after=ev.id, attempts=0)
        if cursor != start or self.store.kv_get(NS, target.key) is None:
            self.store.kv_put(NS, target.key, cursor)
        return done

    def _commit(self, target: Target, event_id: int, notice: Notice, error: str | None) -> None:
        with self.store.transaction() as conn:
            self.store.kv_put(NS, target.key, {"after": event_id, "attempts": 0}, conn=conn)
            data = {"notice": notice.id, "kind": notice.kind,
                    **({"target": "policy"} if target.sequence is None else {}),
                    **({"error": error} if error else {})}
            self.store.record_event("notice_failed" if error else "notified", target.record_as,
                                    data, at=self.clock.now(), conn=conn)
        if error:
            log.warning("notify %s: %s notice given up after %d attempts: %s",
                        target.record_as, notice.kind, MAX_ATTEMPTS, error)
