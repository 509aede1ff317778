"""The compiled objects: one per manifest revision, immutable, shared by all its leads.

The runner asks a :class:`CompiledSequence` where a trigger leads with
:meth:`~Compiled.next_state`, a dict lookup precomputed from the machine's own transition
table. A label that only follows the sequence-wide routing is not a transition per state: it
resolves from one shared table, label -> destination, for the states where it applies
(:meth:`~Compiled.sequence_route`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from transitions import Machine

from engine.model import ActionStep, Schedule, Sequence, Step, Workflow, WorkflowNode
from engine.vocab import ERROR_LABELS

__all__ = [
    "LABELS",
    "REPLY",
    "Compiled",
    "CompiledSchedule",
    "CompiledSequence",
    "CompiledWorkflow",
]

REPLY = "reply"
# The outcome labels a sequence routes: every canonical error label and the reply event.
LABELS: tuple[str, ...] = (*ERROR_LABELS, REPLY)
_LABEL_SET = frozenset(LABELS)
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, eq=False)
class Compiled:
    """What every compiled manifest offers: its states and where each trigger leads."""

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
class CompiledSequence(Compiled):
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
class CompiledWorkflow(Compiled):
    """A compiled workflow: pending -> (running | node states) -> completed | failed."""

    workflow: Workflow | None = None
    _nodes: Mapping[str, WorkflowNode] = field(default_factory=dict, repr=False)

    def node(self, state: str) -> WorkflowNode | None:
        """The workflow node behind ``state`` (``n0``, ``n0.1``); None for the lifecycle states."""
        return self._nodes.get(state)


@dataclass(frozen=True, eq=False)
class CompiledSchedule(Compiled):
    """The lifecycle of one run of a Schedule, as Edges reports it (providers.md §1.4): the
    provider runs the schedule, seqrun only reconciles it, so this machine is for ``graph``
    and for reading run statuses, not for driving leads."""

    schedule: Schedule | None = None
