"""The step graph of a Sequence and the passes over it: reachability, cycles without a wait,
and the acceptance gate. Every pass is linear in steps + edges.

The graph has one node per step. Edges are the ``ok``/``elapsed``/``accepted`` successor
(``next`` or the following list item, ``completed`` after the last), ``on:`` label routes,
``on_timeout``, branch ``goto``/``else`` (fall-through when ``else`` is absent); the
sequence-wide ``on:`` routes leave from every action step and are passed separately.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping

from engine.manifest.lint.common import Report
from engine.manifest.yamlio import child_path
from engine.model import ActionStep, BranchStep, EndStep, Step, WaitForStep, WaitStep
from engine.vocab import ALREADY_CONNECTED, NOT_CONNECTED, TERMINALS

# Edge kinds: "next" (ok/elapsed successor), "accepted" (wait_for event), "timeout", "route"
# (an `on:` label), "case" (branch), "end". Flow kinds are those a lead takes with no error.
FLOW_KINDS = frozenset({"next", "case"})


class Edge:
    __slots__ = ("dst", "explicit", "kind", "label", "path", "target")

    def __init__(
        self, dst: str, path: str, kind: str, *, label: str | None = None, explicit: bool = True
    ) -> None:
        self.dst = dst
        self.path = path
        self.kind = kind
        self.label = label
        self.explicit = explicit
        self.target: int | None = None  # index of the destination step; None for terminals


def _following(steps: tuple[Step, ...], index: int) -> str:
    return steps[index + 1].id if index + 1 < len(steps) else "completed"


def step_edges(steps: tuple[Step, ...], index: int) -> Iterator[Edge]:
    """The outgoing edges of ``steps[index]`` (sequence-wide routes excluded)."""
    step = steps[index]
    path = step.path
    if isinstance(step, ActionStep | WaitStep | WaitForStep):
        kind = "accepted" if isinstance(step, WaitForStep) else "next"
        if step.next:
            yield Edge(step.next, child_path(path, "next"), kind)
        else:
            yield Edge(_following(steps, index), path, kind, explicit=False)
    if isinstance(step, ActionStep):
        for label, dst in step.on.items():
            yield Edge(dst, child_path(child_path(path, "on"), label), "route", label=label)
    elif isinstance(step, WaitForStep):
        if step.on_timeout:
            yield Edge(step.on_timeout, child_path(path, "on_timeout"), "timeout")
    elif isinstance(step, BranchStep):
        for i, case in enumerate(step.cases):
            yield Edge(
                case.goto, child_path(child_path(child_path(path, "branch"), i), "goto"), "case"
            )
        if step.else_:
            yield Edge(step.else_, child_path(path, "else"), "case")
        else:
            yield Edge(_following(steps, index), path, "case", explicit=False)
    elif isinstance(step, EndStep):
        yield Edge(step.terminal, child_path(path, "end"), "end")


def resolved_edges(steps: tuple[Step, ...], index: Mapping[str, int]) -> list[list[Edge]]:
    """The outgoing edges of every step, each with its ``target`` step index set."""
    edges = [list(step_edges(steps, i)) for i in range(len(steps))]
    for i, outgoing in enumerate(edges):
        for edge in outgoing:
            if not edge.explicit:  # the following list item, even when its id is duplicated
                edge.target = i + 1 if i + 1 < len(steps) else None
            elif edge.dst not in TERMINALS:
                edge.target = index.get(edge.dst)
    return edges


# ---- reachability -----------------------------------------------------------------------------


def check_reachable(
    steps: tuple[Step, ...],
    index: Mapping[str, int],
    edges: list[list[Edge]],
    seq_routes: list[Edge],
    migrate_roots: list[str],
    report: Report,
) -> None:
    adjacency = [[e.target for e in es if e.target is not None] for es in edges]
    seen = [False] * len(steps)
    queue: deque[int] = deque([0, *(index[r] for r in migrate_roots)])
    routes_added = False
    while queue:
        i = queue.popleft()
        if seen[i]:
            continue
        seen[i] = True
        if not routes_added and isinstance(steps[i], ActionStep):
            routes_added = True  # sequence-wide routes leave from every action step
            queue.extend(e.target for e in seq_routes if e.target is not None)
        queue.extend(j for j in adjacency[i] if not seen[j])
    first = steps[0].id
    for i, step in enumerate(steps):
        if not seen[i] and index.get(step.id) == i:
            report(step.path, f"step {step.id!r} is unreachable from the first step {first!r}")


# ---- cycles without a wait --------------------------------------------------------------------


def check_wait_cycles(steps: tuple[Step, ...], edges: list[list[Edge]], report: Report) -> None:
    """A cycle of flow edges (success, branch) through no wait: a lead could go round it with
    every call succeeding and no time passing. Error-label routes do not count: a loop closed
    by one needs the provider to contradict itself on every turn."""
    waits = [isinstance(s, WaitStep | WaitForStep) for s in steps]
    succ: list[list[int]] = [
        []
        if waits[i]
        else [
            e.target
            for e in edges[i]
            if e.kind in FLOW_KINDS and e.target is not None and not waits[e.target]
        ]
        for i in range(len(steps))
    ]
    for component in _strongly_connected(succ, skip=waits):
        v = component[-1]
        if len(component) > 1 or v in succ[v]:
            _report_cycle(steps, succ, set(component), report)


def _strongly_connected(succ: list[list[int]], skip: list[bool]) -> Iterator[list[int]]:
    """Tarjan's SCC, iterative; each component ends with its root, in completion order."""
    n = len(succ)
    order = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    for root in range(n):
        if order[root] != -1 or skip[root]:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        order[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, k = work[-1]
            if k < len(succ[v]):
                work[-1] = (v, k + 1)
                w = succ[v][k]
                if order[w] == -1:
                    order[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], order[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == order[v]:
                component: list[int] = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                yield component


def _report_cycle(
    steps: tuple[Step, ...], succ: list[list[int]], component: set[int], report: Report
) -> None:
    start = min(component)
    # BFS inside the component from `start` back to `start`: a shortest loop to show.
    parent: dict[int, int] = {}
    queue: deque[int] = deque([start])
    end = start
    found = False
    while queue and not found:
        v = queue.popleft()
        for w in succ[v]:
            if w not in component:
                continue
            if w == start:
                end, found = v, True
                break
            if w not in parent:
                parent[w] = v
                queue.append(w)
    chain = [end]
    while chain[-1] != start:
        chain.append(parent[chain[-1]])
    names = " -> ".join(steps[i].id for i in [*reversed(chain), start])
    report(
        steps[start].path,
        f"cycle without a wait: {names} (put a wait or wait_for step on the loop)",
    )


# ---- acceptance gate --------------------------------------------------------------------------


def _gated_after(edge: Edge, gated: bool, src: Step) -> bool:
    """Whether a lead is known to be connected after taking ``edge`` out of ``src``."""
    if isinstance(src, ActionStep) and src.action == "check_connection":
        return True
    accepting = isinstance(src, WaitForStep) and src.event == "connection_accepted"
    if edge.kind == "accepted" and accepting:
        return True
    if edge.kind == "route" and edge.label in (ALREADY_CONNECTED, "reply"):
        return True  # connected already, or the lead wrote to us: a conversation exists
    if edge.kind == "route" and edge.label == NOT_CONNECTED:
        return False
    return gated


def check_acceptance_gate(
    steps: tuple[Step, ...], edges: list[list[Edge]], seq_routes: list[Edge], report: Report
) -> None:
    """A ``send_message`` step reachable with no acceptance gate on the way is an error.

    Reachability over (step, gated) pairs: ``gated`` becomes true after a ``check_connection``
    step, on the ``accepted`` edge of ``wait_for: connection_accepted`` and on an
    ``ALREADY_CONNECTED`` or ``reply`` route; a ``NOT_CONNECTED`` route clears it.
    2 * (steps + edges) work at most.
    """
    seen = [[False, False] for _ in steps]
    witness: dict[int, int] = {}  # send_message step -> ungated predecessor state (for the message)
    queue: deque[tuple[int, bool, int]] = deque([(0, False, -1)])
    routes_done = [False, False]
    while queue:
        i, gated, came_from = queue.popleft()
        if seen[i][gated]:
            continue
        seen[i][gated] = True
        src_step = steps[i]
        if not gated and isinstance(src_step, ActionStep) and src_step.action == "send_message":
            witness.setdefault(i, came_from)
        outgoing: list[Edge] = list(edges[i])
        if isinstance(src_step, ActionStep) and not routes_done[gated]:
            routes_done[gated] = True
            outgoing.extend(seq_routes)
        for edge in outgoing:
            j = edge.target
            if j is None:
                continue
            g = _gated_after(edge, gated, src_step)
            if not seen[j][g]:
                queue.append((j, g, i))
    for i in sorted(witness):
        step = steps[i]
        prev = witness[i]
        via = f" (from step {steps[prev].id!r})" if prev >= 0 else " (it is the first step)"
        report(
            step.path,
            f"step {step.id!r} sends a message but is reachable without an acceptance gate{via}: "
            "add a wait_for: connection_accepted, a check_connection step, or route "
            "ALREADY_CONNECTED to it",
        )
