"""Run callbacks and integration webhooks: queued in the state, POSTed by ``callback_client``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from engine.sandbox.common import iso
from engine.sandbox.edges.lists import Lists
from engine.sandbox.edges.wire import (
    WORKSPACE_UID,
)


class Callbacks(Lists):
    """Callback entries for runs and LinkedIn integration events."""

    async def _post(self, entry: dict[str, Any]) -> None:
        if self.callback_client is None:
            return
        try:
            resp = await self.callback_client.post(entry["callback_url"], json=entry["payload"],
                                                   headers=entry["headers"])
            entry["http_status"] = resp.status_code
            entry["status"] = "SUCCESS" if resp.status_code < 300 else "FAILED"
        except httpx.HTTPError as exc:
            entry["status"] = "FAILED"
            entry["http_response"] = type(exc).__name__

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
        await self._post(entry)

    def add_integration_webhook(self, url: str, headers: Mapping[str, str] | None = None,
                                ) -> None:
        """Receive the LinkedIn integration events (AUTH_EXPIRED, AUTH_SUCCESS) of the Edges
        identities at ``url`` (payload inferred: ``{event, identity_uid, integration, at}``)."""
        st = self.state
        st.setdefault("integration_webhooks", []).append({"url": url,
                                                          "headers": dict(headers or {})})
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
