"""Compile a Sequence or Workflow into one ``transitions`` state machine per revision.

Enrollments are plain rows (state, revision); the runner asks the compiled object where a
trigger leads with :meth:`CompiledSequence.next_state`, a dict lookup precomputed from the
machine's own transition table, so no ``transitions`` model is ever built per lead. Nothing
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
    >>> print(graph(compiled, "mermaid"))
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
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from transitions import Machine, State, Transition

from engine.errors import ManifestError, Problem, UsageError
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
from engine.vocab import ERROR_LABELS, PROFILE_NOT_ACCESSIBLE, TERMINALS

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
    "graph",
    "revision_of",
    "workflow_state_ids",
]

PAUSE = "pause"
REPLY = "reply"
# Sequence-wide routing when the manifest says nothing (DESIGN.md §1).
DEFAULT_ROUTES: Mapping[str, str] = {
    REPLY: "replied",
    "AUTH_EXPIRED": PAUSE,
    PROFILE_NOT_ACCESSIBLE: "removed",
}
_LABELS: tuple[str, ...] = (*ERROR_LABELS, REPLY)
_LABEL_SET = frozenset(_LABELS)
Row = tuple[str, str]  # (trigger, dest)
_NONE: frozenset[str] = frozenset()
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


@dataclass(frozen=True, eq=False)
class _Compiled:
    name: str
    revision: str
    machine: Machine
    initial: str
    states: tuple[str, ...]
    terminals: tuple[str, ...]
    _table: Mapping[str, Mapping[str, str]] = field(repr=False)  # trigger -> source -> dest
    _rows: Mapping[str, list[tuple[str, str]]] = field(repr=False)  # state -> (trigger, dest)
    # state -> every trigger in order; the tuples are shared between states that have the same
    _order: Mapping[str, tuple[str, ...]] = field(repr=False)
    # state -> the labels that resolve from _shared (absent: none); the sets are shared too
    _fallback: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _shared: Mapping[str, str] = field(default_factory=dict, repr=False)  # label -> dest

    def next_state(self, state: str, trigger: str) -> str:
        """Where ``trigger`` leads from ``state``; KeyError when there is no such transition."""
        try:
            return self._table[trigger][state]
        except KeyError:
            if trigger in self._fallback.get(state, _NONE):
                return self._shared[trigger]
            raise

    def sequence_route(self, state: str, trigger: str) -> str | None:
        """The destination when ``trigger`` from ``state`` follows the sequence-wide routing
        (shared table, no transition in the machine); None for a machine transition or none."""
        if trigger in self._fallback.get(state, _NONE):
            return self._shared[trigger]
        return None

    def triggers(self, state: str) -> list[str]:
        """The triggers of ``state`` (none for terminals); KeyError for an unknown state."""
        return list(self._order[state])

    def is_terminal(self, state: str) -> bool:
        return state in self.terminals

    def edges(self) -> Iterator[tuple[str, str, str]]:
        """Every transition as (source, trigger, dest), states in order, shared routes included."""
        for state in self.states:
            for trigger in self._order[state]:
                yield state, trigger, self.next_state(state, trigger)

    def machine_edges(self) -> Iterator[tuple[str, str, str]]:
        """The transitions the machine holds (``edges`` without the shared routes)."""
        for state in self.states:
            for trigger, dest in self._rows[state]:
                yield state, trigger, dest

    def is_default(self, state: str, trigger: str) -> bool:
        """True when the transition comes from a default route, not from the manifest."""
        return False


@dataclass(frozen=True, eq=False)
class CompiledSequence(_Compiled):
    """One compiled sequence revision. Immutable; share it between all leads of the revision."""

    sequence: Sequence | None = None
    sequence_routes: Mapping[str, str] = field(default_factory=dict)
    _steps: Mapping[str, Step] = field(default_factory=dict, repr=False)
    _pauses: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def step(self, state: str) -> Step | None:
        """The step behind ``state``; None for terminals; KeyError for an unknown state."""
        if state in self._steps:
            return self._steps[state]
        if state in self.terminals:
            return None
        raise KeyError(state)

    def is_default(self, state: str, trigger: str) -> bool:
        step = self._steps.get(state)
        if step is None or trigger not in _LABEL_SET:
            return False
        in_machine = state in self._table.get(trigger, _NONE)
        if not in_machine and self.sequence_route(state, trigger) is None:
            return False
        if isinstance(step, ActionStep) and trigger in step.on:
            return False
        return self.sequence is None or trigger not in self.sequence.on

    def pauses(self, state: str, trigger: str) -> bool:
        """True when ``trigger`` in ``state`` routes to ``pause`` (identity paused, lead stays)."""
        return trigger in self._pauses.get(state, frozenset())


@dataclass(frozen=True, eq=False)
class CompiledWorkflow(_Compiled):
    """A compiled workflow: pending -> (running | node states) -> completed | failed."""

    workflow: Workflow | None = None
    _nodes: Mapping[str, WorkflowNode] = field(default_factory=dict, repr=False)

    def node(self, state: str) -> WorkflowNode | None:
        """The workflow node behind ``state`` (``n0``, ``n0.1``); None for the lifecycle states."""
        return self._nodes.get(state)


@dataclass(frozen=True, eq=False)
class CompiledSchedule(_Compiled):
    """The lifecycle of one run of a Schedule, as Edges reports it (providers.md §1.4): the
    provider runs the schedule, seqrun only reconciles it, so this machine is for ``graph``
    and for reading run statuses, not for driving leads."""

    schedule: Schedule | None = None


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


def compile_sequence(seq: Sequence) -> CompiledSequence:
    """Compile ``seq`` (already linted) into its state machine; ManifestError on a bad reference."""
    steps = seq.steps
    builder = _Builder(seq.name, seq.source)
    routes: dict[str, str] = {**DEFAULT_ROUTES, **seq.on}
    pauses: dict[str, frozenset[str]] = {}
    # The sequence-wide routing, one table for every state: label -> dest (pause: absent).
    shared = builder.shared
    for label in (*_LABELS, *routes):
        dest = routes.get(label) or "failed"
        if dest != PAUSE:
            shared[label] = dest
    order_of, fallback_of = builder.order, builder.fallback
    # Profiles, computed once per kind of step and step `on:`, shared by the steps that have it.
    profiles: dict[Any, _Profile] = {}

    def profile(head: tuple[str, ...], labels: Iterable[str], local: Mapping[str, str]) -> _Profile:
        order: list[str] = list(head)
        explicit: list[Row] = []
        fallback: list[str] = []
        paused: list[str] = []
        for label in labels:
            mine = local.get(label)
            dest = mine or routes.get(label) or "failed"
            if dest == PAUSE:
                paused.append(label)
                continue
            order.append(label)
            if mine:
                explicit.append((label, dest))
            else:
                fallback.append(label)
                shared.setdefault(label, dest)
        return tuple(order), tuple(explicit), frozenset(fallback), frozenset(paused)

    # One pass over the steps (at 5,000 steps they no longer sit in the CPU cache by the time
    # a second pass would come back to them).
    steps_by_id: dict[str, Step] = {}
    count = len(steps)
    for i, step in enumerate(steps):
        sid = step.id
        row = builder.state(sid, step)
        steps_by_id[sid] = step
        following = steps[i + 1].id if i + 1 < count else "completed"
        prof: _Profile | None = None
        if isinstance(step, ActionStep):
            row.append(("ok", step.next or following))
            local = step.on
            key: Any = ("action", *local.items()) if local else "action"
            prof = profiles.get(key)
            if prof is None:
                extra = [label for label in local if label not in _LABEL_SET]
                prof = profiles[key] = profile(("ok",), [*_LABELS, *extra], local)
        elif isinstance(step, WaitStep):
            row.append(("elapsed", step.next or following))
            row.append(("ok", step.next or following))
            prof = profiles.get("wait")
            if prof is None:
                prof = profiles["wait"] = profile(("elapsed", "ok"), (REPLY,), {})
        elif isinstance(step, WaitForStep):
            event_trigger = "accepted" if step.event == "connection_accepted" else step.event
            row.append((event_trigger, step.next or following))
            row.append(("timeout", step.on_timeout or "failed"))
            # A wait performs no action: only the sequence-wide routes apply while waiting.
            key = ("wait_for", event_trigger)
            prof = profiles.get(key)
            if prof is None:
                labels = [label for label in routes if label != event_trigger]
                prof = profiles[key] = profile((event_trigger, "timeout"), labels, {})
        elif isinstance(step, BranchStep):
            row.extend((f"case_{n}", case.goto) for n, case in enumerate(step.cases))
            row.append(("else", step.else_ or following))
            key = ("branch", len(step.cases))
            prof = profiles.get(key)
            if prof is None:
                prof = profiles[key] = profile(tuple(t for t, _ in row), (), {})
        elif isinstance(step, EndStep):
            row.append(("ok", step.terminal))
            order_of[sid] = ("ok",)
        if prof is not None:
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
        _shared=shared,
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


# ---- drawing ----------------------------------------------------------------------------------

_MERMAID_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MERMAID_RESERVED = frozenset({"state", "end", "note", "direction", "class", "classDef"})


def _edge_labels(compiled: _Compiled) -> dict[tuple[str, str], str]:
    grouped: dict[tuple[str, str], list[str]] = {}
    defaults: dict[tuple[str, str], int] = {}
    for src, trigger, dest in compiled.edges():
        grouped.setdefault((src, dest), []).append(trigger)
        if compiled.is_default(src, trigger):
            defaults[(src, dest)] = defaults.get((src, dest), 0) + 1
    labels: dict[tuple[str, str], str] = {}
    for key, triggers in grouped.items():
        if dest_is_failed_defaults(key, triggers, defaults):
            labels[key] = "other errors"
        else:
            labels[key] = ", ".join(triggers)
    return labels


def dest_is_failed_defaults(
    key: tuple[str, str], triggers: list[str], defaults: Mapping[tuple[str, str], int]
) -> bool:
    return key[1] == "failed" and len(triggers) > 2 and defaults.get(key, 0) == len(triggers)


def graph(
    compiled: CompiledSequence | CompiledWorkflow | CompiledSchedule,
    fmt: Literal["mermaid", "dot"] | str = "mermaid",
) -> str:
    """The machine as mermaid ``stateDiagram-v2`` or graphviz dot text (every state drawn)."""
    labels = _edge_labels(compiled)
    if fmt == "mermaid":
        ids: dict[str, str] = {}
        used: set[str] = set()
        for k, state in enumerate(compiled.states):
            alias = re.sub(r"\W", "_", state)
            if not _MERMAID_ID.match(alias) or alias in _MERMAID_RESERVED or alias in used:
                alias = f"s{k}"
                while alias in used:
                    alias += "_"
            ids[state] = alias
            used.add(alias)
        lines = ["stateDiagram-v2", f"    %% {compiled.name} revision {compiled.revision}"]
        lines += [f'    state "{s}" as {ids[s]}' for s in compiled.states]
        lines.append(f"    [*] --> {ids[compiled.initial]}")
        for (src, dest), label in labels.items():
            lines.append(f"    {ids[src]} --> {ids[dest]} : {label}")
        lines += [f"    {ids[t]} --> [*]" for t in compiled.terminals]
        return "\n".join(lines) + "\n"
    if fmt == "dot":

        def q(text: str) -> str:
            return json.dumps(text)

        lines = [
            f"digraph {q(compiled.name)} {{",
            "    rankdir=LR;",
            f"    label={q(f'{compiled.name} revision {compiled.revision}')};",
            "    node [shape=box, style=rounded];",
            '    "__start__" [shape=point, label=""];',
        ]
        for state in compiled.states:
            shape = ", shape=doublecircle" if compiled.is_terminal(state) else ""
            lines.append(f"    {q(state)} [label={q(state)}{shape}];")
        lines.append(f'    "__start__" -> {q(compiled.initial)};')
        for (src, dest), label in labels.items():
            lines.append(f"    {q(src)} -> {q(dest)} [label={q(label)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"
    raise UsageError(f"unknown graph format {fmt!r} (mermaid, dot)")
