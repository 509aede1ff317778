"""The sandbox LinkedAPI, both generations, over the simulated World (mounted at ``/linkedapi``).

* current API (what the official SDK speaks): ``POST /workflows``, ``GET``/``DELETE
  /workflows/{id}``, ``POST /conversations/poll``, ``GET /account``; every answer is the
  ``{success, result | error: {type, message}}`` envelope.
* account API (seed 003): ``POST /account/workflow`` with ``result-handling: long | reslink |
  hook`` (+ ``webhook``) answering ``{status, completion | progress | error}``, and
  ``GET /account/results/{hash}``.

Auth: ``linked-api-token`` must be the sandbox's (``engine.sandbox.common.CREDENTIALS``);
``identification-token`` is a world identity's uid, alias or ``sbx-idt-<uid>``.

Workflows take simulated time: one is ``running`` until the world clock passes its finish time
(``base_seconds + seconds_per_action * actions``), then it is executed over the world the next
time anyone talks to this API (``long`` result handling executes at once). At most
:data:`UNFINISHED_CAP` unfinished workflows per account; the next one gets ``tooManyRequests``.

The workflow table is live on the world object and written through, as JSON, to
``world.api_state["linkedapi"]`` after every change, so it is saved and restored with the world.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine.sandbox.common import CREDENTIALS, FAULT_HEADER, identification_env_var, inject
from engine.sandbox.world import World, WorldError, normalize_url

log = logging.getLogger(__name__)

SANDBOX_TOKEN = CREDENTIALS["linkedapi"]["LINKEDAPI_TOKEN"]
IDENT_PREFIX = "sbx-idt-"
KEEP_FINISHED = timedelta(days=7)  # finished workflows are forgotten after this (simulated)
UNFINISHED_CAP = 10
MAX_TEXT = 1900
MAX_NOTE = 300

PERSON_ACTIONS = frozenset(
    {
        "st.openPersonPage",
        "st.checkConnectionStatus",
        "st.sendConnectionRequest",
        "st.withdrawConnectionRequest",
        "st.sendMessage",
        "st.syncConversation",
    }
)
LIST_ACTIONS = frozenset(
    {"st.retrieveConnections", "st.retrievePendingRequests", "st.searchPeople"}
)
# Parameters each action accepts (besides actionType, label, then).
PARAMS: Mapping[str, frozenset[str]] = {
    "st.openPersonPage": frozenset({"personUrl", "basicInfo"}),
    "st.checkConnectionStatus": frozenset({"personUrl"}),
    "st.sendConnectionRequest": frozenset({"personUrl", "note", "email"}),
    "st.withdrawConnectionRequest": frozenset({"personUrl", "unfollow"}),
    "st.sendMessage": frozenset({"personUrl", "text"}),
    "st.syncConversation": frozenset({"personUrl"}),
    "st.retrieveConnections": frozenset({"limit", "since", "filter"}),
    "st.retrievePendingRequests": frozenset(),
    "st.searchPeople": frozenset({"term", "limit", "filter", "customSearchUrl"}),
}
# World (Edges-style) labels -> LinkedAPI action error types, per action type.
_ACTION_ERRORS: Mapping[str, str] = {
    "PROFILE_NOT_ACCESSIBLE": "personNotFound",
    "INVALID_INPUT": "personNotFound",
    "ALREADY_CONNECTED": "alreadyConnected",
    "INVITATION_PENDING": "alreadyPending",
    "NOTE_TOO_LONG": "noteTooLong",
    "NOT_CONNECTED": "messagingNotAllowed",
    "NOT_PENDING": "notPending",
    "LIMIT_REACHED": "limitExceeded",  # [inferred] LinkedAPI names no per-action limit error
    "SELF": "selfProfileNotAllowed",
}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_dt(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


INVALID_WORKFLOW_MESSAGE = (
    "Workflow configuration doesn't meet the constraints of one or more actions."
)


class InvalidWorkflow(Exception):
    """The workflow does not meet the constraints of one of its actions."""


# ---- state -------------------------------------------------------------------------------------


@dataclass
class WorkflowRecord:
    workflow_id: str
    account: str  # world identity uid
    body: Any
    api: str  # current | account
    submitted_at: datetime
    finish_at: datetime
    seq: int
    result_handling: str = "long"
    result_hash: str | None = None
    webhook: str | None = None
    status: str = "running"  # running | completed | failed
    completion: Any = None
    failure: dict[str, str] | None = None
    cancelled: bool = False


@dataclass
class LinkedApiState:
    """The sandbox LinkedAPI's own tables, kept on the world object."""

    workflows: dict[str, WorkflowRecord] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)  # result hash -> workflow id
    synced: set[tuple[str, str]] = field(default_factory=set)  # (account, person url)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # hook deliveries to make
    seq: int = 0
    api_token: str = SANDBOX_TOKEN
    base_seconds: float = 1.0
    seconds_per_action: float = 1.0
    dirty: bool = False  # something besides workflows changed (outbox)
    changed: set[str] = field(default_factory=set)  # workflow ids to write through
    running: set[str] = field(default_factory=set)  # ids of unfinished workflows
    pruned_at: datetime | None = None

    def touch(self, record: WorkflowRecord) -> None:
        self.changed.add(record.workflow_id)
        if record.status == "running" and record.workflow_id in self.workflows:
            self.running.add(record.workflow_id)
        else:
            self.running.discard(record.workflow_id)

    def unfinished(self, account: str) -> int:
        return sum(1 for wid in self.running if self.workflows[wid].account == account)


_LIVE: weakref.WeakKeyDictionary[World, LinkedApiState] = weakref.WeakKeyDictionary()


def state(world: World) -> LinkedApiState:
    """The LinkedAPI tables of ``world``: live, or rebuilt from ``world.api_state``."""
    st = _LIVE.get(world)
    if st is None:
        st = LinkedApiState()
        _LIVE[world] = st
        saved = world.api_state.get("linkedapi")
        if isinstance(saved, Mapping):
            load_state(world, saved)
    return st


def save(world: World) -> None:
    """Write changes through to ``world.api_state["linkedapi"]`` (only the changed records)."""
    st = state(world)
    doc = world.api_state.get("linkedapi")
    if not isinstance(doc, dict) or not isinstance(doc.get("workflows"), dict):
        world.api_state["linkedapi"] = dump_state(world)
        st.changed.clear()
        st.dirty = False
        return
    if not (st.changed or st.dirty or len(doc.get("synced", ())) != len(st.synced)):
        return
    table = doc["workflows"]
    for wid in st.changed:
        record = st.workflows.get(wid)
        if record is None:
            table.pop(wid, None)
        else:
            table[wid] = _record_json(record)
    st.changed.clear()
    st.dirty = False
    if len(doc.get("synced", ())) != len(st.synced):
        doc["synced"] = sorted([a, u] for a, u in st.synced)
    doc.update(results=st.results, outbox=st.outbox, seq=st.seq)


def _record_json(r: WorkflowRecord) -> dict[str, Any]:
    out = asdict(r)
    out["submitted_at"] = _iso(r.submitted_at)
    out["finish_at"] = _iso(r.finish_at)
    return out


def dump_state(world: World) -> dict[str, Any]:
    """The LinkedAPI tables as JSON (what :func:`save` keeps in ``world.api_state``)."""
    st = state(world)
    return {
        "workflows": {wid: _record_json(r) for wid, r in st.workflows.items()},
        "results": st.results,
        "synced": sorted([a, u] for a, u in st.synced),
        "outbox": st.outbox,
        "seq": st.seq,
        "api_token": st.api_token,
        "base_seconds": st.base_seconds,
        "seconds_per_action": st.seconds_per_action,
    }


def load_state(world: World, data: Mapping[str, Any]) -> LinkedApiState:
    """Restore tables saved by :func:`dump_state` onto ``world``."""
    st = state(world)
    st.workflows = {}
    st.running = set()
    raw_workflows = data.get("workflows", {})
    rows = raw_workflows.values() if isinstance(raw_workflows, Mapping) else raw_workflows
    for raw in rows:
        r = dict(raw)
        r["submitted_at"] = _parse_dt(r["submitted_at"])
        r["finish_at"] = _parse_dt(r["finish_at"])
        record = WorkflowRecord(**r)
        st.workflows[record.workflow_id] = record
        if record.status == "running":
            st.running.add(record.workflow_id)
    st.results = dict(data.get("results", {}))
    st.synced = {(a, u) for a, u in data.get("synced", [])}
    st.outbox = list(data.get("outbox", []))
    st.seq = int(data.get("seq", 0))
    st.api_token = str(data.get("api_token", SANDBOX_TOKEN))
    st.base_seconds = float(data.get("base_seconds", st.base_seconds))
    st.seconds_per_action = float(data.get("seconds_per_action", st.seconds_per_action))
    return st


def sandbox_credentials(world: World, identity: str | None = None) -> dict[str, str]:
    """Environment variables a client needs to talk to this sandbox: the main token, the
    plain identification token for ``identity`` (default: the first identity open to
    LinkedAPI) and a per-identity ``LINKEDAPI_IDENTIFICATION_TOKEN__<ID>`` for every identity."""
    out = {"LINKEDAPI_TOKEN": state(world).api_token}
    for uid, ident in world.identities.items():
        if ident.provider in (None, "linkedapi"):
            identity = identity or uid
            out[identification_env_var(uid)] = IDENT_PREFIX + uid
    if identity is not None:
        out["LINKEDAPI_IDENTIFICATION_TOKEN"] = IDENT_PREFIX + world.identity(identity).uid
    return out


# ---- validation ----------------------------------------------------------------------------


def _count_actions(body: Any) -> int:
    if isinstance(body, list):
        return sum(_count_actions(item) for item in body)
    if isinstance(body, Mapping):
        return 1 + _count_actions(body.get("then", []))
    return 0


def validate(body: Any) -> None:
    """Raise InvalidWorkflow when ``body`` breaks the constraints of one of its actions."""
    if isinstance(body, list):
        if not body:
            raise InvalidWorkflow("an array workflow needs at least one action")
        for item in body:
            _validate_node(item, parent_person=False, path="$[]")
    else:
        _validate_node(body, parent_person=False, path="$")


def _validate_node(node: Any, *, parent_person: bool, path: str) -> None:
    if not isinstance(node, Mapping):
        raise InvalidWorkflow(f"{path}: an action must be an object")
    kind = str(node.get("actionType"))
    if kind not in PARAMS:
        raise InvalidWorkflow(f"{path}: unknown actionType {kind!r}")
    extra = set(node) - PARAMS[kind] - {"actionType", "label", "then"}
    if extra:
        raise InvalidWorkflow(f"{path}: {kind} does not take {', '.join(sorted(extra))}")
    if "label" in node and not isinstance(node["label"], str):
        raise InvalidWorkflow(f"{path}: label must be a string")
    if kind in PERSON_ACTIONS:
        if parent_person and "personUrl" in node:
            raise InvalidWorkflow(
                f"{path}: personUrl is forbidden when the parent opens the person"
            )
        if not parent_person and not isinstance(node.get("personUrl"), str):
            raise InvalidWorkflow(f"{path}: {kind} needs personUrl")
    elif parent_person:
        raise InvalidWorkflow(f"{path}: {kind} cannot run in a person context")
    if kind == "st.sendMessage":
        text = node.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise InvalidWorkflow(f"{path}: text must be 1 to {MAX_TEXT} characters")
    if "note" in node and not isinstance(node["note"], str):
        raise InvalidWorkflow(f"{path}: note must be a string")
    if "limit" in node and (not isinstance(node["limit"], int) or node["limit"] < 1):
        raise InvalidWorkflow(f"{path}: limit must be a positive integer")
    then = node.get("then")
    if then is None:
        return
    if kind not in PERSON_ACTIONS:
        raise InvalidWorkflow(f"{path}: {kind} cannot have child actions")
    children = then if isinstance(then, list) else [then]
    for i, child in enumerate(children):
        _validate_node(child, parent_person=True, path=f"{path}.then[{i}]")


# ---- execution over the world --------------------------------------------------------------


class _SignedOut(Exception):
    pass


def _execute(world: World, st: LinkedApiState, account: str, body: Any) -> Any:
    """Run a validated workflow now; its completion (raises _SignedOut)."""
    if isinstance(body, list):
        return [_run_node(world, st, account, node, None) for node in body]
    return _run_node(world, st, account, body, None)


def _person_data(world: World, url: str) -> dict[str, Any]:
    p = world.profile(url)
    return {
        "name": p.full_name,
        "publicUrl": p.url,
        "hashedUrl": f"https://www.linkedin.com/in/ACoAA{p.profile_id}",
        "headline": p.headline,
        "location": p.location,
        "countryCode": "us",
        "position": p.job_title,
        "about": "",
        "companyName": p.company,
        "companyHashedUrl": "",
        "followersCount": 100 + p.profile_id % 5000,
    }


def _run_node(
    world: World, st: LinkedApiState, account: str, node: Mapping[str, Any], person: str | None
) -> dict[str, Any]:
    kind = str(node["actionType"])
    url = str(node.get("personUrl", person or ""))
    item: dict[str, Any] = {"actionType": kind}
    if "label" in node:
        item["label"] = node["label"]
    try:
        data = _perform(world, st, account, kind, node, url)
    except WorldError as exc:
        if exc.label == "AUTH_EXPIRED":
            raise _SignedOut(exc.message) from exc
        item["success"] = False
        error_type = _ACTION_ERRORS.get(exc.label, "unknownError")
        if exc.label == "LIMIT_REACHED" and kind == "st.sendConnectionRequest":
            error_type = "dailyConnectionAttemptsExceeded"
        if exc.label == "ALREADY_CONNECTED" and kind == "st.withdrawConnectionRequest":
            error_type = "notPending"
        item["error"] = {"type": error_type, "message": exc.message}
        return item
    item["success"] = True
    then = node.get("then")
    if then is not None:
        children = then if isinstance(then, list) else [then]
        results = [_run_node(world, st, account, child, url) for child in children]
        if data is None:
            data = {}
        if isinstance(data, dict):
            data["then"] = results if isinstance(then, list) else results[0]
    if data is not None:
        item["data"] = data
    return item


def _perform(
    world: World, st: LinkedApiState, account: str, kind: str, node: Mapping[str, Any], url: str
) -> Any:
    ident = world.identity(account)
    if kind in PERSON_ACTIONS:
        norm = normalize_url(url)
        if norm == ident.profile_url:
            raise WorldError("SELF", "this is your own profile")
    if kind == "st.openPersonPage":
        world.visit(account, url)
        return _person_data(world, url) if node.get("basicInfo", True) else {}
    if kind == "st.checkConnectionStatus":
        rel = world.relationship(account, url)
        return {"connectionStatus": {"none": "notConnected"}.get(rel, rel)}
    if kind == "st.sendConnectionRequest":
        note = node.get("note")
        world.connect(account, url, note=str(note) if note else None)
        return None
    if kind == "st.withdrawConnectionRequest":
        world.withdraw(account, url)
        return None
    if kind == "st.sendMessage":
        world.message(account, url, str(node["text"]))
        st.synced.add((ident.uid, normalize_url(url)))
        return None
    if kind == "st.syncConversation":
        world.relationship(account, url)  # auth + access checks
        st.synced.add((ident.uid, normalize_url(url)))
        return None
    if kind == "st.retrieveConnections":
        items = world.connections_of(account)
        since = node.get("since")
        if since:
            cutoff = _parse_dt(str(since))
            items = [(p, at) for p, at in items if at >= cutoff]
        limit = int(node.get("limit") or len(items) or 1)
        return [
            {
                "name": p.full_name,
                "publicUrl": p.url,
                "headline": p.headline,
                "location": p.location,
                "connectedAt": _iso(at),
            }
            for p, at in items[:limit]
        ]
    if kind == "st.retrievePendingRequests":
        out = []
        for inv in world.pending_invitations(account):
            p = world.profile(inv.profile_url)
            out.append(
                {
                    "name": p.full_name,
                    "publicUrl": p.url,
                    "headline": p.headline,
                    "sentTime": _iso(inv.sent_at),
                }
            )
        return out
    if kind == "st.searchPeople":
        found = world.search_people(
            str(node.get("term", "")), int(node.get("limit") or 10), identity=account
        )
        return [
            {
                "name": p.full_name,
                "publicUrl": p.url,
                "headline": p.headline,
                "location": p.location,
            }
            for p in found
        ]
    raise WorldError("INVALID_INPUT", f"unsupported action {kind}")


def _finish(world: World, st: LinkedApiState, record: WorkflowRecord) -> None:
    try:
        record.completion = _execute(world, st, record.account, record.body)
        record.status = "completed"
    except _SignedOut as exc:
        record.status = "failed"
        record.failure = {"reason": "linkedinAccountSignedOut", "message": str(exc)}
    st.touch(record)
    if record.result_handling == "hook" and record.webhook:
        st.outbox.append(
            {
                "url": record.webhook,
                "at": _iso(world.clock.now()),
                "payload": _account_body(record, ""),
            }
        )


def run_due(world: World) -> None:
    """Execute every running workflow whose finish time has passed, in finish order; forget
    finished ones after :data:`KEEP_FINISHED` (checked once per simulated hour)."""
    st = state(world)
    now = world.clock.now()
    due = sorted(
        (st.workflows[wid] for wid in st.running if st.workflows[wid].finish_at <= now),
        key=lambda r: (r.finish_at, r.seq),
    )
    for record in due:
        _finish(world, st, record)
    if st.pruned_at is not None and now - st.pruned_at < timedelta(hours=1):
        return
    st.pruned_at = now
    old = [
        r.workflow_id
        for r in st.workflows.values()
        if r.status != "running" and r.finish_at < now - KEEP_FINISHED
    ]
    for wid in old:
        record = st.workflows.pop(wid)
        if record.result_hash:
            st.results.pop(record.result_hash, None)
        st.changed.add(wid)


# ---- HTTP ----------------------------------------------------------------------------------


def _envelope_error(kind: str, message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": {"type": kind, "message": message}},
        status_code=status,
        headers=headers or None,
    )


def _account_error(kind: str, message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"status": "failed", "error": {"type": kind, "message": message}},
        status_code=status,
        headers=headers or None,
    )


ErrorFn = Callable[..., JSONResponse]


class _Api:
    def __init__(self, world: World) -> None:
        self.world = world

    @property
    def st(self) -> LinkedApiState:
        return state(self.world)

    def _auth(self, request: Request, error: ErrorFn) -> str | JSONResponse:
        """The account uid the request acts for, or the error response."""
        token = request.headers.get("linked-api-token")
        if not token:
            return error("linkedApiTokenRequired", "linked-api-token header is required", 401)
        if token != self.st.api_token:
            return error("invalidLinkedApiToken", "the linked-api-token is not valid", 401)
        ident_token = request.headers.get("identification-token") or request.headers.get(
            "account-api-token"
        )
        if not ident_token:
            return error(
                "identificationTokenRequired", "identification-token header is required", 401
            )
        ident = self.world.find_identity(ident_token)
        if ident is None and ident_token.startswith(IDENT_PREFIX):
            ident = self.world.find_identity(ident_token[len(IDENT_PREFIX) :])
        if ident is None or ident.provider not in (None, "linkedapi"):
            return error("invalidIdentificationToken", "the identification-token is not valid", 401)
        return ident.uid

    async def _fault(self, op: str, error: ErrorFn) -> tuple[JSONResponse | None, bool]:
        """(response to send instead, whether to perform the call first)."""
        plan = await inject(self.world, "linkedapi", op)
        if plan is None:
            return None, False
        faults = self.world.config.faults
        if plan.kind == "429":
            headers = {"Retry-After": str(faults.retry_after_s)}
            return error("tooManyRequests", "too many requests", 429, **headers), False
        if plan.kind == "5xx":
            return error("httpError", "internal server error", 503), False
        # the in-process transport turns this into httpx.ReadTimeout; over loopback a 504
        return error("httpError", "gateway timeout", 504, **{FAULT_HEADER: "timeout"}), plan.after

    def _submit(
        self, account: str, body: Any, api: str, handling: str, webhook: str | None
    ) -> WorkflowRecord:
        st = self.st
        now = self.world.clock.now()
        st.seq += 1
        duration = st.base_seconds + st.seconds_per_action * _count_actions(body)
        wid = f"wf-{hashlib.sha256(f'{self.world.seed}:{st.seq}'.encode()).hexdigest()[:16]}"
        record = WorkflowRecord(
            workflow_id=wid,
            account=account,
            body=body,
            api=api,
            submitted_at=now,
            finish_at=now + timedelta(seconds=duration),
            seq=st.seq,
            result_handling=handling,
            webhook=webhook,
        )
        if api == "account" and handling == "reslink":
            record.result_hash = hashlib.sha256(f"res:{wid}".encode()).hexdigest()[:24]
            st.results[record.result_hash] = wid
        st.workflows[wid] = record
        st.touch(record)
        if handling == "long":
            _finish(self.world, st, record)
        return record

    async def _body(self, request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return _NO_BODY

    # -- current API ----------------------------------------------------------------------

    async def post_workflows(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _envelope_error)
        if isinstance(account, JSONResponse):
            return account
        body = await self._body(request)
        if body is _NO_BODY:
            return _envelope_error("invalidRequestPayload", "the body is not JSON", 400)
        try:
            validate(body)
        except InvalidWorkflow as exc:
            return _envelope_error("invalidWorkflow", str(exc), 400)
        if not self.world.auth_ok(account):
            return _envelope_error(
                "linkedinAccountSignedOut", "the LinkedIn account is signed out", 403
            )
        if self.st.unfinished(account) >= UNFINISHED_CAP:
            return _envelope_error(
                "tooManyRequests",
                f"at most {UNFINISHED_CAP} unfinished workflows per account",
                429,
                **{"Retry-After": str(int(self.st.base_seconds))},
            )
        fault, perform = await self._fault("workflows.create", _envelope_error)
        if fault is not None:
            if perform:
                self._submit(account, body, "current", "poll", None)
            return fault
        record = self._submit(account, body, "current", "poll", None)
        return JSONResponse(
            {
                "success": True,
                "result": {"workflowId": record.workflow_id, "workflowStatus": "running"},
            }
        )

    def _owned(self, request: Request, account: str) -> WorkflowRecord | None:
        record = self.st.workflows.get(request.path_params["workflow_id"])
        if record is None or record.account != account or record.api != "current":
            return None
        return record

    async def get_workflow(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _envelope_error)
        if isinstance(account, JSONResponse):
            return account
        fault, _ = await self._fault("workflows.get", _envelope_error)
        if fault is not None:
            return fault
        record = self._owned(request, account)
        if record is None:
            return _envelope_error("workflowNotFound", "no such workflow", 404)
        result: dict[str, Any] = {"workflowId": record.workflow_id, "workflowStatus": record.status}
        if record.status == "completed":
            result["completion"] = record.completion
        elif record.status == "failed":
            result["failure"] = record.failure
        return JSONResponse({"success": True, "result": result})

    async def delete_workflow(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _envelope_error)
        if isinstance(account, JSONResponse):
            return account
        record = self._owned(request, account)
        if record is None:
            return _envelope_error("workflowNotFound", "no such workflow", 404)
        cancelled = record.status == "running"
        if cancelled:
            record.status = "failed"
            record.cancelled = True
            record.failure = {"reason": "workflowCancelled", "message": "cancelled by the user"}
            self.st.touch(record)
        return JSONResponse({"success": True, "result": {"cancelled": cancelled}})

    async def poll_conversations(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _envelope_error)
        if isinstance(account, JSONResponse):
            return account
        body = await self._body(request)
        if not isinstance(body, list) or not all(
            isinstance(i, Mapping) and isinstance(i.get("personUrl"), str) for i in body
        ):
            return _envelope_error(
                "invalidRequestPayload", "expected [{personUrl, type, since?}]", 400
            )
        fault, _ = await self._fault("conversations.poll", _envelope_error)
        if fault is not None:
            return fault
        if not self.world.auth_ok(account):
            return _envelope_error(
                "linkedinAccountSignedOut", "the LinkedIn account is signed out", 403
            )
        out = []
        unsynced = []
        for item in body:
            try:
                url = normalize_url(item["personUrl"])
            except WorldError:
                return _envelope_error(
                    "invalidRequestPayload", f"not a person URL: {item['personUrl']}", 400
                )
            if (account, url) not in self.st.synced:
                unsynced.append(item["personUrl"])
                continue
            since = _parse_dt(str(item["since"])) if item.get("since") else None
            thread = self.world.thread_with(account, url)
            messages = (
                []
                if thread is None
                else [
                    {
                        "id": m.message_id,
                        "sender": "us" if m.from_us else "them",
                        "text": m.text,
                        "time": _iso(m.created_at),
                    }
                    for m in thread.messages
                    if since is None or m.created_at > since
                ]
            )
            entry: dict[str, Any] = {
                "personUrl": item["personUrl"],
                "type": item.get("type", "st"),
                "messages": messages,
            }
            if item.get("since"):
                entry["since"] = item["since"]
            out.append(entry)
        if unsynced:
            return _envelope_error(
                "conversationsNotSynced",
                "sync these conversations first (st.syncConversation): " + ", ".join(unsynced),
                400,
            )
        return JSONResponse({"success": True, "result": out})

    async def get_account(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _envelope_error)
        if isinstance(account, JSONResponse):
            return account
        try:
            ident = self.world.me(account)
        except WorldError:
            return _envelope_error(
                "linkedinAccountSignedOut", "the LinkedIn account is signed out", 403
            )
        return JSONResponse(
            {"success": True, "result": {"name": ident.name, "url": ident.profile_url}}
        )

    # -- account API (seed 003) ------------------------------------------------------------

    async def post_account_workflow(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _account_error)
        if isinstance(account, JSONResponse):
            return account
        handling = request.headers.get("result-handling", "long")
        if handling not in ("long", "reslink", "hook"):
            return _account_error(
                "invalidRequestPayload", "result-handling must be long, reslink or hook", 400
            )
        webhook = request.headers.get("webhook")
        if handling == "hook" and not webhook:
            return _account_error(
                "invalidRequestPayload", "result-handling hook needs a webhook header", 400
            )
        body = await self._body(request)
        if body is _NO_BODY:
            return _account_error("invalidRequestBody", "the body is not JSON", 400)
        try:
            validate(body)
        except InvalidWorkflow as exc:
            return JSONResponse(
                {
                    "status": "failed",
                    "error": {
                        "type": "invalidWorkflow",
                        "message": f"{INVALID_WORKFLOW_MESSAGE} {exc}",
                    },
                }
            )
        if not self.world.auth_ok(account):
            return JSONResponse(
                {
                    "status": "failed",
                    "error": {
                        "type": "linkedinAccountSignedOut",
                        "message": "the LinkedIn account is signed out",
                    },
                }
            )
        if self.st.unfinished(account) >= UNFINISHED_CAP:
            return _account_error(
                "tooManyRequests",
                f"at most {UNFINISHED_CAP} unfinished workflows per account",
                429,
                **{"Retry-After": str(int(self.st.base_seconds))},
            )
        fault, perform = await self._fault("account.workflow", _account_error)
        if fault is not None:
            if perform:
                self._submit(account, body, "account", handling, webhook)
            return fault
        record = self._submit(account, body, "account", handling, webhook)
        return JSONResponse(_account_body(record, _api_base(request)))

    async def get_account_result(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, _account_error)
        if isinstance(account, JSONResponse):
            return account
        fault, _ = await self._fault("account.results", _account_error)
        if fault is not None:
            return fault
        wid = self.st.results.get(request.path_params["result_hash"])
        record = self.st.workflows.get(wid or "")
        if record is None or record.account != account:
            return _account_error("workflowNotFound", "no such result", 404)
        return JSONResponse(_account_body(record, _api_base(request)))


_NO_BODY = object()


def _api_base(request: Request) -> str:
    """This API's own base URL (with its mount path), for the resultLink."""
    url = str(request.url.replace(query=""))
    result_hash = request.path_params.get("result_hash")
    for tail in ("/account/workflow", f"/account/results/{result_hash}"):
        if url.endswith(tail):
            return url[: -len(tail)]
    return url


def _account_body(record: WorkflowRecord, base_url: str) -> dict[str, Any]:
    if record.status == "completed":
        return {"status": "completed", "completion": record.completion}
    if record.status == "failed":
        failure = record.failure or {}
        return {
            "status": "failed",
            "error": {
                "type": failure.get("reason", "unknownError"),
                "message": failure.get("message", ""),
            },
        }
    if record.result_handling == "hook":
        return {
            "status": "running",
            "progress": {
                "message": "Your workflow is running. The result will be sent to the webhook.",
                "webhook": record.webhook,
            },
        }
    return {
        "status": "running",
        "progress": {
            "message": "Your workflow is running. Please check the resultLink periodically.",
            "resultLink": f"{base_url.rstrip('/')}/account/results/{record.result_hash}",
        },
    }


Handler = Callable[[Request], Awaitable[Response]]


def _saving(world: World, handler: Handler, callback_client: httpx.AsyncClient | None) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        finally:
            if callback_client is not None:
                await deliver_hooks(world, callback_client)
            save(world)

    return endpoint


async def deliver_hooks(world: World, client: httpx.AsyncClient) -> int:
    """POST finished ``hook`` workflows to their webhook; failed deliveries stay queued."""
    st = state(world)
    delivered = 0
    for item in list(st.outbox):
        try:
            response = await client.post(str(item["url"]), json=item["payload"])
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("linkedapi webhook delivery failed: %s", type(exc).__name__)
            continue
        st.outbox.remove(item)
        st.dirty = True
        delivered += 1
    return delivered


def routes(world: World, callback_client: httpx.AsyncClient | None = None) -> list[BaseRoute]:
    """The LinkedAPI routes over ``world``, relative to their mount point (``/linkedapi``).

    With ``callback_client`` the results of ``hook`` workflows are POSTed to their webhook;
    without it they wait in ``state(world).outbox``."""
    api = _Api(world)
    state(world)
    table: list[tuple[str, Handler, str]] = [
        ("/workflows", api.post_workflows, "POST"),
        ("/workflows/{workflow_id}", api.get_workflow, "GET"),
        ("/workflows/{workflow_id}", api.delete_workflow, "DELETE"),
        ("/conversations/poll", api.poll_conversations, "POST"),
        ("/account", api.get_account, "GET"),
        ("/account/workflow", api.post_account_workflow, "POST"),
        ("/account/results/{result_hash}", api.get_account_result, "GET"),
    ]
    return [
        Route(path, _saving(world, fn, callback_client), methods=[method])
        for path, fn, method in table
    ]
