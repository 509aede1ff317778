"""The runner's batched writes: a wave's outcomes, transitions, reschedules, events and
cache rows in one transaction, one executemany per kind."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store import statements as st
from engine.store import tables as t
from engine.store.codecs import dump_json, load_json, py_time, response_json
from engine.store.events import Events


def _outcome_params(outcomes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "k": o["key"],
            "b_status": o["status"],
            "b_label": o.get("label"),
            "b_response": response_json(o.get("response")),
            "b_finished": o["finished_at"],
        }
        for o in outcomes
    ]


def _transition_params(transitions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "eid": r["id"],
            "b_state": r["state"],
            "b_due": r["next_due_at"],
            "b_entered": r["step_entered_at"],
            "b_attempts": r["attempts"],
            "b_error": r["last_error"],
            "b_waiting": r.get("waiting"),
        }
        for r in transitions
    ]


def _reschedule_params(reschedules: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "eid": r["id"],
            "b_due": r["next_due_at"],
            "b_attempts": r["attempts"],
            "b_error": r["last_error"],
            "b_waiting": r.get("waiting"),
        }
        for r in reschedules
    ]


def _upsert_rows(
    c: Connection,
    table: sa.Table,
    rows: list[Mapping[str, Any]],
    shape: tuple[tuple[str, ...], tuple[str, ...]],
) -> None:
    """One executemany upsert of cache rows; a key given twice keeps its last row (one
    multi-row ``ON CONFLICT DO UPDATE`` may not touch a row twice on PostgreSQL)."""
    if not rows:
        return
    keys, update = shape
    last = {tuple(r[k] for k in keys): r for r in rows}
    c.execute(st.cache_upsert(c.dialect.name, table, keys, update), list(last.values()))


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
        conn: Connection | None = None,
    ) -> None:
        """Many runner writes in one transaction, one executemany per kind.

        ``outcomes``: key, status, label, response, finished_at. ``transitions``: id, state,
        next_due_at, step_entered_at, attempts, last_error (and waiting: None when absent).
        ``reschedules``: id, next_due_at, attempts, last_error, waiting. ``events``: as
        :meth:`record_events`. ``conversations`` and ``connections``: rows of those caches
        (upserted). ``notes``: waits to note on the event that put an enrollment at its
        step (``enrollment_id``, ``at``, ``to_state``: the step entered and when, ``waiting``:
        what goes in its ``data.waiting``), each with the event to write instead
        (``fallback``) when no such event is found.
        """
        if self.fast is not None:
            with self.tx(conn) as c:
                rewrites, fallback = self._resolve_notes(c, notes)
                self.fast.write_batch(c, outcomes, transitions, reschedules,
                                      [*events, *fallback], conversations, connections)
                self.fast.rewrite_events(c, rewrites)
            return
        out = _outcome_params(outcomes)
        trans = _transition_params(transitions)
        resch = _reschedule_params(reschedules)
        convs, links = list(conversations), list(connections)
        with self.tx(conn) as c:
            rewrites, fallback = self._resolve_notes(c, notes)  # a read: before the pipeline
            with self._pipelined(c):  # one round trip on PostgreSQL
                if out:
                    c.execute(st.outcome_update(), out)
                if trans:
                    c.execute(st.transition_update(), trans)
                if resch:
                    c.execute(st.reschedule_update(), resch)
                self.record_events([*events, *fallback], conn=c)
                if rewrites:
                    c.execute(st.event_data_by_id(), rewrites)
                _upsert_rows(c, t.conversation_cache, convs, st.CONVERSATION_UPSERT)
                _upsert_rows(c, t.connection_cache, links, st.CONNECTION_UPSERT)

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
        rows = self._rows_in(c, "entering_events", ids, st.entering_events_query)
        for event_id, eid, at, to_state, data_json in rows:
            key = (int(eid), at if isinstance(at, datetime) else py_time(at), to_state)
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
