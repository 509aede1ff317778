"""Sequence rules: step ids, references, outcome routes, the step graph, the provider's
limits and the sending window. What the steps say (templates, lengths, lead columns) is
checked by :mod:`engine.manifest.lint.content`."""

from __future__ import annotations

import re

from engine.manifest.explain import did_you_mean
from engine.manifest.lint.common import PAUSE, ROUTE_LABELS, Report, timezone_error
from engine.manifest.lint.content import check_steps_content
from engine.manifest.lint.graph import (
    Edge,
    check_acceptance_gate,
    check_reachable,
    check_wait_cycles,
    resolved_edges,
)
from engine.manifest.lint.variants import check_variants
from engine.manifest.yamlio import child_path
from engine.model import ActionStep, Policy, Sequence, Step, WaitForStep, Window
from engine.providers import REGISTRY
from engine.providers.base import ProviderSpec
from engine.vocab import (
    ALREADY_CONNECTED,
    CANONICAL_ACTIONS,
    DAYS,
    LIMIT_ALIASES,
    NOT_CONNECTED,
    TERMINALS,
)

_STEP_ID_STYLE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")


def lint_sequence(seq: Sequence, report: Report, policy: Policy | None = None) -> None:
    steps = seq.steps
    index = _check_ids(steps, report)
    valid_targets = [*index, *TERMINALS]
    edges = resolved_edges(steps, index)
    for i, step in enumerate(steps):
        _check_references(step, edges[i], index, valid_targets, report)
        if isinstance(step, WaitForStep):
            _check_wait_for(step, report)
    seq_routes = _sequence_routes(seq, index, valid_targets, report)
    migrate_roots = _migrate_roots(seq, index, valid_targets, report)
    if steps:
        check_reachable(steps, index, edges, seq_routes, migrate_roots, report)
        check_wait_cycles(steps, edges, report)
        check_acceptance_gate(steps, edges, seq_routes, report)

    spec = REGISTRY.get(seq.provider)
    if spec is None:
        report(
            "$.spec.provider",
            f"unknown provider {seq.provider!r}{did_you_mean(seq.provider, REGISTRY)} "
            f"(providers: {', '.join(sorted(REGISTRY))})",
        )
    check_steps_content(seq, spec, report)
    check_variants(seq, report)
    _check_connection_routes(seq, report)
    if spec is not None:
        _check_limits(seq, spec, report, policy)
        _check_search(seq, spec, report)
    check_window(seq.window, report)
    _check_execution(seq, report)
    _check_sync(seq, report)


def _check_search(seq: Sequence, spec: ProviderSpec, report: Report) -> None:
    """``leads.search``: only the filters the provider's search applies (like actions), by
    one of the sequence's identities."""
    search = seq.leads.search
    if search is None:
        return
    path = "$.spec.leads.search"
    if not spec.search_filters:
        able = sorted(n for n, s in REGISTRY.items() if s.search_filters)
        report(path, f"provider {spec.name} has no people search (providers with one: "
                     f"{', '.join(able)}); list the leads in a CSV instead")
        return
    for name in search.filters():
        if name not in spec.search_filters:
            able = sorted(n for n, s in REGISTRY.items() if name in s.search_filters)
            report(f"{path}.{name}",
                   f"{spec.name}'s people search has no {name!r} filter (it applies: "
                   f"{', '.join(sorted(spec.search_filters))}; {name!r} works on: "
                   f"{', '.join(able) or 'none'})")
    if search.identity is not None and search.identity not in seq.identities:
        report(f"{path}.identity", f"identity {search.identity!r} is not one of the sequence's "
                                   f"identities ({', '.join(seq.identities)})")


def _check_ids(steps: tuple[Step, ...], report: Report) -> dict[str, int]:
    """Step id -> index of its first use; duplicates, reserved and badly styled ids reported."""
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
    return index


def _check_references(
    step: Step,
    outgoing: list[Edge],
    index: dict[str, int],
    valid_targets: list[str],
    report: Report,
) -> None:
    """Every explicit edge of ``step`` names a step or a terminal (routes: a known label)."""
    for edge in outgoing:
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


def _sequence_routes(
    seq: Sequence, index: dict[str, int], valid_targets: list[str], report: Report
) -> list[Edge]:
    """The sequence-wide ``on:`` routes to steps, as edges; bad labels and targets reported."""
    seq_routes: list[Edge] = []
    for label, dst in seq.on.items():
        path = child_path(child_path("$.spec", "on"), label)
        _check_label(report, path, label, None)
        if dst == PAUSE:
            continue
        if dst not in index and dst not in TERMINALS:
            report(path, f"undefined step {dst!r}{did_you_mean(dst, valid_targets)}")
            continue
        route = Edge(dst, path, "route", label=label)
        route.target = index.get(dst)
        seq_routes.append(route)
        if label == "reply" and dst in TERMINALS and dst != "replied":
            report(
                path,
                f"replies end in {dst!r}; 'replied' keeps them visible as replies in status",
                "warning",
            )
    return seq_routes


def _migrate_roots(
    seq: Sequence, index: dict[str, int], valid_targets: list[str], report: Report
) -> list[str]:
    """The steps ``migrate:`` moves leads to (reachable whatever the graph says)."""
    roots: list[str] = []
    for old, new in seq.migrate.items():
        path = child_path(child_path("$.spec", "migrate"), old)
        if new not in index and new not in TERMINALS:
            report(path, f"undefined step {new!r}{did_you_mean(new, valid_targets)}")
        elif new in index:
            roots.append(new)
    return roots


def _check_connection_routes(seq: Sequence, report: Report) -> None:
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


def _check_label(report: Report, path: str, label: str, step_id: str | None) -> None:
    if label in ROUTE_LABELS:
        return
    where = f" in step {step_id!r}" if step_id else ""
    report(path, f"unknown outcome label {label!r}{where}{did_you_mean(label, ROUTE_LABELS)}")


def _check_wait_for(step: WaitForStep, report: Report) -> None:
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


def _limit_path(seq: Sequence, key: str) -> str:
    path = child_path(child_path("$.spec", "limits"), key)
    if path in seq.source.positions:
        return path
    for alias, canonical in LIMIT_ALIASES.items():
        alias_path = child_path(child_path("$.spec", "limits"), alias)
        if canonical == key and alias_path in seq.source.positions:
            return alias_path
    return path


def _check_limits(
    seq: Sequence, spec: ProviderSpec, report: Report, policy: Policy | None
) -> None:
    """Each limit against the provider's limit for the tier of each identity (classic unless
    the Policy says otherwise): a Sales Navigator identity may go above a classic one."""
    for key, value in seq.limits.items():
        path = _limit_path(seq, key)
        action = LIMIT_ALIASES.get(key, key)
        if action not in CANONICAL_ACTIONS:
            report(
                path,
                f"unknown limit {key!r}{did_you_mean(key, [*LIMIT_ALIASES, *CANONICAL_ACTIONS])}",
            )
            continue
        for identity in seq.identities:
            tier = policy.tier(identity) if policy is not None else "classic"
            smart = spec.limits_for(tier).get(action)
            if smart is not None and value > smart:
                report(path, _over_limit(spec, key, value, action, identity, tier, smart,
                                         hint=policy is not None))
                break


def _over_limit(
    spec: ProviderSpec, key: str, value: int, action: str, identity: str, tier: str, smart: int,
    *, hint: bool,
) -> str:
    """The message; with a Policy loaded, the identity's tier and the tiers that allow it."""
    message = (
        f"limit {key}: {value} per 24 h is above the {spec.name} smart limit of {smart} "
        f"for {action}"
    )
    if not hint or not spec.tier_limits:
        return message
    roomier = [
        f"{t} allows {limits[action]}"
        for t, limits in spec.tier_limits.items()
        if limits.get(action, 0) >= value
    ]
    message += f" on identity {identity!r} ({tier})"
    if roomier:
        message += f"; {', '.join(roomier)}: give its tier in the Policy's identities"
    return message


def check_window(window: Window | None, report: Report) -> None:
    """A Sequence's or a Workflow's ``window:``: its zones, hours and days."""
    if window is None:
        return
    if window.timezone != "lead":
        message = timezone_error(window.timezone)
        if message:
            report("$.spec.window.timezone", message)
    message = timezone_error(window.fallback_timezone)
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


def _check_sync(seq: Sequence, report: Report) -> None:
    """``sync.force`` is the flag of ConnectSafely's ``POST /conversations/sync``; the other
    providers have no sync call to pass it to."""
    if seq.sync_force is not None and seq.provider != "connectsafely":
        report("$.spec.sync.force", "sync.force is only valid with provider: connectsafely "
               f"(its POST /conversations/sync takes it; {seq.provider} has no such sync)")


def _check_execution(seq: Sequence, report: Report) -> None:
    """``execution: async`` exists on Edges only (``run/async`` with callbacks), and never on
    a check_connection step (it only reads, and has no Edges action)."""
    why = "is only valid with provider: edges (the other providers answer live)"
    if seq.execution == "async" and seq.provider != "edges":
        report("$.spec.execution", f"execution: async {why}")
    for step in seq.steps:
        if not isinstance(step, ActionStep) or step.execution != "async":
            continue
        if seq.provider != "edges":
            report(f"{step.path}.execution", f"in step {step.id!r}: execution: async {why}")
        elif step.action == "check_connection":
            report(f"{step.path}.execution", f"in step {step.id!r}: check_connection only "
                   "reads and always runs live; remove execution: async")
