"""Compile a Sequence or Workflow into one ``transitions`` state machine per revision.

Enrollments are plain rows (state, revision); the runner asks the compiled object
(:mod:`engine.compile.compiled`) where a trigger leads with :meth:`CompiledSequence.next_state`,
a dict lookup precomputed from the machine's own transition table, so no ``transitions`` model
is ever built per lead. Nothing
from YAML becomes a callback: the machine has no callbacks at all (transitions resolves
dotted strings to imports, so a name from a manifest would be code execution).

The machine holds the explicit edges of each step (``ok``, ``elapsed``, ``accepted``,
``timeout``, ``case_<n>``, ``else``, a step's own ``on:`` routes). A label that only follows
the sequence-wide routing (sequence ``on:`` or the defaults below) is not a transition object
per state: it resolves from one shared table, label -> destination, for the states where it
applies (:meth:`CompiledSequence.sequence_route`). A 5,000-step machine would otherwise hold
~40,000 transitions, most of them ``-> failed``. (A ``'*'`` source would not help:
``transitions`` expands it into one transition per state.)

Example::

    >>> compiled = compile_sequence(seq)
    >>> compiled.revision
    '3f9a0c1b2d4e'
    >>> compiled.next_state("connect", "ALREADY_CONNECTED")
    'intro'
    >>> print(graph(compiled, "mermaid"))  # engine.compile.graph
    stateDiagram-v2
    ...

Triggers of a sequence state:

* action step: ``ok`` -> ``next`` (or the following step, ``completed`` after the last); every
  canonical error label and ``reply`` -> step ``on:``, else sequence ``on:``, else the default
  (``reply`` -> ``replied``, ``PROFILE_NOT_ACCESSIBLE`` -> ``removed``, others -> ``failed``).
  A route to ``pause`` is not a transition: :meth:`CompiledSequence.pauses` tells the runner.
* ``wait``: ``elapsed`` (and ``ok``) -> next; ``reply`` -> the sequence route.
* ``wait_for: connection_accepted``: ``accepted`` -> next, ``timeout`` -> ``on_timeout``, error
  labels and ``reply`` as for actions. ``wait_for: reply``: ``reply`` -> next.
* branch: ``case_<n>`` -> the n-th ``goto``, ``else`` -> ``else`` or the following step.
* end: ``ok`` -> its terminal. Terminals have no triggers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from transitions import Machine, State, Transition

from engine.compile.compiled import (
    LABELS,
    REPLY,
    CompiledSchedule,
    CompiledSequence,
    CompiledWorkflow,
)
from engine.errors import ManifestError, Problem
from engine.model import (
    ActionStep,
    BranchStep,
    EndStep,
    Schedule,
    Sequence,
    Step,
    WaitForStep,
    WaitStep,
    Workflow,
    WorkflowNode,
)
from engine.vocab import PROFILE_NOT_ACCESSIBLE, TERMINALS

__all__ = [
    "DEFAULT_ROUTES",
    "PAUSE",
    "SCHEDULE_RUN_STATES",
    "WORKFLOW_STATES",
    "CompiledSchedule",
    "CompiledSequence",
    "CompiledWorkflow",
    "compile_schedule",
    "compile_sequence",
    "compile_workflow",
    "revision_of",
    "workflow_state_ids",
]

PAUSE = "pause"
# Sequence-wide routing when the manifest says nothing (DESIGN.md §1).
DEFAULT_ROUTES: Mapping[str, str] = {
    REPLY: "replied",
    "AUTH_EXPIRED": PAUSE,
    PROFILE_NOT_ACCESSIBLE: "removed",
}
_LABEL_SET = frozenset(LABELS)
Row = tuple[str, str]  # (trigger, dest)
_NONE: frozenset[str] = frozenset()
_END_ORDER: tuple[str, ...] = ("ok",)
# A step's triggers in order, its explicit label rows, the labels it leaves to the shared
# sequence-wide table, and the labels that pause.
_Profile = tuple[tuple[str, ...], tuple[Row, ...], frozenset[str], frozenset[str]]
WORKFLOW_STATES: tuple[str, ...] = ("pending", "running", "completed", "failed")


class _Transition(Transition):
    """A transition that cannot carry callbacks: its callback lists are empty tuples, so
    ``add_callback`` fails loudly. It is also smaller, which matters at 5,000 steps."""

    # Slots keep the 40,000 transitions of a 5,000-step machine compact (no per-object dict).
    __slots__ = ("after", "before", "conditions", "dest", "prepare", "source")

    def __init__(
        self,
        source: str,
        dest: str,
        conditions: Any = None,
        unless: Any = None,
        before: Any = None,
        after: Any = None,
        prepare: Any = None,
    ) -> None:
        if conditions or unless or before or after or prepare:
            raise TypeError("seqrun machines take no callbacks")
        self.source = source
        self.dest = dest
        self.prepare = self.before = self.after = self.conditions = ()  # type: ignore[assignment]


class _State(State):
    """A state that cannot carry callbacks either (``on_enter``/``on_exit`` are empty tuples),
    slotted: a 5,000-step machine has 5,000 of them."""

    __slots__ = ("_name", "final", "ignore_invalid_triggers", "on_enter", "on_exit")

    def __init__(
        self,
        name: str,
        on_enter: Any = None,
        on_exit: Any = None,
        ignore_invalid_triggers: Any = None,
        final: bool = False,
    ) -> None:
        if on_enter or on_exit:
            raise TypeError("seqrun machines take no callbacks")
        self._name = name
        self.final = final
        self.ignore_invalid_triggers = ignore_invalid_triggers
        self.on_enter = self.on_exit = ()  # type: ignore[assignment]


class _Machine(Machine):
    transition_cls = _Transition
    state_cls = _State


def _canonical(value: Any) -> Any:
    """A JSON-able form of a model object, without source positions (fallback revision input)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("source", "normalized", "path")
        }
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def revision_of(manifest: Sequence | Workflow | Schedule) -> str:
    """First 12 hex digits of sha256 over the canonical JSON (sorted keys) of ``.normalized``."""
    data = manifest.normalized if manifest.normalized else _canonical(manifest)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# ---- building ---------------------------------------------------------------------------------


class _Builder:
    """Collects states and their (trigger, dest) rows in order."""

    def __init__(self, name: str, source: Any) -> None:
        self.name = name
        self.source = source
        self.rows: dict[str, list[tuple[str, str]]] = {}
        self.order: dict[str, tuple[str, ...]] = {}  # set by compile_sequence (else from rows)
        self.fallback: dict[str, frozenset[str]] = {}
        self.shared: dict[str, str] = {}
        self.problems: list[Problem] = []

    def state(self, name: str, owner: Any = None) -> list[tuple[str, str]]:
        """Add state ``name``; ``owner`` (a step or node with ``.path``) positions errors."""
        if name in self.rows:
            path = getattr(owner, "path", "$")
            self.problems.append(self.source.problem(path, f"duplicate state {name!r}"))
        else:
            self.rows[name] = []
        return self.rows[name]

    def order_of(self, state: str) -> tuple[str, ...]:
        order = self.order.get(state)
        if order is None:
            order = tuple(trigger for trigger, _ in self.rows[state])
        return order

    def dest_of(self, state: str, trigger: str) -> str:
        if trigger in self.fallback.get(state, _NONE):
            return self.shared[trigger]
        return next(dest for t, dest in self.rows[state] if t == trigger)

    def undefined(self, owners: Mapping[str, Any]) -> None:
        """A problem per transition (shared routes included) to a state that does not exist,
        in state and trigger order."""
        for src in self.rows:
            for trigger in self.order_of(src):
                dest = self.dest_of(src, trigger)
                if dest not in self.rows:
                    self.problems.append(
                        self.source.problem(
                            getattr(owners.get(src), "path", "$"),
                            f"{src!r} --{trigger}--> undefined state {dest!r}",
                        )
                    )

    def orders(self) -> dict[str, tuple[str, ...]]:
        return {state: self.order_of(state) for state in self.rows}

    def machine(
        self, initial: str, owners: Mapping[str, Any] | None = None
    ) -> tuple[Machine, dict[str, dict[str, str]]]:
        rows = self.rows
        undefined = any(dest not in rows for dest in self.shared.values())
        machine = _Machine(
            model=None,
            states=list(rows),
            initial=initial,
            auto_transitions=False,
            send_event=False,
            name=self.name,
        )
        # One pass over the rows fills the machine and the lookup table, trigger -> {source:
        # dest} (a test checks it against machine.get_transitions). Each trigger's event is
        # registered once through add_transition with no source; its transitions are then added
        # to the event directly (add_transition per row costs ~2 us of argument handling).
        events = machine.events
        table: dict[str, dict[str, str]] = {}
        for src, row in rows.items():
            for trigger, dest in row:
                if dest not in rows:
                    undefined = True
                by_source = table.get(trigger)
                if by_source is None:
                    table[trigger] = by_source = {}
                    machine.add_transition(trigger, cast(Any, []), dest)
                by_source[src] = dest
                events[trigger].add_transition(_Transition(src, dest))
        if undefined:
            self.undefined(owners or {})
        if self.problems:
            raise ManifestError(self.problems)
        return machine, table


class _Profiles:
    """The routing of each kind of step (and step ``on:``), computed once and shared by the
    steps that have it; fills the sequence-wide table, label -> dest, as it goes."""

    def __init__(self, routes: Mapping[str, str], shared: dict[str, str]) -> None:
        self.routes = routes
        self.shared = shared
        self.cache: dict[Any, _Profile] = {}
        for label in (*LABELS, *routes):
            dest = routes.get(label) or "failed"
            if dest != PAUSE:
                shared[label] = dest

    def make(
        self, head: tuple[str, ...], labels: Iterable[str], local: Mapping[str, str]
    ) -> _Profile:
        order: list[str] = list(head)
        explicit: list[Row] = []
        fallback: list[str] = []
        paused: list[str] = []
        for label in labels:
            mine = local.get(label)
            dest = mine or self.routes.get(label) or "failed"
            if dest == PAUSE:
                paused.append(label)
                continue
            order.append(label)
            if mine:
                explicit.append((label, dest))
            else:
                fallback.append(label)
                self.shared.setdefault(label, dest)
        return tuple(order), tuple(explicit), frozenset(fallback), frozenset(paused)


def _step_rows(step: Step, following: str, row: list[Row], profiles: _Profiles) -> _Profile | None:
    """Append the explicit rows of ``step`` to ``row``; its profile (None for an end step)."""
    cache = profiles.cache
    if isinstance(step, ActionStep):
        row.append(("ok", step.next or following))
        local = step.on
        key: Any = ("action", *local.items()) if local else "action"
        prof = cache.get(key)
        if prof is None:
            extra = [label for label in local if label not in _LABEL_SET]
            prof = cache[key] = profiles.make(("ok",), [*LABELS, *extra], local)
        return prof
    if isinstance(step, WaitStep):
        row.append(("elapsed", step.next or following))
        row.append(("ok", step.next or following))
        prof = cache.get("wait")
        if prof is None:
            prof = cache["wait"] = profiles.make(("elapsed", "ok"), (REPLY,), {})
        return prof
    if isinstance(step, WaitForStep):
        event_trigger = "accepted" if step.event == "connection_accepted" else step.event
        row.append((event_trigger, step.next or following))
        row.append(("timeout", step.on_timeout or "failed"))
        # A wait performs no action: only the sequence-wide routes apply while waiting.
        key = ("wait_for", event_trigger)
        prof = cache.get(key)
        if prof is None:
            labels = [label for label in profiles.routes if label != event_trigger]
            prof = cache[key] = profiles.make((event_trigger, "timeout"), labels, {})
        return prof
    if isinstance(step, BranchStep):
        row.extend((f"case_{n}", case.goto) for n, case in enumerate(step.cases))
        row.append(("else", step.else_ or following))
        key = ("branch", len(step.cases))
        prof = cache.get(key)
        if prof is None:
            prof = cache[key] = profiles.make(tuple(t for t, _ in row), (), {})
        return prof
    if isinstance(step, EndStep):
        row.append(("ok", step.terminal))
    return None


def compile_sequence(seq: Sequence) -> CompiledSequence:
    """Compile ``seq`` (already linted) into its state machine; ManifestError on a bad reference."""
    steps = seq.steps
    builder = _Builder(seq.name, seq.source)
    routes: dict[str, str] = {**DEFAULT_ROUTES, **seq.on}
    profiles = _Profiles(routes, builder.shared)
    order_of, fallback_of = builder.order, builder.fallback
    pauses: dict[str, frozenset[str]] = {}
    # One pass over the steps (at 5,000 steps they no longer sit in the CPU cache by the time
    # a second pass would come back to them).
    steps_by_id: dict[str, Step] = {}
    count = len(steps)
    for i, step in enumerate(steps):
        sid = step.id
        row = builder.state(sid, step)
        steps_by_id[sid] = step
        following = steps[i + 1].id if i + 1 < count else "completed"
        prof = _step_rows(step, following, row, profiles)
        if prof is None:
            if isinstance(step, EndStep):
                order_of[sid] = _END_ORDER
            continue
        order, explicit, fallback, paused = prof
        order_of[sid] = order
        if explicit:
            row.extend(explicit)
        if fallback:
            fallback_of[sid] = fallback
        if paused:
            pauses[sid] = paused
    for terminal in TERMINALS:
        builder.state(terminal)
        builder.order[terminal] = ()
    initial = steps[0].id if steps else "completed"
    machine, table = builder.machine(initial, steps_by_id)
    return CompiledSequence(
        name=seq.name,
        revision=revision_of(seq),
        machine=machine,
        initial=initial,
        states=tuple(builder.rows),
        terminals=TERMINALS,
        _table=table,
        _rows=builder.rows,
        _order=builder.order if len(builder.order) == len(builder.rows) else builder.orders(),
        _fallback=builder.fallback,
        _shared=profiles.shared,
        sequence=seq,
        sequence_routes=routes,
        _steps=steps_by_id,
        _pauses=pauses,
    )


def workflow_state_ids(roots: tuple[WorkflowNode, ...]) -> list[tuple[str, WorkflowNode]]:
    """(state id, node) in execution (pre-)order: ``n0``, ``n0.0``, ``n0.1``, ``n1``..."""
    out: list[tuple[str, WorkflowNode]] = []
    stack = [(f"n{i}", n) for i, n in reversed(list(enumerate(roots)))]
    while stack:
        sid, node = stack.pop()
        out.append((sid, node))
        stack.extend((f"{sid}.{j}", c) for j, c in reversed(list(enumerate(node.then))))
    return out


def compile_workflow(wf: Workflow) -> CompiledWorkflow:
    """Compile ``wf``: ``pending --submit--> running`` (one submission, e.g. LinkedAPI) or
    ``pending --start--> n0 --ok--> n0.0 ...`` (node by node); ``ok``/``error`` end both."""
    builder = _Builder(wf.name, wf.source)
    nodes = workflow_state_ids(wf.root)
    pending = builder.state("pending")
    running = builder.state("running")
    node_rows = [builder.state(sid, node) for sid, node in nodes]
    builder.state("completed")
    builder.state("failed")
    pending.append(("submit", "running"))
    pending.append(("start", nodes[0][0] if nodes else "completed"))
    running.append(("ok", "completed"))
    running.append(("error", "failed"))
    for k, row in enumerate(node_rows):
        row.append(("ok", nodes[k + 1][0] if k + 1 < len(nodes) else "completed"))
        row.append(("error", "failed"))
    machine_nodes = dict(nodes)
    machine, table = builder.machine("pending", machine_nodes)
    return CompiledWorkflow(
        name=wf.name,
        revision=revision_of(wf),
        machine=machine,
        initial="pending",
        states=tuple(builder.rows),
        terminals=("completed", "failed"),
        _table=table,
        _rows=builder.rows,
        _order=builder.orders(),
        workflow=wf,
        _nodes=machine_nodes,
    )


# Edges run statuses (lowercased) and what moves a run between them.
_SCHEDULE_RUN: tuple[tuple[str, str, str], ...] = (
    ("scheduled", "start", "running"),
    ("running", "ok", "succeeded"),
    ("running", "partial", "partial_succeeded"),
    ("running", "error", "failed"),
    ("running", "LIMIT_REACHED", "blocked"),
    ("blocked", "resume", "scheduled"),
)
SCHEDULE_RUN_STATES: tuple[str, ...] = (
    "scheduled",
    "running",
    "blocked",
    "succeeded",
    "partial_succeeded",
    "failed",
)


def compile_schedule(sch: Schedule) -> CompiledSchedule:
    """The run lifecycle of ``sch`` (scheduled -> running -> succeeded | partial_succeeded |
    failed, with blocked -> scheduled after LIMIT_REACHED)."""
    builder = _Builder(sch.name, sch.source)
    for state in SCHEDULE_RUN_STATES:
        builder.state(state)
    for src, trigger, dest in _SCHEDULE_RUN:
        builder.rows[src].append((trigger, dest))
    machine, table = builder.machine("scheduled")
    return CompiledSchedule(
        name=sch.name,
        revision=revision_of(sch),
        machine=machine,
        initial="scheduled",
        states=tuple(builder.rows),
        terminals=("succeeded", "partial_succeeded", "failed"),
        _table=table,
        _rows=builder.rows,
        _order=builder.orders(),
        schedule=sch,
    )
