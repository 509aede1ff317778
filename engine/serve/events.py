"""What each endpoint accepts, and the key that makes a provider's retry a duplicate.

Each function takes the decoded JSON body (and what the path names) and returns the
:class:`Accepted` event to record, or raises :class:`BadEvent` (the receiver answers 400).

* Edges run callbacks: ``callback_ref_uid`` ("stable id, same across retries",
  ``../shared/providers.md`` §1.4), else the run uid with a digest of the body;
* Edges integration webhooks (``{event, identity_uid, ...}``, payload *inferred*, no id
  documented): a digest of the body, which a retry repeats byte for byte in meaning;
* LinkedAPI webhook events (``{id, type, createdAt, data}``, §2.6): the event ``id``;
* LinkedAPI ``result_handling: hook`` results (``{status, completion | error}``, seed 003):
  the workflow named in the path, its attempt and a digest of the body.

Example::

    edges_integration({"event": "AUTH_EXPIRED", "identity_uid": "ident-alice"}).subject
    # 'ident-alice'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INTEGRATION_EVENTS = frozenset({"AUTH_EXPIRED", "AUTH_SUCCESS", "DELETED"})
HOOK_STATUSES = frozenset({"completed", "failed", "complete", "error"})


class BadEvent(ValueError):
    """A body the endpoint cannot take (the message names the field, never a secret)."""


@dataclass(frozen=True)
class Accepted:
    source: str
    kind: str
    dedupe_key: str
    subject: str | None
    payload: Mapping[str, Any]


def digest(payload: Any) -> str:
    """24 hex of sha256 over the canonical JSON of ``payload`` (key order does not count)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise BadEvent(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _text(value: Any, field: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise BadEvent(f"{field} must be a non-empty string (at most 200 characters)")
    return value


def edges_callback(body: Any) -> Accepted:
    obj = _object(body)
    run = obj.get("run")
    if run is not None and not isinstance(run, Mapping):
        raise BadEvent("run must be an object")
    run = run or {}
    # what the runner reads: `data` is an action's output (an object) or a list action's
    # items (a list); `results` (on: final) the list of every input's output
    data = obj.get("data")
    if data is not None and not isinstance(data, list | Mapping):
        raise BadEvent("data must be an object or a list")
    if obj.get("results") is not None and not isinstance(obj.get("results"), list):
        raise BadEvent("results must be a list")
    ref = _text(obj.get("callback_ref_uid"), "callback_ref_uid", required=False)
    uid = _text(run.get("run_uid") or run.get("uid"), "run.run_uid", required=False)
    if ref is None and uid is None:
        raise BadEvent("a callback needs callback_ref_uid or run.run_uid")
    key = f"edges:cb:{ref}" if ref is not None else f"edges:run:{uid}:{digest(obj)}"
    return Accepted("edges", "callback", key, uid, obj)


def edges_integration(body: Any) -> Accepted:
    obj = _object(body)
    event = obj.get("event")
    if not isinstance(event, str) or event not in INTEGRATION_EVENTS:
        raise BadEvent(f"event must be one of {', '.join(sorted(INTEGRATION_EVENTS))}")
    identity = _text(obj.get("identity_uid") or obj.get("identity_id"), "identity_uid")
    wid = obj.get("uid") or obj.get("id") or obj.get("webhook_id")
    key = f"edges:int:{wid}" if isinstance(wid, str) and wid else f"edges:int:{digest(obj)}"
    return Accepted("edges", "integration", key, identity, obj)


def linkedapi_event(body: Any) -> Accepted:
    obj = _object(body)
    eid = _text(obj.get("id"), "id")
    kind = _text(obj.get("type"), "type")
    data = obj.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise BadEvent("data must be an object")
    data = data or {}
    assert kind is not None
    subject: str | None = None
    if kind.startswith("workflow."):
        subject = _text(data.get("workflowId"), "data.workflowId")
    elif kind.startswith("account."):
        subject = _text(data.get("accountId"), "data.accountId")
    return Accepted("linkedapi", "event", f"linkedapi:evt:{eid}", subject, obj)


def linkedapi_hook(body: Any, name: str, attempt: int) -> Accepted:
    obj = _object(body)
    status = obj.get("status")
    if not isinstance(status, str) or status not in HOOK_STATUSES:
        raise BadEvent("status must be completed or failed")
    _text(name, "the workflow name in the path")
    key = f"linkedapi:hook:{name}:{attempt}:{digest(obj)}"
    return Accepted("linkedapi", "hook", key, name, obj)
