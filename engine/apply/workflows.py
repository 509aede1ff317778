"""Workflow manifests on LinkedAPI: the exact JSON body, and submitting + following it.

``workflow_json(wf)`` turns a :class:`engine.model.Workflow` into the body LinkedAPI expects
(seed 003): each node becomes ``{"actionType": ..., **with, "label"?: ..., "then"?: ...}`` and a
root list becomes an array workflow. ``run_workflow`` submits it once and follows it to the end,
persisting its state in ``store.kv_*("workflows", name)`` so that a crash never leads to a
second submission of a workflow that may still be running. On a provider without workflows
(Edges, ConnectSafely) it walks the tree itself, one canonical action per node.

Example::

    >>> from engine.model import Metadata, Workflow, WorkflowNode
    >>> node = WorkflowNode("check_connection", {"personUrl": "https://www.linkedin.com/in/x"})
    >>> workflow_json(Workflow(Metadata("w"), "linkedapi", (node,)))
    {'actionType': 'st.checkConnectionStatus', 'personUrl': 'https://www.linkedin.com/in/x'}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from engine.clock import Clock
from engine.compile.machine import workflow_state_ids
from engine.errors import PlanError, ProviderError
from engine.model import Workflow, WorkflowNode
from engine.providers import REGISTRY
from engine.providers.base import Lead, Provider
from engine.providers.linkedapi.actions import LinkedApiProvider
from engine.providers.linkedapi.client import WorkflowState
from engine.providers.linkedapi.errors import action_error, request_error
from engine.providers.linkedapi.workflows import action_type
from engine.providers.linkedapi.workflows import workflow_json as workflow_json  # planner uses it
from engine.vocab import (
    AUTH_EXPIRED,
    INVALID_INPUT,
    LINKEDAPI_ACTIONS,
    SERVER_ERROR,
    STATUS_429,
    TIMEOUT,
    TRANSIENT_LABELS,
)

# ---- running a workflow -----------------------------------------------------------------------

NAMESPACE = "workflows"
UNFINISHED_STATES = frozenset({"pending", "running"})
PROBE_ATTEMPTS = 6
RECONCILE_AFTER = 3600.0  # seconds between a lost submission and looking for its effects
RECONCILE_ENV = "SEQRUN_LINKEDAPI_RECONCILE_AFTER"
MAX_SUBMISSIONS = 5  # lost submissions (each reconciled as "nothing happened") before giving up
# Actions with an effect on LinkedIn: the ones a blind resubmission could duplicate.
EFFECTFUL = frozenset(
    {"st.sendConnectionRequest", "st.sendMessage", "st.withdrawConnectionRequest"}
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


HOOK_NOTE = (
    "the result will arrive at the webhook; seqrun has no receiver for it yet, so the workflow "
    "stays `running` in `seqrun status` until one settles it"
)


class KV(Protocol):
    """The part of :class:`engine.store.Store` workflows use."""

    def kv_get(self, ns: str, key: str) -> Any | None: ...

    def kv_put(self, ns: str, key: str, value: Any) -> None: ...

    def kv_items(self, ns: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NodeResult:
    """One node of a workflow after a run: ``ok``, ``error`` (an action error) or ``skipped``
    (its parent failed, or the workflow did not complete)."""

    id: str  # n0, n0.1 ... (the compiler's node states)
    action_type: str
    label: str | None
    status: str
    data: Any = None
    error: Mapping[str, Any] | None = None  # {type, message, label}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "actionType": self.action_type,
            "label": self.label,
            "status": self.status,
            "data": self.data,
            "error": dict(self.error) if self.error else None,
        }


@dataclass
class WorkflowResult:
    """Where a workflow run ended: its state, LinkedAPI's completion tree and each node."""

    name: str
    state: str  # pending | running | completed | failed
    workflow_id: str | None = None
    completion: Any = None
    error: Mapping[str, Any] | None = None  # {label, type?, message}
    nodes: list[NodeResult] = field(default_factory=list)
    submissions: int = 0  # POSTs made by this call (0 when it resumed or reconciled)
    resumed: bool = False  # followed a workflow submitted earlier instead of submitting
    reconciled: bool = False  # outcome established from the world, the id having been lost
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "completed"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "workflowId": self.workflow_id,
            "completion": self.completion,
            "error": dict(self.error) if self.error else None,
            "nodes": [n.to_json() for n in self.nodes],
            "submissions": self.submissions,
            "resumed": self.resumed,
            "reconciled": self.reconciled,
            "note": self.note,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> WorkflowResult:
        """The result view of a record persisted in ``store.kv_*("workflows", name)``."""
        return cls(
            name=str(record.get("name")),
            state=str(record.get("state")),
            workflow_id=record.get("workflow_id"),
            completion=record.get("completion"),
            error=record.get("error"),
            nodes=[
                NodeResult(
                    id=n["id"],
                    action_type=n["actionType"],
                    label=n.get("label"),
                    status=n["status"],
                    data=n.get("data"),
                    error=n.get("error"),
                )
                for n in record.get("nodes") or []
            ],
            reconciled=bool(record.get("reconciled")),
            note=str(record.get("note") or ""),
        )


def body_revision(body: Any) -> str:
    """12 hex of sha256 over the body (the planner's WorkflowPlan.revision)."""
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def node_results(wf: Workflow, completion: Any) -> list[NodeResult]:
    """Each node of ``wf`` (pre-order, ids as the compiler's) with its completion item."""
    items = completion if isinstance(completion, list) else [completion]
    out: list[NodeResult] = []
    _walk(wf.root, items, "n", out)
    return out


def _walk(
    nodes: tuple[WorkflowNode, ...], items: list[Any], prefix: str, out: list[NodeResult]
) -> None:
    for i, node in enumerate(nodes):
        nid = f"{prefix}{i}"
        item = items[i] if i < len(items) and isinstance(items[i], Mapping) else None
        children: list[Any] = []
        if item is None:
            out.append(NodeResult(nid, action_type(node.action), node.label, "skipped"))
        elif item.get("success"):
            data = item.get("data")
            if isinstance(data, Mapping):
                then = data.get("then")
                children = then if isinstance(then, list) else ([then] if then else [])
                data = {k: v for k, v in data.items() if k != "then"}
            out.append(NodeResult(nid, action_type(node.action), node.label, "ok", data))
        else:
            err = item.get("error") if isinstance(item.get("error"), Mapping) else {}
            mapped = action_error(err)
            out.append(
                NodeResult(
                    nid,
                    action_type(node.action),
                    node.label,
                    "error",
                    error={
                        "type": mapped.params.get("type"),
                        "message": mapped.message,
                        "label": err.get("label") or mapped.label,
                    },
                )
            )
        _walk(node.then, children, f"{nid}.", out)


def _effects(body: Any, person: str | None = None) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(action type, person URL, node) of every effectful node of a workflow body."""
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    nodes = body if isinstance(body, list) else [body]
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        url = str(node.get("personUrl") or person or "")
        if node.get("actionType") in EFFECTFUL and url:
            out.append((str(node["actionType"]), url, node))
        then = node.get("then")
        if then:
            out.extend(_effects(then, url or None))
    return out


class _Run:
    """One call of run_workflow: the record, the provider and the steps between them."""

    def __init__(
        self,
        wf: Workflow,
        provider: LinkedApiProvider,
        store: KV,
        clock: Clock,
        reconcile_after: float,
        queue_timeout: float,
    ) -> None:
        self.wf = wf
        self.provider = provider
        self.store = store
        self.clock = clock
        self.reconcile_after = reconcile_after
        self.queue_timeout = queue_timeout
        self.body = workflow_json(wf)
        self.identity = wf.identities[0] if wf.identities else None
        self.result = WorkflowResult(wf.name, "pending")
        self.record: dict[str, Any] = {}
        self.foreign = False  # settling a record of another revision of this workflow

    # -- persistence ---------------------------------------------------------------------

    def save(self, **changes: Any) -> None:
        now = self.clock.now().isoformat()
        state = changes.get("state")
        if state and state != self.record.get("state"):
            self.record.setdefault("history", []).append(
                {
                    "at": now,
                    "from": self.record.get("state"),
                    "to": state,
                    "note": changes.get("note", ""),
                }
            )
        self.record.update(changes)
        self.record["updated_at"] = now
        self.store.kv_put(NAMESPACE, self.wf.name, self.record)

    def finish(
        self,
        state: str,
        *,
        completion: Any = None,
        error: ProviderError | None = None,
        note: str = "",
    ) -> WorkflowResult:
        nodes = (
            []  # an older revision's tree: the completion is kept, not mapped onto this one
            if self.foreign
            else node_results(self.wf, completion)
            if completion is not None
            else [
                NodeResult(sid, action_type(node.action), node.label, "skipped")
                for sid, node in workflow_state_ids(self.wf.root)
            ]
        )
        err = None
        if error is not None:
            err = {"label": error.label, "type": error.params.get("type"), "message": error.message}
        self.save(
            state=state,
            completion=completion,
            error=err,
            nodes=[n.to_json() for n in nodes],
            note=note,
            finished_at=self.clock.now().isoformat(),
        )
        self.result.state = state
        self.result.completion = completion
        self.result.error = err
        self.result.nodes = nodes
        self.result.note = note
        self.result.workflow_id = self.record.get("workflow_id")
        self.result.reconciled = bool(self.record.get("reconciled"))
        return self.result

    # -- the steps -----------------------------------------------------------------------

    async def run(self) -> WorkflowResult:
        previous = self.store.kv_get(NAMESPACE, self.wf.name)
        if isinstance(previous, Mapping) and previous.get("state") in UNFINISHED_STATES:
            self.record = dict(previous)
            same = previous.get("revision") == body_revision(self.body)
            current = self.body
            if not same:  # settle the older revision first, with its own body
                self.body, self.foreign = previous.get("body"), True
            outcome = await self.resume()
            self.body, self.foreign = current, False
            if outcome is not None and (same or outcome.state in UNFINISHED_STATES):
                return outcome  # an older revision still running: never two at once
        return await self.submit_new(attempt=int((previous or {}).get("attempt", 0)) + 1)

    async def resume(self) -> WorkflowResult | None:
        """Settle a run left unfinished by an earlier call; None when it needs resubmitting."""
        self.result.resumed = True
        if self.record.get("workflow_id"):
            return await self.follow(str(self.record["workflow_id"]))
        if self.record.get("phase") == "hook":
            self.result.state = "running"
            self.result.note = HOOK_NOTE
            return self.result
        # An intent without an id: the POST may or may not have reached LinkedAPI.
        return await self.reconcile()

    async def submit_new(self, *, attempt: int) -> WorkflowResult:
        self.record = {
            "name": self.wf.name,
            "provider": self.wf.provider,
            "api": self.wf.api,
            "result_handling": self.wf.result_handling,
            "identity": self.identity,
            "revision": body_revision(self.body),
            "body": self.body,
            "attempt": attempt,
            "history": [],
            "workflow_id": None,
            "reconciled": False,
        }
        self.result.resumed = False
        return await self.submit()

    async def submit(self) -> WorkflowResult:
        started = self.clock.now()
        delay = self.provider.workflows.poll_interval
        while True:
            # The intent is durable before the request leaves: a crash from here on is
            # recovered by resume(), never by a blind second POST.
            now = self.clock.now().isoformat()
            self.record.setdefault("first_intent_at", now)
            self.save(state="pending", phase="submitting", intent_at=now)
            self.result.submissions += 1
            try:
                answer = await self.provider.submit(
                    self.body,
                    self.identity,
                    result_handling=self.wf.result_handling,
                    webhook=self.wf.webhook,
                )
            except ProviderError as exc:
                if exc.label == STATUS_429:  # the 10-unfinished cap or a rate limit: queue
                    waited = (self.clock.now() - started).total_seconds()
                    if waited >= self.queue_timeout:
                        return self.finish("failed", error=exc, note="still queued, gave up")
                    self.save(phase="queued", note=exc.message)
                    await self.clock.sleep(max(delay, exc.retry_after or 0.0))
                    delay = min(self.provider.workflows.max_poll_interval, delay * 1.5)
                    continue
                if exc.label in (TIMEOUT, SERVER_ERROR):
                    self.save(phase="unknown", note=f"submission outcome unknown: {exc.label}")
                    outcome = await self.reconcile()
                    if outcome is not None:
                        return outcome
                    if self.result.submissions >= MAX_SUBMISSIONS:
                        return self.finish("failed", error=exc, note="no answer to any submission")
                    continue
                return self.finish("failed", error=exc)
            return await self.accepted(answer)

    async def accepted(self, answer: WorkflowState) -> WorkflowResult:
        self.save(
            state="running",
            phase="submitted",
            workflow_id=answer.workflow_id,
            submitted_at=self.clock.now().isoformat(),
            webhook=answer.webhook,
        )
        self.result.workflow_id = answer.workflow_id
        if answer.finished:
            return self.settle(answer)
        if self.wf.result_handling == "hook":
            self.save(phase="hook")
            self.result.state = "running"
            self.result.note = HOOK_NOTE
            return self.result
        if answer.workflow_id is None:
            return self.finish(
                "failed",
                error=ProviderError(
                    "SERVER_ERROR", "LinkedAPI gave no handle to follow the workflow"
                ),
            )
        return await self.follow(answer.workflow_id)

    async def follow(self, workflow_id: str) -> WorkflowResult:
        self.result.workflow_id = workflow_id
        try:
            state = await self.provider.wait(workflow_id, self.identity)
        except ProviderError as exc:
            if exc.label in (TIMEOUT, SERVER_ERROR, STATUS_429):
                self.result.state = "running"  # still ours to follow next time
                self.result.note = f"still running: {exc.message}"
                return self.result
            return self.finish("failed", error=exc)
        return self.settle(state)

    def settle(self, state: WorkflowState) -> WorkflowResult:
        if state.status == "completed":
            return self.finish("completed", completion=state.completion)
        return self.finish("failed", error=state.error or ProviderError("SERVER_ERROR", "failed"))

    async def reconcile(self) -> WorkflowResult | None:
        """The POST was lost: wait as long as the workflow could take, then ask the world
        whether its effects happened. None means nothing happened: submit again.

        LinkedAPI has no endpoint listing an account's workflows (``../shared/providers.md``
        §2.2), so a lost submission cannot be looked up: it may sit ``pending`` behind the
        account's 10 unfinished workflows for a long time. The guard is the wait, counted from
        the last submission attempt (``reconcile_after``, default 1 h,
        ``SEQRUN_LINKEDAPI_RECONCILE_AFTER`` seconds): no resubmission before it has passed,
        so a run interrupted and resumed later waits only what is left. Then:

        * every effect observed -> ``completed`` (reconciled);
        * none observed -> None (submit again; a read-only workflow resubmits at once);
        * some but not all -> the record is ``running`` (phase ``unknown``) and is never
          resubmitted: the workflow ran, or is running, and a second one could duplicate the
          effects already seen; the note names what was and was not observed, and the next
          run checks again.
        """
        effects = _effects(self.body)
        if not effects:
            return None  # read-only: a second run duplicates nothing
        intent = _parse(self.record.get("intent_at")) or _parse(self.record.get("first_intent_at"))
        if intent is not None:
            remaining = self.reconcile_after - (self.clock.now() - intent).total_seconds()
        else:
            remaining = self.reconcile_after
        if remaining > 0:
            wake = self.clock.now() + timedelta(seconds=remaining)
            self.save(
                phase="unknown",
                note="submission answer lost; the world is checked at "
                f"{wake.isoformat(timespec='seconds')} (the workflow may be queued at LinkedAPI)",
            )
            await self.clock.sleep(remaining)
        since = _parse(self.record.get("first_intent_at"))
        if since is not None:
            since -= timedelta(minutes=5)  # tolerate clock skew between us and LinkedAPI
        observed: list[str] = []
        missing: list[str] = []
        for kind, url, node in effects:
            if await self._probe(kind, url, node, since):
                observed.append(f"{kind} {url}")
            else:
                missing.append(f"{kind} {url}")
        if not observed:
            self.save(note="no effect observed in the world: submitting again")
            return None
        if missing:
            note = (
                "the submission's answer was lost; observed in the world: "
                + "; ".join(observed)
                + "; not (yet) observed: "
                + "; ".join(missing)
                + ". Not resubmitted (it would duplicate what was observed); state unknown,"
                " checked again on the next run"
            )
            self.save(state="running", phase="unknown", reconciled=False, note=note)
            self.result.state = "running"
            self.result.note = note
            return self.result
        self.save(reconciled=True)
        return self.finish(
            "completed",
            note="the submission's answer was lost; observed in the world: " + "; ".join(observed),
        )

    async def _probe(
        self, kind: str, url: str, node: Mapping[str, Any], since: datetime | None
    ) -> bool:
        """:meth:`_observed`, retrying transient failures; a lasting one propagates and the
        record stays pending (the next run reconciles again, still without resubmitting)."""
        delay = self.provider.workflows.poll_interval
        for attempt in range(PROBE_ATTEMPTS):
            try:
                return await self._observed(kind, url, node, since)
            except ProviderError as exc:
                if exc.label not in TRANSIENT_LABELS or attempt == PROBE_ATTEMPTS - 1:
                    raise
                await self.clock.sleep(max(delay, exc.retry_after or 0.0))
                delay = min(self.provider.workflows.max_poll_interval, delay * 2)
        raise AssertionError("unreachable")

    async def _observed(
        self, kind: str, url: str, node: Mapping[str, Any], since: datetime | None
    ) -> bool:
        if kind == "st.sendMessage":
            convs = await self.provider.poll_conversations(self.identity, [url])
            for conv in convs:
                for msg in conv.get("messages") or []:
                    at = _parse(msg.get("time"))
                    if (
                        msg.get("sender") == "us"
                        and normalize_text(msg.get("text")) == normalize_text(node.get("text"))
                        and (since is None or at is None or at >= since)
                    ):
                        return True
            return False
        completion = await self.provider.execute(
            {"actionType": "st.checkConnectionStatus", "personUrl": url}, self.identity
        )
        item = completion[0] if isinstance(completion, list) else completion
        status = (
            (item.get("data") or {}).get("connectionStatus") if isinstance(item, Mapping) else None
        )
        if kind == "st.sendConnectionRequest":
            return status in ("pending", "connected")
        return status is not None and status != "pending"  # withdraw


def normalize_text(value: Any) -> str:
    """A message text as LinkedIn may give it back: runs of whitespace (newlines, tabs,
    non-breaking spaces) collapsed to one space, ends trimmed."""
    return " ".join(str(value or "").split())


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


async def run_workflow(
    wf: Workflow,
    *,
    client: httpx.AsyncClient,
    store: KV,
    clock: Clock,
    env: Mapping[str, str] | None = None,
    poll_interval: float = 2.0,
    reconcile_after: float | None = None,
    queue_timeout: float = 24 * 3600.0,
) -> WorkflowResult:
    """Submit ``wf`` to LinkedAPI once and follow it to the end; its state is persisted in
    ``store.kv_*("workflows", wf.name)`` (pending -> running -> completed | failed).

    Never a duplicate: the intent is saved before the POST; a run left unfinished (crash,
    timeout) is resumed by its workflow id, or, when the id never came back, settled by asking
    the world (connection status, conversation) ``reconcile_after`` seconds after the last
    attempt (default :data:`RECONCILE_AFTER`, 1 h, or ``SEQRUN_LINKEDAPI_RECONCILE_AFTER``:
    a workflow can sit queued behind the account's cap); only when none of its effects
    happened is it submitted again, and only when all did is it ``completed``. The
    10-unfinished-workflows cap queues (waits and retries) for up to ``queue_timeout``
    seconds. ``hook`` returns as
    ``running``; :func:`complete_from_hook` settles it.

    Example::

        result = await run_workflow(wf, client=make_client("linkedapi"), store=store,
                                    clock=RealClock())
        result.state, [(n.id, n.status) for n in result.nodes]
    """
    if reconcile_after is None:
        reconcile_after = reconcile_delay(os.environ if env is None else env)
    if wf.provider != "linkedapi":
        spec = REGISTRY.get(wf.provider)
        if spec is None or spec.factory is None:
            raise PlanError(f"workflow {wf.name!r}: no adapter for provider {wf.provider!r}")
        return await _NodeRun(wf, spec.factory(client), store, clock, reconcile_after).run()
    provider = LinkedApiProvider(
        client,
        api=wf.api,
        result_handling=wf.result_handling,
        clock=clock,
        env=env,
        poll_interval=poll_interval,
    )
    return await _Run(wf, provider, store, clock, reconcile_after, queue_timeout).run()


# ---- node by node, on providers without workflows -----------------------------------------------

_CANONICAL: Mapping[str, str] = {v: k for k, v in LINKEDAPI_ACTIONS.items()}
NODE_ATTEMPTS = 6


class _NodeRun(_Run):
    """A workflow on a provider without workflows (Edges, ConnectSafely): the runner walks the
    tree itself, one canonical action per node, children only after their parent succeeded.
    Each node's intent is saved before its call; a node left ``sent`` (crash, timeout) is
    reconciled against the provider (relationship, conversation) before it is sent again."""

    def __init__(
        self, wf: Workflow, provider: Provider, store: KV, clock: Clock, reconcile_after: float
    ) -> None:
        self.wf = wf
        self.node_provider = provider
        self.store = store
        self.clock = clock
        self.reconcile_after = reconcile_after
        self.body = workflow_json(wf)
        self.identity = wf.identities[0] if wf.identities else None
        self.result = WorkflowResult(wf.name, "pending")
        self.record = {}
        self.foreign = False

    async def run(self) -> WorkflowResult:
        previous = self.store.kv_get(NAMESPACE, self.wf.name)
        revision = body_revision(self.body)
        if (
            isinstance(previous, Mapping)
            and previous.get("state") in UNFINISHED_STATES
            and previous.get("revision") == revision
            and previous.get("mode") == "nodes"
        ):
            self.record = dict(previous)
            self.result.resumed = True
        else:
            self.record = {
                "name": self.wf.name,
                "provider": self.wf.provider,
                "mode": "nodes",
                "identity": self.identity,
                "revision": revision,
                "body": self.body,
                "attempt": int((previous or {}).get("attempt", 0)) + 1,
                "history": [],
                "workflow_id": None,
                "reconciled": False,
                "node_states": {},
            }
            self.save(state="pending")
        if self.identity is None:
            return self.finish(
                "failed",
                error=ProviderError(
                    INVALID_INPUT, f"a workflow on {self.wf.provider} needs `identities`"
                ),
            )
        self.save(state="running")
        try:
            items = [await self._node(f"n{i}", n, None) for i, n in enumerate(self.wf.root)]
        except ProviderError as exc:  # the identity cannot act (AUTH_EXPIRED...)
            return self.finish("failed", error=exc)
        completion: Any = items if (self.wf.root_is_list or len(items) != 1) else items[0]
        return self.finish("completed", completion=completion)

    async def _node(self, nid: str, node: WorkflowNode, person: str | None) -> dict[str, Any]:
        params = dict(node.with_)
        url = str(params.pop("personUrl", None) or params.pop("profile_url", None) or person or "")
        states: dict[str, Any] = self.record.setdefault("node_states", {})
        done = states.get(nid)
        if done is None or done.get("status") in ("pending", "sent"):
            done = await self._perform(nid, node, url, params, states)
        item: dict[str, Any] = {"actionType": action_type(node.action)}
        if node.label is not None:
            item["label"] = node.label
        item["success"] = done["status"] == "ok"
        if item["success"]:
            data = dict(done.get("data") or {})
            if node.then:
                children = [
                    await self._node(f"{nid}.{j}", child, url) for j, child in enumerate(node.then)
                ]
                data["then"] = children if node.then_is_list or len(children) > 1 else children[0]
            if data:
                item["data"] = data
        else:
            item["error"] = done.get("error")
        return item

    async def _perform(
        self,
        nid: str,
        node: WorkflowNode,
        url: str,
        params: Mapping[str, Any],
        states: dict[str, Any],
    ) -> dict[str, Any]:
        assert self.identity is not None
        action = _CANONICAL.get(node.action, node.action)
        lead = Lead(url)
        previous = states.get(nid) or {}
        if previous.get("status") == "sent" and await self._happened(
            action, lead, params, previous
        ):
            self.record["reconciled"] = True
            return self._node_done(states, nid, {"status": "ok", "data": {"reconciled": True}})
        if action not in self.node_provider.spec.capabilities or not url:
            why = f"{self.wf.provider} cannot {node.action}" if url else "no personUrl"
            return self._node_done(
                states,
                nid,
                {
                    "status": "error",
                    "error": {"type": INVALID_INPUT, "label": INVALID_INPUT, "message": why},
                },
            )
        delay = 30.0
        for attempt in range(NODE_ATTEMPTS):
            sent_at = self.clock.now().isoformat()
            self._node_done(states, nid, {"status": "sent", "at": sent_at})
            try:
                result = await self.node_provider.perform(self.identity, action, lead, params)
            except ProviderError as exc:
                if exc.label == TIMEOUT:
                    await self.clock.sleep(self.reconcile_after)
                    if await self._happened(action, lead, params, {"at": sent_at}):
                        self.record["reconciled"] = True
                        return self._node_done(
                            states, nid, {"status": "ok", "data": {"reconciled": True}}
                        )
                    continue
                if exc.label in TRANSIENT_LABELS and attempt < NODE_ATTEMPTS - 1:
                    await self.clock.sleep(max(delay, exc.retry_after or 0.0))
                    delay *= 2
                    continue
                if exc.label == AUTH_EXPIRED:
                    raise
                return self._node_done(
                    states,
                    nid,
                    {
                        "status": "error",
                        "error": {"type": exc.label, "label": exc.label, "message": exc.message},
                    },
                )
            data = dict(result.data)
            if result.status is not None:
                data["connectionStatus"] = result.status
            return self._node_done(states, nid, {"status": "ok", "data": data})
        return self._node_done(
            states,
            nid,
            {
                "status": "error",
                "error": {"type": TIMEOUT, "label": TIMEOUT, "message": "no answer after retries"},
            },
        )

    def _node_done(self, states: dict[str, Any], nid: str, value: dict[str, Any]) -> dict[str, Any]:
        states[nid] = value
        self.save(node_states=states)
        return value

    async def _happened(
        self, action: str, lead: Lead, params: Mapping[str, Any], intent: Mapping[str, Any]
    ) -> bool:
        """Did an action whose answer was lost take effect? Asked of the provider."""
        assert self.identity is not None
        if action == "connect":
            rel = await self.node_provider.relationship(self.identity, lead)
            return rel.status in ("pending", "connected")
        if action == "withdraw_invitation":
            rel = await self.node_provider.relationship(self.identity, lead)
            return rel.status != "pending"
        if action == "send_message":
            text = str(params.get("text", params.get("message", "")))
            since = _parse(intent.get("at"))
            for conv in await self.node_provider.sync_conversations(self.identity):
                if conv.profile_url.rstrip("/") != lead.profile_url.rstrip("/"):
                    continue
                if conv.our_texts:
                    wanted = normalize_text(text)
                    return any(normalize_text(t) == wanted for t in conv.our_texts)
                return conv.last_sender_is_us and (
                    since is None or conv.last_activity_at >= since - timedelta(minutes=5)
                )
            return False
        return False  # visits and checks: doing them again duplicates nothing


def workflow_results(store: KV) -> list[WorkflowResult]:
    """Every workflow the store knows, for ``seqrun status``."""
    return [WorkflowResult.from_record(r) for _, r in sorted(store.kv_items(NAMESPACE).items())]


def workflow_record(store: KV, name: str) -> Mapping[str, Any] | None:
    """The persisted record of one workflow (history, nodes, body), for ``seqrun why``."""
    record = store.kv_get(NAMESPACE, name)
    return record if isinstance(record, Mapping) else None


def complete_from_hook(
    store: KV,
    payload: Mapping[str, Any],
    *,
    name: str | None = None,
    wf: Workflow | None = None,
) -> WorkflowResult | None:
    """Settle a ``hook`` workflow from a delivered result. Accepts the account API's body
    (``{status, completion | error}``, with ``name``) and the current API's webhook event
    (``{type: "workflow.completed", data: {workflowId, status, result?}}``). Idempotent:
    a finished workflow is left as it is. None when no waiting workflow matches."""
    data = payload.get("data") if isinstance(payload.get("data"), Mapping) else None
    record: Mapping[str, Any] | None = None
    if data is not None:
        wid = data.get("workflowId")
        for candidate in store.kv_items(NAMESPACE).values():
            if isinstance(candidate, Mapping) and candidate.get("workflow_id") == wid:
                record = candidate
        body: Mapping[str, Any] = {"status": data.get("status"), "completion": data.get("result")}
    else:
        record = workflow_record(store, name) if name else None
        body = payload
    if record is None or record.get("state") not in UNFINISHED_STATES:
        return None
    status = str(body.get("status"))
    updated = dict(record)
    now = datetime.now(UTC).isoformat()
    updated.setdefault("history", []).append(
        {"at": now, "from": record.get("state"), "to": status, "note": "webhook"}
    )
    if status == "completed":
        updated.update(state="completed", completion=body.get("completion"), phase="done")
        if wf is not None:
            updated["nodes"] = [n.to_json() for n in node_results(wf, body.get("completion"))]
    else:
        err: Mapping[str, Any] = body["error"] if isinstance(body.get("error"), Mapping) else {}
        mapped = request_error(
            str(err.get("type") or "unknownError"), str(err.get("message") or "")
        )
        updated.update(
            state="failed",
            phase="done",
            error={
                "label": mapped.label,
                "type": mapped.params.get("type"),
                "message": mapped.message,
            },
        )
    store.kv_put(NAMESPACE, str(record.get("name")), updated)
    return WorkflowResult.from_record(updated)
