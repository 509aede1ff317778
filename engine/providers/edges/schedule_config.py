"""Edges schedule configs, normalized: what a manifest asks for (:func:`desired_config`) and
what Edges shows (:func:`live_config`) in one shape, compared field by field
(:func:`diff_configs`), hashed (:func:`fingerprint`) and redacted (callback header values
become digests, never stored in clear), and the request body Edges takes (:func:`request_body`).

    >>> diff_configs({"cron": "0 9 * * *"}, {"cron": "0 8 * * *"}, frozenset({"cron"}))
    (FieldChange(field='cron', old='0 9 * * *', new='0 8 * * *'),)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.model import Schedule
from engine.serve.config import expand_header

_FIELDS = ("action", "identity_ids", "cron", "timezone", "schedule_at", "inputs", "parameters",
           "callback")


def desired_config(schedule: Schedule) -> dict[str, Any]:
    """The normalized config a manifest asks for (the same shape as :func:`live_config`)."""
    callback = None
    if schedule.callback is not None:
        callback = {
            "url": schedule.callback.url,
            # `$SEQRUN_EDGES_WEBHOOK_SECRET` from the environment: a manifest holds no secret
            "headers": {k: expand_header(v) for k, v in schedule.callback.headers.items()},
            "on": schedule.callback.on,
        }
    return {
        "action": schedule.action,
        "identity_ids": list(schedule.identities),
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "schedule_at": schedule.schedule_at,
        "inputs": [dict(i) for i in schedule.inputs if i],
        "parameters": dict(schedule.parameters),
        "callback": callback,
    }


def live_config(detail: Mapping[str, Any], action: str | None = None) -> dict[str, Any]:
    """Normalize a ``GET /schedules/{uid}`` body. Fields Edges did not return are left out,
    so they are not compared (:func:`known_fields`)."""
    params = dict(detail.get("parameters") or {})
    if detail.get("max_results") is not None and "max_results" not in params:
        params["max_results"] = detail["max_results"]
    raw_cb = detail.get("callback")
    callback = None
    if isinstance(raw_cb, Mapping) and raw_cb.get("url"):
        callback = {
            "url": raw_cb["url"],
            "headers": dict(raw_cb.get("headers") or {}),
            "on": raw_cb.get("on") or "all",
        }
    return {
        "action": detail.get("action_name") or detail.get("action") or action,
        "identity_ids": list(detail.get("identity_ids") or []),
        "cron": detail.get("cron"),
        "timezone": detail.get("timezone") or "UTC",
        "schedule_at": detail.get("schedule_at"),
        "inputs": [dict(i) for i in detail.get("inputs") or [] if i],
        "parameters": params,
        "callback": callback,
    }


def known_fields(detail: Mapping[str, Any]) -> frozenset[str]:
    """The config fields a ``GET /schedules/{uid}`` body shows (only those are compared)."""
    known = {"action", "identity_ids", "cron", "timezone", "parameters"}
    for key in ("schedule_at", "inputs", "callback"):
        if key in detail:
            known.add(key)
    callback = detail.get("callback")
    if not isinstance(callback, Mapping) or "headers" in callback:
        known.add("callback.headers")  # some APIs hide header values: then not compared
    return frozenset(known)


def digest(value: Any) -> str:
    """SHA-256 of a value's canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """Replace callback header values by digests: safe to store, still comparable."""
    out = dict(config)
    cb = out.get("callback")
    if isinstance(cb, Mapping):
        headers = cb.get("headers") or {}
        out["callback"] = {
            **cb,
            "headers": {
                k: v if str(v).startswith("sha256:") else "sha256:" + digest(v)[:16]
                for k, v in headers.items()
            },
        }
    return out


def fingerprint(config: Mapping[str, Any]) -> str:
    """16 hex digits identifying a (redacted) config."""
    return digest(redact(config))[:16]


def request_body(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``POST /actions/{action}/run/schedule`` body for a config."""
    body: dict[str, Any] = {
        "inputs": list(config.get("inputs") or []) or [{}],
        "identity_ids": list(config["identity_ids"]),
        "cron": config.get("cron"),
        "timezone": config.get("timezone") or "UTC",
        "parameters": dict(config.get("parameters") or {}),
    }
    if config.get("schedule_at"):
        body["schedule_at"] = config["schedule_at"]
    if config.get("callback"):
        body["callback"] = dict(config["callback"])
    if body["cron"] is None:
        del body["cron"]
    return body


@dataclass(frozen=True)
class FieldChange:
    """One changed field of a schedule config."""

    field: str  # dotted: cron, parameters.sync_mode, callback.url
    old: Any
    new: Any


def _flatten(config: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    if "callback.headers" in known and "callback" not in known:
        flat["callback.headers"] = (config.get("callback") or {}).get("headers") or {}
    for key in _FIELDS:
        if key not in known:
            continue
        value = config.get(key)
        if key == "parameters":
            for pk, pv in (value or {}).items():
                flat[f"parameters.{pk}"] = pv
        elif key == "callback":
            if value is None:
                flat["callback"] = None
            else:
                flat["callback.url"] = value.get("url")
                flat["callback.on"] = value.get("on")
                if "callback.headers" in known:
                    flat["callback.headers"] = value.get("headers") or {}
        elif key == "identity_ids":
            flat["identities"] = value
        else:
            flat[key] = value
    return flat


ALL_FIELDS = frozenset(_FIELDS) | {"callback.headers"}


def diff_configs(
    old: Mapping[str, Any], new: Mapping[str, Any], known: frozenset[str] = ALL_FIELDS
) -> tuple[FieldChange, ...]:
    """Field-level changes from ``old`` to ``new`` (both redacted), only over ``known`` fields."""
    a, b = _flatten(redact(old), known), _flatten(redact(new), known)
    # None vs a callback: report it as one change rather than three.
    if "callback" in known and (a.get("callback", 0) is None) != (b.get("callback", 0) is None):
        a = {k: v for k, v in a.items() if not k.startswith("callback")}
        b = {k: v for k, v in b.items() if not k.startswith("callback")}
        a["callback"] = (old.get("callback") or {}).get("url")
        b["callback"] = (new.get("callback") or {}).get("url")
    changes = []
    for key in sorted(set(a) | set(b), key=_field_order):
        if a.get(key) != b.get(key):
            changes.append(FieldChange(key, a.get(key), b.get(key)))
    return tuple(changes)


def _field_order(key: str) -> tuple[int, str]:
    head = key.split(".", 1)[0]
    order = {"identity_ids": "identities"}
    names = [order.get(f, f) for f in _FIELDS]
    return (names.index(head) if head in names else len(names), key)
