"""The account API's answer for a workflow (also the payload POSTed to a ``hook`` webhook)."""

from __future__ import annotations

from typing import Any

from engine.sandbox.linkedapi.state import WorkflowRecord


def account_body(record: WorkflowRecord, base_url: str) -> dict[str, Any]:
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
