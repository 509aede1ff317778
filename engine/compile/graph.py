"""Drawing a compiled machine: mermaid ``stateDiagram-v2`` or graphviz dot text, every state
drawn. Transitions between the same two states share one arrow; a sequence's default routes
to ``failed`` are drawn as one "other errors" arrow.

>>> print(graph(compile_sequence(seq), "mermaid"))  # doctest: +SKIP
stateDiagram-v2
...
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Literal

from engine.compile.compiled import Compiled, CompiledSchedule, CompiledSequence, CompiledWorkflow
from engine.errors import UsageError

__all__ = ["graph"]

_MERMAID_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MERMAID_RESERVED = frozenset({"state", "end", "note", "direction", "class", "classDef"})


def _edge_labels(compiled: Compiled) -> dict[tuple[str, str], str]:
    grouped: dict[tuple[str, str], list[str]] = {}
    defaults: dict[tuple[str, str], int] = {}
    for src, trigger, dest in compiled.edges():
        grouped.setdefault((src, dest), []).append(trigger)
        if compiled.is_default(src, trigger):
            defaults[(src, dest)] = defaults.get((src, dest), 0) + 1
    labels: dict[tuple[str, str], str] = {}
    for key, triggers in grouped.items():
        if _only_default_failures(key, triggers, defaults):
            labels[key] = "other errors"
        else:
            labels[key] = ", ".join(triggers)
    return labels


def _only_default_failures(
    key: tuple[str, str], triggers: list[str], defaults: Mapping[tuple[str, str], int]
) -> bool:
    """Whether the arrow ``key`` is three or more default routes to ``failed``."""
    return key[1] == "failed" and len(triggers) > 2 and defaults.get(key, 0) == len(triggers)


def graph(
    compiled: CompiledSequence | CompiledWorkflow | CompiledSchedule,
    fmt: Literal["mermaid", "dot"] | str = "mermaid",
) -> str:
    """The machine as mermaid ``stateDiagram-v2`` or graphviz dot text (every state drawn)."""
    if fmt == "mermaid":
        return _mermaid(compiled, _edge_labels(compiled))
    if fmt == "dot":
        return _dot(compiled, _edge_labels(compiled))
    raise UsageError(f"unknown graph format {fmt!r} (mermaid, dot)")


def _mermaid_ids(states: tuple[str, ...]) -> dict[str, str]:
    """A mermaid id per state: the name when it is one, else ``s<index>``, all distinct."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for k, state in enumerate(states):
        alias = re.sub(r"\W", "_", state)
        if not _MERMAID_ID.match(alias) or alias in _MERMAID_RESERVED or alias in used:
            alias = f"s{k}"
            while alias in used:
                alias += "_"
        ids[state] = alias
        used.add(alias)
    return ids


def _mermaid(compiled: Compiled, labels: Mapping[tuple[str, str], str]) -> str:
    ids = _mermaid_ids(compiled.states)
    lines = ["stateDiagram-v2", f"    %% {compiled.name} revision {compiled.revision}"]
    lines += [f'    state "{s}" as {ids[s]}' for s in compiled.states]
    lines.append(f"    [*] --> {ids[compiled.initial]}")
    for (src, dest), label in labels.items():
        lines.append(f"    {ids[src]} --> {ids[dest]} : {label}")
    lines += [f"    {ids[t]} --> [*]" for t in compiled.terminals]
    return "\n".join(lines) + "\n"


def _dot(compiled: Compiled, labels: Mapping[tuple[str, str], str]) -> str:
    q = json.dumps  # a dot string is quoted and escaped like a JSON string
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
