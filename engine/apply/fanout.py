"""Workflow fan-out: a Workflow with ``for_each: {csv: FILE}`` (or ``{sequence: NAME, state:
STEP}``: an applied sequence's leads at a step) runs once per lead.

Each lead gets its own Workflow, ``NAME[handle]`` (the profile's handle: stable when the CSV
is edited or reordered), whose ``with`` values are rendered as templates over the lead's row.
Each child is an ordinary Workflow: planned (``run`` / ``resume`` / ``unchanged``), run with
the same exactly-once journal (its record is persisted before its submission; a kill mid-run
resumes it, never submits it twice), shown by ``seqrun why workflow/NAME[handle]``. The leads
run within the identity's provider limits per rolling 24 h (:class:`Budget`); the others wait
for a later ``apply``. A bad row
(URL, duplicate) or a template that cannot render for a row is refused, named by
``file:line``; the other rows run.

>>> child_name("invite-all", "https://www.linkedin.com/in/ada-lovelace-0001")
'invite-all[ada-lovelace-0001]'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import PlanError, Problem
from engine.manifest.leads import URL_COLUMN, LeadImport, leads_from_rows, read_leads
from engine.manifest.templates import TemplateRenderError, render
from engine.model import Metadata, Policy, Window, Workflow, WorkflowNode
from engine.providers import REGISTRY
from engine.run.rules import window_opening, window_zone
from engine.run.state import sequence_from_store
from engine.store import Store
from engine.store.workflows import workflow_runs
from engine.urls import normalize_profile_url, profile_handle
from engine.vocab import CANONICAL_ACTIONS, LINKEDAPI_ACTIONS

PARENT_LABEL = "seqrun/for-each"  # the child's label naming its fan-out Workflow


def child_name(parent: str, profile_url: str) -> str:
    return f"{parent}[{profile_handle(profile_url)}]"


def is_child(name: str) -> bool:
    """Whether ``name`` is a fan-out's child (a manifest's name has no ``[``)."""
    return "[" in name


@dataclass(frozen=True)
class FanOut:
    """A fan-out Workflow's children (in CSV order) and the rows refused."""

    parent: str
    children: tuple[Workflow, ...] = ()
    leads: Mapping[str, str] = field(default_factory=dict)  # child name -> profile URL
    lines: Mapping[str, int] = field(default_factory=dict)  # child name -> CSV line
    refused: tuple[Problem, ...] = ()
    window: Window | None = None  # the workflow's, else its sequence's (for_each.sequence)
    zones: Mapping[str, ZoneInfo] = field(default_factory=dict)  # child -> its window's zone
    waiting: Mapping[str, str] = field(default_factory=dict)  # child -> its window's opening



def _render_value(value: Any, row: Mapping[str, str], seed: str) -> Any:
    return render(value, row, seed) if isinstance(value, str) else value


def _render_node(node: WorkflowNode, row: Mapping[str, str], seed: str) -> WorkflowNode:
    with_ = {k: _render_value(v, row, seed) for k, v in node.with_.items()}
    if isinstance(with_.get("personUrl"), str):
        with_["personUrl"] = normalize_profile_url(with_["personUrl"])
    return replace(node, with_=with_,
                   then=tuple(_render_node(c, row, seed) for c in node.then))


def _leads(wf: Workflow, store: Store) -> LeadImport:
    """The fan-out's leads: its CSV, or the applied sequence's leads (at ``state``)."""
    each = wf.for_each
    assert each is not None
    if each.csv is not None:
        return read_leads(each.csv)
    assert each.sequence is not None
    if store.get_sequence(each.sequence) is None:
        raise PlanError(f"workflow {wf.name!r}: for_each.sequence {each.sequence!r} is not "
                        "an applied sequence")
    enrolled = store.enrollments(sequence=each.sequence,
                                 states=[each.state] if each.state else None)
    leads = store.leads_by_ids(e.lead_id for e in enrolled)
    rows = [{**leads[e.lead_id].data, URL_COLUMN: leads[e.lead_id].profile_url}
            for e in enrolled if e.lead_id in leads]
    where = f"sequence/{each.sequence}" + (f" at {each.state}" if each.state else "")
    return leads_from_rows(rows, where)


def _window(wf: Workflow, store: Store) -> Window | None:
    """The fan-out's sending window: its own, else that of the sequence whose leads it takes."""
    each = wf.for_each
    if wf.window is not None or each is None or each.sequence is None:
        return wf.window
    row = store.get_sequence(each.sequence)
    if row is None or row.kind != "Sequence":
        return None
    return sequence_from_store(store, row.current_revision).window


def expand(wf: Workflow, store: Store) -> FanOut:
    """The children of ``wf`` (one per lead taken); LeadsError when the CSV cannot be read,
    PlanError when the sequence is not applied."""
    leads = _leads(wf, store)
    window = _window(wf, store)
    children: list[Workflow] = []
    names: dict[str, str] = {}
    lines: dict[str, int] = {}
    zones: dict[str, ZoneInfo] = {}
    refused = list(leads.refused)
    for row, line in zip(leads.rows, leads.lines, strict=True):
        name = child_name(wf.name, row[URL_COLUMN])
        try:
            root = tuple(_render_node(n, row, name) for n in wf.root)
        except (TemplateRenderError, ValueError) as exc:
            refused.append(Problem(leads.path, line, 1, "$", f"{row[URL_COLUMN]}: {exc}"))
            continue
        labels = {**wf.metadata.labels, PARENT_LABEL: wf.name}
        children.append(replace(wf, metadata=Metadata(name, labels), root=root, for_each=None,
                                normalized={}, window=window))
        names[name] = row[URL_COLUMN]
        lines[name] = line
        if window is not None:
            zones[name] = window_zone(window, row)
    return FanOut(wf.name, tuple(children), names, lines, tuple(refused), window, zones)


# ---- limits: a fan-out runs no more per identity per 24 h than a sequence would ----------

_CANONICAL = {v: k for k, v in LINKEDAPI_ACTIONS.items()}  # LinkedAPI type -> canonical
DAY = timedelta(days=1)


def body_actions(body: Any) -> Counter[str]:
    """The canonical actions a workflow body performs (each node once)."""
    found: Counter[str] = Counter()
    nodes = body if isinstance(body, list) else [body]
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        kind = str(node.get("actionType") or node.get("action") or "")
        action = _CANONICAL.get(kind, kind)
        if action in CANONICAL_ACTIONS and action != "check_connection":
            found[action] += 1
        found += body_actions(node.get("then") or [])
    return found


def window_wait(wf: Workflow, zone: ZoneInfo | None, now: datetime) -> str | None:
    """None when ``wf`` may run at ``now`` (no window, or inside it), else why it waits: its
    window's next opening, reckoned as the runner does for a sequence's lead (``zone``: the
    lead's, from :attr:`FanOut.zones`; else the window's own)."""
    if wf.window is None:
        return None
    opening = window_opening(wf.window, zone or window_zone(wf.window, {}), now)
    if opening is None:
        return None
    return f"outside the sending window until {opening:%Y-%m-%d %H:%M} UTC"


@dataclass
class Budget:
    """What each identity may still do in the rolling 24 h: its provider's limits for its tier
    (the Policy's) and the Policy's budgets across identities, less the actions of the action
    log (the sequences' and the fan-outs' children's, which :meth:`take` writes there) and of
    the other workflows submitted in the last 24 h. A fan-out's lead over it is deferred to a
    later ``apply``; the runner, reading the same log, holds a sequence's leads for what a
    fan-out took."""

    store: Store
    now: datetime
    policy: Policy | None = None
    used: Counter[tuple[str, str]] = field(default_factory=Counter)
    _loaded: set[str] = field(default_factory=set)
    org: dict[str, int] = field(default_factory=dict)  # action -> done in 24 h, every identity

    def _load(self, identity: str) -> None:
        if identity in self._loaded:
            return
        self._loaded.add(identity)
        since = (self.now - DAY).isoformat()
        for name, record in workflow_runs(self.store).items():
            if (not is_child(name) and isinstance(record, Mapping)  # children: in the log
                    and (record.get("identity") or "") == identity
                    and str(record.get("first_intent_at") or "") > since):
                for action, n in body_actions(record.get("body")).items():
                    self.used[(identity, action)] += n
        for action in CANONICAL_ACTIONS:
            self.used[(identity, action)] += len(
                self.store.action_times(identity, action, self.now - DAY))

    def take(self, wf: Workflow, body: Any, key: str) -> str | None:
        """None when ``body`` fits, its actions then counted here and written to the action
        log (once per ``key``: revision and attempt); else why it waits."""
        spec = REGISTRY.get(wf.provider)
        identity = wf.identities[0] if wf.identities else ""  # "": the account's default
        tier = self.policy.tier(identity) if self.policy is not None else "classic"
        limits = spec.limits_for(tier) if spec is not None else {}
        self._load(identity)
        wanted = body_actions(body)
        for action, n in wanted.items():
            limit = limits.get(action)
            if limit is not None and self.used[(identity, action)] + n > limit:
                return f"{action} limit {limit}/24h reached"
            over = self._over_budget(action, n)
            if over is not None:
                return over
        for action, n in wanted.items():
            self.used[(identity, action)] += n
            if action in self.org:
                self.org[action] += n
        self.store.log_workflow_actions(wf.name, key, identity, wanted, at=self.now)
        return None

    def _over_budget(self, action: str, n: int) -> str | None:
        """The Policy's budget of ``action`` across every identity, as the runner's guardrails
        word it, when ``n`` more would pass it."""
        budget = self.policy.budgets.get(action) if self.policy is not None else None
        if budget is None:
            return None
        if action not in self.org:
            self.org[action] = len(self.store.action_times_across([action], self.now - DAY))
        if self.org[action] + n > budget:
            return f"organisation budget {action} {budget}/24h reached"
        return None
