"""The runner's batched writes: a wave's outcomes, transitions, reschedules, events and
cache rows, and the intent of the next call, in one transaction, one statement or
executemany per kind (on PostgreSQL one round trip, the pipeline of store/fast.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from engine.store.codecs import dump_json, load_json
from engine.store.events import Events

# holder -> the stored JSON of a request without parameters (nearly every visit): built
# once per holder in the process (a batch holds one call's intent), a few holders at most
_EMPTY_REQUESTS: dict[str | None, str] = {}


def _request_json(request: Any, holder: str | None) -> str | None:
    """The stored JSON of an intent's request, with the run lock holder making the call."""
    no_params = isinstance(request, dict) and not request
    if no_params:
        hit = _EMPTY_REQUESTS.get(holder)
        if hit is not None:
            return hit
    stored = {} if request is None else {"request": request}
    if holder:  # the run lock holder that makes the call (see recover)
        stored["holder"] = holder
    text = dump_json(stored) if stored else None
    if no_params and text is not None:
        if len(_EMPTY_REQUESTS) >= 64:
            _EMPTY_REQUESTS.clear()
        _EMPTY_REQUESTS[holder] = text
    return text


def intent_params(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The insert parameters (:data:`~engine.store.fast.INTENT_PARAMS`) of intent ``rows``
    (the keyword arguments of ``Store.log_intent`` but ``attempt``, plus an optional
    ``holder``): the insert numbers each attempt itself."""
    values: list[tuple[Any, ...]] = []
    for r in rows:
        eid, step = int(r["enrollment_id"]), str(r["step"])
        stored_json = _request_json(r.get("request"), r.get("holder") or None)
        values.append((f"{eid}:{step}:", eid, r["sequence"], r["revision"], step,
                       r["identity"], r["action"], stored_json, r["at"], r.get("variant"),
                       eid, step))
    return values


class Batch(Events):
    def write_batch(
        self,
        *,
        outcomes: Iterable[Mapping[str, Any]] = (),
        transitions: Iterable[Mapping[str, Any]] = (),
        reschedules: Iterable[Mapping[str, Any]] = (),
        events: Iterable[Mapping[str, Any]] = (),
        conversations: Iterable[Mapping[str, Any]] = (),
        connections: Iterable[Mapping[str, Any]] = (),
        notes: Iterable[Mapping[str, Any]] = (),
        intents: Iterable[Mapping[str, Any]] = (),
        conn: Connection | None = None,
    ) -> list[str]:
        """Many runner writes in one transaction, one statement or executemany per kind;
        returns the keys of ``intents``.

        ``outcomes``: key, status, label, response, finished_at. ``transitions``: id, state,
        next_due_at, step_entered_at, attempts, last_error (and waiting: None when absent).
        ``reschedules``: id, next_due_at, attempts, last_error, waiting. ``events``: as
        :meth:`record_events`. ``conversations`` and ``connections``: rows of those caches
        (upserted). ``notes``: waits to note on the event that put an enrollment at its
        step (``enrollment_id``, ``at``, ``to_state``: the step entered and when, ``waiting``:
        what goes in its ``data.waiting``), each with the event to write instead
        (``fallback``) when no such event is found. ``intents``: as :meth:`log_intents`,
        written after the rest (the runner commits a call's intent with the writes before
        it); a key already taken raises StoreError and nothing of the batch is written.
        """
        params = intent_params(intents)
        own = nullcontext(conn) if conn is not None else self.transaction(pipelined=True)
        with own as c:
            rewrites, fallback = self._resolve_notes(c, notes)  # a read: first
            results = self.fast.write_batch(c, outcomes, transitions, reschedules,
                                            [*events, *fallback], conversations, connections,
                                            rewrites, params)
        return self.fast.keys(results)  # committed (on PostgreSQL, read once through)

    def log_intents(
        self, rows: Iterable[Mapping[str, Any]], *, conn: Connection | None = None
    ) -> list[str]:
        """Write many intent rows at once, each with the next unused attempt number of its
        (enrollment, step), computed by its insert. ``rows`` carry the keyword arguments of
        :meth:`log_intent` except ``attempt``, plus an optional ``holder`` (the run lock
        holder, kept beside the request). Returns the keys; a key already taken raises
        StoreError."""
        return self.write_batch(intents=rows, conn=conn)

    def _resolve_notes(
        self, c: Connection, notes: Iterable[Mapping[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
        """The event rewrites (``b_id``, ``b_data``) of ``notes`` and the fallback events of
        those whose entering event is not found (none is lost)."""
        notes = list(notes)
        if not notes:
            return [], []
        ids = sorted({int(n["enrollment_id"]) for n in notes})
        found: dict[tuple[int, datetime | None, str], tuple[int, str | None]] = {}
        read = self.fast.d.read_time
        for event_id, eid, at, to_state, data_json in self._rows_in(c, "entering_events", ids):
            key = (int(eid), read(at), to_state)
            if key not in found or found[key][0] < event_id:  # the newest entry wins
                found[key] = (int(event_id), data_json)
        rewrites: list[dict[str, Any]] = []
        fallback: list[Mapping[str, Any]] = []
        for n in notes:
            hit = found.get((int(n["enrollment_id"]), n["at"], n["to_state"]))
            if hit is None:
                fallback.append(n["fallback"])
                continue
            data = {**(load_json(hit[1]) or {}), "waiting": n["waiting"]}
            rewrites.append({"b_id": hit[0], "b_data": dump_json(data)})
        return rewrites, fallback
