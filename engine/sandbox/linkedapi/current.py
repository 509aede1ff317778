"""The current API (what the official SDK speaks): ``/workflows``, ``/conversations/poll``,
``/account``; every answer is the ``{success, result | error}`` envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from engine.sandbox.linkedapi.base import NO_BODY, ApiBase, envelope_error
from engine.sandbox.linkedapi.execute import run_due
from engine.sandbox.linkedapi.state import WorkflowRecord
from engine.sandbox.linkedapi.validate import InvalidWorkflow, validate
from engine.sandbox.linkedapi.wire import UNFINISHED_CAP
from engine.sandbox.world import WorldError, iso, normalize_url, parse_iso


class CurrentApi(ApiBase):
    """Endpoints of the current API."""

    async def post_workflows(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, envelope_error)
        if isinstance(account, JSONResponse):
            return account
        body = await self._body(request)
        if body is NO_BODY:
            return envelope_error("invalidRequestPayload", "the body is not JSON", 400)
        try:
            validate(body)
        except InvalidWorkflow as exc:
            return envelope_error("invalidWorkflow", str(exc), 400)
        if not self.world.auth_ok(account):
            return envelope_error(
                "linkedinAccountSignedOut", "the LinkedIn account is signed out", 403
            )
        if self.st.unfinished(account) >= UNFINISHED_CAP:
            return envelope_error(
                "tooManyRequests",
                f"at most {UNFINISHED_CAP} unfinished workflows per account",
                429,
                **{"Retry-After": str(int(self.st.base_seconds))},
            )
        fault, perform = await self._fault("workflows.create", envelope_error)
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
        account = self._auth(request, envelope_error)
        if isinstance(account, JSONResponse):
            return account
        fault, _ = await self._fault("workflows.get", envelope_error)
        if fault is not None:
            return fault
        record = self._owned(request, account)
        if record is None:
            return envelope_error("workflowNotFound", "no such workflow", 404)
        result: dict[str, Any] = {"workflowId": record.workflow_id, "workflowStatus": record.status}
        if record.status == "completed":
            result["completion"] = record.completion
        elif record.status == "failed":
            result["failure"] = record.failure
        return JSONResponse({"success": True, "result": result})

    async def delete_workflow(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, envelope_error)
        if isinstance(account, JSONResponse):
            return account
        record = self._owned(request, account)
        if record is None:
            return envelope_error("workflowNotFound", "no such workflow", 404)
        cancelled = record.status == "running"
        if cancelled:
            record.status = "failed"
            record.cancelled = True
            record.failure = {"reason": "workflowCancelled", "message": "cancelled by the user"}
            self.st.touch(record)
        return JSONResponse({"success": True, "result": {"cancelled": cancelled}})

    async def poll_conversations(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, envelope_error)
        if isinstance(account, JSONResponse):
            return account
        body = await self._body(request)
        if not isinstance(body, list) or not all(
            isinstance(i, Mapping) and isinstance(i.get("personUrl"), str) for i in body
        ):
            return envelope_error(
                "invalidRequestPayload", "expected [{personUrl, type, since?}]", 400
            )
        fault, _ = await self._fault("conversations.poll", envelope_error)
        if fault is not None:
            return fault
        if not self.world.auth_ok(account):
            return envelope_error(
                "linkedinAccountSignedOut", "the LinkedIn account is signed out", 403
            )
        out = []
        unsynced = []
        for item in body:
            try:
                url = normalize_url(item["personUrl"])
            except WorldError:
                return envelope_error(
                    "invalidRequestPayload", f"not a person URL: {item['personUrl']}", 400
                )
            if (account, url) not in self.st.synced:
                unsynced.append(item["personUrl"])
                continue
            out.append(self._conversation(account, url, item))
        if unsynced:
            return envelope_error(
                "conversationsNotSynced",
                "sync these conversations first (st.syncConversation): " + ", ".join(unsynced),
                400,
            )
        return JSONResponse({"success": True, "result": out})

    def _conversation(self, account: str, url: str, item: Mapping[str, Any]) -> dict[str, Any]:
        """One polled conversation: its messages at or after ``item["since"]``, if given (a
        message in that very instant is in: on the virtual clock many writes share one, and
        a client asking "since my message" must find it; the other ``since`` filters of this
        API include it too)."""
        since = parse_iso(str(item["since"])) if item.get("since") else None
        thread = self.world.thread_with(account, url)
        messages = (
            []
            if thread is None
            else [
                {
                    "id": m.message_id,
                    "sender": "us" if m.from_us else "them",
                    "text": m.text,
                    "time": iso(m.created_at),
                }
                for m in thread.messages
                if since is None or m.created_at >= since
            ]
        )
        entry: dict[str, Any] = {
            "personUrl": item["personUrl"],
            "type": item.get("type", "st"),
            "messages": messages,
        }
        if item.get("since"):
            entry["since"] = item["since"]
        return entry

    async def get_account(self, request: Request) -> JSONResponse:
        run_due(self.world)
        account = self._auth(request, envelope_error)
        if isinstance(account, JSONResponse):
            return account
        try:
            ident = self.world.me(account)
        except WorldError:
            return envelope_error(
                "linkedinAccountSignedOut", "the LinkedIn account is signed out", 403
            )
        return JSONResponse(
            {"success": True, "result": {"name": ident.name, "url": ident.profile_url}}
        )
