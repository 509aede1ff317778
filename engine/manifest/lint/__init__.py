"""Semantic lint of a loaded manifest: everything JSON Schema cannot say.

``lint(manifest) -> list[Problem]`` returns every finding, errors and warnings, each positioned
through the manifest's :class:`~engine.model.SourceMap`. It never raises on a malformed but
schema-valid model and never prints.

Example::

    >>> problems = lint(sequence)
    >>> [str(p) for p in problems if p.severity == "error"]
    ['founders.yaml:31:13: $.spec.steps[1].next: undefined step 'mesage' (did you mean 'message'?)']

Decisions worth knowing (see also README, "Lint"):

* The step graph has one node per step. Edges are the ``ok``/``elapsed``/``accepted`` successor
  (``next`` or the following list item, ``completed`` after the last), ``on:`` label routes,
  ``on_timeout``, branch ``goto``/``else`` (fall-through when ``else`` is absent) and sequence-wide
  ``on:`` routes (from every action step). Every graph pass is linear in steps + edges.
* "Cycle without a wait" looks only at *flow* edges (success, branch): a loop that a lead can go
  round with every call succeeding and no time passing. A loop closed by an error-label route
  (``intro --NOT_CONNECTED--> connect --ALREADY_CONNECTED--> intro``) needs the provider to
  contradict itself on every turn; it is allowed.
* Acceptance gate: a reachability pass over ``(step, gated)`` pairs. ``gated`` becomes true after a
  ``check_connection`` step, on the ``accepted`` edge of ``wait_for: connection_accepted`` and on
  an ``ALREADY_CONNECTED`` or ``reply`` route; a ``NOT_CONNECTED`` route clears it. A
  ``send_message`` step reachable with ``gated`` false is an error.
* Template variables missing from the leads CSV header are errors, except when *every* use of the
  variable is filtered through ``| default(...)``: that renders fine, so it is a warning (it is
  still likely a misspelt column).
* Schedule rules live in :func:`engine.manifest.lint.schedule.schedule_problems`; lint reports
  them once, adding a did-you-mean to an unknown provider or timezone.
* Length checks measure the fixed text: template expressions removed, the shortest spintax
  alternative kept. That is a lower bound, so a report is never a false alarm.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import os
import re
import zoneinfo
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from engine.errors import Problem
from engine.manifest.explain import did_you_mean
from engine.manifest.lint.schedule import schedule_problems
from engine.manifest.yamlio import child_path
from engine.model import (
    ActionStep,
    BranchStep,
    EndStep,
    Manifest,
    Schedule,
    Sequence,
    SourceMap,
    Step,
    WaitForStep,
    WaitStep,
    Workflow,
    WorkflowNode,
)
from engine.providers import REGISTRY
from engine.providers.base import ProviderSpec
from engine.vocab import (
    ALREADY_CONNECTED,
    CANONICAL_ACTIONS,
    DAYS,
    ERROR_LABELS,
    LIMIT_ALIASES,
    LINKEDAPI_ACTIONS,
    NOT_CONNECTED,
    TERMINALS,
)

__all__ = [
    "BUILTIN_LEAD_FIELDS",
    "LIMIT_ALIASES",
    "LINKEDAPI_ACTION_TYPES",
    "PAUSE",
    "ROUTE_LABELS",
    "did_you_mean",
    "lint",
    "read_csv_header",
]

Severity = Literal["error", "warning"]

PAUSE = "pause"  # a routing target that is not a state: the runner pauses the identity
# Lead attributes every lead has whatever the CSV holds (the loader derives the names).
BUILTIN_LEAD_FIELDS: frozenset[str] = frozenset(
    {"linkedin_profile_url", "full_name", "first_name", "last_name", "company_name", "timezone"}
)
# Labels an `on:` map may route: canonical error labels plus the reply event.
ROUTE_LABELS: tuple[str, ...] = (*ERROR_LABELS, "reply")
# LinkedAPI action types (providers.md §2.4) -> whether the action takes `personUrl`.
LINKEDAPI_ACTION_TYPES: Mapping[str, bool] = {
    "st.checkConnectionStatus": True,
    "st.sendMessage": True,
    "st.syncConversation": True,
    "st.sendConnectionRequest": True,
    "st.withdrawConnectionRequest": True,
    "st.removeConnection": True,
    "st.openPersonPage": True,
    "st.retrievePendingRequests": False,
    "st.retrieveConnections": False,
    "st.searchPeople": False,
    "st.retrievePersonExperience": False,
    "st.retrievePersonEducation": False,
    "st.retrievePersonSkills": False,
    "st.retrievePersonLanguages": False,
    "st.retrievePersonPosts": False,
    "st.retrievePersonComments": False,
    "st.retrievePersonReactions": False,
    "st.doForPeople": False,
    "st.openCompanyPage": False,
    "st.retrieveCompanyEmployees": False,
    "st.retrieveCompanyDMs": False,
    "st.retrieveCompanyPosts": False,
    "st.searchCompanies": False,
    "st.doForCompanies": False,
    "st.openPost": False,
    "st.retrievePostComments": False,
    "st.retrievePostReactions": False,
    "st.reactToPost": False,
    "st.commentOnPost": False,
    "st.createPost": False,
    "st.searchJobs": False,
    "st.openJob": False,
    "st.retrieveSSI": False,
    "st.retrievePerformance": False,
    "nv.sendMessage": True,
    "nv.syncConversation": True,
    "nv.searchPeople": False,
    "nv.searchCompanies": False,
    "nv.openPersonPage": False,  # takes personHashedUrl
    "nv.openCompanyPage": False,
}
_LINKEDAPI_NOTE_ACTIONS = frozenset({"st.sendConnectionRequest"})
_LINKEDAPI_TEXT_ACTIONS = frozenset({"st.sendMessage", "nv.sendMessage"})

_STEP_ID_STYLE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")
_JINJA_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_INNER_BRACES = re.compile(r"\{([^{}]*)\}")


# ---- small helpers ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _all_timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _timezone_error(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown IANA timezone {name!r}{did_you_mean(name, _all_timezones())}"
    return None


def read_csv_header(path: Path) -> list[str]:
    """The column names of a leads CSV, reading only its first line. Raises OSError/ValueError."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
    if not first.strip():
        raise ValueError("it is empty (no header line)")
    row = next(csv.reader([first]))
    return [c.strip() for c in row]


def _fixed_length(text: str) -> int:
    """Length of ``text`` without template expressions, with the shortest spintax alternative."""
    out = _JINJA_BLOCK.sub("", text)
    for _ in range(50):  # nesting depth bound; spintax rarely nests beyond 2
        new = _INNER_BRACES.sub(lambda m: min(m.group(1).split("|"), key=len), out)
        if new == out:
            break
        out = new
    return len(out)


class _Report:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def __call__(self, path: str, message: str, severity: Severity = "error") -> None:
        self.problems.append(self.source.problem(path, message, severity))


def _templates() -> Any | None:
    """engine.manifest.templates, imported lazily (it is written in parallel); None when absent."""
    try:
        return importlib.import_module("engine.manifest.templates")
    except ImportError:
        return None


# ---- entry point ------------------------------------------------------------------------------


def lint(manifest: Manifest) -> list[Problem]:
    """Every semantic problem of one manifest (errors and warnings), in no particular order."""
    report = _Report(manifest.source)
    if isinstance(manifest, Sequence):
        _lint_sequence(manifest, report)
    elif isinstance(manifest, Workflow):
        _lint_workflow(manifest, report)
    elif isinstance(manifest, Schedule):
        _lint_schedule(manifest, report)
    return report.problems


# ---- Sequence ---------------------------------------------------------------------------------

# Edge kinds: "next" (ok/elapsed successor), "accepted" (wait_for event), "timeout", "route"
# (an `on:` label), "case" (branch), "end". Flow kinds are those a lead takes with no error.
_FLOW_KINDS = frozenset({"next", "case"})


class _Edge:
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


def step_edges(steps: tuple[Step, ...], index: int) -> Iterator[_Edge]:
    """The outgoing edges of ``steps[index]`` (sequence-wide routes excluded)."""
    step = steps[index]
    path = step.path
    if isinstance(step, ActionStep | WaitStep | WaitForStep):
        kind = "accepted" if isinstance(step, WaitForStep) else "next"
        if step.next:
            yield _Edge(step.next, child_path(path, "next"), kind)
        else:
            yield _Edge(_following(steps, index), path, kind, explicit=False)
    if isinstance(step, ActionStep):
        for label, dst in step.on.items():
            yield _Edge(dst, child_path(child_path(path, "on"), label), "route", label=label)
    elif isinstance(step, WaitForStep):
        if step.on_timeout:
            yield _Edge(step.on_timeout, child_path(path, "on_timeout"), "timeout")
    elif isinstance(step, BranchStep):
        for i, case in enumerate(step.cases):
            yield _Edge(
                case.goto, child_path(child_path(child_path(path, "branch"), i), "goto"), "case"
            )
        if step.else_:
            yield _Edge(step.else_, child_path(path, "else"), "case")
        else:
            yield _Edge(_following(steps, index), path, "case", explicit=False)
    elif isinstance(step, EndStep):
        yield _Edge(step.terminal, child_path(path, "end"), "end")


def _lint_sequence(seq: Sequence, report: _Report) -> None:
    steps = seq.steps
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.id in index:
            first = steps[index[step.id]].path
            message = f"duplicate step id {step.id!r} (first used at {first})"
            report(child_path(step.path, "id"), message)
            continue
        if step.id not in TERMINALS and step.id != PAUSE:
            index[step.id] = i  # a reserved id never shadows the terminal it names
        if step.id in TERMINALS or step.id == PAUSE:
            report(
                child_path(step.path, "id"),
                f"step id {step.id!r} is reserved (terminals: {', '.join(TERMINALS)}; "
                f"{PAUSE!r} pauses the identity)",
            )
        elif not _STEP_ID_STYLE.match(step.id):
            report(
                child_path(step.path, "id"),
                f"step id {step.id!r} is not DNS-label style (lowercase letters, digits, '-', '_')",
                "warning",
            )

    valid_targets = [*index, *TERMINALS]
    edges: list[list[_Edge]] = [list(step_edges(steps, i)) for i in range(len(steps))]
    for i, outgoing in enumerate(edges):
        for edge in outgoing:
            if not edge.explicit:  # the following list item, even when its id is duplicated
                edge.target = i + 1 if i + 1 < len(steps) else None
            elif edge.dst not in TERMINALS:
                edge.target = index.get(edge.dst)
    for i, step in enumerate(steps):
        for edge in edges[i]:
            if not edge.explicit:
                continue
            if edge.kind == "end":
                if edge.dst not in TERMINALS:
                    report(
                        edge.path,
                        f"unknown terminal {edge.dst!r}{did_you_mean(edge.dst, TERMINALS)} "
                        f"(terminals: {', '.join(TERMINALS)})",
                    )
                continue
            if edge.kind == "route":
                _check_label(report, edge.path, edge.label or "", step.id)
                if edge.dst == PAUSE:
                    continue
            if edge.dst not in index and edge.dst not in TERMINALS:
                hint = did_you_mean(edge.dst, valid_targets)
                report(edge.path, f"undefined step {edge.dst!r}{hint}")
        if isinstance(step, WaitForStep):
            _check_wait_for(step, report)

    seq_routes: list[_Edge] = []
    for label, dst in seq.on.items():
        path = child_path(child_path("$.spec", "on"), label)
        _check_label(report, path, label, None)
        if dst == PAUSE:
            continue
        if dst not in index and dst not in TERMINALS:
            report(path, f"undefined step {dst!r}{did_you_mean(dst, valid_targets)}")
            continue
        route = _Edge(dst, path, "route", label=label)
        route.target = index.get(dst)
        seq_routes.append(route)
        if label == "reply" and dst in TERMINALS and dst != "replied":
            report(
                path,
                f"replies end in {dst!r}; 'replied' keeps them visible as replies in status",
                "warning",
            )
    migrate_roots: list[str] = []
    for old, new in seq.migrate.items():
        path = child_path(child_path("$.spec", "migrate"), old)
        if new not in index and new not in TERMINALS:
            report(path, f"undefined step {new!r}{did_you_mean(new, valid_targets)}")
        elif new in index:
            migrate_roots.append(new)

    if steps:
        adjacency = [[e.target for e in es if e.target is not None] for es in edges]
        _check_reachable(steps, index, adjacency, seq_routes, migrate_roots, report)
        _check_wait_cycles(steps, index, edges, report)
        _check_acceptance_gate(steps, index, edges, seq_routes, report)

    spec = REGISTRY.get(seq.provider)
    if spec is None:
        report(
            "$.spec.provider",
            f"unknown provider {seq.provider!r}{did_you_mean(seq.provider, REGISTRY)} "
            f"(providers: {', '.join(sorted(REGISTRY))})",
        )
    _check_steps_content(seq, spec, report)
    _check_connection_routes(seq, report)
    if spec is not None:
        _check_limits(seq, spec, report)
    _check_window(seq, report)


def _check_connection_routes(seq: Sequence, report: _Report) -> None:
    """Routes a lead needs, or it ends in ``failed`` (the default of an unrouted label): a
    ``connect`` step meets leads already connected (``ALREADY_CONNECTED``); a
    ``check_connection`` step sends a connected lead down its ok path (``next`` or the
    following step), a pending invitation down ``INVITATION_PENDING`` and a lead who is not
    connected down ``NOT_CONNECTED``."""
    for step in seq.steps:
        if not isinstance(step, ActionStep):
            continue
        routed = step.on.keys() | seq.on.keys()
        if step.action == "connect" and ALREADY_CONNECTED not in routed:
            report(
                child_path(step.path, "action"),
                f"in step {step.id!r}: a lead who is already connected has no route and ends "
                "in 'failed': add on: {ALREADY_CONNECTED: <the first message step>}",
                "warning",
            )
        if step.action != "check_connection":
            continue
        if NOT_CONNECTED not in routed:
            report(
                child_path(step.path, "action"),
                f"in step {step.id!r}: a lead who is not connected has no route and ends in "
                "'failed': add on: {NOT_CONNECTED: <the step that connects>} (a connected "
                "lead takes the ok path)",
                "warning",
            )
        if ALREADY_CONNECTED in step.on:
            report(
                child_path(child_path(step.path, "on"), ALREADY_CONNECTED),
                f"in step {step.id!r}: never taken: check_connection sends a connected lead "
                "down its ok path ('next' or the following step), not ALREADY_CONNECTED",
                "warning",
            )


def _check_label(report: _Report, path: str, label: str, step_id: str | None) -> None:
    if label in ROUTE_LABELS:
        return
    where = f" in step {step_id!r}" if step_id else ""
    report(path, f"unknown outcome label {label!r}{where}{did_you_mean(label, ROUTE_LABELS)}")


def _check_wait_for(step: WaitForStep, report: _Report) -> None:
    timeout = getattr(step, "timeout", None)
    if timeout is None or timeout.total_seconds() <= 0:
        report(
            child_path(step.path, "timeout"),
            f"wait_for step {step.id!r} needs a positive timeout (e.g. timeout: 14d)",
        )
    if not getattr(step, "on_timeout", None):
        report(
            child_path(step.path, "on_timeout"),
            f"wait_for step {step.id!r} needs on_timeout (the step or terminal to go to)",
        )


def _check_reachable(
    steps: tuple[Step, ...],
    index: Mapping[str, int],
    adjacency: list[list[int]],
    seq_routes: list[_Edge],
    migrate_roots: list[str],
    report: _Report,
) -> None:
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


def _check_wait_cycles(
    steps: tuple[Step, ...], index: Mapping[str, int], edges: list[list[_Edge]], report: _Report
) -> None:
    """Tarjan's SCC (iterative) over non-waiting steps and flow edges."""
    n = len(steps)
    waits = [isinstance(s, WaitStep | WaitForStep) for s in steps]
    succ: list[list[int]] = []
    for i in range(n):
        if waits[i]:
            succ.append([])
            continue
        succ.append(
            [
                e.target
                for e in edges[i]
                if e.kind in _FLOW_KINDS and e.target is not None and not waits[e.target]
            ]
        )
    order = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    for root in range(n):
        if order[root] != -1 or waits[root]:
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
                if len(component) > 1 or v in succ[v]:
                    _report_cycle(steps, succ, set(component), report)


def _report_cycle(
    steps: tuple[Step, ...], succ: list[list[int]], component: set[int], report: _Report
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


def _check_acceptance_gate(
    steps: tuple[Step, ...],
    index: Mapping[str, int],
    edges: list[list[_Edge]],
    seq_routes: list[_Edge],
    report: _Report,
) -> None:
    """Reachability over (step, gated) pairs; 2 * (steps + edges) work at most."""
    n = len(steps)
    seen = [[False, False] for _ in range(n)]
    witness: dict[int, int] = {}  # send_message step -> ungated predecessor state (for the message)
    queue: deque[tuple[int, bool, int]] = deque([(0, False, -1)])
    routes_done = [False, False]

    def transfer(edge: _Edge, gated: bool, src: Step) -> bool:
        if isinstance(src, ActionStep) and src.action == "check_connection":
            return True
        if edge.kind == "accepted" and _is_accept_wait(src):
            return True
        if edge.kind == "route" and edge.label in (ALREADY_CONNECTED, "reply"):
            return True  # connected already, or the lead wrote to us: a conversation exists
        if edge.kind == "route" and edge.label == NOT_CONNECTED:
            return False
        return gated

    while queue:
        i, gated, came_from = queue.popleft()
        if seen[i][gated]:
            continue
        seen[i][gated] = True
        src_step = steps[i]
        if not gated and isinstance(src_step, ActionStep) and src_step.action == "send_message":
            witness.setdefault(i, came_from)
        outgoing: list[_Edge] = list(edges[i])
        if isinstance(src_step, ActionStep) and not routes_done[gated]:
            routes_done[gated] = True
            outgoing.extend(seq_routes)
        for edge in outgoing:
            j = edge.target
            if j is None:
                continue
            g = transfer(edge, gated, src_step)
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


def _is_accept_wait(step: Step) -> bool:
    return isinstance(step, WaitForStep) and step.event == "connection_accepted"


def _template_lead_uses(text: str, name: str) -> tuple[int, int]:
    """(all uses, uses filtered through default) of ``lead.<name>`` in ``text``."""
    esc = re.escape(name)
    use = rf"lead(?:\.{esc}\b|\[\s*['\"]{esc}['\"]\s*\])"
    total = len(re.findall(use, text))
    guarded = len(re.findall(use + r"\s*\|\s*(?:default|d)\b", text))
    return total, guarded


def _step_texts(step: Step) -> Iterator[tuple[str, str, str]]:
    """(path, key, template text) of each templated ``with`` field of an action step."""
    if isinstance(step, ActionStep):
        for key, value in step.with_.items():
            if isinstance(value, str):
                yield child_path(child_path(step.path, "with"), key), key, value


def _check_steps_content(seq: Sequence, spec: ProviderSpec | None, report: _Report) -> None:
    templates = _templates()
    columns = _leads_columns(seq, report)
    for step in seq.steps:
        if isinstance(step, ActionStep):
            _check_action(step, spec, report)
        elif isinstance(step, BranchStep) and templates is not None:
            _check_conditions(step, templates, columns, seq, report)
        for path, key, text in _step_texts(step):
            if templates is not None:
                for message in templates.check(text):
                    report(path, f"in step {step.id!r}: {message}")
                if columns is not None:
                    _check_variables(step.id, path, text, templates, columns, seq, report)
            if spec is None or not isinstance(step, ActionStep):
                continue
            if step.action == "connect" and key == "note":
                _check_length(step.id, path, "connection note", text, spec.max_note, spec, report)
            elif step.action in ("send_message", "send_inmail") and key in ("text", "message"):
                _check_length(step.id, path, "message", text, spec.max_message, spec, report)


def _check_conditions(
    step: BranchStep,
    templates: Any,
    columns: frozenset[str] | None,
    seq: Sequence,
    report: _Report,
) -> None:
    """Branch conditions: syntax errors are errors; a missing column is a warning (the
    condition is then always false, by engine.manifest.templates.evaluate's contract)."""
    check = getattr(templates, "check_expression", None)
    names_of = getattr(templates, "expression_variables", None)
    for i, case in enumerate(step.cases):
        path = child_path(child_path(child_path(step.path, "branch"), i), "if")
        if check is None or names_of is None:
            messages = templates.check("{{ " + case.condition + " }}")
            names = templates.variables("{{ " + case.condition + " }}")
        else:
            messages, names = check(case.condition), names_of(case.condition)
        for message in messages:
            report(path, f"in step {step.id!r}: {message}")
        if columns is None or messages:
            continue
        csv_name = Path(seq.leads.csv).name if seq.leads.csv else "the leads CSV"
        for name in sorted({n.removeprefix("lead.") for n in names} - columns):
            report(
                path,
                f"in step {step.id!r}: lead.{name} is not a column of {csv_name}; the condition "
                f"is always false{did_you_mean(name, columns)}",
                "warning",
            )


def _check_action(step: ActionStep, spec: ProviderSpec | None, report: _Report) -> None:
    path = child_path(step.path, "action")
    if step.action not in CANONICAL_ACTIONS:
        report(
            path,
            f"unknown action {step.action!r} in step {step.id!r}"
            f"{did_you_mean(step.action, CANONICAL_ACTIONS)}",
        )
        return
    if spec is not None and step.action not in spec.capabilities:
        report(path, f"in step {step.id!r}: {_unsupported(step.action, spec)}")


def _unsupported(action: str, spec: ProviderSpec) -> str:
    able = sorted(name for name, s in REGISTRY.items() if action in s.capabilities)
    alternatives = f"providers that can: {', '.join(able)}" if able else "no provider can"
    return f"provider {spec.name!r} cannot {action} ({alternatives})"


def _check_length(
    step_id: str,
    path: str,
    what: str,
    text: str,
    limit: int,
    spec: ProviderSpec,
    report: _Report,
) -> None:
    length = _fixed_length(text)
    if length > limit:
        report(
            path,
            f"in step {step_id!r}: {what} is {length} characters (template variables not counted), "
            f"over the {limit} that {spec.name} accepts",
        )


def _leads_columns(seq: Sequence, report: _Report) -> frozenset[str] | None:
    csv_path = seq.leads.csv
    if csv_path is None:
        return None
    path = Path(csv_path)
    where = "$.spec.leads.csv"
    if not path.is_file():
        shown = os.path.relpath(path, Path(seq.source.file).absolute().parent)
        report(where, f"leads file {shown!r} does not exist")
        return None
    try:
        header = read_csv_header(path)
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        report(where, f"cannot read leads file {path.name!r}: {exc}")
        return None
    if "linkedin_profile_url" not in header:
        report(
            where,
            f"leads file {path.name!r} has no linkedin_profile_url column"
            f"{did_you_mean('linkedin_profile_url', header)}",
        )
    return frozenset(header) | BUILTIN_LEAD_FIELDS


def _check_variables(
    step_id: str,
    path: str,
    text: str,
    templates: Any,
    columns: frozenset[str],
    seq: Sequence,
    report: _Report,
) -> None:
    names = {v.removeprefix("lead.") for v in templates.variables(text)}
    csv_name = Path(seq.leads.csv).name if seq.leads.csv else "the leads CSV"
    for name in sorted(names - columns):
        total, guarded = _template_lead_uses(text, name)
        hint = did_you_mean(name, columns)
        if total and guarded == total:
            report(
                path,
                f"in step {step_id!r}: lead.{name} is not a column of {csv_name}; "
                f"it always renders its default{hint}",
                "warning",
            )
        else:
            report(path, f"in step {step_id!r}: lead.{name} is not a column of {csv_name}{hint}")


def _limit_path(seq: Sequence, key: str) -> str:
    path = child_path(child_path("$.spec", "limits"), key)
    if path in seq.source.positions:
        return path
    for alias, canonical in LIMIT_ALIASES.items():
        alias_path = child_path(child_path("$.spec", "limits"), alias)
        if canonical == key and alias_path in seq.source.positions:
            return alias_path
    return path


def _check_limits(seq: Sequence, spec: ProviderSpec, report: _Report) -> None:
    for key, value in seq.limits.items():
        path = _limit_path(seq, key)
        action = LIMIT_ALIASES.get(key, key)
        if action not in CANONICAL_ACTIONS:
            report(
                path,
                f"unknown limit {key!r}{did_you_mean(key, [*LIMIT_ALIASES, *CANONICAL_ACTIONS])}",
            )
            continue
        smart = spec.smart_limits.get(action)
        if smart is not None and value > smart:
            report(
                path,
                f"limit {key}: {value} per 24 h is above the {spec.name} smart limit of {smart} "
                f"for {action}",
            )


def _check_window(seq: Sequence, report: _Report) -> None:
    window = seq.window
    if window is None:
        return
    if window.timezone != "lead":
        message = _timezone_error(window.timezone)
        if message:
            report("$.spec.window.timezone", message)
    message = _timezone_error(window.fallback_timezone)
    if message:
        report("$.spec.window.fallback_timezone", message)
    if window.start >= window.end:
        report(
            "$.spec.window.hours",
            f"hours start {window.start:%H:%M} is not before end {window.end:%H:%M}",
        )
    unknown = [d for d in window.days if d not in DAYS]
    for day in unknown:
        report("$.spec.window.days", f"unknown day {day!r}")
    if not window.days:
        report("$.spec.window.days", "no sending days: nothing would ever be sent")


# ---- Schedule ---------------------------------------------------------------------------------


def _lint_schedule(sch: Schedule, report: _Report) -> None:
    """engine.apply.schedules owns the schedule rules; lint adds did-you-mean hints to two."""
    unknown_provider = sch.provider not in REGISTRY
    if unknown_provider:
        report(
            "$.spec.provider",
            f"unknown provider {sch.provider!r}{did_you_mean(sch.provider, REGISTRY)}",
        )
    for problem in schedule_problems(sch, now=datetime.now(UTC)):
        if problem.path == "$.spec.provider" and unknown_provider:
            continue  # the same fault, already reported with its hint
        if problem.path == "$.spec.timezone" and "did you mean" not in problem.message:
            hint = did_you_mean(sch.timezone, _all_timezones())
            problem = dataclasses.replace(problem, message=problem.message + hint)
        report.problems.append(problem)


# ---- Workflow ---------------------------------------------------------------------------------


def _walk(roots: tuple[WorkflowNode, ...]) -> Iterator[tuple[WorkflowNode, bool]]:
    """Every node with whether it is a root start, depth first, iteratively."""
    stack: list[tuple[WorkflowNode, bool]] = [(n, True) for n in reversed(roots)]
    while stack:
        node, is_root = stack.pop()
        yield node, is_root
        stack.extend((child, False) for child in reversed(node.then))


def _lint_workflow(wf: Workflow, report: _Report) -> None:
    spec = REGISTRY.get(wf.provider)
    if spec is None:
        report(
            "$.spec.provider",
            f"unknown provider {wf.provider!r}{did_you_mean(wf.provider, REGISTRY)}",
        )
        return
    if wf.result_handling == "hook":
        report(
            "$.spec.result_handling",
            "result_handling: hook needs a receiver for the webhook; seqrun status shows it "
            "running until then",
            "warning",
        )
    known = [*LINKEDAPI_ACTION_TYPES, *CANONICAL_ACTIONS]
    for node, is_root in _walk(wf.root):
        apath = child_path(node.path, "action")
        if spec.name != "linkedapi":
            if node.action in CANONICAL_ACTIONS:
                if node.action not in spec.capabilities:
                    report(apath, _unsupported(node.action, spec))
            elif node.action in LINKEDAPI_ACTION_TYPES:
                report(
                    apath,
                    f"{node.action!r} is a LinkedAPI action type; provider {spec.name!r} runs "
                    f"canonical actions ({', '.join(sorted(spec.capabilities))})",
                )
            else:
                report(
                    apath,
                    f"unknown action {node.action!r}"
                    f"{did_you_mean(node.action, sorted(spec.capabilities))}",
                )
            continue
        kind = LINKEDAPI_ACTIONS.get(node.action, node.action)
        if node.action in CANONICAL_ACTIONS and node.action not in spec.capabilities:
            report(apath, _unsupported(node.action, spec))
            continue
        if kind not in LINKEDAPI_ACTION_TYPES:
            report(
                apath,
                f"unknown LinkedAPI action type {node.action!r}{did_you_mean(node.action, known)}",
            )
            continue
        with_path = child_path(node.path, "with")
        if is_root and LINKEDAPI_ACTION_TYPES[kind] and "personUrl" not in node.with_:
            report(with_path, f"{node.action!r} at the root of a workflow needs with.personUrl")
        if not is_root and "personUrl" in node.with_:
            report(
                child_path(with_path, "personUrl"),
                f"personUrl is only allowed on a root action; {node.action!r} acts on the person "
                "its parent opened",
            )
        note = node.with_.get("note")
        if kind in _LINKEDAPI_NOTE_ACTIONS and isinstance(note, str):
            _check_node_length(node, "note", "connection note", note, spec.max_note, spec, report)
        text = node.with_.get("text")
        if kind in _LINKEDAPI_TEXT_ACTIONS and isinstance(text, str):
            _check_node_length(node, "text", "message", text, spec.max_message, spec, report)


def _check_node_length(
    node: WorkflowNode,
    key: str,
    what: str,
    text: str,
    limit: int,
    spec: ProviderSpec,
    report: _Report,
) -> None:
    if len(text) > limit:
        report(
            child_path(child_path(node.path, "with"), key),
            f"{what} is {len(text)} characters, over the {limit} that {spec.name} accepts",
        )
