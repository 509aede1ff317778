"""Semantic lint of a loaded manifest: everything JSON Schema cannot say.

``lint(manifest) -> list[Problem]`` returns every finding, errors and warnings, each positioned
through the manifest's :class:`~engine.model.SourceMap`. It never raises on a malformed but
schema-valid model and never prints.

The rules live by kind: :mod:`.sequence` (ids, references, routes, limits, window) over
:mod:`.graph` (reachability, cycles, acceptance gate) and :mod:`.content` (actions, templates,
lead columns, lengths); :mod:`.workflow`; :mod:`.schedule`. Of the providers, lint reads only
the declared :class:`~engine.providers.base.ProviderSpec` of each in
:data:`engine.providers.REGISTRY` (capabilities, smart limits, maximum note and message
lengths), never an adapter's internals.

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

from engine.errors import Problem
from engine.manifest.explain import did_you_mean
from engine.manifest.lint.common import PAUSE, ROUTE_LABELS, Report
from engine.manifest.lint.content import BUILTIN_LEAD_FIELDS, read_csv_header
from engine.manifest.lint.policy import lint_policy
from engine.manifest.lint.schedule import lint_schedule
from engine.manifest.lint.sequence import lint_sequence
from engine.manifest.lint.workflow import LINKEDAPI_ACTION_TYPES, lint_workflow
from engine.model import Manifest, Policy, Schedule, Sequence, Workflow
from engine.vocab import LIMIT_ALIASES

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


def lint(manifest: Manifest, *, policy: Policy | None = None) -> list[Problem]:
    """Every semantic problem of one manifest (errors and warnings), in no particular order.
    ``policy`` (the Policy loaded with it) gives the identities' tiers: a Sequence's limits
    are checked against the provider's limits for each identity's tier."""
    report = Report(manifest.source)
    if isinstance(manifest, Sequence):
        lint_sequence(manifest, report, policy)
    elif isinstance(manifest, Policy):
        lint_policy(manifest, report)
    elif isinstance(manifest, Workflow):
        lint_workflow(manifest, report)
    elif isinstance(manifest, Schedule):
        lint_schedule(manifest, report)
    return report.problems
