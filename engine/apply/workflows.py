"""Workflow manifests: submitted once and followed to the end.

``run_workflow`` submits a Workflow's LinkedAPI body (built by
:mod:`engine.providers.linkedapi.workflows`) once and follows it to the end, persisting its
record (:mod:`engine.run.workflow_record`) so that a crash never leads to a second submission
of a workflow that may still be running; a submission whose answer was lost is settled by
:mod:`engine.run.workflows`. On a provider without workflows (Edges, ConnectSafely) the tree
is walked node by node (:mod:`engine.run.workflow_nodes`). ``complete_from_hook`` settles a
``hook`` workflow from its delivered result.

Example::

    result = await run_workflow(wf, client=make_client("linkedapi"), store=store,
                                clock=RealClock())
    result.state, [(n.id, n.status) for n in result.nodes]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from engine.clock import Clock
from engine.errors import PlanError, ProviderError
from engine.model import Workflow
from engine.providers import REGISTRY
from engine.providers.http import NOT_SENT
from engine.providers.linkedapi.actions import LinkedApiProvider
from engine.providers.linkedapi.client import WorkflowState
from engine.providers.linkedapi.workflows import workflow_json
from engine.run.workflow_hooks import complete_from_hook
from engine.run.workflow_nodes import run_nodes
from engine.run.workflow_record import UNFINISHED_STATES, RunRecord, body_revision
from engine.run.workflow_results import NodeResult, WorkflowResult
from engine.run.workflows import reconcile
from engine.serve.config import expand_webhook, mask_webhook
from engine.store import Store
from engine.store.workflows import workflow_run, workflow_runs
from engine.vocab import SERVER_ERROR, STATUS_429, TIMEOUT

# Names the planner, the views, the CLI and the tests import from here.
__all__ = [
    "HOOK_NOTE",
    "MAX_SUBMISSIONS",
    "RECONCILE_AFTER",
    "RECONCILE_ENV",
    "NodeResult",
    "WorkflowResult",
    "body_revision",
    "complete_from_hook",
    "reconcile_delay",
    "run_workflow",
    "workflow_json",
    "workflow_record",
    "workflow_results",
]

RECONCILE_AFTER = 3600.0  # seconds between a lost submission and looking for its effects
RECONCILE_ENV = "SEQRUN_LINKEDAPI_RECONCILE_AFTER"
MAX_SUBMISSIONS = 5  # lost submissions (each reconciled as "nothing happened") before giving up

HOOK_NOTE = (
    "the result will arrive at the webhook; `seqrun serve` receives it and the next `seqrun run` "
    "tick settles the workflow, which stays `running` in `seqrun status` until then"
)


def reconcile_delay(env: Mapping[str, str]) -> float:
    """Seconds to wait after a lost submission before checking the world: ``RECONCILE_ENV``
    when set to a non-negative number, else :data:`RECONCILE_AFTER`."""
    raw = env.get(RECONCILE_ENV)
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise PlanError(f"{RECONCILE_ENV}={raw!r}: not a number of seconds") from None
        if value >= 0:
            return value
        raise PlanError(f"{RECONCILE_ENV}={raw!r}: must be >= 0")
    return RECONCILE_AFTER


async def run_workflow(
    wf: Workflow,
    *,
    client: httpx.AsyncClient,
    store: Store,
    clock: Clock,
    env: Mapping[str, str] | None = None,
    poll_interval: float = 2.0,
    reconcile_after: float | None = None,
    queue_timeout: float = 24 * 3600.0,
) -> WorkflowResult:
    """Submit ``wf`` to LinkedAPI once and follow it to the end; its record is persisted
    (pending -> running -> completed | failed).

    Never a duplicate: the intent is saved before the POST; a run left unfinished (crash,
    timeout) is resumed by its workflow id, or, when the id never came back, settled by asking
    the world (connection status, conversation) ``reconcile_after`` seconds after the last
    attempt (default :data:`RECONCILE_AFTER`, 1 h, or ``SEQRUN_LINKEDAPI_RECONCILE_AFTER``:
    a workflow can sit queued behind the account's cap); only when none of its effects
    happened is it submitted again, and only when all did is it ``completed``. The
    10-unfinished-workflows cap queues (waits and retries) for up to ``queue_timeout``
    seconds. ``hook`` returns as ``running``; :func:`complete_from_hook` settles it.
    """
    if reconcile_after is None:
        reconcile_after = reconcile_delay(os.environ if env is None else env)
    if wf.provider != "linkedapi":
        spec = REGISTRY.get(wf.provider)
        if spec is None or spec.factory is None:
            raise PlanError(f"workflow {wf.name!r}: no adapter for provider {wf.provider!r}")
        return await run_nodes(wf, spec.factory(client, clock=clock), store, clock,
                               reconcile_after)
    provider = LinkedApiProvider(
        client,
        api=wf.api,
        result_handling=wf.result_handling,
        clock=clock,
        env=env,
        poll_interval=poll_interval,
    )
    sub = _Submission(RunRecord(wf, store, clock), provider, reconcile_after, queue_timeout, env)
    return await _run(sub, workflow_json(wf))


# ---- one LinkedAPI submission, followed -------------------------------------------------------


@dataclass
class _Submission:
    """What the steps of one run_workflow call on LinkedAPI share."""

    run: RunRecord
    provider: LinkedApiProvider
    reconcile_after: float
    queue_timeout: float
    env: Mapping[str, str] | None = None  # None: os.environ (the webhook's secret)


async def _run(sub: _Submission, body: Any) -> WorkflowResult:
    """Settle what an earlier call left unfinished, else submit ``body``."""
    run = sub.run
    previous = run.previous()
    if isinstance(previous, Mapping) and previous.get("state") in UNFINISHED_STATES:
        run.record = dict(previous)
        same = previous.get("revision") == body_revision(body)
        # an older revision is settled first, with its own body
        run.foreign = not same
        outcome = await _resume(sub, body if same else previous.get("body"))
        run.foreign = False
        if outcome is not None and (same or outcome.state in UNFINISHED_STATES):
            return outcome  # an older revision still running: never two at once
    run.record = {
        "name": run.wf.name,
        "provider": run.wf.provider,
        "api": run.wf.api,
        "result_handling": run.wf.result_handling,
        "identity": run.identity,
        "revision": body_revision(body),
        "body": body,
        "attempt": int((previous or {}).get("attempt", 0)) + 1,
        "history": [],
        "workflow_id": None,
        "reconciled": False,
    }
    run.result.resumed = False
    return await _submit(sub, body)


async def _resume(sub: _Submission, body: Any) -> WorkflowResult | None:
    """Settle a run left unfinished by an earlier call; None when it needs resubmitting."""
    run = sub.run
    run.result.resumed = True
    if run.record.get("workflow_id"):
        return await _follow(sub, str(run.record["workflow_id"]))
    if run.record.get("phase") == "hook":
        return run.running(HOOK_NOTE)
    # An intent without an id: the POST may or may not have reached LinkedAPI.
    return await reconcile(run, sub.provider, body, sub.reconcile_after)


async def _submit(sub: _Submission, body: Any) -> WorkflowResult:
    run, wf, workflows = sub.run, sub.run.wf, sub.provider.workflows
    started = run.clock.now()
    delay = workflows.poll_interval
    while True:
        # The intent is durable before the request leaves: a crash from here on is
        # recovered by _resume(), never by a blind second POST.
        now = run.clock.now().isoformat()
        run.record.setdefault("first_intent_at", now)
        run.save(state="pending", phase="submitting", intent_at=now)
        run.result.submissions += 1
        try:
            answer = await workflows.submit(
                body, run.identity, result_handling=wf.result_handling,
                webhook=expand_webhook(wf.webhook, sub.env),
            )
        except ProviderError as exc:
            if exc.label == STATUS_429:  # the 10-unfinished cap or a rate limit: queue
                waited = (run.clock.now() - started).total_seconds()
                if waited >= sub.queue_timeout:
                    return run.finish("failed", error=exc, note="still queued, gave up")
                run.save(phase="queued", note=exc.message)
                await run.clock.sleep(max(delay, exc.retry_after or 0.0))
                delay = min(workflows.max_poll_interval, delay * 1.5)
                continue
            if exc.params.get(NOT_SENT):  # never left: nothing to reconcile, no 1 h wait
                return run.finish("failed", error=exc, note="LinkedAPI could not be reached: "
                                  "nothing was submitted")
            if exc.label in (TIMEOUT, SERVER_ERROR):
                run.save(phase="unknown", note=f"submission outcome unknown: {exc.label}")
                outcome = await reconcile(run, sub.provider, body, sub.reconcile_after)
                if outcome is not None:
                    return outcome
                if run.result.submissions >= MAX_SUBMISSIONS:
                    return run.finish("failed", error=exc, note="no answer to any submission")
                continue
            return run.finish("failed", error=exc)
        return await _accepted(sub, answer)


async def _accepted(sub: _Submission, answer: WorkflowState) -> WorkflowResult:
    run = sub.run
    run.save(
        state="running",
        phase="submitted",
        workflow_id=answer.workflow_id,
        submitted_at=run.clock.now().isoformat(),
        webhook=mask_webhook(answer.webhook, sub.env),  # the store never keeps the secret
    )
    run.result.workflow_id = answer.workflow_id
    if answer.finished:
        return _settle(run, answer)
    if run.wf.result_handling == "hook":
        run.save(phase="hook")
        return run.running(HOOK_NOTE)
    if answer.workflow_id is None:
        return run.finish(
            "failed",
            error=ProviderError(SERVER_ERROR, "LinkedAPI gave no handle to follow the workflow"),
        )
    return await _follow(sub, answer.workflow_id)


async def _follow(sub: _Submission, workflow_id: str) -> WorkflowResult:
    run = sub.run
    run.result.workflow_id = workflow_id
    try:
        state = await sub.provider.workflows.wait(workflow_id, run.identity)
    except ProviderError as exc:
        if exc.label in (TIMEOUT, SERVER_ERROR, STATUS_429):
            return run.running(f"still running: {exc.message}")  # ours to follow next time
        return run.finish("failed", error=exc)
    return _settle(run, state)


def _settle(run: RunRecord, state: WorkflowState) -> WorkflowResult:
    if state.status == "completed":
        return run.finish("completed", completion=state.completion)
    return run.finish("failed", error=state.error or ProviderError(SERVER_ERROR, "failed"))


# ---- reading and settling records --------------------------------------------------------------


def workflow_results(store: Store) -> list[WorkflowResult]:
    """Every workflow the store knows, for ``seqrun status``."""
    return [WorkflowResult.from_record(r) for _, r in sorted(workflow_runs(store).items())]


def workflow_record(store: Store, name: str) -> Mapping[str, Any] | None:
    """The persisted record of one workflow (history, nodes, body), for ``seqrun why``."""
    record = workflow_run(store, name)
    return record if isinstance(record, Mapping) else None
