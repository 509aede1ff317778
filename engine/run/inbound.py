"""The runner's side of ``seqrun serve``: each tick first consumes the events the receiver
recorded (:mod:`engine.store.inbound`), oldest first, each once.

* Edges integration webhooks: ``AUTH_EXPIRED`` pauses the identity and its enrollments at
  once (status ``auth_expired``, resumed by ``AUTH_SUCCESS`` or by the provider's health
  check); ``DELETED`` pauses it for a human (``paused``); an event older than the last one
  applied to that identity (a late retry) changes nothing. LinkedAPI ``account.*`` events
  do the same for its accounts.
* LinkedAPI workflow results (``workflow.completed`` events, ``result_handling: hook``
  bodies) settle the workflow run (:func:`engine.run.workflow_hooks.complete_from_hook`).
* Edges run callbacks of a managed Schedule (or an async one) of
  ``linkedin-extract-conversations`` or ``linkedin-extract-messages`` (the inbox sync): the
  conversation cache that sync-before-send reads is updated, and a conversation whose last
  sender is the lead moves that lead's live enrollments on the identity along ``reply``, as
  the sync would.
* Edges run callbacks of a managed Schedule of ``linkedin-extract-connections`` (incremental):
  the connection cache that the acceptance check and the connect step read is updated. The
  leads waiting for an acceptance are not moved here but at their aligned poll
  (``accept_poll``), which reads this cache: their first messages then go out together, after
  one sync, instead of one sync each as the acceptances trickle in.
* Each schedule result is noted with its time (:mod:`engine.run.pushed`): while the schedule
  keeps its interval, the runner reads these caches instead of polling the provider.

An event's effects and its ``consumed`` mark share one transaction where the effects are the
store's; every effect is idempotent, so an event consumed twice after a crash changes
nothing more.

Example::

    Inbound(state, moves).drain(result)  # the number of events consumed
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import SeqrunError
from engine.providers.base import ConversationSummary
from engine.providers.edges.actions import EdgesProvider
from engine.run.async_runs import note_callback
from engine.run.moves import Move, Moves
from engine.run.pushed import CONNECTIONS, INBOX, MESSAGES
from engine.run.results import TickResult
from engine.run.state import RunState
from engine.run.sync import pause_identity, resume_identity
from engine.run.workflow_hooks import complete_from_hook
from engine.run.workflow_record import parse_time
from engine.store import schedules as schedule_db
from engine.store.inbound import InboundRow, consume_inbound, pending_inbound
from engine.urls import normalize_profile_url

log = logging.getLogger(__name__)

LAST_AT = "inbound-identity-at"  # kv namespace: the newest event time applied per identity
_REPLY = Move("reply", detail="the lead wrote to us (seen by an Edges schedule callback)")
# LinkedAPI account statuses (§2.6) -> what happens to the identity
_ACCOUNT = {
    "account.reconnectionRequired": "auth_expired",
    "account.frozen": "auth_expired",
    "account.deleted": "paused",
    "account.active": "active",
}


class Inbound:
    """Consumes the received events (one instance per runner)."""

    def __init__(self, state: RunState, moves: Moves) -> None:
        self.state = state
        self.store = state.store
        self.clock = state.clock
        self.moves = moves

    def drain(self, result: TickResult) -> int:
        """Consume every pending event; the number consumed."""
        done = 0
        while True:
            rows = pending_inbound(self.store)
            for row in rows:
                try:
                    self._one(row, result)
                except (SeqrunError, sa.exc.OperationalError):
                    self.state.pushed.forget()  # a note of the rolled-back transaction
                    raise  # the store or a lost lock: the tick fails as it would anyway
                except Exception as exc:  # a payload nobody foresaw: logged, never retried
                    self.state.pushed.forget()
                    log.exception("inbound event %s could not be consumed", row.id)
                    consume_inbound(self.store, row.id, f"error: {type(exc).__name__}",
                                    at=self.clock.now())
            done += len(rows)
            if len(rows) < 500:
                return done

    def _one(self, row: InboundRow, result: TickResult) -> None:
        payload = row.payload if isinstance(row.payload, Mapping) else {}
        now = self.clock.now()
        # read before the transaction: the schedule tables have their own
        ran_by = self._run_config(_mapping(payload.get("run"))) if row.kind == "callback" else None
        with self.store.transaction() as conn:
            if row.kind == "integration":
                outcome = self._identity_event(
                    row, "edges", str(payload.get("event")), payload.get("at"), result, conn
                )
            elif row.kind == "event" and str(payload.get("type")).startswith("account."):
                data = _mapping(payload.get("data"))
                outcome = self._identity_event(
                    row, "linkedapi", str(payload.get("type")),
                    payload.get("createdAt") or data.get("at"), result, conn,
                )
            elif row.kind == "callback":
                outcome = self._callback(ran_by, payload, min(row.received_at, now), result,
                                         conn)
            else:
                outcome = None
            if outcome is not None:
                consume_inbound(self.store, row.id, outcome, at=now, conn=conn)
        if outcome is None:  # a workflow result: settled in its own transactions
            outcome = self._workflow(row, payload)
            consume_inbound(self.store, row.id, outcome, at=now)
        log.info("inbound %s %s %r: %s", row.source, row.kind, row.subject or "-", outcome)

    # ---- identities -------------------------------------------------------------------------

    def _identity_event(
        self,
        row: InboundRow,
        provider: str,
        event: str,
        raw_at: Any,
        result: TickResult,
        conn: Connection,
    ) -> str:
        identity = row.subject
        if not identity:
            return "ignored: no identity"
        at = _when(raw_at)
        last = _when(self.store.kv_get(LAST_AT, identity, conn=conn))
        if at is not None and last is not None and at < last:
            return f"stale: an event of {last.isoformat()} was applied already"
        if at is not None:
            self.store.kv_put(LAST_AT, identity, at.isoformat(), conn=conn)
        ident = self.store.get_identity(identity, conn=conn)
        status = ident.status if ident is not None else "active"
        now = self.clock.now()
        wanted = {"AUTH_EXPIRED": "auth_expired", "DELETED": "paused",
                  "AUTH_SUCCESS": "active"}.get(event) or _ACCOUNT.get(event)
        source = f"{provider} webhook {event}"
        if wanted in ("auth_expired", "paused"):
            if status != "active":
                return f"already {status}"
            reason = (f"{provider}: the LinkedIn session expired ({event})"
                      if wanted == "auth_expired"
                      else f"{provider}: the identity was deleted ({event}); "
                      "`seqrun resume --identity` once replaced")
            paused = pause_identity(self.store, identity, reason, status=wanted,
                                    provider=provider, at=now, conn=conn, source=source)
            result.paused_identities.append(identity)
            log.warning("identity %s paused by a webhook: %s", identity, reason)
            return f"paused {paused} enrollments"
        if wanted == "active":
            if status != "auth_expired":  # a user's pause is the user's to lift
                return f"ignored: identity is {status}"
            resumed = resume_identity(self.store, identity, at=now, conn=conn, source=source)
            result.resumed_identities.append(identity)
            return f"resumed {resumed} enrollments"
        return f"ignored: {event}"

    # ---- workflows --------------------------------------------------------------------------

    def _workflow(self, row: InboundRow, payload: Mapping[str, Any]) -> str:
        if row.kind == "hook":
            body = dict(payload)
            # the oldest account API says complete/error (providers.md §2.7)
            status = {"complete": "completed", "error": "failed"}.get(str(body.get("status")))
            if status is not None:
                body["status"] = status
            settled = complete_from_hook(self.store, body, name=row.subject,
                                         now=self.clock.now())
        elif str(payload.get("type")) == "workflow.completed":
            settled = complete_from_hook(self.store, payload, now=self.clock.now())
        else:
            return f"ignored: {payload.get('type')}"
        if settled is None:
            return "ignored: no unfinished workflow matches"
        return f"workflow {settled.name} {settled.state}"

    # ---- Edges run callbacks ----------------------------------------------------------------

    def _callback(
        self,
        ran_by: tuple[str, str, Mapping[str, Any]] | None,
        payload: Mapping[str, Any],
        received: datetime,
        result: TickResult,
        conn: Connection,
    ) -> str:
        noted = note_callback(self.store, payload, conn)  # an `execution: async` action's
        if noted is not None:
            return noted
        if ran_by is None:
            return "ignored: no managed schedule runs this"
        identity, action, config = ran_by
        if action not in (CONNECTIONS, *INBOX):
            return f"ignored: {action} results are not read"
        if payload.get("error"):  # a failed run reports nothing: the caches stay as they are
            return f"ignored: the run failed ({_mapping(payload.get('error')).get('error_label')})"
        if action == CONNECTIONS:
            outcome = self._connections(identity, _items(payload), conn)
        else:
            outcome = self._inbox(identity, action, payload, result, conn)
        if not outcome.startswith("ignored"):
            self.state.pushed.note(identity, action, received, config, conn)
        return outcome

    def _inbox(
        self,
        identity: str,
        action: str,
        payload: Mapping[str, Any],
        result: TickResult,
        conn: Connection,
    ) -> str:
        ident = self.store.get_identity(identity, conn=conn)
        if ident is None or ident.profile_id is None:
            return "ignored: the identity's own profile id is not known yet"
        if action == MESSAGES:
            summaries, unmapped = _from_messages(_items(payload), ident.profile_id)
            outcome = self._conversations(identity, summaries, result, conn)
            return f"{outcome}, {unmapped} threads without a profile URL" if unmapped else outcome
        summaries = [
            s for s in (EdgesProvider._summary(c, ident.profile_id) for c in _items(payload))
            if s is not None
        ]
        return self._conversations(identity, summaries, result, conn)

    def _run_config(self, run: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]] | None:
        """(identity, action, config) of the managed schedule or async Schedule that ran
        ``run``."""
        schedule_uid, uid = run.get("schedule_uid"), run.get("run_uid") or run.get("uid")
        config: Mapping[str, Any] | None = None
        if schedule_uid:
            for entry in schedule_db.items(self.store, schedule_db.MANAGED).values():
                if entry.get("uid") == schedule_uid:
                    config = entry.get("config")
        if config is None and uid:
            for name, entry in schedule_db.items(self.store, schedule_db.RUNS).items():
                if entry.get("run_uid") == uid:
                    config = (schedule_db.get(self.store, schedule_db.ASYNC, name) or {}).get(
                        "config")
        if not isinstance(config, Mapping):
            return None
        ids = config.get("identity_ids") or []
        if not ids:
            return None
        return str(ids[0]), str(config.get("action") or run.get("action_name") or ""), config

    def _connections(self, identity: str, items: list[Any], conn: Connection) -> str:
        """A connections result (the newest since the schedule's watermark): each one cached
        as connected (read by the acceptance check and the connect step)."""
        urls: set[str] = set()
        for item in items:
            raw = item.get("linkedin_profile_url") if isinstance(item, Mapping) else None
            try:
                urls.add(normalize_profile_url(str(raw or "")))
            except ValueError:
                continue
        known = self.store.connection_statuses(identity, conn=conn)
        now = self.clock.now()
        new = sorted(u for u in urls if known.get(u) != "connected")
        for url in new:
            self.store.put_connection(identity, url, "connected", at=now, conn=conn)
        return f"{len(new)} connections added"

    def _conversations(
        self,
        identity: str,
        summaries: list[ConversationSummary],
        result: TickResult,
        conn: Connection,
    ) -> str:
        cache = self.store.conversations(identity, conn=conn)
        changed = [
            s for s in summaries
            if (old := cache.get(s.profile_url)) is None
            or old.last_activity_at < s.last_activity_at
            or (old.last_activity_at == s.last_activity_at
                and old.last_sender_is_us != s.last_sender_is_us)
        ]
        for s in changed:
            self.store.put_conversation(
                identity, s.profile_url, last_sender_is_us=s.last_sender_is_us,
                last_activity_at=s.last_activity_at, first_sender_is_us=s.first_sender_is_us,
                conn=conn,
            )
        if changed:  # the runner's copy of this cache is read again
            self.state.conversations.pop(identity, None)
        replied = [s.profile_url for s in changed if not s.last_sender_is_us]
        moved = self._move(identity, replied, "reply", _REPLY, self.clock.now(), result, conn)
        return f"{len(changed)} conversations updated, {moved} enrollments replied"

    def _move(
        self, identity: str, urls: Iterable[str], trigger: str, move: Move, now: datetime,
        result: TickResult, conn: Connection,
    ) -> int:
        """Move the live enrollments of these leads on ``identity`` whose step takes
        ``trigger``; the number moved."""
        urls = sorted(urls)
        moved = 0
        for i in range(0, len(urls), 500):
            chunk = urls[i : i + 500]
            for enr, lead in self.store.live_enrollments_for_profiles(identity, chunk, conn=conn):
                if trigger not in self.state.compiled(enr.revision).triggers(enr.state):
                    continue
                self.moves.transition(enr, lead, move._replace(now=now), result, conn=conn)
                moved += 1
        return moved


def _items(payload: Mapping[str, Any]) -> list[Any]:
    """The result items of a callback: ``data`` (``on: all``) or every output's data of
    ``results`` (``on: final``)."""
    out: list[Any] = []
    data = payload.get("data")
    if isinstance(data, list):
        out.extend(data)
    results = payload.get("results")
    for res in results if isinstance(results, list) else []:  # recorded before the check
        if isinstance(res, Mapping) and isinstance(res.get("data"), list):
            out.extend(res["data"])
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _when(value: Any) -> datetime | None:
    """An ISO time of a payload, aware (UTC when it names no zone); None when unreadable."""
    when = parse_time(value) if isinstance(value, str) else None
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


def _from_messages(
    items: list[Any], me: str
) -> tuple[list[ConversationSummary], int]:
    """Conversation summaries from an inbox sync's messages (``linkedin-extract-messages``):
    per thread its newest message; one the lead wrote is a reply, at its time. A message holds
    its sender's profile id, not a URL: a thread whose newest message names no
    ``linkedin_profile_url`` is counted, not guessed (our own newest message changes nothing:
    the runner wrote that conversation when it sent it)."""
    newest: dict[str, tuple[datetime, Mapping[str, Any]]] = {}
    for m in items:
        if not isinstance(m, Mapping):
            continue
        thread = m.get("linkedin_thread_id") or m.get("linkedin_thread_url")
        when = _when(m.get("created_at") or m.get("delivered_at"))
        if not isinstance(thread, str) or when is None:
            continue
        if thread not in newest or when > newest[thread][0]:
            newest[thread] = (when, m)
    out: list[ConversationSummary] = []
    unmapped = 0
    for when, m in newest.values():
        if str(m.get("linkedin_profile_id")) == me:
            continue
        try:
            url = normalize_profile_url(str(m.get("linkedin_profile_url") or ""))
        except ValueError:
            unmapped += 1
            continue
        out.append(ConversationSummary(url, False, when))
    return out, unmapped
