"""Run callbacks and integration webhooks: queued in the state, POSTed by ``callback_client``,
retried with backoff when the receiver fails.

A callback URL must be HTTPS, as the real API requires (providers.md §1.4); plain ``http://``
is accepted only to a loopback host, so that tests and a local receiver need no certificate.
A failed delivery (a transport error or a non-2xx answer) is retried :data:`MAX_RETRIES`
times, after 30 s, 1, 2, 4 and 8 min, with the same ``callback_ref_uid`` (the receiver's
dedupe key); its entry is ``PENDING`` meanwhile, ``FAILED`` once the retries are spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.sandbox.common import iso, parse_iso
from engine.sandbox.edges.lists import Lists
from engine.sandbox.edges.wire import (
    WORKSPACE_UID,
)
from engine.sandbox.guard import is_loopback

#: deliveries after the first that failed
MAX_RETRIES = 5
#: the wait before retry n (1-based) is RETRY_BASE * 2 ** (n - 1)
RETRY_BASE = timedelta(seconds=30)


def callback_url_problem(url: object) -> str | None:
    """Why ``url`` cannot receive callbacks, or None: HTTPS, or HTTP to a loopback host."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "must be a URL"
    if not host:
        return "must be an absolute URL"
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return None
    return "must be an HTTPS URL (plain http only to a loopback host)"


class Callbacks(Lists):
    """Callback entries for runs and LinkedIn integration events."""

    async def _post(self, entry: dict[str, Any]) -> None:
        if self.callback_client is None:
            return
        entry["status"] = "RUNNING"
        try:
            resp = await self.callback_client.post(entry["callback_url"], json=entry["payload"],
                                                   headers=entry["headers"])
            entry["http_status"] = resp.status_code
            ok = resp.status_code < 300
            entry["http_response"] = None if ok else resp.text[:500]
        except httpx.HTTPError as exc:
            ok = False
            entry["http_response"] = type(exc).__name__
        if ok:
            entry["status"] = "SUCCESS"
            entry.pop("next_attempt_at", None)
            return
        retries = int(entry.get("retry_count") or 0)
        if retries >= MAX_RETRIES:
            entry["status"] = "FAILED"
            entry.pop("next_attempt_at", None)
            return
        entry["status"] = "PENDING"
        entry["next_attempt_at"] = iso(self.world.now + RETRY_BASE * 2 ** retries)
        self.state.setdefault("callback_retries", []).append(entry["uid"])

    async def _retry_callbacks(self) -> None:
        """POST again every failed callback whose backoff is over."""
        st = self.state
        waiting: list[str] = st.get("callback_retries") or []
        if not waiting:
            return
        now = self.world.now
        by_uid = {cb["uid"]: cb for cb in st["callbacks"] if cb["uid"] in set(waiting)}
        due = [u for u in waiting if u in by_uid
               and parse_iso(by_uid[u]["next_attempt_at"]) <= now]
        if not due:
            return
        st["callback_retries"] = [u for u in waiting if u not in set(due)]
        for uid in due:
            entry = by_uid[uid]
            if not entry.pop("delayed", False):  # a late first delivery is no retry
                entry["retry_count"] = int(entry.get("retry_count") or 0) + 1
            await self._post(entry)

    async def _callback(self, run: dict[str, Any], output: dict[str, Any] | None) -> None:
        st = self.state
        cb = run["callback"]
        ref = self._uid("cbr")
        payload: dict[str, Any] = {
            "callback_ref_uid": ref,
            "run": {"run_uid": run["uid"], "uid": run["uid"], "batch_uid": run["batch_uid"],
                    "status": run["status"], "action_name": run["action_name"],
                    "schedule_uid": run.get("schedule_uid")},
        }
        if output is not None:
            payload["custom_data"] = output["custom_data"]
            payload["input"] = output["input"]
            payload["data"] = output["data"]
            payload["error"] = output["error"]
        else:
            outs = run["outputs"]
            payload["custom_data"] = outs[0]["custom_data"] if len(run["inputs"]) == 1 else {}
            payload["results"] = outs
        entry: dict[str, Any] = {
            "uid": self._uid("cb"), "callback_ref_uid": ref, "run_uid": run["uid"],
            "batch_uid": run["batch_uid"], "callback_url": cb["url"],
            "headers": dict(cb.get("headers") or {}), "payload": payload,
            "status": "PENDING", "http_status": None, "created_at": iso(self.world.now),
            "retry_count": 0, "workspace_uid": WORKSPACE_UID,
        }
        st["callbacks"].append(entry)
        faults = self.world.config.faults
        if faults.callback_delay_s > 0:  # late on purpose: delivered by _retry_callbacks
            entry["delayed"] = True
            entry["next_attempt_at"] = iso(self.world.now
                                           + timedelta(seconds=faults.callback_delay_s))
            st.setdefault("callback_retries", []).append(entry["uid"])
            self._count_fault("callback_late")
        else:
            await self._post(entry)
        if faults.callback_twice > 0 and self.world.rng_for(
                "callback-twice", ref).random() < faults.callback_twice:
            twin = {**entry, "uid": self._uid("cb"), "callback_ref_uid": self._uid("cbr"),
                    "retry_count": 0}
            twin["payload"] = {**payload, "callback_ref_uid": twin["callback_ref_uid"]}
            st["callbacks"].append(twin)
            self._count_fault("callback_twice")
            await self._post(twin)

    def _count_fault(self, kind: str) -> None:
        injected = self.world.faults_injected
        injected[kind] = injected.get(kind, 0) + 1

    def add_integration_webhook(self, url: str, headers: Mapping[str, str] | None = None,
                                ) -> None:
        """Receive the LinkedIn integration events (AUTH_EXPIRED, AUTH_SUCCESS) of the Edges
        identities at ``url`` (payload inferred: ``{event, identity_uid, integration, at}``)."""
        st = self.state
        st.setdefault("integration_webhooks", []).append({"url": url,
                                                          "headers": dict(headers or {}),
                                                          "created_at": iso(self.world.now)})
        st.setdefault("integration_sent", len(self.world.integration_events))

    async def _integration_webhooks(self) -> None:
        st = self.state
        self.world.advance()
        events = self.world.integration_events
        sent = st.setdefault("integration_sent", 0)
        if sent >= len(events):
            return
        st["integration_sent"] = len(events)
        for event in events[sent:]:
            if self._edges_identity(str(event.get("identity_uid"))) is None:
                continue
            for hook in st["integration_webhooks"]:
                entry: dict[str, Any] = {
                    "uid": self._uid("iwh"), "kind": "integration", "callback_url": hook["url"],
                    "headers": hook["headers"], "payload": event, "status": "PENDING",
                    "http_status": None, "created_at": iso(self.world.now)}
                st["callbacks"].append(entry)
                await self._post(entry)
